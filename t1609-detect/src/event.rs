//! The process event the engine evaluates: the ECS fields of one exec.
//!
//! The live agent builds it from kernel records; `replay` parses it from the ECS JSON
//! lines that `run --record` writes. A field that is `None` is absent: a rule that needs
//! it does not match.

use serde::{Deserialize, Serialize};

/// One exec, as ECS fields. `None` means "not known", never "empty".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessEvent {
    /// RFC 3339 wall-clock time of the exec.
    pub timestamp: Option<String>,
    /// Unique id of this event (`event.id`).
    pub event_id: Option<String>,
    pub process: Process,
    pub user: Identity,
    pub group: Identity,
    pub container_id: Option<String>,
    pub host_hostname: Option<String>,
    /// Capture details of our own (`t1609.*` in ECS output).
    pub capture: CaptureInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: Option<u32>,
    /// Basename of the executed file (not argv[0], so `exec -a` cannot spoof it).
    pub name: Option<String>,
    pub executable: Option<String>,
    /// argv, argv[0] included, lossily decoded as UTF-8.
    pub args: Option<Vec<String>>,
    pub args_count: Option<u64>,
    /// args joined by single spaces.
    pub command_line: Option<String>,
    pub working_directory: Option<String>,
    pub parent: Option<Box<ParentProcess>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParentProcess {
    pub pid: Option<u32>,
    pub name: Option<String>,
    pub executable: Option<String>,
    pub args: Option<Vec<String>>,
    pub command_line: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// ECS keeps ids as strings (`"0"`).
    pub id: Option<String>,
    pub name: Option<String>,
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
