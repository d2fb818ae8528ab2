//! The process event the engine evaluates: the ECS fields of one exec.
//!
//! The live agent builds it from kernel records; `replay` parses it from the ECS JSON
//! lines that `run --record` writes (`parse`); `ecs` writes it back, alone or as
//! the base of an alert. A field that is `None` is absent: a rule that needs it does not
//! match.

mod ecs;
mod parse;

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

impl ProcessEvent {
    /// Makes `self` equal to `src`, reusing `self`'s string and vector buffers (the
    /// derived `clone_from` would reallocate everything). The destructuring makes a new
    /// field a compile error here rather than a silently stale copy.
    pub(crate) fn assign_from(&mut self, src: &ProcessEvent) {
        let ProcessEvent {
            timestamp,
            event_id,
            process,
            user,
            group,
            container_id,
            host_hostname,
            capture,
        } = src;
        self.timestamp.clone_from(timestamp);
        self.event_id.clone_from(event_id);
        let Process {
            pid,
            name,
            executable,
            args,
            args_count,
            command_line,
            working_directory,
            parent,
        } = process;
        let p = &mut self.process;
        p.pid = *pid;
        p.name.clone_from(name);
        p.executable.clone_from(executable);
        p.args.clone_from(args);
        p.args_count = *args_count;
        p.command_line.clone_from(command_line);
        p.working_directory.clone_from(working_directory);
        match (&mut p.parent, parent) {
            (Some(dst), Some(src)) => {
                let ParentProcess {
                    pid,
                    name,
                    executable,
                    args,
                    command_line,
                } = &**src;
                dst.pid = *pid;
                dst.name.clone_from(name);
                dst.executable.clone_from(executable);
                dst.args.clone_from(args);
                dst.command_line.clone_from(command_line);
            }
            (dst, src) => dst.clone_from(src),
        }
        for (dst, src) in [(&mut self.user, user), (&mut self.group, group)] {
            let Identity { id, name } = src;
            dst.id.clone_from(id);
            dst.name.clone_from(name);
        }
        self.container_id.clone_from(container_id);
        self.host_hostname.clone_from(host_hostname);
        let CaptureInfo {
            cgroup_id,
            pid_ns,
            mnt_ns,
            tgid,
            euid,
            egid,
            loginuid,
            tty,
            argv_total_len,
            argv_truncated,
            argv_incomplete,
            args_b64,
            executable_b64,
        } = capture;
        let c = &mut self.capture;
        c.cgroup_id = *cgroup_id;
        c.pid_ns = *pid_ns;
        c.mnt_ns = *mnt_ns;
        c.tgid = *tgid;
        c.euid = *euid;
        c.egid = *egid;
        c.loginuid = *loginuid;
        c.tty.clone_from(tty);
        c.argv_total_len = *argv_total_len;
        c.argv_truncated = *argv_truncated;
        c.argv_incomplete = *argv_incomplete;
        c.args_b64.clone_from(args_b64);
        c.executable_b64.clone_from(executable_b64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> ProcessEvent {
        let s = |v: &str| Some(v.to_string());
        ProcessEvent {
            timestamp: s("2026-01-01T00:00:00Z"),
            event_id: s("e1"),
            process: Process {
                pid: Some(7),
                name: s("docker"),
                executable: s("/usr/bin/docker"),
                args: Some(vec!["docker".into(), "exec".into(), "web".into()]),
                args_count: Some(3),
                command_line: s("docker exec web"),
                working_directory: s("/root"),
                parent: Some(Box::new(ParentProcess {
                    pid: Some(1),
                    name: s("bash"),
                    executable: s("/bin/bash"),
                    args: Some(vec!["bash".into()]),
                    command_line: s("bash"),
                })),
            },
            user: Identity {
                id: s("0"),
                name: s("root"),
            },
            group: Identity {
                id: s("0"),
                name: None,
            },
            container_id: s("4f2a"),
            host_hostname: s("node-1"),
            capture: CaptureInfo {
                cgroup_id: Some(9),
                tty: s("pts1"),
                argv_truncated: true,
                args_b64: Some(vec!["ZG9ja2Vy".into()]),
                ..Default::default()
            },
        }
    }

    #[test]
    fn assign_from_copies_every_shape() {
        let mut no_parent = full();
        no_parent.process.parent = None;
        no_parent.process.args = Some(vec!["a".into()]);
        let mut other_parent = full();
        if let Some(p) = other_parent.process.parent.as_deref_mut() {
            p.args = None;
            p.name = Some("sudo".into());
        }
        let shapes = [ProcessEvent::default(), full(), no_parent, other_parent];
        for src in &shapes {
            for start in &shapes {
                let mut dst = start.clone();
                dst.assign_from(src);
                assert_eq!(&dst, src);
            }
        }
    }
}
