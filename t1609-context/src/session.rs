//! Linking a host-side exec (`docker exec`, `kubectl exec`, `crictl exec`, `nsenter`) to the
//! process it injected into the container, and collecting the commands run in that session.
//!
//! An injected process is not a descendant of the container's init. Its parent is the
//! runtime's plumbing: `runc` / `runc:[2:INIT]` / `crun` while the exec is set up, then
//! `containerd-shim` or `conmon` once runc has exited. For `nsenter`, the parent is
//! `nsenter` itself, which is a host process.
//!
//! The detect stage drives it:
//! 1. The alert for the host-side command calls [`SessionTracker::expect_injection`] with
//!    the alert's group id and the resolved target container id (if known).
//! 2. Every exec inside a container calls [`SessionTracker::on_container_exec`]. The first
//!    process whose parent is runtime plumbing claims the most recent pending expectation for
//!    its container and opens a session. Its descendants' execs are added to that session.
//! 3. [`SessionTracker::expire`] closes sessions after the window and returns them, so a
//!    follow-up alert with the same group id can list the commands.
//!
//! A runc exec launched by containerd-shim/dockerd/conmon for an alerted exec is the
//! mechanism of that exec: [`SessionTracker::plumbing_group`] returns the pending group id so
//! the agent folds it into that alert instead of raising a second alert.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Upper bound on tracked session member pids (all sessions together).
const MAX_MEMBERS: usize = 65_536;

/// Process names (comm, at most 15 bytes) of the runtime plumbing that launches an exec'd
/// process inside a container.
pub const INJECTOR_NAMES: &[&str] = &[
    "runc",
    "runc:[0:PARENT]",
    "runc:[1:CHILD]",
    "runc:[2:INIT]",
    "crun",
    "containerd-shim", // containerd-shim-runc-v2 truncated to 15 bytes
    "containerd-shim-runc-v2",
    "conmon",
    "youki",
    "runsc",
];

/// True when `name` (comm) or the basename of `exe` is runtime plumbing.
pub fn is_injector(name: &str, exe: Option<&str>) -> bool {
    let base = exe.map(|e| e.rsplit('/').next().unwrap_or(e));
    INJECTOR_NAMES.contains(&name)
        || name.starts_with("containerd-shim")
        || base.is_some_and(|b| INJECTOR_NAMES.contains(&b) || b.starts_with("containerd-shim"))
}

/// Parents that launch `runc exec` as the mechanism of a client's exec.
pub fn is_runc_launcher(name: &str) -> bool {
    name.starts_with("containerd-shim")
        || matches!(
            name,
            "dockerd" | "containerd" | "conmon" | "crio" | "podman"
        )
}

/// The container id that a `runc … exec … <id>` command line targets: the last argument,
/// when runc's verb is `exec`.
pub fn runc_exec_target(args: &[String]) -> Option<&str> {
    let verb_pos = args.iter().position(|a| a == "exec")?;
    let last = args.last()?;
    (args.len() > verb_pos + 1 && !last.starts_with('-')).then_some(last.as_str())
}

/// A host-side exec waiting for its injected process.
#[derive(Debug, Clone)]
struct Pending {
    group_id: String,
    container_id: Option<String>,
    at: Instant,
}

/// One injected session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Group id of the host-side alert; `None` when no host-side exec was seen, e.g. a
    /// `kubectl exec` from another machine arriving through the kubelet API.
    pub group_id: Option<String>,
    pub container_id: String,
    /// The injected process (the session's root).
    pub root_pid: u32,
    /// Command lines run in the session, in order, starting with the root's (bounded).
    pub commands: Vec<String>,
    /// Commands beyond the bound, counted but not kept.
    pub dropped_commands: u64,
    #[serde(skip)]
    pub started: Instant,
}

/// An exec inside a container, as the detect stage sees it.
#[derive(Debug, Clone, Copy)]
pub struct ContainerExec<'a> {
    pub pid: u32,
    pub ppid: u32,
    /// The parent's comm and executable (from the process table).
    pub parent_name: &'a str,
    pub parent_exe: Option<&'a str>,
    /// From the cgroup.
    pub container_id: &'a str,
    pub command_line: &'a str,
    /// The process is its pid namespace's PID 1 (the container's init, `NSpid` ends in 1;
    /// see [`crate::process::read_ns_pid`]). Its parent is the shim too, but it is the
    /// container's own start, not an injection.
    pub container_init: bool,
}

/// What [`SessionTracker::on_container_exec`] made of an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Not part of any session (the container's own workload).
    None,
    /// The injected process: a new session (`group_id` is `None` if no host-side exec
    /// was pending for that container).
    Injected {
        root_pid: u32,
        group_id: Option<String>,
    },
    /// A command inside an open session.
    Command {
        root_pid: u32,
        group_id: Option<String>,
    },
}

/// See the module docs. Bounded in sessions, members and commands per session.
#[derive(Debug)]
pub struct SessionTracker {
    window: Duration,
    max_commands: usize,
    max_sessions: usize,
    pending: VecDeque<Pending>,
    sessions: HashMap<u32, Session>,
    /// pid → session root pid.
    members: HashMap<u32, u32>,
}

fn same_container(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || (a.len() >= 12 && b.starts_with(&a)) || (b.len() >= 12 && a.starts_with(&b))
}

impl SessionTracker {
    /// `window`: how long a host-side exec waits for its injected process, and how long a
    /// session collects commands. `max_commands`: per session.
    pub fn new(window: Duration, max_commands: usize) -> Self {
        Self {
            window,
            max_commands: max_commands.max(1),
            max_sessions: 4096,
            pending: VecDeque::new(),
            sessions: HashMap::new(),
            members: HashMap::new(),
        }
    }

    /// A host-side exec alert was raised; its injected process should follow.
    /// `target_container_id`: the full or short id the target resolved to, if known.
    pub fn expect_injection(
        &mut self,
        group_id: &str,
        target_container_id: Option<&str>,
        now: Instant,
    ) {
        self.drop_stale_pending(now);
        if self.pending.len() >= self.max_sessions {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            group_id: group_id.to_string(),
            container_id: target_container_id.map(str::to_string),
            at: now,
        });
    }

    /// The group id of a pending host-side exec into `container_id`, for folding the runc
    /// exec that implements it (see [`runc_exec_target`], [`is_runc_launcher`]).
    pub fn plumbing_group(&self, container_id: &str, now: Instant) -> Option<&str> {
        self.pending
            .iter()
            .rev()
            .filter(|p| now.saturating_duration_since(p.at) < self.window)
            .find(|p| {
                p.container_id
                    .as_deref()
                    .is_some_and(|c| same_container(c, container_id))
            })
            .map(|p| p.group_id.as_str())
    }

    /// A fork inside a session makes the child a member (its later exec joins the session).
    pub fn on_fork(&mut self, parent: u32, child: u32) {
        if self.members.len() >= MAX_MEMBERS {
            return;
        }
        if let Some(&root) = self.members.get(&parent) {
            self.members.insert(child, root);
        }
    }

    /// An exec in a container (see [`ContainerExec`]).
    pub fn on_container_exec(&mut self, ev: &ContainerExec, now: Instant) -> SessionEvent {
        let ContainerExec {
            pid,
            ppid,
            parent_name,
            parent_exe,
            container_id,
            command_line,
            container_init,
        } = *ev;
        let root = self
            .members
            .get(&pid)
            .or_else(|| self.members.get(&ppid))
            .copied();
        if let Some(root) = root
            && let Some(s) = self.sessions.get_mut(&root)
        {
            if self.members.len() < MAX_MEMBERS {
                self.members.insert(pid, root);
            }
            if pid != root {
                if s.commands.len() < self.max_commands {
                    s.commands.push(command_line.to_string());
                } else {
                    s.dropped_commands += 1;
                }
            }
            return SessionEvent::Command {
                root_pid: root,
                group_id: s.group_id.clone(),
            };
        }
        if container_init || !is_injector(parent_name, parent_exe) {
            return SessionEvent::None;
        }
        self.drop_stale_pending(now);
        // Most recent expectation for this container; else the most recent one whose
        // target could not be resolved.
        let idx = self
            .pending
            .iter()
            .rposition(|p| {
                p.container_id
                    .as_deref()
                    .is_some_and(|c| same_container(c, container_id))
            })
            .or_else(|| self.pending.iter().rposition(|p| p.container_id.is_none()));
        let group_id = idx.and_then(|i| self.pending.remove(i)).map(|p| p.group_id);
        if self.sessions.len() >= self.max_sessions
            && let Some(oldest) = self
                .sessions
                .values()
                .min_by_key(|s| s.started)
                .map(|s| s.root_pid)
        {
            self.remove_session(oldest);
        }
        self.sessions.insert(
            pid,
            Session {
                group_id: group_id.clone(),
                container_id: container_id.to_string(),
                root_pid: pid,
                commands: vec![command_line.to_string()],
                dropped_commands: 0,
                started: now,
            },
        );
        self.members.insert(pid, pid);
        SessionEvent::Injected {
            root_pid: pid,
            group_id,
        }
    }

    pub fn session(&self, root_pid: u32) -> Option<&Session> {
        self.sessions.get(&root_pid)
    }

    /// The open session with this group id.
    pub fn session_by_group(&self, group_id: &str) -> Option<&Session> {
        self.sessions
            .values()
            .find(|s| s.group_id.as_deref() == Some(group_id))
    }

    /// Closes sessions older than the window and returns them (for the follow-up alert).
    pub fn expire(&mut self, now: Instant) -> Vec<Session> {
        self.drop_stale_pending(now);
        let old: Vec<u32> = self
            .sessions
            .values()
            .filter(|s| now.saturating_duration_since(s.started) >= self.window)
            .map(|s| s.root_pid)
            .collect();
        old.into_iter()
            .filter_map(|r| self.remove_session(r))
            .collect()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    fn remove_session(&mut self, root: u32) -> Option<Session> {
        self.members.retain(|_, r| *r != root);
        self.sessions.remove(&root)
    }

    fn drop_stale_pending(&mut self, now: Instant) {
        while self
            .pending
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.at) >= self.window)
        {
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456";
    const C2: &str = "aaaa9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456";

    fn ex<'a>(
        pid: u32,
        ppid: u32,
        parent_name: &'a str,
        parent_exe: Option<&'a str>,
        container_id: &'a str,
        command_line: &'a str,
    ) -> ContainerExec<'a> {
        ContainerExec {
            pid,
            ppid,
            parent_name,
            parent_exe,
            container_id,
            command_line,
            container_init: false,
        }
    }

    #[test]
    fn injectors() {
        assert!(is_injector("runc:[2:INIT]", None));
        assert!(is_injector(
            "containerd-shim",
            Some("/usr/bin/containerd-shim-runc-v2")
        ));
        assert!(is_injector("x", Some("/usr/bin/conmon")));
        assert!(!is_injector("sh", Some("/bin/sh")));
        let runc: Vec<String> =
            "runc --root /var/run/docker/runtime-runc/moby --log /x/log.json exec --process /tmp/p.json --detach --pid-file /x/pid 3f1c9e".split(' ').map(String::from).collect();
        assert_eq!(runc_exec_target(&runc), Some("3f1c9e"));
        assert_eq!(runc_exec_target(&["runc".into(), "list".into()]), None);
    }

    #[test]
    fn docker_exec_session_is_linked_and_collects_commands() {
        let t0 = Instant::now();
        let mut s = SessionTracker::new(Duration::from_secs(30), 3);
        s.expect_injection("grp-1", Some(&C1[..12]), t0);
        s.expect_injection("grp-2", Some(C2), t0);
        assert_eq!(s.plumbing_group(C1, t0), Some("grp-1"));
        // The container's own workload (parent is its init, not plumbing) is not a session.
        assert_eq!(
            s.on_container_exec(
                &ex(
                    50,
                    40,
                    "nginx",
                    Some("/usr/sbin/nginx"),
                    C1,
                    "nginx -g daemon off;"
                ),
                t0
            ),
            SessionEvent::None
        );
        // The container's init, started by the shim too, is not an injection.
        let init = ContainerExec {
            container_init: true,
            ..ex(40, 10, "containerd-shim", None, C1, "nginx")
        };
        assert_eq!(s.on_container_exec(&init, t0), SessionEvent::None);
        // The injected shell: parent containerd-shim.
        let ev = s.on_container_exec(
            &ex(
                100,
                10,
                "containerd-shim",
                None,
                C1,
                "/bin/sh -c id; cat /etc/hostname",
            ),
            t0,
        );
        assert_eq!(
            ev,
            SessionEvent::Injected {
                root_pid: 100,
                group_id: Some("grp-1".into())
            }
        );
        assert_eq!(s.pending_len(), 1);
        // Its children: fork + exec.
        s.on_fork(100, 101);
        assert_eq!(
            s.on_container_exec(&ex(101, 100, "sh", None, C1, "id"), t0),
            SessionEvent::Command {
                root_pid: 100,
                group_id: Some("grp-1".into())
            }
        );
        assert_eq!(
            s.on_container_exec(&ex(102, 100, "sh", None, C1, "cat /etc/hostname"), t0),
            SessionEvent::Command {
                root_pid: 100,
                group_id: Some("grp-1".into())
            }
        );
        s.on_container_exec(&ex(103, 100, "sh", None, C1, "ls"), t0);
        s.on_container_exec(&ex(104, 100, "sh", None, C1, "ps"), t0);
        let sess = s.session_by_group("grp-1").unwrap();
        assert_eq!(
            sess.commands,
            vec![
                "/bin/sh -c id; cat /etc/hostname",
                "id",
                "cat /etc/hostname"
            ]
        );
        assert_eq!(sess.dropped_commands, 2);
        // An injection with no pending exec for its container: orphan session (kubelet API).
        let ev = s.on_container_exec(
            &ex(
                200,
                10,
                "runc:[2:INIT]",
                None,
                "bbbb9e2b7a4d5c6e8f9012ab34cd56ef",
                "sh",
            ),
            t0,
        );
        assert_eq!(
            ev,
            SessionEvent::Injected {
                root_pid: 200,
                group_id: None
            }
        );
        // Expiry returns both sessions; the pending grp-2 is dropped after the window.
        let done = s.expire(t0 + Duration::from_secs(31));
        assert_eq!(done.len(), 2);
        assert_eq!(s.open_sessions(), 0);
        assert_eq!(s.pending_len(), 0);
        assert_eq!(
            s.on_container_exec(
                &ex(105, 100, "sh", None, C1, "id"),
                t0 + Duration::from_secs(32)
            ),
            SessionEvent::None
        );
    }

    #[test]
    fn unresolved_target_matches_next_injection() {
        let t0 = Instant::now();
        let mut s = SessionTracker::new(Duration::from_secs(5), 10);
        s.expect_injection("kubectl-1", None, t0);
        let ev = s.on_container_exec(
            &ex(7, 6, "runc:[2:INIT]", None, C2, "sh"),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            ev,
            SessionEvent::Injected {
                root_pid: 7,
                group_id: Some("kubectl-1".into())
            }
        );
        // Stale expectations do not match.
        s.expect_injection("late", Some(C1), t0);
        let ev = s.on_container_exec(
            &ex(8, 6, "conmon", None, C1, "sh"),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(
            ev,
            SessionEvent::Injected {
                root_pid: 8,
                group_id: None
            }
        );
    }
}
