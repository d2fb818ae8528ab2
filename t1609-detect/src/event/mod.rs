//! The process event the engine evaluates: the ECS fields of one exec (or exit).
//!
//! The live agent builds it from kernel records; `replay` parses it from the ECS JSON
//! lines that `run --record` writes (`parse`); `ecs` writes it back, alone or as
//! the base of an alert. A field that is `None` is absent: a rule that needs it does not
//! match.

mod assign;
mod ecs;
mod parse;

use serde::{Deserialize, Serialize};

/// One process event (an exec, or an exit), as ECS fields. `None` means "not known",
/// never "empty".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessEvent {
    /// RFC 3339 wall-clock time of the exec.
    pub timestamp: Option<String>,
    /// Unique id of this event (`event.id`).
    pub event_id: Option<String>,
    /// `event.type`: `start` for an exec (the default), `end` for an exit.
    pub event_type: EventType,
    /// `event.action` when it is not the type's own (`exec` for `start`, `end` for
    /// `end`): replayed documents of other producers (`executed`, `fork`, ...).
    pub event_action: Option<String>,
    pub process: Process,
    pub user: Identity,
    pub group: Identity,
    pub container_id: Option<String>,
    /// `container.security_context.privileged`, from the container runtime.
    pub container_privileged: Option<bool>,
    pub host_hostname: Option<String>,
    /// `host.os.{type, name, kernel}`.
    pub host_os: HostOs,
    /// Capture details of our own (`t1609.*` in ECS output).
    pub capture: CaptureInfo,
}

/// ECS `event.type` values (the categorisation field's allowed list).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    #[default]
    Start,
    End,
    Change,
    Info,
    Access,
    Admin,
    Allowed,
    Connection,
    Creation,
    Deletion,
    Denied,
    Error,
    Group,
    Indicator,
    Installation,
    Protocol,
    User,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::Start,
        EventType::End,
        EventType::Change,
        EventType::Info,
        EventType::Access,
        EventType::Admin,
        EventType::Allowed,
        EventType::Connection,
        EventType::Creation,
        EventType::Deletion,
        EventType::Denied,
        EventType::Error,
        EventType::Group,
        EventType::Indicator,
        EventType::Installation,
        EventType::Protocol,
        EventType::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "start",
            EventType::End => "end",
            EventType::Change => "change",
            EventType::Info => "info",
            EventType::Access => "access",
            EventType::Admin => "admin",
            EventType::Allowed => "allowed",
            EventType::Connection => "connection",
            EventType::Creation => "creation",
            EventType::Deletion => "deletion",
            EventType::Denied => "denied",
            EventType::Error => "error",
            EventType::Group => "group",
            EventType::Indicator => "indicator",
            EventType::Installation => "installation",
            EventType::Protocol => "protocol",
            EventType::User => "user",
        }
    }

    pub fn from_name(s: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// The `event.action` the agent writes for this type: `exec` and `end` (Elastic
    /// Defend's), none for the types the agent does not produce.
    pub fn default_action(self) -> Option<&'static str> {
        match self {
            EventType::Start => Some("exec"),
            EventType::End => Some("end"),
            _ => None,
        }
    }
}

impl ProcessEvent {
    /// `event.action`: the recorded one, else the type's own.
    pub fn action(&self) -> Option<&str> {
        self.event_action
            .as_deref()
            .or_else(|| self.event_type.default_action())
    }
}

/// `host.os.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostOs {
    /// `host.os.type`: `linux`.
    pub kind: Option<String>,
    /// `host.os.name`: the distribution (`Debian GNU/Linux`).
    pub name: Option<String>,
    /// `host.os.kernel`: the kernel release (`6.1.0-18-amd64`).
    pub kernel: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: Option<u32>,
    /// Basename of the executed file (not `argv[0]`, so `exec -a` cannot spoof it).
    pub name: Option<String>,
    pub executable: Option<String>,
    /// argv, `argv[0]` included, lossily decoded as UTF-8.
    pub args: Option<Vec<String>>,
    pub args_count: Option<u64>,
    /// args joined by single spaces.
    pub command_line: Option<String>,
    pub working_directory: Option<String>,
    pub parent: Option<Box<ParentProcess>>,
    /// `process.interactive`: it has a controlling terminal.
    pub interactive: Option<bool>,
    /// `process.tty.char_device.{major, minor}`.
    pub tty: Tty,
    /// Effective (`process.user`, `process.group`) and real (`process.real_user`,
    /// `process.real_group`) credentials.
    pub creds: Creds,
    /// `process.env_vars`: `NAME=value` for the captured variables only
    /// ([`ENV_VARS_CAPTURED`], at most [`ENV_VARS_MAX`], values cut at
    /// [`ENV_VAR_VALUE_MAX`] bytes).
    pub env_vars: Option<Vec<String>>,
    /// `process.exit_code`, on exit events.
    pub exit_code: Option<i64>,
    /// `process.hash.sha256`: the executed file's digest, when the agent identified the
    /// file (a container tool, whatever its name).
    pub hash_sha256: Option<String>,
    /// `process.entry_leader`: the first process of the session's entry (a login shell,
    /// sshd's child, a container's init), with `entry_meta.type`.
    pub entry_leader: Option<Box<RelatedProcess>>,
    /// `process.session_leader`: the leader of the process's session (setsid).
    pub session_leader: Option<Box<RelatedProcess>>,
    /// `process.group_leader`: the leader of the process group.
    pub group_leader: Option<Box<RelatedProcess>>,
}

/// Environment variables the agent may capture (`process.env_vars`): the ones rules of
/// Elastic's and ours test (loader hijacking, history and proxy evasion, runtime
/// endpoints). A rule that tests another is a load error, since its value is never
/// captured.
pub const ENV_VARS_CAPTURED: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "GLIBC_TUNABLES",
    "HISTFILE",
    "HISTFILESIZE",
    "HISTSIZE",
    "HISTCONTROL",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "DOCKER_HOST",
    "CONTAINER_HOST",
    "CONTAINERD_ADDRESS",
    "CONTAINER_RUNTIME_ENDPOINT",
    "KUBECONFIG",
    "SUDO_USER",
    "SUDO_COMMAND",
    "SSH_CONNECTION",
];
/// At most this many `process.env_vars` entries per process.
pub const ENV_VARS_MAX: usize = 16;
/// A captured value longer than this many bytes is cut (at a character boundary).
pub const ENV_VAR_VALUE_MAX: usize = 256;

/// `process.tty.char_device`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tty {
    pub char_device_major: Option<u32>,
    pub char_device_minor: Option<u32>,
}

/// Effective and real user and group of a process (ECS `user`, `real_user`, `group`,
/// `real_group` under the process).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Creds {
    pub user: Identity,
    pub real_user: Identity,
    pub group: Identity,
    pub real_group: Identity,
}

/// The parent of the process.
pub type ParentProcess = RelatedProcess;

/// A process related to the event's: its parent, or its entry, session or group leader.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelatedProcess {
    pub pid: Option<u32>,
    pub name: Option<String>,
    pub executable: Option<String>,
    pub args: Option<Vec<String>>,
    pub command_line: Option<String>,
    /// Defaults to the length of `args` when evaluated.
    pub args_count: Option<u64>,
    pub working_directory: Option<String>,
    pub interactive: Option<bool>,
    pub creds: Creds,
    /// Leaders: whether the leader is the event's process itself.
    pub same_as_process: Option<bool>,
    /// Entry leader: `entry_meta.type` (`init`, `sshd`, `ssm`, `kthread`, `terminal`,
    /// `console`, `container`, `unknown`).
    pub entry_meta_type: Option<String>,
}

impl RelatedProcess {
    pub(crate) fn is_empty(&self) -> bool {
        *self == RelatedProcess::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// ECS keeps ids as strings (`"0"`).
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Identity {
    pub(crate) fn is_empty(&self) -> bool {
        self.id.is_none() && self.name.is_none()
    }
}

/// What the kernel told us beyond ECS, kept under `t1609.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    pub cgroup_id: Option<u64>,
    pub pid_ns: Option<u32>,
    pub mnt_ns: Option<u32>,
    pub tgid: Option<u32>,
    pub euid: Option<u32>,
    pub egid: Option<u32>,
    pub loginuid: Option<u32>,
    /// Name of the controlling terminal (`pts3`), when there is one.
    pub tty: Option<String>,
    /// argv length in the process, before any cap.
    pub argv_total_len: Option<u64>,
    /// argv was longer than the capture cap; its tail is missing.
    pub argv_truncated: bool,
    /// Some argv bytes were lost in transit (continuation record dropped).
    pub argv_incomplete: bool,
    /// Exact argv bytes, base64 per argument, present only when some argument was not
    /// valid UTF-8 (the `args` strings then hold U+FFFD in their place).
    pub args_b64: Option<Vec<String>>,
    /// Exact executable path bytes, base64, present only when not valid UTF-8.
    pub executable_b64: Option<String>,
}

/// Why an ECS document could not be read as a [`ProcessEvent`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("the event is not a JSON object")]
    NotObject,
    #[error("field `{field}`: expected {expected}")]
    Field {
        field: String,
        expected: &'static str,
    },
}
