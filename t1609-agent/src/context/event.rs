//! The ECS process event of an exec: the kernel record plus what it does not carry
//! (wall-clock time, host name, user and group names, working directory, parent).
//!
//! Everything read from the host is best effort: a short-lived process may be gone
//! before we look, and then the field is absent rather than wrong.

use std::path::Path;

use base64::Engine as _;
use t1609_context::Users;
use t1609_detect::event::{
    CaptureInfo, Creds, HostOs, Identity, ParentProcess, Process, ProcessEvent, Tty,
};
use t1609_ecs::BootClock;

use crate::decode::CapturedExec;

/// What every event of this host shares.
pub struct HostFacts {
    pub clock: BootClock,
    pub hostname: Option<String>,
    /// Prefix of every event id: unique per boot.
    pub boot_id: String,
    /// `host.os`: read once, at the start.
    pub os: HostOs,
}

/// `host.os.name`: `NAME` of the host's `os-release` (a Kubernetes node mounts the host's `/etc`
/// under `host_root`), the distribution without its version, as Elastic Defend writes it.
fn os_name(host_root: &Path) -> Option<String> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(host_root.join(p)).ok())
        .and_then(|text| {
            text.lines().find_map(|l| {
                let v = l.strip_prefix("NAME=")?.trim();
                let v = v.trim_matches('"').trim_matches('\'');
                (!v.is_empty()).then(|| v.to_owned())
            })
        })
}

impl HostFacts {
    pub fn read(host_root: &Path, proc_root: &Path) -> Self {
        let hostname = std::fs::read_to_string(proc_root.join("sys/kernel/hostname"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let boot_id = std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
            .map_or_else(
                |_| format!("{:x}", std::process::id()),
                |s| s.trim().replace('-', ""),
            );
        let kernel = std::fs::read_to_string(proc_root.join("sys/kernel/osrelease"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Self {
            clock: BootClock::now(),
            hostname,
            boot_id,
            os: HostOs {
                kind: Some("linux".to_owned()),
                name: os_name(host_root),
                kernel,
            },
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

/// `process.tty.char_device` of the kernel's tty name and index: the device numbers of
/// Linux's fixed allocation (devices.txt) for the terminals a person types on. Others
/// (USB serial, vendor drivers) keep `interactive` without numbers.
fn char_device(tty: &crate::decode::Tty) -> Tty {
    let (major, minor) = if tty.name.starts_with("pts") {
        (Some(136 + tty.index / 256), Some(tty.index % 256))
    } else if tty.name.starts_with("ttyS") {
        (Some(4), Some(64 + tty.index))
    } else if tty.name == "console" {
        (Some(5), Some(1))
    } else if tty
        .name
        .strip_prefix("tty")
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
    {
        (Some(4), Some(tty.index))
    } else {
        (None, None)
    };
    Tty {
        char_device_major: major,
        char_device_minor: minor,
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
    let user = Identity {
        id: Some(exec.uid.to_string()),
        name: users.user_name(exec.uid),
    };
    let group = Identity {
        id: Some(exec.gid.to_string()),
        name: users.group_name(exec.gid),
    };
    let creds = Creds {
        user: if exec.euid == exec.uid {
            user.clone()
        } else {
            Identity {
                id: Some(exec.euid.to_string()),
                name: users.user_name(exec.euid),
            }
        },
        real_user: user.clone(),
        group: if exec.egid == exec.gid {
            group.clone()
        } else {
            Identity {
                id: Some(exec.egid.to_string()),
                name: users.group_name(exec.egid),
            }
        },
        real_group: group.clone(),
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
            // The kernel read the controlling terminal at the exec: none is an answer.
            interactive: Some(exec.tty.is_some()),
            tty: exec.tty.as_ref().map(char_device).unwrap_or_default(),
            creds,
            ..Default::default()
        },
        user,
        group,
        // Filled by the context stage, which reads the cgroup once.
        container_id: None,
        host_hostname: host.hostname.clone(),
        host_os: host.os.clone(),
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
