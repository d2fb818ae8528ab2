//! Structured argv parsing: turns a command line into the fields the sharper rules use
//! (tool, verb, target, interactive, isolation-breaking flags, command run inside, kubelet
//! URL parts), re-parsing the inner command of wrappers.
//!
//! The parsers follow each tool's real option grammar (which options take a value), so
//! that an option value is never mistaken for a verb or a container name.
//!
//! The exec's own file name (`process.name`) decides the tool; argv[0] never does. When
//! that name is not one we know, the name once normalised (case, white space) or the
//! shape of the arguments may still recognise the tool ([`shape`]): the invocation then
//! says how (`recognised_by`) and that the name lies (`masquerade`).

mod container;
mod http;
mod invocation;
mod kube;
mod opts;
mod plugin;
mod runtime;
mod shape;
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
use tools::{MULTI_CALL, canonical_tool, normalise_name};

/// Parses an event's argv. `exe_name` is `process.name` (the executed file's basename,
/// which `exec -a` cannot spoof); it decides the tool unless it is a multi-call binary or
/// a `#!` interpreter running a known tool's script. A name we do not know is normalised
/// or, failing that, the arguments' shape is tried.
pub fn parse(exe_name: Option<&str>, argv: &[String]) -> Vec<Invocation> {
    unshare(parse_shared(exe_name, argv))
}

/// Parses argv as the command of `tool`, a tool the agent recognised by the executed
/// file's content (t1609-identity's canonical names: `docker`, `kubectl`, `ctr`, `k3s`,
/// `cdk`, …), whatever the name it ran under. `exe_name` is the real `process.name`; the
/// first invocation says `recognised_by: content` and, when the name is not one of the
/// tool's, `masquerade`. Unknown tools parse as [`parse`] does.
pub fn parse_identified(tool: &str, exe_name: &str, argv: &[String]) -> Vec<Invocation> {
    unshare(parse_identified_shared(tool, exe_name, argv))
}

/// The executable name whose rules apply to `tool` (a t1609-identity canonical name), and
/// under which [`parse_identified`] parses its argv; `None` for a tool the parser does not
/// know.
pub fn identified_name(tool: &str) -> Option<&'static str> {
    match tool {
        "cdk" => Some("cdk"),
        "compose" => Some("docker-compose"),
        t => exe_names_for_tool(t)
            .first()
            .copied()
            .or_else(|| MULTI_CALL.iter().find(|m| **m == t).copied()),
    }
}

/// [`parse_identified`], each invocation behind an `Arc` as alerts hold them.
pub(crate) fn parse_identified_shared(
    tool: &str,
    exe_name: &str,
    argv: &[String],
) -> Vec<Arc<Invocation>> {
    let Some(as_name) = identified_name(tool) else {
        return parse_shared(Some(exe_name), argv);
    };
    let mut out = Vec::new();
    if !argv.is_empty() {
        parse_into(as_name, argv, &[], 0, &mut out);
    }
    if let Some(first) = out.first_mut() {
        let inv = Arc::make_mut(first);
        inv.recognised_by = Some("content");
        let names = exe_names_for_tool(&inv.tool);
        let norm = normalise_name(exe_name);
        if names.contains(&exe_name) || exe_name == tool {
            if argv0_lies(exe_name, &argv[0], &inv.tool) {
                inv.masquerade = Some("argv0");
            }
        } else if names.contains(&norm.as_str()) || norm == tool {
            inv.masquerade = Some("name_variant");
        } else {
            inv.masquerade = Some("renamed");
        }
    }
    out
}

/// For an event whose `process.name` the engine's index does not have: the name whose
/// rules apply, when the name once normalised or the arguments' shape recognise a tool
/// (`DOCKER ` → `docker`; `.x exec -it web sh` → `docker`; a program calling a kubelet
/// exec URL → `cdk`, the name the URL clients' rules are indexed under).
pub fn index_key(name: &str, argv: &[String]) -> Option<&'static str> {
    // Most names need no normalising: no allocation for them.
    let norm: std::borrow::Cow<'_, str> = if needs_normalising(name) {
        normalise_name(name).into()
    } else {
        name.into()
    };
    if let Some(t) = canonical_tool(&norm) {
        return exe_names_for_tool(t).first().copied();
    }
    if let Some((host, _)) = plugin::plugin_of(&norm, argv) {
        return Some(host);
    }
    if known_name(&norm) || !shape::worth_trying(argv) {
        return None;
    }
    shape::recognise(&norm, argv).and_then(|inv| exe_names_for_tool(&inv.tool).first().copied())
}

fn needs_normalising(name: &str) -> bool {
    !name.is_ascii()
        || name
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
}

fn unshare(v: Vec<Arc<Invocation>>) -> Vec<Invocation> {
    v.into_iter()
        .map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
        .collect()
}

/// [`parse`], each invocation behind an `Arc` as alerts hold them (no copies, and no
/// large contiguous allocation of invocations).
pub(crate) fn parse_shared(exe_name: Option<&str>, argv: &[String]) -> Vec<Arc<Invocation>> {
    let mut out = Vec::new();
    if argv.is_empty() {
        return out;
    }
    match exe_name {
        Some(n) => parse_top(n, true, argv, &mut out),
        // No file name: argv[0]'s stands in, but proves nothing about a masquerade.
        None => parse_top(basename(&argv[0]), false, argv, &mut out),
    }
    out
}

/// Names the parser knows: tools, multi-call binaries, wrappers and shells.
fn known_name(name: &str) -> bool {
    canonical_tool(name).is_some() || MULTI_CALL.contains(&name) || shell::is_wrapper(name)
}

/// The exec's own command. `name_is_real`: `name` is the executed file's, so a name that
/// is not the tool's own is a masquerade.
fn parse_top(name: &str, name_is_real: bool, argv: &[String], out: &mut Vec<Arc<Invocation>>) {
    let start = out.len();
    if known_name(name) || plugin::plugin_of(name, argv).is_some() {
        parse_into(name, argv, &[], 0, out);
        if name_is_real
            && !MULTI_CALL.contains(&name)
            && let Some(first) = out.get_mut(start)
            && !exe_names_for_tool(&first.tool).is_empty()
            && first.shim.is_none()
            && argv0_lies(name, &argv[0], &first.tool)
        {
            Arc::make_mut(first).masquerade = Some("argv0");
        }
        return;
    }
    let norm = normalise_name(name);
    if norm != name && (known_name(&norm) || plugin::plugin_of(&norm, argv).is_some()) {
        parse_into(&norm, argv, &[], 0, out);
        if name_is_real
            && let Some(first) = out.get_mut(start)
            && !exe_names_for_tool(&first.tool).is_empty()
        {
            let inv = Arc::make_mut(first);
            inv.recognised_by = Some("name_variant");
            inv.masquerade = Some("name_variant");
        }
        return;
    }
    if let Some(mut inv) = shape::recognise(&norm, argv) {
        if inv.tool == "url_client" {
            inv.recognised_by = Some("url");
        } else {
            inv.recognised_by = Some("shape");
            if name_is_real {
                inv.masquerade = Some("renamed");
            }
        }
        out.push(Arc::new(inv));
    }
}

/// Whether argv[0] names another program than the executed file (`exec -a nginx docker
/// …`). A path, a login shell's `-`, case and white space, and another name of the same
/// tool (`kubectl` for k3s) are not lies.
fn argv0_lies(name: &str, argv0: &str, tool: &str) -> bool {
    let a0 = normalise_name(basename(argv0));
    let a0 = a0.trim_start_matches('-');
    a0 != normalise_name(name)
        && !exe_names_for_tool(tool).contains(&a0)
        && canonical_tool(a0) != Some(tool)
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
            let tool_script = canonical_tool(b)
                .is_some_and(|t| !matches!(t, "python" | "perl" | "node"))
                || plugin::plugin_of(b, &argv[1 + skip..]).is_some();
            if script.contains('/') && tool_script {
                shim = Some(name.to_string());
                name = b;
                argv = &argv[1 + skip..];
            }
        }
    }
    if let Some(tool) = canonical_tool(name) {
        let inv = match tool {
            "docker" | "podman" | "nerdctl" => container::parse_docker(tool, argv),
            // Run by the docker CLI as a plugin: `…/docker-compose compose exec …`.
            "compose" if argv.get(1).is_some_and(|a| a == "compose") => {
                let mut c = container::parse_compose(argv, 2);
                c.plugin = Some("compose".into());
                c
            }
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
    } else if let Some((host, plugin)) = plugin::plugin_of(name, argv) {
        let mut inv = plugin::parse_plugin(host, &plugin, argv, wrappers);
        inv.shim = shim;
        out.push(Arc::new(inv));
    } else {
        shell::parse_wrapper(name, argv, wrappers, depth, out, parse_into);
    }
}
