//! The tool tables: which executable names run which admin tool, which commands wrap
//! others, and how a command run inside a container is classified.

pub(crate) fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// [`basename`] of an argument's bytes.
pub(crate) fn basename_bytes(s: &[u8]) -> &[u8] {
    s.rsplit(|&b| b == b'/').next().unwrap_or(s)
}

pub(crate) const SHELLS: &[&str] = &[
    "sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "rbash",
];
const DOWNLOADERS: &[&str] = &[
    "curl", "wget", "fetch", "tftp", "ftp", "nc", "ncat", "socat", "scp", "aria2c",
];
const ESCAPE_TOOLS: &[&str] = &[
    "chroot",
    "nsenter",
    "su",
    "unshare",
    "capsh",
    "mount",
    "sudo",
    "setpriv",
    "pivot_root",
];
pub(super) const MULTI_CALL: &[&str] = &["busybox", "toybox", "k3s", "k0s", "microk8s"];

/// Known admin tools, by the executable basenames that run them. Shared with the
/// engine's watch-set derivation, so a rule about a tool watches all its names.
pub(crate) fn exe_names_for_tool(tool: &str) -> &'static [&'static str] {
    match tool {
        "docker" => &["docker"],
        "podman" => &["podman", "podman-remote"],
        "nerdctl" => &["nerdctl"],
        "compose" => &[
            "docker-compose",
            "podman-compose",
            "docker",
            "podman",
            "nerdctl",
        ],
        "kubectl" => &[
            "kubectl",
            "k3s",
            "k0s",
            "microk8s",
            "microk8s.kubectl",
            "kubectl-node_shell",
            "kubectl-node-shell",
            "kubectl-exec_as",
            "kubectl-exec-as",
        ],
        "oc" => &["oc"],
        "crictl" => &["crictl", "k3s"],
        "ctr" => &["ctr", "k3s", "k0s", "microk8s"],
        "runc" => &["runc"],
        "crun" => &["crun"],
        "nsenter" => &["nsenter", "busybox"],
        "lxc" => &["lxc", "lxc-attach", "incus"],
        "kubeletctl" => &["kubeletctl"],
        "curl" => &["curl"],
        "wget" => &["wget", "busybox"],
        "python" => &[
            "python",
            "python2",
            "python3",
            "python3.6",
            "python3.7",
            "python3.8",
            "python3.9",
            "python3.10",
            "python3.11",
            "python3.12",
            "python3.13",
            "python3.14",
        ],
        "perl" => &["perl"],
        "node" => &["node", "nodejs"],
        "wscat" => &["wscat"],
        "websocat" => &["websocat"],
        "openssl" => &["openssl"],
        "ssl_client" => &["ssl_client", "busybox"],
        // A program we do not know calling a kubelet or API server exec URL: only CDK
        // (the container penetration toolkit) by name; others by their URL.
        "url_client" => &["cdk"],
        _ => &[],
    }
}

/// Every tool name a rule may test for in `t1609.argv.tool`.
pub(crate) const KNOWN_TOOLS: &[&str] = &[
    "docker",
    "podman",
    "nerdctl",
    "compose",
    "kubectl",
    "oc",
    "crictl",
    "ctr",
    "runc",
    "crun",
    "nsenter",
    "lxc",
    "kubeletctl",
    "curl",
    "wget",
    "python",
    "perl",
    "node",
    "wscat",
    "websocat",
    "openssl",
    "ssl_client",
    "url_client",
];

/// Wrappers whose argv carries another command. Cheap ones are watched live; shells are
/// only needed in replay (their child is exec'd and caught on its own).
pub(crate) const LIVE_WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "xargs", "nohup", "timeout", "setsid", "nice", "ionice", "stdbuf",
    "chroot", "su", "runuser", "script", "watch", "busybox", "k3s", "toybox",
];

/// Maps an executable basename to its canonical tool name.
pub(super) fn canonical_tool(name: &str) -> Option<&'static str> {
    Some(match name {
        "docker" => "docker",
        "podman" | "podman-remote" => "podman",
        "nerdctl" => "nerdctl",
        "docker-compose" | "podman-compose" => "compose",
        "kubectl" | "microk8s.kubectl" => "kubectl",
        "oc" => "oc",
        "crictl" => "crictl",
        "ctr" => "ctr",
        "runc" => "runc",
        "crun" => "crun",
        "nsenter" => "nsenter",
        "lxc" | "lxc-attach" | "incus" => "lxc",
        "kubeletctl" => "kubeletctl",
        "curl" => "curl",
        "wget" => "wget",
        "perl" => "perl",
        "node" | "nodejs" => "node",
        "wscat" => "wscat",
        "websocat" => "websocat",
        "openssl" => "openssl",
        "ssl_client" => "ssl_client",
        "cdk" => "url_client",
        n if n.starts_with("python") && n[6..].chars().all(|c| c.is_ascii_digit() || c == '.') => {
            "python"
        }
        _ => return None,
    })
}

/// A name as the comparisons see it: surrounding white space (ASCII or Unicode, and the
/// U+FFFD a non-UTF-8 byte decodes to is not white space) trimmed, ASCII lower case.
pub(super) fn normalise_name(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// Programs that print, search or edit text: a kubelet URL in their arguments is data,
/// not a call (`grep -r :10250/run/ .`).
pub(super) const TEXT_TOOLS: &[&str] = &[
    "grep", "egrep", "fgrep", "rg", "ag", "ack", "sed", "awk", "gawk", "mawk", "echo", "printf",
    "cat", "less", "more", "head", "tail", "vi", "vim", "nvim", "nano", "emacs", "jq", "yq",
    "sort", "uniq", "wc", "tee", "logger", "git", "man", "diff", "base64",
];

pub(crate) fn classify_command(cmd: &[String]) -> Option<&'static str> {
    let first = cmd.first()?;
    let mut name = basename(first);
    if MULTI_CALL.contains(&name) {
        name = cmd.get(1).map_or(name, |s| basename(s));
    }
    Some(if SHELLS.contains(&name) {
        "shell"
    } else if DOWNLOADERS.contains(&name) {
        "downloader"
    } else if ESCAPE_TOOLS.contains(&name) {
        "escape"
    } else {
        "other"
    })
}
