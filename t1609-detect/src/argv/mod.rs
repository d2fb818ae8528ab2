//! Structured argv parsing: turns a command line into the fields the sharper rules use
//! (tool, verb, target, interactive, isolation-breaking flags, command run inside, kubelet
//! URL parts), re-parsing the inner command of wrappers.
//!
//! The parsers follow each tool's real option grammar (which options take a value), so
//! that an option value is never mistaken for a verb or a container name.

mod container;
mod http;
mod invocation;
mod kube;
mod opts;
mod runtime;
mod shell;
mod tools;
mod words;

use std::sync::Arc;

pub use invocation::{Invocation, PackedArgv};
use invocation::{MAX_DEPTH, MAX_INVOCATIONS};
pub(crate) use opts::Few;
pub(crate) use tools::{
    KNOWN_TOOLS, LIVE_WRAPPERS, SHELLS, basename, basename_bytes, exe_names_for_tool,
};
use tools::{MULTI_CALL, canonical_tool};

/// Parses an event's argv. `exe_name` is `process.name` (the executed file's basename,
/// which `exec -a` cannot spoof); it decides the tool unless it is a multi-call binary or
/// a `#!` interpreter running a known tool's script.
pub fn parse(exe_name: Option<&str>, argv: &[String]) -> Vec<Invocation> {
    parse_shared(exe_name, argv)
        .into_iter()
        .map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
        .collect()
}

/// [`parse`], each invocation behind an `Arc` as alerts hold them (no copies, and no
/// large contiguous allocation of invocations).
pub(crate) fn parse_shared(exe_name: Option<&str>, argv: &[String]) -> Vec<Arc<Invocation>> {
    let mut out = Vec::new();
    let name = match exe_name {
        Some(n) => n,
        None => match argv.first() {
            Some(a) => basename(a),
            None => return out,
        },
    };
    parse_into(name, argv, &[], 0, &mut out);
    out
}

/// Parses one command whose executable basename is `name`, appending it and any inner
/// commands it wraps.
pub(crate) fn parse_into(
    name: &str,
    argv: &[String],
    wrappers: &[String],
    depth: u8,
    out: &mut Vec<Arc<Invocation>>,
) {
    if depth > MAX_DEPTH || out.len() >= MAX_INVOCATIONS || argv.is_empty() {
        return;
    }
    let mut name = name;
    let mut argv = argv;
    // Multi-call binaries: the applet is argv[0]'s basename, or argv[1] when argv[0] is
    // the multi-call binary itself (`busybox nsenter`, `k3s kubectl`).
    if MULTI_CALL.contains(&name) {
        let a0 = basename(&argv[0]);
        if MULTI_CALL.contains(&a0) {
            match argv.get(1) {
                Some(a1) if !a1.starts_with('-') => {
                    name = basename(a1);
                    argv = &argv[1..];
                }
                _ => return,
            }
        } else {
            name = a0;
        }
    }
    let mut shim = None;
    // `#!` shim: the kernel runs the interpreter with the script path in argv[1]
    // (after at most one interpreter option).
    if SHELLS.contains(&name)
        || canonical_tool(name) == Some("python")
        || name == "perl"
        || name == "env"
    {
        let skip = usize::from(
            argv.get(1)
                .is_some_and(|a| a.starts_with('-') && a != "-c" && !a.contains('c')),
        );
        if let Some(script) = argv.get(1 + skip) {
            let b = basename(script);
            if script.contains('/')
                && canonical_tool(b).is_some_and(|t| !matches!(t, "python" | "perl" | "node"))
            {
                shim = Some(name.to_string());
                name = b;
                argv = &argv[1 + skip..];
            }
        }
    }
    if let Some(tool) = canonical_tool(name) {
        let inv = match tool {
            "docker" | "podman" | "nerdctl" => container::parse_docker(tool, argv),
            "compose" => container::parse_compose(argv, 1),
            "lxc" => container::parse_lxc(name, argv),
            "kubectl" | "oc" => kube::parse_kubectl(tool, argv),
            "kubeletctl" => kube::parse_kubeletctl(argv),
            "crictl" => runtime::parse_crictl(argv),
            "ctr" => runtime::parse_ctr(argv),
            "runc" | "crun" => runtime::parse_runc(tool, argv),
            "nsenter" => runtime::parse_nsenter(argv),
            _ => http::parse_client(tool, argv),
        };
        let mut inv = inv;
        inv.wrappers = wrappers.to_vec();
        inv.shim = shim;
        // nsenter runs its command on the host side: re-parse it.
        let inv = Arc::new(inv);
        out.push(Arc::clone(&inv));
        if inv.tool == "nsenter" && !inv.command.is_empty() {
            let cmd = &inv.command;
            let mut w = wrappers.to_vec();
            w.push("nsenter".into());
            parse_into(basename(&cmd[0]), cmd, &w, depth + 1, out);
        }
    } else {
        shell::parse_wrapper(name, argv, wrappers, depth, out, parse_into);
    }
}
