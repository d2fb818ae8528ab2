//! Injected sessions: a host-side `docker exec`/`kubectl exec`/`crictl exec` reaches the
//! container through `runc exec` (or `crun exec`) under the runtime's shim; `nsenter`
//! enters directly. The kernel tracks the descendants of such an exec and reports their
//! execs; here they are tied back to the host-side alert and summarised in a follow-up
//! alert with the same group id.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_detect::event::ProcessEvent;
use t1609_ecs::{AlertDoc, RuleRef, Severity, Threat};

use crate::decode::CapturedExec;

/// A host-side exec-type alert waiting for the runtime exec that carries it out.
#[derive(Clone, Debug)]
pub struct PendingExec {
    pub group_id: String,
    pub event_id: String,
    pub at: Instant,
    /// Target container (name or id) from the parsed argv, when known.
    pub target: Option<String>,
    pub tool: String,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: u64,
    pub root_pid: u32,
    pub root_name: String,
    pub root_args: Vec<String>,
    pub root_event_id: String,
    pub container_hint: Option<String>,
    pub started: Instant,
    pub linked: Option<PendingExec>,
    pub injected: Option<Value>,
    pub commands: Vec<Value>,
    pub dropped_commands: u64,
    pub ended: bool,
}

const MAX_COMMANDS: usize = 64;
/// Host-side exec alerts waiting for their runtime exec, at most.
const MAX_PENDING: usize = 1024;
const LINK_WINDOW: Duration = Duration::from_secs(5);

/// Does this runtime/nsenter argv inject a process into a container?
pub fn is_injection(name: &str, args: &[String]) -> bool {
    match name {
        "runc" | "crun" => args.iter().skip(1).any(|a| a == "exec"),
        "nsenter" => !args
            .iter()
            .skip(1)
            .any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V"),
        _ => false,
    }
}

/// The container id a `runc exec ... <id>` targets: its last non-flag argument.
pub fn runtime_exec_target(args: &[String]) -> Option<String> {
    args.iter()
        .rev()
        .find(|a| !a.starts_with('-'))
        .filter(|a| a.len() >= 12)
        .cloned()
}

#[derive(Default)]
pub struct Sessions {
    pending: Vec<PendingExec>,
    sessions: HashMap<u64, Session>,
}

/// What an exec means to the sessions.
#[derive(Debug)]
pub enum SessionStep {
    /// Outside any session, or recorded as a command run inside one.
    Nothing,
    /// A runtime exec or nsenter that injects a process opened a session. `folds_into` is
    /// the host-side alert it carries out: its own alerts are folded into that one.
    Started { folds_into: Option<PendingExec> },
    /// A session root that injects nothing (runc create, start, state...): the kernel
    /// should stop tracking it.
    NotInjection,
}

impl Sessions {
    /// The pipeline's session step. `doc` is the exec's own ECS event document, which a
    /// command run inside a session needs (the pipeline builds it for those).
    pub fn on_exec(
        &mut self,
        exec: &CapturedExec,
        event: &ProcessEvent,
        doc: Option<&Value>,
        now: Instant,
    ) -> SessionStep {
        let p = &event.process;
        let name = p.name.as_deref().unwrap_or_default();
        let args: &[String] = p.args.as_deref().unwrap_or_default();
        if !exec.session_root {
            if exec.session != 0 {
                let summary = json!({
                    "pid": exec.tgid, "name": name, "executable": p.executable,
                    "command_line": p.command_line, "args": args,
                    "container_id": event.container_id, "@timestamp": event.timestamp,
                    "event_id": event.event_id,
                    "process": doc.and_then(|d| d.get("process")).cloned(),
                });
                self.record_exec(exec.session, exec.tgid, summary);
            }
            return SessionStep::Nothing;
        }
        if !is_injection(name, args) {
            return SessionStep::NotInjection;
        }
        let folds_into = self.start(Session {
            id: exec.session,
            root_pid: exec.tgid,
            root_name: name.to_owned(),
            root_args: args.to_vec(),
            root_event_id: event.event_id.clone().unwrap_or_default(),
            container_hint: runtime_exec_target(args),
            started: now,
            linked: None,
            injected: None,
            commands: Vec::new(),
            dropped_commands: 0,
            ended: false,
        });
        SessionStep::Started { folds_into }
    }

    /// Remembers an exec-type alert so the runtime exec that follows can join its group.
    pub fn expect(&mut self, p: PendingExec) {
        // Pending alerts arrive in time order: expire from the front, and keep a bound.
        let expired = self
            .pending
            .iter()
            .take_while(|e| p.at.duration_since(e.at) >= LINK_WINDOW)
            .count();
        let over = (self.pending.len() - expired + 1).saturating_sub(MAX_PENDING);
        self.pending.drain(..expired + over);
        self.pending.push(p);
    }

    /// A session root appeared. Returns the host alert it carries out, if any: its
    /// own alerts are then folded into that one rather than raised again.
    pub fn start(&mut self, mut s: Session) -> Option<PendingExec> {
        let now = s.started;
        let expired = self
            .pending
            .iter()
            .take_while(|e| now.duration_since(e.at) >= LINK_WINDOW)
            .count();
        self.pending.drain(..expired);
        // Prefer the alert whose target matches the runtime's container id.
        let idx = s
            .container_hint
            .as_deref()
            .and_then(|id| {
                self.pending.iter().rposition(|p| {
                    p.target
                        .as_deref()
                        .is_some_and(|t| id.starts_with(t) || t.starts_with(id))
                })
            })
            .or_else(|| (!self.pending.is_empty()).then(|| self.pending.len() - 1));
        if s.root_name != "nsenter" {
            s.linked = idx.map(|i| self.pending.remove(i));
        }
        let linked = s.linked.clone();
        self.sessions.insert(s.id, s);
        linked
    }

    pub fn get(&self, id: u64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// An exec inside a session: the first one is the injected process.
    pub fn record_exec(&mut self, id: u64, pid: u32, doc: Value) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if pid == s.root_pid && s.root_name != "nsenter" {
            return; // the runtime re-exec'ing itself
        }
        // `runc init` (exec'd as /proc/self/exe or a memfd copy) is the runtime's own
        // set-up inside the container, not a command the user ran.
        let args = doc["args"].as_array();
        let is_runtime_init = args.is_some_and(|a| {
            a.len() == 2
                && matches!(a[0].as_str(), Some("runc" | "crun" | "runc:[2:INIT]"))
                && a[1].as_str() == Some("init")
        });
        if is_runtime_init {
            return;
        }
        if s.injected.is_none() {
            s.injected = Some(doc.clone());
        }
        if s.commands.len() < MAX_COMMANDS {
            s.commands.push(doc);
        } else {
            s.dropped_commands += 1;
        }
    }

    pub fn exited(&mut self, id: u64, tgid: u32) {
        if let Some(s) = self.sessions.get_mut(&id)
            && s.injected.as_ref().and_then(|d| d["pid"].as_u64()) == Some(u64::from(tgid))
        {
            s.ended = true;
        }
    }

    /// Sessions whose window closed (or whose injected process exited), removed.
    pub fn take_due(&mut self, window: Duration, now: Instant) -> Vec<Session> {
        let due: Vec<u64> = self
            .sessions
            .values()
            .filter(|s| {
                now.duration_since(s.started) >= window
                    || (s.ended && now.duration_since(s.started) >= Duration::from_millis(200))
            })
            .map(|s| s.id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.sessions.remove(&id))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The follow-up alert naming the injected process and what ran in the session.
pub fn session_alert(s: &Session, host: Option<&str>) -> Value {
    let group_id = s
        .linked
        .as_ref()
        .map_or_else(|| format!("session-{:x}", s.id), |l| l.group_id.clone());
    let injected = s.injected.clone().unwrap_or(Value::Null);
    let container = injected["container_id"].clone();
    let commands: Vec<Value> = s
        .commands
        .iter()
        .map(|c| c["command_line"].clone())
        .collect();
    let names: Vec<&str> = s
        .commands
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let via = s
        .linked
        .as_ref()
        .map_or_else(|| s.root_name.clone(), |l| l.tool.clone());
    let rule = RuleRef {
        id: "t1609.injected_session",
        name: "Commands run in a session injected into a container",
        description: Some(
            "Processes started inside a container by an exec through the runtime (docker/kubectl/crictl exec via runc) or by nsenter, tied to the alert that started them.",
        ),
        reference: Some("https://attack.mitre.org/techniques/T1609/"),
    };
    AlertDoc::new(rule, Severity::High)
        .categorized(&["process"], &["info"], None)
        .threat(&Threat::of(&["TA0002"], &["T1609"]))
        .message(format!(
            "T1609 session injected via {via}: {} command(s) ran inside: {}",
            commands.len(),
            names.join(", ")
        ))
        .set("process", injected.get("process").cloned().unwrap_or(Value::Null))
        .set("container", json!({"id": container}))
        .host(host)
        .group(group_id)
        .t1609(
            "session",
            json!({
                "id": format!("{:x}", s.id),
                "via": via,
                "linked_event_id": s.linked.as_ref().map(|l| l.event_id.clone()),
                "mechanism": {"pid": s.root_pid, "name": s.root_name, "args": s.root_args, "event_id": s.root_event_id},
                "injected": injected,
                "commands": commands,
                "command_details": s.commands,
                "commands_dropped": s.dropped_commands,
                "ended": s.ended,
            }),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn runtime_exec_is_an_injection_other_verbs_are_not() {
        assert!(is_injection(
            "runc",
            &v(&[
                "runc",
                "--root",
                "/run/docker/runtime-runc/moby",
                "exec",
                "--process",
                "/tmp/p.json",
                "abc"
            ])
        ));
        assert!(!is_injection(
            "runc",
            &v(&["runc", "--root", "/x", "create", "--bundle", "/b", "abc"])
        ));
        assert!(!is_injection("runc", &v(&["runc", "state", "abc"])));
        assert!(is_injection(
            "nsenter",
            &v(&["nsenter", "-t", "1", "-m", "sh"])
        ));
        assert!(!is_injection("nsenter", &v(&["nsenter", "--help"])));
    }

    #[test]
    fn target_is_last_positional() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(
            runtime_exec_target(&v(&["runc", "exec", "--process", "/p", &id])),
            Some(id)
        );
    }

    #[test]
    fn session_links_to_matching_pending_alert_and_collects_commands() {
        let mut s = Sessions::default();
        let now = Instant::now();
        s.expect(PendingExec {
            group_id: "g1".into(),
            event_id: "e1".into(),
            at: now,
            target: Some("c1".into()),
            tool: "docker".into(),
        });
        s.expect(PendingExec {
            group_id: "g2".into(),
            event_id: "e2".into(),
            at: now,
            target: Some("abcdef012345".into()),
            tool: "docker".into(),
        });
        let linked = s.start(Session {
            id: 7,
            root_pid: 100,
            root_name: "runc".into(),
            root_args: vec![],
            root_event_id: "r".into(),
            container_hint: Some("abcdef012345".to_owned() + &"0".repeat(52)),
            started: now,
            linked: None,
            injected: None,
            commands: vec![],
            dropped_commands: 0,
            ended: false,
        });
        assert_eq!(linked.unwrap().group_id, "g2");
        s.record_exec(
            7,
            101,
            json!({"pid": 101, "name": "sh", "command_line": "/bin/sh -c id"}),
        );
        s.record_exec(
            7,
            102,
            json!({"pid": 102, "name": "id", "command_line": "id"}),
        );
        assert!(s.take_due(Duration::from_secs(3), now).is_empty());
        s.exited(7, 101);
        let due = s.take_due(Duration::from_secs(3), now + Duration::from_millis(300));
        assert_eq!(due.len(), 1);
        let alert = session_alert(&due[0], None);
        assert_eq!(alert["rule"]["id"], "t1609.injected_session");
        assert_eq!(alert["event"]["severity"], 73);
        assert_eq!(alert["t1609"]["group_id"], "g2");
        assert_eq!(
            alert["t1609"]["session"]["commands"],
            json!(["/bin/sh -c id", "id"])
        );
        assert_eq!(alert["t1609"]["session"]["injected"]["pid"], 101);
    }
}
