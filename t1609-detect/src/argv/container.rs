//! docker, podman, nerdctl, compose and lxc.

use super::{
    invocation::{Invocation, PackedArgv},
    opts::{HELP_FLAGS, Opts, Walk},
    tools::basename,
};

/// Global options (before the verb) that take a value.
const GLOBAL_LONG: &[&str] = &[
    "host",
    "context",
    "config",
    "log-level",
    "tlscacert",
    "tlscert",
    "tlskey",
    "namespace",
    "address",
    "connection",
    "url",
    "identity",
    "root",
    "runroot",
    "storage-driver",
    "storage-opt",
    "cgroup-manager",
    "snapshotter",
    "cni-path",
    "cni-netconfpath",
    "data-root",
    "events-backend",
    "hooks-dir",
    "network-cmd-path",
    "runtime",
    "runtime-flag",
    "tmpdir",
    "volumepath",
    "imagestore",
    "module",
    "conmon",
    "db-backend",
    "network-config-dir",
    "ssh",
    "host-gateway-ip",
    "hosts-dir",
    "cgroup-parent",
];
const GLOBAL_SHORT: &str = "Hcln";

/// Options of run/create/exec that take a value (docker, podman and nerdctl combined).
pub(super) const RUN_LONG: &[&str] = &[
    "add-host",
    "annotation",
    "attach",
    "blkio-weight",
    "blkio-weight-device",
    "cap-add",
    "cap-drop",
    "cgroup-parent",
    "cgroupns",
    "cgroups",
    "cidfile",
    "cpu-period",
    "cpu-quota",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "device",
    "device-cgroup-rule",
    "device-read-bps",
    "device-read-iops",
    "device-write-bps",
    "device-write-iops",
    "dns",
    "dns-option",
    "dns-opt",
    "dns-search",
    "domainname",
    "entrypoint",
    "env",
    "env-file",
    "expose",
    "gpus",
    "group-add",
    "health-cmd",
    "health-interval",
    "health-retries",
    "health-start-period",
    "health-timeout",
    "hostname",
    "ip",
    "ip6",
    "ipc",
    "isolation",
    "kernel-memory",
    "label",
    "label-file",
    "link",
    "link-local-ip",
    "log-driver",
    "log-opt",
    "mac-address",
    "memory",
    "memory-reservation",
    "memory-swap",
    "memory-swappiness",
    "mount",
    "name",
    "network",
    "net",
    "network-alias",
    "net-alias",
    "oom-score-adj",
    "pid",
    "pids-limit",
    "platform",
    "publish",
    "pull",
    "restart",
    "runtime",
    "security-opt",
    "shm-size",
    "stop-signal",
    "stop-timeout",
    "storage-opt",
    "sysctl",
    "tmpfs",
    "ulimit",
    "user",
    "userns",
    "uts",
    "volume",
    "volume-driver",
    "volumes-from",
    "workdir",
    "detach-keys",
    "pod",
    "uidmap",
    "gidmap",
    "subuidname",
    "subgidname",
    "arch",
    "os",
    "variant",
    "secret",
    "systemd",
    "init-path",
    "chrootdirs",
    "pidfile",
    "requires",
    "seccomp-policy",
    "sdnotify",
    "timezone",
    "umask",
    "image-volume",
    "preserve-fds",
    "hooks-dir",
    "log-level",
    "cgroup-conf",
    "personality",
    "rdt-class",
    "hostuser",
    "group-entry",
    "passwd-entry",
    "decryption-key",
    "authfile",
    "cert-dir",
    "creds",
    "health-on-failure",
    "health-startup-cmd",
    "infra-name",
    "retry",
    "retry-delay",
    "unsetenv",
    "snapshotter",
    "cosign-key",
    "verify",
    "ipfs-address",
    "pid-file",
    "cni-netconfpath",
    "index",
];
pub(super) const RUN_SHORT: &str = "acehlmpuvwe";
const NS_OPTS: &[(&str, &str)] = &[
    ("--pid", "pid"),
    ("--net", "net"),
    ("--network", "net"),
    ("--ipc", "ipc"),
    ("--uts", "uts"),
    ("--userns", "user"),
    ("--cgroupns", "cgroup"),
];

pub(crate) const RUNTIME_SOCKETS: &[&str] = &[
    "docker.sock",
    "containerd.sock",
    "crio.sock",
    "podman.sock",
    "cri-dockerd.sock",
    "dockershim.sock",
];

pub(crate) fn is_runtime_socket(path: &str) -> bool {
    let b = basename(path.trim_end_matches('/'));
    RUNTIME_SOCKETS.contains(&b)
        || matches!(
            path.trim_end_matches('/'),
            "/var/run"
                | "/run"
                | "/run/containerd"
                | "/var/run/containerd"
                | "/var/run/docker"
                | "/run/crio"
        )
}

fn is_host_root(src: &str) -> bool {
    let s = src.trim();
    !s.is_empty() && s.trim_end_matches('/').is_empty()
}

/// Records a `-v src:dst[:opts]` or `--mount k=v,...` spec.
fn add_mount(inv: &mut Invocation, spec: &str, long_form: bool) {
    let src = if long_form {
        spec.split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| matches!(k.trim(), "source" | "src"))
            .map(|(_, v)| v.to_string())
    } else {
        spec.split(':').next().map(str::to_string)
    };
    if let Some(src) = src {
        if is_host_root(&src) {
            inv.host_root_mount = true;
        }
        if is_runtime_socket(&src) {
            inv.runtime_socket_mount = true;
        }
    }
    inv.mounts.push(spec.to_string());
}

/// Isolation-breaking options shared by run/create (and exec's `--privileged`).
pub(crate) fn apply_run_opts(inv: &mut Invocation, w: &Walk) {
    inv.privileged |= w.flag_true(&["--privileged"]);
    inv.interactive |= w.flag_true(&["-i", "--interactive"]);
    inv.tty |= w.flag_true(&["-t", "--tty"]);
    for (opt, ns) in NS_OPTS {
        if w.values(&[opt]).any(|v| v.eq_ignore_ascii_case("host"))
            && !inv.host_namespaces.iter().any(|n| n == ns)
        {
            inv.host_namespaces.push((*ns).to_string());
        }
    }
    for v in w.values(&["-v", "--volume"]) {
        add_mount(inv, v, false);
    }
    for m in w.values(&["--mount"]) {
        add_mount(inv, m, true);
    }
    for c in w.values(&["--cap-add"]) {
        for c in c.split(',') {
            let c = c.trim().to_ascii_uppercase();
            let c = c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c);
            if !c.is_empty() {
                inv.cap_add.push(c);
            }
        }
    }
    for s in w.values(&["--security-opt"]) {
        let s = s.to_ascii_lowercase().replace(':', "=");
        if matches!(
            s.as_str(),
            "apparmor=unconfined"
                | "seccomp=unconfined"
                | "label=disable"
                | "systempaths=unconfined"
                | "label=type=spc_t"
        ) {
            inv.security_unconfined = true;
        }
    }
    inv.devices
        .extend(w.values(&["--device"]).map(str::to_string));
}

fn host_port(spec: &str) -> (Option<String>, Option<u16>) {
    let rest = spec.split_once("://").map_or(spec, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => {
            (Some(h.trim_matches(['[', ']']).to_string()), p.parse().ok())
        }
        _ => (Some(hostport.to_string()), None),
    }
}

/// The daemon a `-H`/`--host`/`--url` value points at: a remote host and port, or a
/// Unix socket.
fn set_daemon(inv: &mut Invocation, h: String) {
    // `-H host:port` without a scheme is TCP too.
    let h = if h.contains("://") || h.starts_with('/') || h.starts_with("fd") {
        h
    } else {
        format!("tcp://{h}")
    };
    if h.starts_with("tcp://") || h.starts_with("http") || h.starts_with("ssh://") {
        let (host, port) = host_port(&h);
        inv.remote_host = host;
        // The Engine API's plain-TCP default port.
        inv.remote_port = port.or_else(|| h.starts_with("tcp://").then_some(2375));
    } else if let Some(sock) = h.strip_prefix("unix://") {
        inv.unix_socket = Some(sock.to_string());
    }
}

/// The container (or image) a verb names, and the command after it.
fn target_and_command(w: &Walk) -> (Option<String>, Vec<String>) {
    if !w.positionals.is_empty() {
        (w.positionals.first().copied().cloned(), w.rest.to_vec())
    } else if w.saw_dashdash {
        (
            w.rest.first().cloned(),
            w.rest.get(1..).map(<[String]>::to_vec).unwrap_or_default(),
        )
    } else {
        (None, Vec::new())
    }
}

pub(crate) fn parse_docker(tool: &str, argv: &[String]) -> Invocation {
    let mut inv = Invocation::new(tool, argv);
    let g = Opts {
        long_vals: GLOBAL_LONG,
        short_vals: GLOBAL_SHORT,
        stop_at_positional: true,
    }
    .walk(&argv[1..]);
    inv.help = g.has(HELP_FLAGS) || g.has(&["-v"]);
    if let Some(h) = g.value(&["-H", "--host", "--url"]) {
        set_daemon(&mut inv, h);
    }
    inv.namespace = g.value(&["-n", "--namespace"]);
    let Some(mut verb) = g.positionals.first().copied().cloned() else {
        return inv;
    };
    let mut args = g.rest;
    // `docker container exec`: the management command is a prefix.
    if verb == "container" {
        match args.first() {
            Some(v) if !v.starts_with('-') => {
                verb.clone_from(v);
                args = &args[1..];
            }
            _ => {
                inv.verb = Some(verb);
                return inv;
            }
        }
    }
    if verb == "compose" {
        let mut c = parse_compose_args(args);
        c.argv = PackedArgv::new(argv);
        c.remote_host = inv.remote_host;
        c.remote_port = inv.remote_port;
        c.help |= inv.help;
        return c;
    }
    match verb.as_str() {
        "exec" | "attach" | "run" | "create" | "cp" | "start" => {}
        _ => {
            inv.verb = Some(verb);
            return inv;
        }
    }
    // `start -ai` has flag-only short options.
    let short = if verb == "start" { "" } else { RUN_SHORT };
    let w = Opts {
        long_vals: RUN_LONG,
        short_vals: short,
        stop_at_positional: verb != "cp",
    }
    .walk(args);
    inv.help |= w.has(&["--help"]);
    let (first, rest) = target_and_command(&w);
    match verb.as_str() {
        "exec" => {
            inv.container = first;
            apply_run_opts(&mut inv, &w);
            inv.set_command(rest);
        }
        "attach" => {
            inv.container = first;
            // attach connects stdin by default unless --no-stdin.
            inv.interactive = !w.has(&["--no-stdin"]);
        }
        "start" => {
            // `start -a -i` attaches to the container's main process.
            inv.container = first;
            if w.flag_true(&["-a", "--attach"]) && w.flag_true(&["-i", "--interactive"]) {
                inv.verb = Some("attach".into());
                inv.interactive = true;
                return inv;
            }
        }
        "cp" => {
            // `docker cp` copies through the daemon's archive API, not an exec.
            if let Some(p) = w
                .positionals
                .iter()
                .find(|p| p.contains(':') && !p.starts_with('/'))
            {
                inv.container = p.split(':').next().map(str::to_string);
            }
        }
        _ => {
            inv.image = first;
            apply_run_opts(&mut inv, &w);
            let mut cmd = Vec::new();
            if let Some(ep) = w.value(&["--entrypoint"]) {
                cmd.extend(ep.split_whitespace().map(str::to_string));
            }
            cmd.extend(rest);
            inv.container = w.value(&["--name"]);
            inv.set_command(cmd);
        }
    }
    inv.verb = Some(verb);
    inv
}

const COMPOSE_GLOBAL_LONG: &[&str] = &[
    "file",
    "project-name",
    "profile",
    "env-file",
    "project-directory",
    "ansi",
    "progress",
    "parallel",
    "host",
    "log-level",
];
const COMPOSE_LONG: &[&str] = &[
    "env",
    "user",
    "workdir",
    "index",
    "label",
    "name",
    "publish",
    "volume",
    "entrypoint",
    "cap-add",
    "cap-drop",
    "detach-keys",
    "env-from-file",
];

pub(crate) fn parse_compose(argv: &[String], skip: usize) -> Invocation {
    let mut c = parse_compose_args(argv.get(skip..).unwrap_or(&[]));
    c.argv = PackedArgv::new(argv);
    c
}

fn parse_compose_args(args: &[String]) -> Invocation {
    let mut inv = Invocation::new("compose", &[]);
    let g = Opts {
        long_vals: COMPOSE_GLOBAL_LONG,
        short_vals: "fpH",
        stop_at_positional: true,
    }
    .walk(args);
    inv.help = g.has(HELP_FLAGS);
    let Some(verb) = g.positionals.first().copied().cloned() else {
        return inv;
    };
    if verb == "exec" || verb == "run" || verb == "attach" {
        let w = Opts {
            long_vals: COMPOSE_LONG,
            short_vals: "eluwpv",
            stop_at_positional: true,
        }
        .walk(g.rest);
        inv.help |= w.has(&["--help"]);
        inv.container = w.positionals.first().copied().cloned();
        let no_tty = w.has(&["-T", "--no-TTY", "--no-tty"]) || w.has(&["-d", "--detach"]);
        // compose exec and run allocate a TTY and attach stdin unless -T/-d.
        inv.tty = !no_tty;
        inv.interactive = !no_tty || w.flag_true(&["-i", "--interactive"]);
        inv.privileged = w.flag_true(&["--privileged"]);
        let mut cmd = Vec::new();
        if let Some(ep) = w.value(&["--entrypoint"]) {
            cmd.extend(ep.split_whitespace().map(str::to_string));
        }
        cmd.extend(w.rest.iter().cloned());
        inv.set_command(cmd);
        for c in w.values(&["--cap-add"]) {
            inv.cap_add
                .push(c.trim_start_matches("CAP_").to_ascii_uppercase());
        }
    }
    inv.verb = Some(verb);
    inv
}

/// `lxc exec c -- cmd`, `lxc console c`, `lxc launch img c -c security.privileged=true`,
/// and LXC classic `lxc-attach -n c -- cmd`.
pub(crate) fn parse_lxc(name: &str, argv: &[String]) -> Invocation {
    let mut inv = Invocation::new("lxc", argv);
    if name == "lxc-attach" {
        let w = Opts {
            long_vals: &[
                "name",
                "lxcpath",
                "rcfile",
                "set-var",
                "keep-var",
                "elevated-privileges",
                "namespaces",
                "arch",
                "context",
                "uid",
                "gid",
                "logfile",
                "logpriority",
            ],
            short_vals: "nPfvsaeuglo",
            stop_at_positional: false,
        }
        .walk(&argv[1..]);
        inv.help = w.has(HELP_FLAGS);
        inv.verb = Some("attach".into());
        inv.container = w
            .value(&["-n", "--name"])
            .or_else(|| w.positionals.first().copied().cloned());
        inv.interactive = true;
        inv.set_command(w.rest.to_vec());
        return inv;
    }
    let w = Opts {
        long_vals: &[
            "mode", "env", "user", "group", "cwd", "config", "project", "profile", "type",
            "target", "storage", "network", "remote",
        ],
        short_vals: "cpe",
        stop_at_positional: false,
    }
    .walk(&argv[1..]);
    inv.help = w.has(HELP_FLAGS);
    let Some(verb) = w.positionals.first().copied().cloned() else {
        return inv;
    };
    match verb.as_str() {
        "exec" => {
            inv.container = w.positionals.get(1).copied().cloned();
            let mode = w.value(&["--mode"]);
            inv.interactive = mode.as_deref() != Some("non-interactive");
            inv.tty = inv.interactive;
            let cmd = if w.saw_dashdash {
                w.rest.to_vec()
            } else {
                w.positionals
                    .get(2..)
                    .map(|p| p.iter().copied().cloned().collect())
                    .unwrap_or_default()
            };
            inv.set_command(cmd);
        }
        "console" => {
            inv.container = w.positionals.get(1).copied().cloned();
            inv.interactive = true;
            inv.verb = Some("attach".into());
            return inv;
        }
        "launch" | "init" => {
            inv.image = w.positionals.get(1).copied().cloned();
            inv.container = w.positionals.get(2).copied().cloned();
            for c in w.values(&["-c", "--config"]) {
                let c = c.to_ascii_lowercase().replace(' ', "");
                if c == "security.privileged=true" {
                    inv.privileged = true;
                }
            }
            inv.verb = Some(if verb == "launch" { "run" } else { "create" }.into());
            return inv;
        }
        _ => {}
    }
    inv.verb = Some(verb);
    inv
}
