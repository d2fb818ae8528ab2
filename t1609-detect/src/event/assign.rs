//! [`ProcessEvent::assign_from`]: copying an event into another's buffers.

use super::{CaptureInfo, Creds, HostOs, Identity, Process, ProcessEvent, RelatedProcess};

impl ProcessEvent {
    /// Makes `self` equal to `src`, reusing `self`'s string and vector buffers (the
    /// derived `clone_from` would reallocate everything). The destructuring makes a new
    /// field a compile error here rather than a silently stale copy.
    pub(crate) fn assign_from(&mut self, src: &ProcessEvent) {
        let ProcessEvent {
            timestamp,
            event_id,
            event_type,
            event_action,
            process,
            user,
            group,
            container_id,
            container_privileged,
            host_hostname,
            host_os,
            capture,
        } = src;
        self.timestamp.clone_from(timestamp);
        self.event_id.clone_from(event_id);
        self.event_type = *event_type;
        self.event_action.clone_from(event_action);
        self.process.assign_from(process);
        self.user.assign_from(user);
        self.group.assign_from(group);
        self.container_id.clone_from(container_id);
        self.container_privileged = *container_privileged;
        self.host_hostname.clone_from(host_hostname);
        let HostOs { kind, name, kernel } = host_os;
        self.host_os.kind.clone_from(kind);
        self.host_os.name.clone_from(name);
        self.host_os.kernel.clone_from(kernel);
        self.capture.assign_from(capture);
    }
}

impl Process {
    fn assign_from(&mut self, src: &Process) {
        let Process {
            pid,
            name,
            executable,
            args,
            args_count,
            command_line,
            working_directory,
            parent,
            interactive,
            tty,
            creds,
            env_vars,
            exit_code,
            hash_sha256,
            entry_leader,
            session_leader,
            group_leader,
        } = src;
        self.pid = *pid;
        self.name.clone_from(name);
        self.executable.clone_from(executable);
        self.args.clone_from(args);
        self.args_count = *args_count;
        self.command_line.clone_from(command_line);
        self.working_directory.clone_from(working_directory);
        assign_related(&mut self.parent, parent.as_deref());
        self.interactive = *interactive;
        self.tty = *tty;
        self.creds.assign_from(creds);
        self.env_vars.clone_from(env_vars);
        self.exit_code = *exit_code;
        self.hash_sha256.clone_from(hash_sha256);
        assign_related(&mut self.entry_leader, entry_leader.as_deref());
        assign_related(&mut self.session_leader, session_leader.as_deref());
        assign_related(&mut self.group_leader, group_leader.as_deref());
    }
}

fn assign_related(dst: &mut Option<Box<RelatedProcess>>, src: Option<&RelatedProcess>) {
    match (dst, src) {
        (Some(d), Some(s)) => d.assign_from(s),
        (d, s) => *d = s.map(|s| Box::new(s.clone())),
    }
}

impl RelatedProcess {
    fn assign_from(&mut self, src: &RelatedProcess) {
        let RelatedProcess {
            pid,
            name,
            executable,
            args,
            command_line,
            args_count,
            working_directory,
            interactive,
            creds,
            same_as_process,
            entry_meta_type,
        } = src;
        self.pid = *pid;
        self.name.clone_from(name);
        self.executable.clone_from(executable);
        self.args.clone_from(args);
        self.command_line.clone_from(command_line);
        self.args_count = *args_count;
        self.working_directory.clone_from(working_directory);
        self.interactive = *interactive;
        self.creds.assign_from(creds);
        self.same_as_process = *same_as_process;
        self.entry_meta_type.clone_from(entry_meta_type);
    }
}

impl Creds {
    fn assign_from(&mut self, src: &Creds) {
        let Creds {
            user,
            real_user,
            group,
            real_group,
        } = src;
        self.user.assign_from(user);
        self.real_user.assign_from(real_user);
        self.group.assign_from(group);
        self.real_group.assign_from(real_group);
    }
}

impl Identity {
    fn assign_from(&mut self, src: &Identity) {
        let Identity { id, name } = src;
        self.id.clone_from(id);
        self.name.clone_from(name);
    }
}

impl CaptureInfo {
    fn assign_from(&mut self, src: &CaptureInfo) {
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
        } = src;
        self.cgroup_id = *cgroup_id;
        self.pid_ns = *pid_ns;
        self.mnt_ns = *mnt_ns;
        self.tgid = *tgid;
        self.euid = *euid;
        self.egid = *egid;
        self.loginuid = *loginuid;
        self.tty.clone_from(tty);
        self.argv_total_len = *argv_total_len;
        self.argv_truncated = *argv_truncated;
        self.argv_incomplete = *argv_incomplete;
        self.args_b64.clone_from(args_b64);
        self.executable_b64.clone_from(executable_b64);
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{EventType, Tty},
        *,
    };

    fn related(name: &str) -> RelatedProcess {
        let s = |v: &str| Some(v.to_string());
        RelatedProcess {
            pid: Some(1),
            name: s(name),
            executable: Some(format!("/bin/{name}")),
            args: Some(vec![name.into()]),
            command_line: s(name),
            args_count: Some(1),
            working_directory: s("/"),
            interactive: Some(true),
            creds: Creds {
                user: Identity {
                    id: s("0"),
                    name: s("root"),
                },
                real_group: Identity {
                    id: s("5"),
                    name: None,
                },
                ..Default::default()
            },
            same_as_process: Some(false),
            entry_meta_type: s("sshd"),
        }
    }

    fn full() -> ProcessEvent {
        let s = |v: &str| Some(v.to_string());
        ProcessEvent {
            timestamp: s("2026-01-01T00:00:00Z"),
            event_id: s("e1"),
            event_type: EventType::End,
            event_action: s("end"),
            process: Process {
                pid: Some(7),
                name: s("docker"),
                executable: s("/usr/bin/docker"),
                args: Some(vec!["docker".into(), "exec".into(), "web".into()]),
                args_count: Some(3),
                command_line: s("docker exec web"),
                working_directory: s("/root"),
                parent: Some(Box::new(related("bash"))),
                interactive: Some(true),
                tty: Tty {
                    char_device_major: Some(136),
                    char_device_minor: Some(1),
                },
                creds: related("x").creds,
                env_vars: Some(vec!["LD_PRELOAD=/x.so".into()]),
                exit_code: Some(1),
                hash_sha256: s("9f86d081884c7d65"),
                entry_leader: Some(Box::new(related("sshd"))),
                session_leader: Some(Box::new(related("bash"))),
                group_leader: None,
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
            container_privileged: Some(true),
            host_hostname: s("node-1"),
            host_os: HostOs {
                kind: s("linux"),
                name: s("Debian GNU/Linux"),
                kernel: s("6.1.0"),
            },
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
        no_parent.process.entry_leader = None;
        let mut other_parent = full();
        if let Some(p) = other_parent.process.parent.as_deref_mut() {
            p.args = None;
            p.name = Some("sudo".into());
        }
        other_parent.process.group_leader = Some(Box::new(related("sh")));
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
