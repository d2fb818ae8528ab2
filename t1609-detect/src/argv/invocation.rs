//! What a parse yields: [`Invocation`], one command with the fields rules test, and the
//! [`PackedArgv`] it came from.

use serde::Serialize;

use super::tools::classify_command;

/// Caps that keep hostile input (deeply nested `sh -c`) cheap: wrapper depth, and
/// invocations per parse.
pub(super) const MAX_DEPTH: u8 = 4;
pub(super) const MAX_INVOCATIONS: usize = 32;

/// One parsed command: the event's own, or one its wrapper runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent flags of a command line, each its own alert field"
)]
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
    /// How the tool was recognised when not by its exact name: `name_variant` (its name
    /// once case and white space are ignored), `shape` (the shape of its arguments under
    /// a name we do not know), `url` (a program we do not know calling a kubelet or API
    /// server exec URL), `content` (the agent's file identity, [`super::parse_identified`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recognised_by: Option<&'static str>,
    /// The masquerading flag (T1036.003): why the name it ran under lies. `renamed` (not
    /// one of the tool's names), `name_variant` (`DOCKER`, `docker `), `argv0` (argv[0]
    /// names another program: `exec -a`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<&'static str>,
    /// The kubectl or docker CLI plugin (`node_shell` for `kubectl-node_shell`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
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

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl Invocation {
    pub(super) fn new(tool: &str, argv: &[String]) -> Self {
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

    /// Recognised by its arguments' shape alone (no name, no file identity): an alert on
    /// it should say so with a confidence one step lower than its rule's.
    pub fn shape_only(&self) -> bool {
        self.recognised_by == Some("shape")
    }

    /// Techniques an alert on this invocation adds to its rule's: masquerading
    /// (T1036.003, Rename System Utilities) when the name it ran under lies.
    pub fn extra_techniques(&self) -> &'static [&'static str] {
        if self.masquerade.is_some() {
            &["T1036.003"]
        } else {
            &[]
        }
    }
}

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
