//! The ECS process event of an exec: the kernel record plus what it does not carry
//! (wall-clock time, host name, user and group names, working directory, parent).
//!
//! Everything read from the host is best effort: a short-lived process may be gone
//! before we look, and then the field is absent rather than wrong.

use std::path::Path;

use base64::Engine as _;
use t1609_context::Users;
use t1609_detect::event::{CaptureInfo, Identity, ParentProcess, Process, ProcessEvent};
use t1609_ecs::BootClock;

use crate::decode::CapturedExec;

/// What every event of this host shares.
pub struct HostFacts {
    pub clock: BootClock,
    pub hostname: Option<String>,
    /// Prefix of every event id: unique per boot.
    pub boot_id: String,
}

impl HostFacts {
    pub fn read(proc_root: &Path) -> Self {
        let hostname = std::fs::read_to_string(proc_root.join("sys/kernel/hostname"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let boot_id = std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
            .map_or_else(
                |_| format!("{:x}", std::process::id()),
                |s| s.trim().replace('-', ""),
            );
        Self {
            clock: BootClock::now(),
            hostname,
            boot_id,
        }
    }

    /// Stable, unique id of one exec: boot id + boot-time stamp + tgid.
    pub fn event_id(&self, exec: &CapturedExec) -> String {
        format!(
            "{}-{:x}-{:x}",
            &self.boot_id[..self.boot_id.len().min(16)],
            exec.ktime_ns,
            exec.tgid
        )
    }
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The ECS event of `exec`; `parent` comes from the process table, `cwd` from the
/// parent or /proc.
pub fn process_event(
    exec: &CapturedExec,
    host: &HostFacts,
    users: &mut Users,
    parent: Option<ParentProcess>,
    cwd: Option<&str>,
) -> ProcessEvent {
    let raw_args = exec.args();
    let lossy = raw_args.iter().any(|a| std::str::from_utf8(a).is_err());
    let args: Vec<String> = raw_args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let args_b64 = lossy.then(|| raw_args.iter().map(|a| b64.encode(a)).collect());

    let mut executable = String::from_utf8_lossy(&exec.filename).into_owned();
    let executable_b64 = std::str::from_utf8(&exec.filename)
        .is_err()
        .then(|| b64.encode(&exec.filename));
    if !executable.starts_with('/') && !executable.is_empty() {
        // A relative exec path is relative to the caller's cwd, which the new image inherits.
        if let Some(cwd) = cwd {
            executable = Path::new(cwd)
                .join(&executable)
                .to_string_lossy()
                .into_owned();
        }
    }
    let name = if exec.filename.is_empty() {
        String::from_utf8_lossy(&exec.comm).into_owned()
    } else {
        basename(&executable).to_owned()
    };
    let args_count = if exec.argc > 0 {
        u64::from(exec.argc)
    } else {
        args.len() as u64
    };
    ProcessEvent {
        timestamp: Some(host.clock.rfc3339(exec.ktime_ns)),
        event_id: Some(host.event_id(exec)),
        process: Process {
            pid: Some(exec.tgid),
            name: Some(name),
            executable: Some(executable),
            command_line: Some(args.join(" ")),
            args_count: Some(args_count),
            args: Some(args),
            working_directory: cwd.map(str::to_owned),
            parent: parent.map(Box::new),
            ..Default::default()
        },
        user: Identity {
            id: Some(exec.uid.to_string()),
            name: users.user_name(exec.uid),
        },
        group: Identity {
            id: Some(exec.gid.to_string()),
            name: users.group_name(exec.gid),
        },
        // Filled by the context stage, which reads the cgroup once.
        container_id: None,
        host_hostname: host.hostname.clone(),
        capture: CaptureInfo {
            cgroup_id: Some(exec.cgroup_id),
            pid_ns: Some(exec.pid_ns),
            mnt_ns: Some(exec.mnt_ns),
            tgid: Some(exec.tgid),
            euid: Some(exec.euid),
            egid: Some(exec.egid),
            loginuid: exec.loginuid,
            tty: exec.tty.as_ref().map(|t| t.name.clone()),
            argv_total_len: Some(u64::from(exec.argv_total_len)),
            argv_truncated: exec.truncated,
            argv_incomplete: exec.incomplete || exec.argv_read_failed,
            args_b64,
            executable_b64,
        },
        ..Default::default()
    }
}
