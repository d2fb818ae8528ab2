//! A container tool known by the shape of its arguments when its name is unknown or
//! altered (a replayed event has no file identity): docker/kubectl-style
//! `exec -it <target> [--] <cmd>`, ctr's `--address …containerd.sock … tasks exec
//! --exec-id`, `--namespace k8s.io`, crictl's `--runtime-endpoint`, a `run` that breaks
//! isolation, and any program calling a kubelet or API server exec URL.
//!
//! Precision first: every option seen must belong to the tool's grammar, the target must
//! be a container or pod name, and the arguments must carry evidence that only a
//! container tool gives (`-it`, `--tty`, `-c <container>`, `pod/<name>`, a runtime
//! socket, `k8s.io`). `npm exec`, `bundle exec`, `mise exec node@20 -- node`,
//! `ip netns exec`, `cargo run -- exec …` and their kind never match.

use super::{
    container::{self, RUN_LONG, RUN_SHORT},
    http,
    invocation::Invocation,
    kube, runtime,
    tools::TEXT_TOOLS,
};

/// Global options (before the verb) of docker, podman, nerdctl, kubectl, ctr, crictl and
/// runc that take a value, each with the family it is evidence for.
const GLOBALS: &[(&str, Family)] = &[
    ("-H", Family::Docker),
    ("--host", Family::Docker),
    ("--context", Family::Any),
    ("--config", Family::Any),
    ("--log-level", Family::Any),
    ("-l", Family::Any),
    ("--kubeconfig", Family::Kube),
    ("-s", Family::Kube),
    ("--server", Family::Kube),
    ("--token", Family::Kube),
    ("--cluster", Family::Kube),
    ("--user", Family::Kube),
    ("--as", Family::Kube),
    ("--request-timeout", Family::Kube),
    ("-n", Family::Any),
    ("--namespace", Family::Any),
    ("-a", Family::Containerd),
    ("--address", Family::Containerd),
    ("-r", Family::Crictl),
    ("--runtime-endpoint", Family::Crictl),
    ("--image-endpoint", Family::Crictl),
    ("--root", Family::Runc),
    ("--log", Family::Runc),
    ("--log-format", Family::Runc),
];

/// Flags (no value) allowed before the verb.
const GLOBAL_FLAGS: &[&str] = &[
    "--debug",
    "-D",
    "--insecure-skip-tls-verify",
    "--systemd-cgroup",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    Docker,
    Kube,
    Containerd,
    Crictl,
    Runc,
}

/// Exec options: (name, takes a value, family it is evidence for; `Any` for -i/-t).
const EXEC_OPTS: &[(&str, bool, Family)] = &[
    ("-i", false, Family::Any),
    ("-t", false, Family::Any),
    ("--interactive", false, Family::Any),
    ("--tty", false, Family::Any),
    ("--stdin", false, Family::Kube),
    ("-q", false, Family::Kube),
    ("--quiet", false, Family::Kube),
    ("-c", true, Family::Kube),
    ("--container", true, Family::Kube),
    ("-n", true, Family::Kube),
    ("--namespace", true, Family::Kube),
    ("-f", true, Family::Kube),
    ("--filename", true, Family::Kube),
    ("--pod-running-timeout", true, Family::Kube),
    ("-u", true, Family::Docker),
    ("--user", true, Family::Docker),
    ("-e", true, Family::Docker),
    ("--env", true, Family::Docker),
    ("--env-file", true, Family::Docker),
    ("-w", true, Family::Docker),
    ("--workdir", true, Family::Docker),
    ("--privileged", false, Family::Docker),
    ("--detach-keys", true, Family::Docker),
    ("-d", false, Family::Docker),
    ("--detach", false, Family::Docker),
    ("--exec-id", true, Family::Containerd),
    ("--timeout", true, Family::Crictl),
    ("--sync", false, Family::Crictl),
];

/// What the arguments say about which tool this is.
#[derive(Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent pieces of evidence, each seen or not"
)]
struct Evidence {
    docker: bool,
    kube: bool,
    containerd: bool,
    k8s_io: bool,
    crictl: bool,
    runc: bool,
    tty_flags: bool,
}

impl Evidence {
    fn note(&mut self, f: Family) {
        match f {
            Family::Any => {}
            Family::Docker => self.docker = true,
            Family::Kube => self.kube = true,
            Family::Containerd => self.containerd = true,
            Family::Crictl => self.crictl = true,
            Family::Runc => self.runc = true,
        }
    }
}

/// The invocation a program we do not know by name is, by its arguments' shape.
/// `name` is its (normalised) name.
pub(super) fn recognise(name: &str, argv: &[String]) -> Option<Invocation> {
    if !worth_trying(argv) || TEXT_TOOLS.contains(&name) {
        return None;
    }
    by_grammar(argv).or_else(|| by_url(argv))
}

/// A cheap first look: a shape needs one of the verbs the shapes start with, or a URL.
/// Most command lines have neither.
pub(super) fn worth_trying(argv: &[String]) -> bool {
    argv.len() >= 2
        && argv[1..].iter().any(|a| {
            matches!(
                a.as_str(),
                "exec" | "run" | "task" | "tasks" | "t" | "container" | "containers" | "c"
            ) || a.contains("://")
        })
}

fn by_grammar(argv: &[String]) -> Option<Invocation> {
    let mut ev = Evidence::default();
    let mut i = 1;
    // Global options, then the verb.
    while let Some(a) = argv.get(i) {
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let (key, attached) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v)),
            _ => (a.as_str(), None),
        };
        if let Some(&(_, fam)) = GLOBALS.iter().find(|(k, _)| *k == key) {
            let value = if let Some(v) = attached {
                v
            } else {
                i += 1;
                argv.get(i)?.as_str()
            };
            ev.note(fam);
            match key {
                "-a" | "--address" if value.ends_with("containerd.sock") => ev.containerd = true,
                "-a" | "--address" => return None,
                "-n" | "--namespace" if value == "k8s.io" => ev.k8s_io = true,
                "-H" | "--host" if !daemon_address(value) => return None,
                "--root" if !value.contains("runc") => return None,
                _ => {}
            }
        } else if !GLOBAL_FLAGS.contains(&key) {
            // An option no container tool has: another program.
            return None;
        }
        i += 1;
    }
    let verb = argv.get(i)?.as_str();
    let inv = match verb {
        "exec" => exec_shape(argv, i + 1, &mut ev)?,
        "task" | "tasks" | "t" if argv.get(i + 1).is_some_and(|v| v == "exec") => {
            let has_exec_id = argv[i + 2..]
                .iter()
                .any(|a| a == "--exec-id" || a.starts_with("--exec-id="));
            if !(has_exec_id || ev.containerd || ev.k8s_io) {
                return None;
            }
            runtime::parse_ctr(argv)
        }
        // ctr's other verbs, with containerd evidence.
        "task" | "tasks" | "t" | "container" | "containers" | "c" | "run"
            if ev.containerd || ev.k8s_io =>
        {
            if verb == "run" && !ctr_image_ref(argv, i + 1) {
                // `-n k8s.io run alpine …`: nerdctl's docker grammar (ctr only takes
                // fully qualified references).
                return run_shape(argv, i + 1, "nerdctl");
            }
            runtime::parse_ctr(argv)
        }
        "run" => return run_shape(argv, i + 1, "docker"),
        _ => return None,
    };
    Some(inv)
}

/// Whether the first positional after `start` is a fully qualified image reference
/// (`docker.io/library/alpine:latest`), as ctr's `run` requires and nerdctl's does not.
fn ctr_image_ref(argv: &[String], start: usize) -> bool {
    let w = super::opts::Opts {
        long_vals: runtime::CTR_RUN_LONG,
        short_vals: "",
        stop_at_positional: true,
    }
    .walk(argv.get(start..).unwrap_or(&[]));
    w.positionals.first().is_some_and(|img| {
        let host = img.split('/').next().unwrap_or("");
        img.contains('/') && (host.contains('.') || host.contains(':') || host == "localhost")
    })
}

/// `unix:///…/docker.sock`, `tcp://host:2375`, `ssh://…`: a container daemon.
fn daemon_address(v: &str) -> bool {
    v.starts_with("unix://") && v.to_ascii_lowercase().ends_with(".sock")
        || v.starts_with("tcp://")
        || v.starts_with("ssh://")
        || v.starts_with("fd://")
}

/// A container or pod name (docker, containerd and Kubernetes names, optionally
/// `pod/<name>`); not a path, a version spec or an assignment.
fn is_target(s: &str) -> bool {
    let s = s
        .strip_prefix("pod/")
        .or_else(|| s.strip_prefix("pods/"))
        .unwrap_or(s);
    s.len() <= 253
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `exec [opts] <target> [--] <cmd…>` from index `start`.
fn exec_shape(argv: &[String], start: usize, ev: &mut Evidence) -> Option<Invocation> {
    let mut i = start;
    let mut target = None;
    while let Some(a) = argv.get(i) {
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (k, v) = match long.split_once('=') {
                Some((k, v)) => (&a[..k.len() + 2], Some(v)),
                None => (a.as_str(), None),
            };
            let &(_, takes, fam) = EXEC_OPTS.iter().find(|(n, _, _)| *n == k)?;
            ev.note(fam);
            if matches!(k, "--interactive" | "--tty" | "--stdin") {
                ev.tty_flags = true;
            }
            if takes && v.is_none() {
                i += 1;
                argv.get(i)?;
            }
            i += 1;
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            // A cluster of short options (`-it`, `-itd`, `-uroot`).
            for (j, c) in a[1..].char_indices() {
                let name = format!("-{c}");
                let &(_, takes, fam) = EXEC_OPTS.iter().find(|(n, _, _)| *n == name)?;
                ev.note(fam);
                if c == 'i' || c == 't' {
                    ev.tty_flags = true;
                }
                if takes {
                    if a[1 + j + c.len_utf8()..].is_empty() {
                        i += 1;
                        argv.get(i)?;
                    }
                    break;
                }
            }
            i += 1;
            continue;
        }
        target = Some(i);
        break;
    }
    // kubectl takes `--` before the command; docker takes it directly.
    let t = target?;
    let name = &argv[t];
    if !is_target(name) {
        return None;
    }
    let rest = &argv[t + 1..];
    let (dashdash, cmd) = match rest.first() {
        Some(d) if d == "--" => (true, &rest[1..]),
        _ => (false, rest),
    };
    if cmd
        .first()
        .is_none_or(|c| c.is_empty() || c.starts_with('-'))
    {
        return None;
    }
    ev.kube |= dashdash || name.starts_with("pod/") || name.starts_with("pods/");
    if !(ev.tty_flags || ev.docker || ev.kube || ev.containerd || ev.crictl || ev.runc || ev.k8s_io)
    {
        return None;
    }
    let tool = if ev.crictl {
        "crictl"
    } else if ev.runc {
        "runc"
    } else if ev.containerd || ev.k8s_io {
        "nerdctl"
    } else if ev.kube && !ev.docker {
        "kubectl"
    } else {
        "docker"
    };
    let inv = match tool {
        "crictl" => runtime::parse_crictl(argv),
        "runc" => runtime::parse_runc("runc", argv),
        "kubectl" => kube::parse_kubectl("kubectl", argv),
        t => container::parse_docker(t, argv),
    };
    (inv.verb.as_deref() == Some("exec") && (inv.container.is_some() || inv.pod.is_some()))
        .then_some(inv)
}

/// `run [opts] <image> [cmd…]` that breaks isolation (privileged, host namespaces, the
/// host's root or the runtime socket mounted, `SYS_ADMIN`): only then is an unknown
/// program's `run` taken for docker's.
fn run_shape(argv: &[String], start: usize, tool: &str) -> Option<Invocation> {
    // Every option before the image must be one docker's run takes.
    let mut i = start;
    while let Some(a) = argv.get(i) {
        if a == "--" || !a.starts_with('-') || a == "-" {
            break;
        }
        let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
        if !is_run_option(key) {
            return None;
        }
        if !a.contains('=') && run_option_takes_value(key) {
            i += 1;
        }
        i += 1;
    }
    if !argv
        .get(i)
        .is_some_and(|img| !img.starts_with('-') && !img.contains(".."))
    {
        return None;
    }
    let inv = container::parse_docker(tool, argv);
    let breaks = inv.privileged
        || !inv.host_namespaces.is_empty()
        || inv.host_root_mount
        || inv.runtime_socket_mount
        || inv.security_unconfined
        || inv
            .cap_add
            .iter()
            .any(|c| c.eq_ignore_ascii_case("SYS_ADMIN") || c.eq_ignore_ascii_case("ALL"));
    (inv.verb.as_deref() == Some("run") && inv.image.is_some() && breaks).then_some(inv)
}

/// Any program with a kubelet or API server exec/run/attach URL in its arguments is a
/// client of that API (CDK's `kcurl`, a renamed curl, a script).
fn by_url(argv: &[String]) -> Option<Invocation> {
    // A cheap filter first: most programs have no URL at all.
    if !argv[1..].iter().any(|a| {
        a.contains("://") && (a.contains(":10250") || a.contains(":10255") || a.contains("/api/"))
    }) {
        return None;
    }
    let inv = http::parse_client("url_client", argv);
    let exec = match inv.api {
        Some("kubelet" | "apiserver") => {
            matches!(inv.api_action, Some("run" | "exec" | "attach" | "cri_exec"))
        }
        _ => false,
    };
    exec.then_some(inv)
}

/// Options of run/create that take no value.
const RUN_FLAGS: &[&str] = &[
    "privileged",
    "rm",
    "detach",
    "interactive",
    "tty",
    "init",
    "read-only",
    "publish-all",
    "no-healthcheck",
    "oom-kill-disable",
    "sig-proxy",
    "disable-content-trust",
    "quiet",
    "replace",
    "tls-verify",
    "net-host",
];
const RUN_SHORT_FLAGS: &str = "dirtPq";

/// Whether `key` (`--name` or a cluster of short options) is an option of docker's
/// run/create: the shape of an unknown program's `run` must be docker's throughout.
fn is_run_option(key: &str) -> bool {
    if let Some(long) = key.strip_prefix("--") {
        return RUN_LONG.contains(&long) || RUN_FLAGS.contains(&long);
    }
    let Some(cluster) = key.strip_prefix('-').filter(|c| !c.is_empty()) else {
        return false;
    };
    for (j, c) in cluster.char_indices() {
        if RUN_SHORT.contains(c) {
            // The rest of the cluster is its value.
            return j + c.len_utf8() <= cluster.len();
        }
        if !RUN_SHORT_FLAGS.contains(c) {
            return false;
        }
    }
    true
}

/// Whether option `key` (as [`is_run_option`] takes it) consumes the next argument.
fn run_option_takes_value(key: &str) -> bool {
    if let Some(long) = key.strip_prefix("--") {
        return RUN_LONG.contains(&long);
    }
    key.chars().last().is_some_and(|c| RUN_SHORT.contains(c))
        && key[1..]
            .chars()
            .rev()
            .skip(1)
            .all(|c| RUN_SHORT_FLAGS.contains(c))
}
