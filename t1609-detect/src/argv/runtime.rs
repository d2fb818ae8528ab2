//! crictl, ctr, runc/crun and nsenter (util-linux and `BusyBox`).

use super::{
    container::{apply_run_opts, is_runtime_socket},
    invocation::Invocation,
    opts::{HELP_FLAGS, Opts, split_eq},
};

pub(crate) fn parse_crictl(argv: &[String]) -> Invocation {
    let mut inv = Invocation::new("crictl", argv);
    // Before the verb, -i is --image-endpoint (takes a value), not --interactive.
    let g = Opts {
        long_vals: &["runtime-endpoint", "image-endpoint", "timeout", "config"],
        short_vals: "ritc",
        stop_at_positional: true,
    }
    .walk(&argv[1..]);
    inv.help = g.has(HELP_FLAGS) || g.has(&["-v"]);
    let Some(verb) = g.positionals.first().copied().cloned() else {
        return inv;
    };
    if matches!(verb.as_str(), "exec" | "attach") {
        let w = Opts {
            long_vals: &["timeout", "transport", "name", "label", "pod", "namespace"],
            short_vals: "",
            stop_at_positional: true,
        }
        .walk(g.rest);
        inv.help |= w.has(&["--help", "-h"]);
        inv.interactive = w.flag_true(&["-i", "--interactive"]);
        inv.tty = w.flag_true(&["-t", "--tty"]);
        let (first, rest) = if let Some(f) = w.positionals.first() {
            (Some((*f).clone()), w.rest.to_vec())
        } else if w.saw_dashdash {
            (
                w.rest.first().cloned(),
                w.rest.get(1..).map(<[String]>::to_vec).unwrap_or_default(),
            )
        } else {
            (None, Vec::new())
        };
        inv.container = first;
        if verb == "exec" {
            inv.set_command(rest);
        }
    }
    inv.verb = Some(verb);
    inv
}

pub(super) const CTR_RUN_LONG: &[&str] = &[
    "mount",
    "env",
    "env-file",
    "label",
    "cwd",
    "runtime",
    "runtime-config-path",
    "snapshotter",
    "snapshotter-label",
    "with-ns",
    "user",
    "memory-limit",
    "cpus",
    "cpu-shares",
    "cpu-quota",
    "cpu-period",
    "gpus",
    "device",
    "cap-add",
    "cap-drop",
    "fifo-dir",
    "cgroup",
    "platform",
    "seccomp-profile",
    "apparmor-default-profile",
    "apparmor-profile",
    "runc-binary",
    "rootfs-propagation",
    "hostname",
    "pid-file",
    "log-uri",
    "annotation",
    "uidmap",
    "gidmap",
    "blockio-config-file",
    "blockio-class",
    "rdt-class",
    "sandbox",
    "cni-config",
    "exec-id",
    "detach-keys",
];

pub(crate) fn parse_ctr(argv: &[String]) -> Invocation {
    let mut inv = Invocation::new("ctr", argv);
    let g = Opts {
        long_vals: &["address", "namespace", "timeout", "connect-timeout"],
        short_vals: "an",
        stop_at_positional: true,
    }
    .walk(&argv[1..]);
    inv.help = g.has(HELP_FLAGS) || g.has(&["-v"]);
    inv.namespace = g.value(&["-n", "--namespace"]);
    if let Some(a) = g.value(&["-a", "--address"]) {
        inv.unix_socket = Some(a);
    }
    let Some(first) = g.positionals.first().copied().cloned() else {
        return inv;
    };
    let (verb, args): (String, Vec<String>) = match first.as_str() {
        "task" | "tasks" | "t" => match g.rest.first() {
            Some(sub) => (sub.clone(), g.rest[1..].to_vec()),
            None => (first.clone(), Vec::new()),
        },
        "container" | "containers" | "c" => match g.rest.first() {
            Some(sub) if sub == "create" => ("create".into(), g.rest[1..].to_vec()),
            Some(sub) => (format!("container-{sub}"), Vec::new()),
            None => (first.clone(), Vec::new()),
        },
        "run" => ("run".into(), g.rest.to_vec()),
        _ => {
            inv.verb = Some(first);
            return inv;
        }
    };
    let w = Opts {
        long_vals: CTR_RUN_LONG,
        short_vals: "",
        stop_at_positional: true,
    }
    .walk(&args);
    inv.help |= w.has(&["--help", "-h"]);
    inv.tty = w.flag_true(&["-t", "--tty"]);
    // ctr attaches stdin unless detached or --null-io.
    let pos_and_rest: Vec<String> = w
        .positionals
        .iter()
        .copied()
        .chain(w.rest.iter())
        .cloned()
        .collect();
    match verb.as_str() {
        "exec" => {
            inv.interactive = inv.tty || !w.has(&["-d", "--detach"]);
            inv.container = pos_and_rest.first().cloned();
            inv.set_command(
                pos_and_rest
                    .get(1..)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
            );
        }
        "attach" => {
            inv.interactive = true;
            inv.container = pos_and_rest.first().cloned();
        }
        "run" | "create" => {
            apply_run_opts(&mut inv, &w);
            inv.tty = w.flag_true(&["-t", "--tty"]);
            inv.interactive = inv.tty;
            if w.flag_true(&["--net-host"]) {
                inv.host_namespaces.push("net".into());
            }
            for ns in w.values(&["--with-ns"]) {
                // `--with-ns pid:/proc/1/ns/pid` joins the host's namespace.
                if let Some((kind, path)) = ns.split_once(':')
                    && path.starts_with("/proc/1/")
                {
                    inv.host_namespaces.push(kind.to_string());
                }
            }
            for m in inv.mounts.clone() {
                let src = m
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| matches!(*k, "src" | "source"))
                    .map(|(_, v)| v);
                if let Some(src) = src {
                    inv.host_root_mount |= src.trim_end_matches('/').is_empty();
                    inv.runtime_socket_mount |= is_runtime_socket(src);
                }
            }
            inv.image = pos_and_rest.first().cloned();
            inv.container = pos_and_rest.get(1).cloned();
            inv.set_command(
                pos_and_rest
                    .get(2..)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
            );
        }
        _ => {}
    }
    inv.verb = Some(verb);
    inv
}

pub(crate) fn parse_runc(tool: &str, argv: &[String]) -> Invocation {
    let mut inv = Invocation::new(tool, argv);
    let g = Opts {
        long_vals: &[
            "root",
            "log",
            "log-format",
            "rootless",
            "criu",
            "cgroup-manager",
        ],
        short_vals: "",
        stop_at_positional: true,
    }
    .walk(&argv[1..]);
    inv.help = g.has(HELP_FLAGS) || g.has(&["-v"]);
    let Some(verb) = g.positionals.first().copied().cloned() else {
        return inv;
    };
    let w = Opts {
        long_vals: &[
            "cwd",
            "env",
            "user",
            "additional-gids",
            "process",
            "pid-file",
            "process-label",
            "apparmor",
            "cap",
            "preserve-fds",
            "cgroup",
            "bundle",
            "console-socket",
            "pidfd-socket",
        ],
        short_vals: "eupcgb",
        stop_at_positional: true,
    }
    .walk(g.rest);
    inv.help |= w.has(&["--help", "-h"]);
    match verb.as_str() {
        "exec" => {
            inv.tty = w.flag_true(&["-t", "--tty"]);
            inv.interactive = !w.has(&["-d", "--detach"]);
            let (first, rest) = if let Some(f) = w.positionals.first() {
                (Some((*f).clone()), w.rest.to_vec())
            } else if w.saw_dashdash {
                (
                    w.rest.first().cloned(),
                    w.rest.get(1..).map(<[String]>::to_vec).unwrap_or_default(),
                )
            } else {
                (None, Vec::new())
            };
            inv.container = first;
            inv.set_command(rest);
            if w.has(&["-p", "--process"]) && inv.command.is_empty() {
                // The command is in a process.json we cannot see.
                inv.command_class = Some("other");
            }
            inv.privileged = w
                .values(&["--cap", "-c"])
                .any(|c| c.eq_ignore_ascii_case("CAP_SYS_ADMIN"));
        }
        "run" | "create" => {
            inv.container = w.positionals.first().copied().cloned();
        }
        _ => {}
    }
    inv.verb = Some(verb);
    inv
}

/// nsenter. Its namespace options take an *optional* argument, which getopt only takes
/// when attached (`-m/proc/1/ns/mnt`, `--mount=/proc/1/ns/mnt`); `-t`/`-S`/`-G`/`-W`
/// always take one.
pub(crate) fn parse_nsenter(argv: &[String]) -> Invocation {
    let mut inv = Invocation::new("nsenter", argv);
    inv.verb = Some("enter".into());
    let mut i = 1;
    let mut target = None;
    let mut ns_target = None;
    let optional = |c: char| "muinpUCTrw".contains(c);
    let mut cmd_start = argv.len();
    while i < argv.len() {
        let a = &argv[i];
        if a == "--" {
            cmd_start = i + 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (k, v) = split_eq(long);
            match k {
                "target" => {
                    if let Some(v) = v {
                        target = Some(v.to_string());
                    } else {
                        target = argv.get(i + 1).cloned();
                        i += 1;
                    }
                }
                "setuid" | "setgid" | "wdns" if v.is_none() => i += 1,
                "help" | "version" => inv.help = true,
                "mount" | "uts" | "ipc" | "net" | "pid" | "user" | "cgroup" | "time" | "all" => {
                    if let Some(path) = v {
                        ns_target = ns_target.or_else(|| proc_pid(path));
                    }
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let cluster = &a[1..];
            let mut took_next = false;
            for (j, c) in cluster.char_indices() {
                // The rest of the cluster: an attached value.
                let rest = &cluster[j + c.len_utf8()..];
                match c {
                    't' | 'S' | 'G' | 'W' => {
                        took_next = rest.is_empty();
                        if c == 't' {
                            target = if took_next {
                                argv.get(i + 1).cloned()
                            } else {
                                Some(rest.to_string())
                            };
                        }
                        break;
                    }
                    'h' | 'V' => {
                        inv.help = true;
                    }
                    c if optional(c) && !rest.is_empty() => {
                        if c != 'r' && c != 'w' {
                            ns_target = ns_target.or_else(|| proc_pid(rest));
                        }
                        break;
                    }
                    _ => {}
                }
            }
            i += if took_next { 2 } else { 1 };
            continue;
        }
        cmd_start = i;
        break;
    }
    inv.target_pid = target.map(canonical_pid).or(ns_target);
    let cmd = argv
        .get(cmd_start..)
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    // With no command nsenter runs ${SHELL}.
    if inv.target_pid.is_some() {
        inv.interactive = cmd.is_empty();
        if cmd.is_empty() {
            inv.command_class = Some("shell");
        }
    }
    if !cmd.is_empty() {
        inv.set_command(cmd);
    }
    inv
}

/// `-t 01` is PID 1 too.
fn canonical_pid(t: String) -> String {
    // Already canonical (`1`, not `01` or ` 1`): keep the string we have.
    let canonical =
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'));
    match t.trim().parse::<u64>() {
        Ok(_) if canonical => t,
        Ok(n) => n.to_string(),
        Err(_) => t.trim().to_string(),
    }
}

/// `/proc/<pid>/ns/<kind>` -> `<pid>`.
fn proc_pid(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/proc/")?;
    let (pid, tail) = rest.split_once('/')?;
    (tail.starts_with("ns/") && pid.chars().all(|c| c.is_ascii_digit())).then(|| pid.to_string())
}
