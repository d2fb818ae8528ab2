//! Structured argv parsing: turns a command line into the fields the sharper rules use
//! (tool, verb, target, interactive, isolation-breaking flags, command run inside, kubelet
//! URL parts), re-parsing the inner command of wrappers.
//!
//! The parsers follow each tool's real option grammar (which options take a value), so
//! that an option value is never mistaken for a verb or a container name.

mod container;
mod http;
mod kube;
mod runtime;
mod shell;

use std::sync::Arc;

use serde::Serialize;

/// Caps that keep hostile input (deeply nested `sh -c`) cheap.
const MAX_DEPTH: u8 = 4;
const MAX_INVOCATIONS: usize = 32;

/// One parsed command: the event's own, or one its wrapper runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Invocation {
    /// Canonical tool (`docker`, `kubectl`, `nsenter`, `curl`, `sudo`, ...).
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub host_root_mount: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub runtime_socket_mount: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub security_unconfined: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// The command run inside the container (or by nsenter / a wrapper).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `shell`, `downloader`, `escape` or `other` when there is a command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_class: Option<&'static str>,
    /// nsenter: the target PID (`-t`, or `/proc/<pid>/ns/*` files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<String>,
    /// `--help`, `--version` and the like: the command runs nothing.
    #[serde(skip_serializing_if = "is_false")]
    pub help: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_port: Option<u16>,
    /// Percent-decoded, normalised path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_path: Option<String>,
    /// `kubelet`, `apiserver` or `runtime` (Docker/Podman Engine API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<&'static str>,
    /// What the API call does: `run`, `exec`, `attach`, `cri_exec`, `pods`,
    /// `runningpods`, `port_forward`, `metrics`, `healthz`, `logs`, `create`, `start`, `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub runtime_socket: bool,
    /// `docker -H tcp://host:port` and the like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    /// Wrappers around this command, outermost first (`sudo`, `sh -c`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wrappers: Vec<String>,
    /// The `#!` interpreter when the tool is a script shim (podman-docker's `docker`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shim: Option<String>,
    /// The argv this invocation was parsed from (used to tie a wrapper to its child).
    #[serde(skip)]
    pub argv: PackedArgv,
}

/// A copy of an argv in one allocation (each argument as its length, then its bytes):
/// every invocation keeps the argv it came from, and a string per argument made that
/// copy cost more than the parse.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackedArgv(Box<[u8]>);

impl PackedArgv {
    pub fn new(args: &[String]) -> Self {
        let size = args.iter().map(|a| a.len() + LEN_BYTES).sum();
        let mut b = Vec::with_capacity(size);
        for a in args {
            b.extend_from_slice(&a.len().to_le_bytes());
            b.extend_from_slice(a.as_bytes());
        }
        PackedArgv(b.into_boxed_slice())
    }

    /// The arguments' bytes, in order (each was a whole `String`, so valid UTF-8).
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<LEN_BYTES>()?;
            let (arg, tail) = tail.split_at(usize::from_le_bytes(*len));
            rest = tail;
            Some(arg)
        })
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

const LEN_BYTES: usize = std::mem::size_of::<usize>();

impl std::fmt::Debug for PackedArgv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

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
const MULTI_CALL: &[&str] = &["busybox", "toybox", "k3s"];

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
            "microk8s.kubectl",
            "kubectl-node_shell",
            "kubectl-node-shell",
            "kubectl-exec_as",
            "kubectl-exec-as",
        ],
        "oc" => &["oc"],
        "crictl" => &["crictl", "k3s"],
        "ctr" => &["ctr", "k3s"],
        "runc" => &["runc"],
        "crun" => &["crun"],
        "nsenter" => &["nsenter", "busybox"],
        "lxc" => &["lxc", "lxc-attach"],
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
];

/// Wrappers whose argv carries another command. Cheap ones are watched live; shells are
/// only needed in replay (their child is exec'd and caught on its own).
pub(crate) const LIVE_WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "xargs", "nohup", "timeout", "setsid", "nice", "ionice", "stdbuf",
    "chroot", "su", "runuser", "script", "watch", "busybox", "k3s", "toybox",
];

/// Maps an executable basename to its canonical tool name.
fn canonical_tool(name: &str) -> Option<&'static str> {
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
        "lxc" | "lxc-attach" => "lxc",
        "kubeletctl" => "kubeletctl",
        "curl" => "curl",
        "wget" => "wget",
        "perl" => "perl",
        "node" | "nodejs" => "node",
        "wscat" => "wscat",
        "websocat" => "websocat",
        "openssl" => "openssl",
        "ssl_client" => "ssl_client",
        n if n.starts_with("python") && n[6..].chars().all(|c| c.is_ascii_digit() || c == '.') => {
            "python"
        }
        _ => return None,
    })
}

pub(crate) fn classify_command(cmd: &[String]) -> Option<&'static str> {
    let first = cmd.first()?;
    let mut name = basename(first);
    if MULTI_CALL.contains(&name) {
        name = cmd.get(1).map(|s| basename(s)).unwrap_or(name);
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

impl Invocation {
    fn new(tool: &str, argv: &[String]) -> Self {
        Invocation {
            tool: tool.to_string(),
            argv: PackedArgv::new(argv),
            ..Default::default()
        }
    }

    pub(crate) fn set_command(&mut self, cmd: Vec<String>) {
        self.command_class = classify_command(&cmd);
        self.command = cmd;
    }

    pub fn command_is_shell(&self) -> bool {
        self.command_class == Some("shell")
    }
}

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
    let before = out.len();
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
        shell::parse_wrapper(name, argv, wrappers, depth, out);
    }
    let _ = before;
}

/// Splits `--name=value` into its parts.
pub(crate) fn split_eq(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (arg, None),
    }
}

/// A generic getopt-style walker: `long_vals`/`short_vals` list options that take a
/// value. Calls `on_opt(name, value)` for each option and returns the index of the first
/// positional (or `--`+1), honouring `--`.
pub(crate) struct Opts<'a> {
    pub long_vals: &'a [&'a str],
    pub short_vals: &'a str,
    /// Stop at the first positional (tools whose options precede the verb / command).
    pub stop_at_positional: bool,
}

pub(crate) struct Walk<'a> {
    /// (option name with dashes, value), borrowed from the argv (short names from
    /// [`SHORT_NAMES`]).
    pub opts: Few<(&'a str, Option<&'a str>), 8>,
    /// Borrowed from the walked argv, like `rest`.
    pub positionals: Few<&'a String, 4>,
    /// Arguments after `--` (or after the first positional when stopping there): a
    /// suffix of the walked argv, borrowed.
    pub rest: &'a [String],
    pub saw_dashdash: bool,
}

/// Up to `N` items in place, more in a vector: a walk rarely sees more than a few
/// options or positionals, and two vectors per walk were a visible share of a parse.
pub(crate) struct Few<T: Copy, const N: usize> {
    len: usize,
    inline: [T; N],
    /// Every item once more than `N` were pushed.
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> Few<T, N> {
    /// `fill` only pads the unused slots.
    pub(crate) fn new(fill: T) -> Self {
        Few {
            len: 0,
            inline: [fill; N],
            spill: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, x: T) {
        if self.len < N {
            self.inline[self.len] = x;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(x);
        }
        self.len += 1;
    }
}

impl<T: Copy, const N: usize> std::ops::Deref for Few<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

/// `-X` for every printable ASCII `X`, so short option names need no allocation.
const SHORT_NAMES: &str = r##"-!-"-#-$-%-&-'-(-)-*-+-,---.-/-0-1-2-3-4-5-6-7-8-9-:-;-<-=->-?-@-A-B-C-D-E-F-G-H-I-J-K-L-M-N-O-P-Q-R-S-T-U-V-W-X-Y-Z-[-\-]-^-_-`-a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z-{-|-}-~"##;

/// The name of a short option that is not printable ASCII. No option we look up has
/// one, so they can all share this name.
const OTHER_SHORT: &str = "-\u{fffd}";

fn short_name(c: char) -> &'static str {
    match u8::try_from(c) {
        Ok(b @ 0x21..=0x7e) => {
            let i = usize::from(b - 0x21) * 2;
            &SHORT_NAMES[i..i + 2]
        }
        _ => OTHER_SHORT,
    }
}

/// Placeholder for unused positional slots.
static NO_ARG: String = String::new();

impl Opts<'_> {
    pub(crate) fn walk<'a>(&self, args: &'a [String]) -> Walk<'a> {
        let mut w = Walk {
            opts: Few::new(("", None)),
            positionals: Few::new(&NO_ARG),
            rest: &[],
            saw_dashdash: false,
        };
        let mut i = 0;
        while i < args.len() {
            let a: &'a str = &args[i];
            if a == "--" {
                w.saw_dashdash = true;
                w.rest = &args[i + 1..];
                return w;
            }
            if let Some(long) = a.strip_prefix("--") {
                let (k, v) = split_eq(long);
                // `--k` is a prefix of the argument itself.
                let name = &a[..2 + k.len()];
                if v.is_none() && self.long_vals.contains(&k) {
                    w.opts.push((name, args.get(i + 1).map(String::as_str)));
                    i += 2;
                } else {
                    w.opts.push((name, v));
                    i += 1;
                }
                continue;
            }
            if a.len() > 1 && a.starts_with('-') {
                let cluster = &a[1..];
                let mut consumed_next = false;
                for (j, c) in cluster.char_indices() {
                    // Option letters are ASCII: a byte scan, not a char search.
                    if c.is_ascii() && self.short_vals.as_bytes().contains(&(c as u8)) {
                        let rest = &cluster[j + c.len_utf8()..];
                        let rest = rest.strip_prefix('=').unwrap_or(rest);
                        if rest.is_empty() {
                            w.opts
                                .push((short_name(c), args.get(i + 1).map(String::as_str)));
                            consumed_next = true;
                        } else {
                            w.opts.push((short_name(c), Some(rest)));
                        }
                        break;
                    }
                    w.opts.push((short_name(c), None));
                }
                i += if consumed_next { 2 } else { 1 };
                continue;
            }
            if self.stop_at_positional {
                w.positionals.push(&args[i]);
                w.rest = &args[i + 1..];
                return w;
            }
            w.positionals.push(&args[i]);
            i += 1;
        }
        w
    }
}

impl<'a> Walk<'a> {
    pub(crate) fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(k, _)| names.contains(k))
    }
    pub(crate) fn flag_true(&self, names: &[&str]) -> bool {
        self.opts
            .iter()
            .any(|(k, v)| names.contains(k) && v.is_none_or(|v| !v.eq_ignore_ascii_case("false")))
    }
    pub(crate) fn values<'b>(&'b self, names: &'b [&'b str]) -> impl Iterator<Item = &'a str> + 'b {
        self.opts
            .iter()
            .filter(move |(k, _)| names.contains(k))
            .filter_map(|(_, v)| *v)
    }
    /// The last value of any of `names`, borrowed.
    pub(crate) fn value_str(&self, names: &[&str]) -> Option<&'a str> {
        self.opts
            .iter()
            .rev()
            .find(|(k, _)| names.contains(k))
            .and_then(|(_, v)| *v)
    }
    pub(crate) fn value(&self, names: &[&str]) -> Option<String> {
        self.value_str(names).map(str::to_string)
    }
    /// The positionals then the rest, as owned strings (a wrapped command).
    pub(crate) fn command(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.positionals.len() + self.rest.len());
        v.extend(self.positionals.iter().map(|s| (*s).clone()));
        v.extend_from_slice(self.rest);
        v
    }
}

pub(crate) const HELP_FLAGS: &[&str] = &["--help", "-h", "--version", "-V"];

#[cfg(test)]
mod tests {
    use super::PackedArgv;

    #[test]
    fn packed_argv_round_trips() {
        for argv in [
            vec![],
            vec![String::new()],
            vec![
                "docker".to_string(),
                "exec".into(),
                String::new(),
                "é\u{0}x".into(),
            ],
        ] {
            let p = PackedArgv::new(&argv);
            assert_eq!(p.to_vec(), argv);
            assert_eq!(p.len(), argv.len());
            assert_eq!(p.is_empty(), argv.is_empty());
        }
        // Argument boundaries are part of the value.
        let ab = PackedArgv::new(&["ab".to_string(), "c".into()]);
        let a_bc = PackedArgv::new(&["a".to_string(), "bc".into()]);
        assert_ne!(ab, a_bc);
    }
}
