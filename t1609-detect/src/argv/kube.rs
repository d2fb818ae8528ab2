//! kubectl, oc and kubeletctl.

use serde_json::Value;

use super::{
    container::is_runtime_socket,
    http,
    invocation::Invocation,
    opts::{HELP_FLAGS, Opts, Walk},
    runtime::parse_nsenter,
    tools::basename,
};

/// Options (global or per verb) that take a value. kubectl accepts flags anywhere, so one
/// table covers the verbs we parse.
const KUBE_LONG: &[&str] = &[
    "namespace",
    "context",
    "cluster",
    "kubeconfig",
    "server",
    "token",
    "user",
    "as",
    "as-group",
    "as-uid",
    "request-timeout",
    "certificate-authority",
    "client-certificate",
    "client-key",
    "tls-server-name",
    "cache-dir",
    "v",
    "log-file",
    "log-dir",
    "profile",
    "vmodule",
    "container",
    "filename",
    "pod-running-timeout",
    "image",
    "overrides",
    "restart",
    "env",
    "labels",
    "port",
    "serviceaccount",
    "target",
    "copy-to",
    "image-pull-policy",
    "attach",
    "output",
    "selector",
    "timeout",
    "field-selector",
    "limits",
    "requests",
    "annotations",
    "hostport",
    "generator",
    "dry-run",
    "raw",
    "template",
    "custom-columns",
    "sort-by",
    "field-manager",
    "profile-output",
    "retries",
    "custom",
    "set-image",
    "share-processes",
    "log-flush-frequency",
    "kustomize",
    "chunk-size",
];
const KUBE_SHORT: &str = "nscfvlo";

fn strip_pod_prefix(p: &str) -> String {
    p.strip_prefix("pod/")
        .or_else(|| p.strip_prefix("pods/"))
        .or_else(|| p.strip_prefix("po/"))
        .unwrap_or(p)
        .to_string()
}

/// Reads a `--overrides` pod spec (kubectl run) for isolation-breaking settings and the
/// command it runs: `hostPID`/`hostNetwork`/`hostIPC`, `hostUsers: false`, privileged
/// or `SYS_ADMIN` containers, unconfined seccomp/`AppArmor`, host paths (`/` and runtime
/// sockets), and the first container's `command` + `args`. When that command is
/// nsenter, its target becomes `target_pid` (`nsenter -t 1` in a hostPID pod is a
/// breakout through the API). Text that is not JSON is scanned for the same keys.
fn apply_overrides(inv: &mut Invocation, json: &str) {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        scan_overrides(inv, json);
        return;
    };
    // Usually a Pod (`{"spec": …}`); a bare spec is accepted too.
    let spec = v.get("spec").unwrap_or(&v);
    for (key, ns) in [
        ("hostPID", "pid"),
        ("hostNetwork", "net"),
        ("hostIPC", "ipc"),
    ] {
        if spec.get(key).and_then(Value::as_bool) == Some(true) {
            add_ns(inv, ns);
        }
    }
    if spec.get("hostUsers").and_then(Value::as_bool) == Some(false) {
        add_ns(inv, "user");
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    let mut first_command = None;
    for c in containers {
        let sc = c.get("securityContext");
        if sc
            .and_then(|s| s.get("privileged"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            inv.privileged = true;
        }
        let caps = sc
            .and_then(|s| s.get("capabilities"))
            .and_then(|c| c.get("add"))
            .and_then(Value::as_array);
        for cap in caps.into_iter().flatten().filter_map(Value::as_str) {
            let cap = cap.trim().to_ascii_uppercase();
            inv.cap_add
                .push(cap.strip_prefix("CAP_").map_or(cap.clone(), str::to_string));
        }
        if sc.is_some_and(unconfined) {
            inv.security_unconfined = true;
        }
        if first_command.is_none() {
            let words = |k: &str| {
                c.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            };
            let mut cmd = words("command");
            cmd.extend(words("args"));
            if !cmd.is_empty() {
                first_command = Some(cmd);
            }
        }
    }
    if spec.get("securityContext").is_some_and(unconfined) {
        inv.security_unconfined = true;
    }
    let volumes = spec.get("volumes").and_then(Value::as_array);
    for vol in volumes.into_iter().flatten() {
        let Some(path) = vol
            .get("hostPath")
            .and_then(|h| h.get("path"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        inv.mounts.push(format!("hostPath:{path}"));
        inv.host_root_mount |= !path.is_empty() && path.trim_end_matches('/').is_empty();
        inv.runtime_socket_mount |= is_runtime_socket(path);
    }
    if let Some(cmd) = first_command {
        if cmd.first().is_some_and(|c| basename(c) == "nsenter") {
            inv.target_pid = parse_nsenter(&cmd).target_pid;
        }
        inv.set_command(cmd);
    }
}

fn add_ns(inv: &mut Invocation, ns: &str) {
    if !inv.host_namespaces.iter().any(|n| n == ns) {
        inv.host_namespaces.push(ns.to_string());
    }
}

/// A `securityContext` with seccomp or `AppArmor` unconfined.
fn unconfined(sc: &Value) -> bool {
    ["seccompProfile", "appArmorProfile"].iter().any(|k| {
        sc.get(*k)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            == Some("Unconfined")
    })
}

/// Text that is not valid JSON (kubectl would refuse it; a truncated argv cut it): a
/// substring scan of the whitespace-free text for the same settings.
fn scan_overrides(inv: &mut Invocation, json: &str) {
    let j: String = json
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    for (key, ns) in [
        ("\"hostpid\":true", "pid"),
        ("\"hostnetwork\":true", "net"),
        ("\"hostipc\":true", "ipc"),
        ("\"hostusers\":false", "user"),
    ] {
        if j.contains(key) {
            add_ns(inv, ns);
        }
    }
    if j.contains("\"privileged\":true") {
        inv.privileged = true;
    }
    if j.contains("\"hostpath\":{\"path\":\"/\"") {
        inv.host_root_mount = true;
    }
    for s in ["docker.sock", "containerd.sock", "crio.sock"] {
        if j.contains(s) {
            inv.runtime_socket_mount = true;
        }
    }
    if j.contains("\"sys_admin\"") || j.contains("\"all\"") && j.contains("\"add\"") {
        inv.cap_add.push("SYS_ADMIN".into());
    }
}

/// The command of `exec`/`run`: what follows `--`, or else the positionals after the pod
/// (the deprecated `kubectl exec POD CMD...`).
fn command_after_pod(w: &Walk, pos: &[&String]) -> Vec<String> {
    if w.saw_dashdash {
        w.rest.to_vec()
    } else {
        pos.get(1..)
            .map(|p| p.iter().copied().cloned().collect())
            .unwrap_or_default()
    }
}

/// `kubectl exec POD [-- CMD]` (and the deprecated `exec POD CMD`), `exec-as`, and
/// `oc rsh` (`rsh`).
fn kubectl_exec(inv: &mut Invocation, w: &Walk, rsh: bool, interactive: bool, tty: bool) {
    let pos = &w.positionals[1..];
    inv.pod = pos.first().map(|p| strip_pod_prefix(p));
    inv.container = w.value(&["-c", "--container"]);
    let cmd = command_after_pod(w, pos);
    inv.interactive = interactive;
    inv.tty = tty;
    if rsh {
        // `oc rsh` opens a shell with a TTY unless given a command or -T.
        let no_tty = w.has(&["-T", "--no-tty"]);
        inv.tty = !no_tty && cmd.is_empty() || tty;
        inv.interactive = true;
        if cmd.is_empty() {
            inv.set_command(vec!["/bin/sh".into()]);
        } else {
            inv.set_command(cmd);
        }
    } else {
        inv.set_command(cmd);
    }
}

/// `kubectl debug`: a pod's ephemeral container, or a node debug pod.
fn kubectl_debug(inv: &mut Invocation, w: &Walk) {
    inv.image = w.value(&["--image"]);
    if let Some(t) = w.positionals.get(1) {
        if let Some(node) = t.strip_prefix("node/").or_else(|| t.strip_prefix("nodes/")) {
            // A node debug pod shares the host's PID/net/IPC namespaces and mounts
            // the host root at /host.
            inv.container = Some(format!("node/{node}"));
            inv.host_namespaces = vec!["pid".into(), "net".into(), "ipc".into()];
            inv.host_root_mount = true;
        } else {
            inv.pod = Some(strip_pod_prefix(t));
        }
    }
    if w.value(&["--profile"]).as_deref() == Some("sysadmin") {
        inv.privileged = true;
    }
    let cmd = if w.saw_dashdash {
        w.rest.to_vec()
    } else {
        Vec::new()
    };
    inv.set_command(cmd);
}

/// `kubectl cp`: one side is `[ns/]pod:path`; cp runs tar in the pod through pods/exec.
fn kubectl_cp_pod(inv: &mut Invocation, pos: &[&String]) {
    for p in pos {
        if let Some((lhs, _)) = p.split_once(':') {
            if lhs.is_empty() || lhs.contains('\\') {
                continue;
            }
            match lhs.split_once('/') {
                Some((ns, pod)) => {
                    inv.namespace = Some(ns.to_string());
                    inv.pod = Some(pod.to_string());
                }
                None => inv.pod = Some(lhs.to_string()),
            }
        }
    }
}

pub(crate) fn parse_kubectl(tool: &str, argv: &[String]) -> Invocation {
    let mut inv = Invocation::new(tool, argv);
    let w = Opts {
        long_vals: KUBE_LONG,
        short_vals: KUBE_SHORT,
        stop_at_positional: false,
    }
    .walk(&argv[1..]);
    inv.help = w.has(HELP_FLAGS);
    inv.namespace = w.value(&["-n", "--namespace"]);
    if let Some(s) = w.value(&["-s", "--server"]) {
        let u = http::parse_url(&s);
        inv.remote_host = u.as_ref().and_then(|u| u.host.clone());
        inv.remote_port = u.and_then(|u| u.port);
    }
    let Some(verb) = w.positionals.first().copied().cloned() else {
        return inv;
    };
    let pos = &w.positionals[1..];
    let interactive = w.flag_true(&["-i", "--stdin"]);
    let tty = w.flag_true(&["-t", "--tty"]);
    match verb.as_str() {
        // Plugins dispatched by kubectl: node-shell starts a privileged pod that
        // nsenters the node; exec-as is exec with another identity.
        "node-shell" | "node_shell" => {
            inv.container = pos.first().copied().cloned();
            inv.privileged = true;
            inv.host_namespaces = vec!["pid".into(), "net".into(), "ipc".into()];
            inv.interactive = true;
            inv.tty = true;
            if w.saw_dashdash && !w.rest.is_empty() {
                inv.set_command(w.rest.to_vec());
            } else {
                inv.command_class = Some("shell");
            }
            inv.verb = Some("node-shell".into());
            return inv;
        }
        // kubectl's deprecated form `kubectl exec POD CMD...` still works.
        "exec" | "rsh" | "exec-as" | "exec_as" => {
            kubectl_exec(&mut inv, &w, verb == "rsh", interactive, tty);
        }
        "attach" => {
            inv.pod = pos.first().map(|p| strip_pod_prefix(p));
            inv.container = w.value(&["-c", "--container"]);
            inv.interactive = interactive;
            inv.tty = tty;
        }
        "cp" => {
            kubectl_cp_pod(&mut inv, pos);
            inv.container = w.value(&["-c", "--container"]);
            if inv.pod.is_none() {
                inv.verb = Some("cp-local".into());
                return inv;
            }
        }
        "debug" => {
            inv.interactive = interactive;
            inv.tty = tty;
            kubectl_debug(&mut inv, &w);
        }
        "run" => {
            inv.pod = pos.first().copied().cloned();
            inv.image = w.value(&["--image"]);
            inv.interactive = interactive;
            inv.tty = tty;
            inv.privileged = w.flag_true(&["--privileged"]);
            inv.set_command(command_after_pod(&w, pos));
            // The overrides' command, when it has one, replaces the command line's.
            if let Some(o) = w.value(&["--overrides"]) {
                apply_overrides(&mut inv, &o);
            }
        }
        "get" | "create" | "replace" | "apply" => {
            // `kubectl get --raw /api/v1/nodes/N/proxy/run/...` reaches the kubelet.
            if let Some(raw) = w.value(&["--raw"]) {
                http::apply_url(&mut inv, &raw);
            }
        }
        _ => {}
    }
    inv.verb = Some(if verb == "exec-as" || verb == "exec_as" {
        "exec".into()
    } else {
        verb
    });
    inv
}

/// kubeletctl: `exec "cmd" -p pod -c ctr -n ns -s server`, `run`, `attach`, `pods`, `scan rce`...
pub(crate) fn parse_kubeletctl(argv: &[String]) -> Invocation {
    let mut inv = Invocation::new("kubeletctl", argv);
    let w = Opts {
        long_vals: &[
            "pod",
            "container",
            "namespace",
            "server",
            "port",
            "config",
            "token",
            "token-file",
            "cidr",
            "cacert",
            "cert",
            "key",
        ],
        short_vals: "pcns",
        stop_at_positional: false,
    }
    .walk(&argv[1..]);
    inv.help = w.has(HELP_FLAGS);
    inv.pod = w.value(&["-p", "--pod"]);
    inv.container = w.value(&["-c", "--container"]);
    inv.namespace = w.value(&["-n", "--namespace"]);
    inv.url_host = w.value(&["-s", "--server"]);
    inv.url_port = w
        .value(&["--port"])
        .and_then(|p| p.parse().ok())
        .or(Some(10250));
    inv.api = Some("kubelet");
    let Some(verb) = w.positionals.first().copied().cloned() else {
        return inv;
    };
    inv.api_action = Some(match verb.as_str() {
        "exec" => "exec",
        "run" => "run",
        "attach" => "attach",
        "pods" => "pods",
        "runningpods" => "runningpods",
        "portForward" | "portforward" => "port_forward",
        "metrics" => "metrics",
        "healthz" => "healthz",
        "containerLogs" | "logs" => "logs",
        // `scan rce` and `scan token` run commands in every pod through /run.
        "scan"
            if matches!(
                w.positionals.get(1).map(|s| s.as_str()),
                Some("rce" | "token")
            ) =>
        {
            "run"
        }
        _ => "other",
    });
    if matches!(verb.as_str(), "exec" | "run" | "attach") {
        let cmd: Vec<String> = w
            .positionals
            .get(1)
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        inv.set_command(cmd);
    }
    inv.verb = Some(verb);
    inv
}
