//! Late container names. An alert on a process in a container the runtimes' cache did
//! not know yet says `t1609.metadata.pending` with the reason; when the runtime's answer
//! arrives, a follow-up in the same group names the container and its pod.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_context::ContainerInfo;
use t1609_ecs::{AlertDoc, RuleRef, Severity};

/// How long an alert waits for its container's name.
const WAIT: Duration = Duration::from_mins(1);
/// Alerts waiting at most (the oldest go first).
const MAX_WAITING: usize = 4096;

/// An alert whose container was not named yet.
#[derive(Clone, Debug)]
struct Waiting {
    group_id: String,
    event_id: String,
    rule_id: String,
    at: Instant,
}

#[derive(Default)]
pub struct PendingMetadata {
    by_container: HashMap<Arc<str>, Vec<Waiting>>,
    /// Insertion order, for expiry and the bound.
    order: VecDeque<(Arc<str>, Instant)>,
    len: usize,
}

impl PendingMetadata {
    /// Notes `doc`, just emitted, if its container's metadata was pending.
    pub fn note(&mut self, doc: &Value, now: Instant) {
        if doc["t1609"]["metadata"]["pending"] != true {
            return;
        }
        let (Some(id), Some(event_id)) =
            (doc["container"]["id"].as_str(), doc["event"]["id"].as_str())
        else {
            return;
        };
        let group_id = doc["t1609"]["group_id"].as_str().unwrap_or(event_id);
        let rule_id = doc["rule"]["id"].as_str().unwrap_or_default();
        self.note_pending(id, group_id, event_id, rule_id, now);
    }

    /// Notes an alert, just emitted, whose container `id`'s metadata was pending (what
    /// [`PendingMetadata::note`] reads from a document).
    pub fn note_pending(
        &mut self,
        id: &str,
        group_id: &str,
        event_id: &str,
        rule_id: &str,
        now: Instant,
    ) {
        let id: Arc<str> = id.into();
        self.by_container
            .entry(id.clone())
            .or_default()
            .push(Waiting {
                group_id: group_id.to_owned(),
                event_id: event_id.to_owned(),
                rule_id: rule_id.to_owned(),
                at: now,
            });
        self.order.push_back((id, now));
        self.len += 1;
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front().cloned() {
            if now.duration_since(at) < WAIT && self.len <= MAX_WAITING {
                break;
            }
            self.order.pop_front();
            if let Some(list) = self.by_container.get_mut(&id) {
                let before = list.len();
                list.retain(|w| w.at != at);
                self.len -= before - list.len();
                if list.is_empty() {
                    self.by_container.remove(&id);
                }
            }
        }
    }

    /// The follow-ups for a container the runtime has just named: one per alert that
    /// waited for it.
    pub fn answered(
        &mut self,
        info: &ContainerInfo,
        host: Option<&str>,
        now: Instant,
    ) -> Vec<Value> {
        self.expire(now);
        let Some(list) = self.by_container.remove(&info.id) else {
            return Vec::new();
        };
        self.len -= list.len();
        list.into_iter()
            .map(|w| follow_up(info, &w, host))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn follow_up(info: &ContainerInfo, w: &Waiting, host: Option<&str>) -> Value {
    let rule = RuleRef {
        id: "t1609.container_metadata",
        name: "Container of an earlier alert named by its runtime",
        description: Some(
            "The container runtime answered after the alert was sent: this names the container, its image and its pod.",
        ),
        reference: None,
    };
    let name = info.name.as_deref().unwrap_or(&info.id);
    let mut doc = AlertDoc::new(rule, Severity::Low)
        .categorized(&["process"], &["info"], None)
        .message(format!(
            "container of alert {} ({}) is {name}",
            w.event_id, w.rule_id
        ))
        .set("container", info.ecs_container())
        .host(host)
        .group(w.group_id.clone())
        .t1609(
            "metadata_of",
            json!({"event_id": w.event_id, "rule_id": w.rule_id}),
        )
        .t1609("metadata", json!({"pending": false, "source": info.source}));
    if let Some(o) = info.ecs_orchestrator() {
        doc = doc.set("orchestrator", o);
    }
    if let Some(n) = info.pod.as_ref().and_then(|p| p.container_name.as_deref()) {
        doc = doc.set("kubernetes", json!({"container": {"name": n}}));
    }
    doc.build()
}

#[cfg(test)]
mod tests {
    use t1609_context::{PodInfo, RuntimeKind};

    use super::*;

    fn pending_alert(id: &str) -> Value {
        json!({"event": {"id": "e1"}, "rule": {"id": "t1609.container_exec"}, "container": {"id": id},
               "t1609": {"group_id": "g1", "metadata": {"pending": true, "reason": "runtime lookup in progress"}}})
    }

    #[test]
    fn a_late_answer_names_the_container_in_the_same_group() {
        let mut p = PendingMetadata::default();
        let now = Instant::now();
        p.note(&pending_alert("c1"), now);
        p.note(
            &json!({"t1609": {"metadata": {"pending": false}}, "container": {"id": "c2"}}),
            now,
        );
        assert_eq!(p.len(), 1, "only pending alerts wait");
        let mut info = ContainerInfo::new("c1", RuntimeKind::Containerd, "containerd-events");
        info.name = Some("app".into());
        info.pod = Some(PodInfo {
            name: "web-0".into(),
            namespace: "prod".into(),
            uid: "u1".into(),
            container_name: Some("app".into()),
        });
        let ups = p.answered(&info, Some("node-1"), now);
        assert_eq!(ups.len(), 1);
        let up = &ups[0];
        assert_eq!(up["t1609"]["group_id"], "g1");
        assert_eq!(up["t1609"]["metadata_of"]["event_id"], "e1");
        assert_eq!(up["container"]["name"], "app");
        assert_eq!(up["orchestrator"]["resource"]["name"], "web-0");
        assert_eq!(up["kubernetes"]["container"]["name"], "app");
        assert!(p.is_empty());
        assert!(p.answered(&info, None, now).is_empty(), "once");
    }

    #[test]
    fn waiting_alerts_expire_and_stay_bounded() {
        let mut p = PendingMetadata::default();
        let t0 = Instant::now();
        for i in 0..(MAX_WAITING + 100) {
            p.note(&pending_alert(&format!("c{i}")), t0);
        }
        assert!(p.len() <= MAX_WAITING);
        p.note(&pending_alert("late"), t0 + WAIT + Duration::from_secs(1));
        assert_eq!(p.len(), 1);
    }
}
