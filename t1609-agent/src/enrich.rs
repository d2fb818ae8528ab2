//! Turns a captured exec into the ECS process event the rules see, adding what the
//! kernel record does not carry: wall-clock time, host name, user and group names,
//! the working directory, the parent's details and the container id.
//!
//! Everything read from /proc is best effort: a short-lived process may be gone before we
//! look, and then the field is absent rather than wrong.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use t1609_detect::event::{CaptureInfo, Identity, ParentProcess, Process, ProcessEvent};

use crate::decode::CapturedExec;

/// Converts `CLOCK_BOOTTIME` nanoseconds (what the probe stamps) to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_boottime_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn now() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            realtime_minus_boottime_ns: real - boot,
        }
    }

    pub fn rfc3339(&self, boottime_ns: u64) -> String {
        let ns = i128::from(boottime_ns) + self.realtime_minus_boottime_ns;
        time::OffsetDateTime::from_unix_timestamp_nanos(ns)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

/// Host-side lookups, cached. `host_root` is `/` normally, or where the host's root is
/// mounted when the agent runs in a container.
pub struct Enricher {
    clock: Clock,
    hostname: Option<String>,
    boot_id: String,
    host_root: PathBuf,
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Enricher {
    pub fn new(host_root: &Path, proc_root: &Path) -> Self {
        let hostname = std::fs::read_to_string(proc_root.join("sys/kernel/hostname"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let boot_id = std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
            .map(|s| s.trim().replace('-', ""))
            .unwrap_or_else(|_| format!("{:x}", std::process::id()));
        Self {
            clock: Clock::now(),
            hostname,
            boot_id,
            host_root: host_root.to_owned(),
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    fn name_in(&self, file: &str, id: u32) -> Option<String> {
        let text = std::fs::read_to_string(self.host_root.join(file)).ok()?;
        text.lines().find_map(|line| {
            let mut it = line.split(':');
            let name = it.next()?;
            let _pw = it.next()?;
            (it.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
        })
    }

    pub fn user_name_of(&mut self, uid: u32) -> Option<String> {
        self.user_name(uid)
    }

    pub fn rfc3339(&self, boottime_ns: u64) -> String {
        self.clock.rfc3339(boottime_ns)
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        if let Some(v) = self.users.get(&uid) {
            return v.clone();
        }
        let v = self.name_in("etc/passwd", uid);
        self.users.insert(uid, v.clone());
        v
    }

    fn group_name(&mut self, gid: u32) -> Option<String> {
        if let Some(v) = self.groups.get(&gid) {
            return v.clone();
        }
        let v = self.name_in("etc/group", gid);
        self.groups.insert(gid, v.clone());
        v
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

    /// The ECS event of an exec; `parent` comes from the process table (read from /proc
    /// once per parent, then cached).
    pub fn to_event_with_parent(
        &mut self,
        exec: &CapturedExec,
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
                executable = std::path::Path::new(cwd)
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
        let working_directory = cwd.map(str::to_owned);
        let args_count = if exec.argc > 0 {
            u64::from(exec.argc)
        } else {
            args.len() as u64
        };
        ProcessEvent {
            timestamp: Some(self.clock.rfc3339(exec.ktime_ns)),
            event_id: Some(self.event_id(exec)),
            process: Process {
                pid: Some(exec.tgid),
                name: Some(name),
                executable: Some(executable),
                command_line: Some(args.join(" ")),
                args_count: Some(args_count),
                args: Some(args),
                working_directory,
                parent: parent.map(Box::new),
            },
            user: Identity {
                id: Some(exec.uid.to_string()),
                name: self.user_name(exec.uid),
            },
            group: Identity {
                id: Some(exec.gid.to_string()),
                name: self.group_name(exec.gid),
            },
            // Filled by the context stage, which reads the cgroup once.
            container_id: None,
            host_hostname: self.hostname.clone(),
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
        }
    }
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for part in path.rsplit('/') {
            // docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, libpod-<id>.scope, or <id>
            let trimmed = part.trim_end_matches(".scope");
            let id = trimmed.rsplit('-').next().unwrap_or(trimmed);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(id.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_common_cgroup_layouts() {
        let id = "a".repeat(64);
        for text in [
            format!("12:pids:/docker/{id}\n"),
            format!("0::/system.slice/docker-{id}.scope\n"),
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-{id}.scope\n"
            ),
            format!("0::/machine.slice/libpod-{id}.scope/container\n"),
            format!("0::/kubepods/besteffort/pod0c7c/{id}\n"),
        ] {
            assert_eq!(
                container_id_from_cgroup(&text).as_deref(),
                Some(id.as_str()),
                "{text}"
            );
        }
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
    }

    #[test]
    fn clock_formats_rfc3339() {
        let c = Clock::now();
        let s = c.rfc3339(clock_ns(libc::CLOCK_BOOTTIME) as u64);
        assert!(
            s.starts_with("20") && s.contains('T') && s.ends_with('Z'),
            "{s}"
        );
    }
}
