//! Ties a `kubectl exec` process alert (from this host's process capture) to the audit
//! alert of the same exec, so the two share `t1609.group_id`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::rules::DATASET;

const MAX_PENDING: usize = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Process,
    Audit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    /// `exec` or `attach`.
    action: &'static str,
    namespace: String,
    pod: String,
    command: Vec<String>,
}

#[derive(Debug)]
struct Pending {
    side: Side,
    key: Key,
    event_id: String,
    group_id: String,
    at: Instant,
}

/// Matches process and audit alerts on pod name, namespace and command within a window.
/// Each alert is correlated at most once; the later alert takes the earlier one's
/// `t1609.group_id` and gets `t1609.correlated_with` = the earlier one's `event.id`.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    pending: VecDeque<Pending>,
    /// Groups already joined to a partner: one exec raises several alerts sharing its
    /// group, and the ones after the first must join the same partner even though the
    /// first took it out of `pending`.
    joined: VecDeque<Joined>,
}

#[derive(Debug)]
struct Joined {
    side: Side,
    original_group: String,
    group_id: String,
    correlated_with: String,
    at: Instant,
}

/// A field by dotted path: nested objects, or a flat dotted key at any level.
fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(path) {
        return Some(x);
    }
    let (head, rest) = path.split_once('.')?;
    if let Some(x) = v.get(head).and_then(|h| get(h, rest)) {
        return Some(x);
    }
    let mut idx = head.len();
    while let Some(p) = path[idx + 1..].find('.') {
        let split = idx + 1 + p;
        if let Some(x) = v
            .get(&path[..split])
            .and_then(|h| get(h, &path[split + 1..]))
        {
            return Some(x);
        }
        idx = split;
    }
    None
}

fn get_str<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn str_array(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn set_t1609(alert: &mut Value, key: &str, value: Value) {
    let Some(obj) = alert.as_object_mut() else {
        return;
    };
    let flat = format!("t1609.{key}");
    if obj.contains_key(&flat) {
        obj.insert(flat, value);
        return;
    }
    let t = obj
        .entry("t1609")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(t) = t {
        t.insert(key.into(), value);
    }
}

fn ids(alert: &mut Value) -> (String, String) {
    let event_id = get_str(alert, "event.id").unwrap_or_default().to_string();
    let group_id = match get_str(alert, "t1609.group_id") {
        Some(g) if !g.is_empty() => g.to_string(),
        _ => {
            // An alert without a group id gets its event id as one.
            let g = if event_id.is_empty() {
                t1609_detect::new_id()
            } else {
                event_id.clone()
            };
            set_t1609(alert, "group_id", Value::String(g.clone()));
            g
        }
    };
    (event_id, group_id)
}

fn process_key(alert: &Value) -> Option<Key> {
    if get_str(alert, "t1609.argv.tool")? != "kubectl" {
        return None;
    }
    let action = match get_str(alert, "t1609.argv.verb")? {
        "exec" => "exec",
        "attach" => "attach",
        _ => return None,
    };
    let pod = get_str(alert, "t1609.argv.pod")?;
    let pod = pod
        .strip_prefix("pod/")
        .or_else(|| pod.strip_prefix("pods/"))
        .unwrap_or(pod);
    if pod.is_empty() || pod.contains('/') {
        return None; // deploy/x, svc/x: the pod is picked by the API server
    }
    let namespace = get_str(alert, "t1609.argv.namespace")
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    Some(Key {
        action,
        namespace: namespace.into(),
        pod: pod.into(),
        command: str_array(get(alert, "t1609.argv.command")),
    })
}

fn audit_key(alert: &Value) -> Option<Key> {
    if get_str(alert, "event.dataset")? != DATASET {
        return None;
    }
    let action = match get_str(alert, "t1609.k8s.kind")? {
        "exec" => "exec",
        "attach" => "attach",
        "node_proxy" => match get_str(alert, "t1609.k8s.kubelet_endpoint") {
            Some("exec" | "run") => "exec",
            Some("attach") => "attach",
            _ => return None,
        },
        _ => return None,
    };
    let pod = get_str(alert, "orchestrator.resource.name")?;
    let namespace = get_str(alert, "orchestrator.namespace").unwrap_or("default");
    Some(Key {
        action,
        namespace: namespace.into(),
        pod: pod.into(),
        command: str_array(get(alert, "process.args")),
    })
}

impl Correlator {
    pub fn new(window: Duration) -> Self {
        Correlator {
            window,
            pending: VecDeque::new(),
            joined: VecDeque::new(),
        }
    }

    /// Number of alerts waiting for a partner.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// An alert from the process side; only `kubectl exec`/`attach` alerts take part.
    pub fn observe_process_alert(&mut self, alert: &mut Value, now: Instant) {
        if let Some(key) = process_key(alert) {
            self.observe(Side::Process, key, alert, now);
        }
    }

    /// An alert from the audit side (`event.dataset` `kubernetes.audit`, exec or attach).
    pub fn observe_audit_alert(&mut self, alert: &mut Value, now: Instant) {
        if let Some(key) = audit_key(alert) {
            self.observe(Side::Audit, key, alert, now);
        }
    }

    fn within(&self, a: Instant, b: Instant) -> bool {
        let d = if a > b { a - b } else { b - a };
        d <= self.window
    }

    fn observe(&mut self, side: Side, key: Key, alert: &mut Value, now: Instant) {
        let window = self.window;
        self.pending
            .retain(|p| now.saturating_duration_since(p.at) <= window);
        self.joined
            .retain(|j| now.saturating_duration_since(j.at) <= window);
        let (event_id, group_id) = ids(alert);
        if let Some(j) = self
            .joined
            .iter()
            .find(|j| j.side == side && j.original_group == group_id)
        {
            set_t1609(alert, "group_id", Value::String(j.group_id.clone()));
            set_t1609(
                alert,
                "correlated_with",
                Value::String(j.correlated_with.clone()),
            );
            return;
        }
        let found = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.side != side && p.key == key && self.within(p.at, now))
            .max_by_key(|(_, p)| p.at)
            .map(|(i, _)| i);
        if let Some(i) = found
            && let Some(other) = self.pending.remove(i)
        {
            set_t1609(alert, "group_id", Value::String(other.group_id.clone()));
            set_t1609(
                alert,
                "correlated_with",
                Value::String(other.event_id.clone()),
            );
            self.joined.push_back(Joined {
                side,
                original_group: group_id,
                group_id: other.group_id,
                correlated_with: other.event_id,
                at: now,
            });
            while self.joined.len() > MAX_PENDING {
                self.joined.pop_front();
            }
            return;
        }
        self.pending.push_back(Pending {
            side,
            key,
            event_id,
            group_id,
            at: now,
        });
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
        }
    }
}
