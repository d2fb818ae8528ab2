//! Ties a `kubectl exec` process alert (from this host's process capture) to the audit
//! alert of the same exec, so the two share `t1609.group_id`.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::rules::DATASET;

/// Bound on the alerts kept waiting for a partner, and on the joined groups.
const MAX_PENDING: usize = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Process,
    Audit,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Process => Side::Audit,
            Side::Audit => Side::Process,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// `exec` or `attach`.
    action: &'static str,
    namespace: String,
    pod: String,
    command: Vec<String>,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    event_id: String,
    group_id: String,
}

/// Matches process and audit alerts on pod name, namespace and command within a window.
/// Each alert is correlated at most once; the later alert takes the earlier one's
/// `t1609.group_id` and gets `t1609.correlated_with` = the earlier one's `event.id`.
///
/// Indexed by side and key, so that a flood of distinct `kubectl exec` alerts (one per
/// pod, say) costs a hash lookup each rather than a scan of everything still waiting.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    /// Alerts waiting for a partner, oldest first within each side and key.
    pending: HashMap<(Side, Key), VecDeque<Pending>>,
    /// Every wait in arrival order, for expiry and the bound; an entry whose alert was
    /// since paired is skipped when it comes up (its `seq` is no longer in `pending`).
    arrivals: VecDeque<(Instant, u64, Side, Key)>,
    waiting: usize,
    seq: u64,
    /// Groups already joined to a partner: one exec raises several alerts sharing its
    /// group, and the ones after the first must join the same partner even though the
    /// first took it out of `pending`.
    joined: HashMap<(Side, String), Joined>,
    joined_order: VecDeque<(Instant, Side, String)>,
}

#[derive(Debug)]
struct Joined {
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
        .or_insert_with(|| Value::Object(serde_json::Map::default()));
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
                t1609_ecs::new_id()
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
            pending: HashMap::new(),
            arrivals: VecDeque::new(),
            waiting: 0,
            seq: 0,
            joined: HashMap::new(),
            joined_order: VecDeque::new(),
        }
    }

    /// Number of alerts waiting for a partner.
    pub fn pending(&self) -> usize {
        self.waiting
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

    /// Forgets waits and joins older than the window, and the oldest past the bound.
    fn expire(&mut self, now: Instant) {
        let window = self.window;
        while let Some((at, ..)) = self.arrivals.front()
            && (now.saturating_duration_since(*at) > window || self.arrivals.len() > MAX_PENDING)
        {
            let Some((_, seq, side, key)) = self.arrivals.pop_front() else {
                break;
            };
            // Waits of one side and key arrive in order: if this one is still waiting,
            // it is the oldest.
            let slot = (side, key);
            if let Some(q) = self.pending.get_mut(&slot)
                && q.front().is_some_and(|p| p.seq == seq)
            {
                q.pop_front();
                self.waiting -= 1;
                if q.is_empty() {
                    self.pending.remove(&slot);
                }
            }
        }
        while let Some((at, ..)) = self.joined_order.front()
            && (now.saturating_duration_since(*at) > window
                || self.joined_order.len() > MAX_PENDING)
        {
            let Some((at, side, group)) = self.joined_order.pop_front() else {
                break;
            };
            let slot = (side, group);
            if self.joined.get(&slot).is_some_and(|j| j.at == at) {
                self.joined.remove(&slot);
            }
        }
    }

    fn observe(&mut self, side: Side, key: Key, alert: &mut Value, now: Instant) {
        self.expire(now);
        let (event_id, group_id) = ids(alert);
        let joined_slot = (side, group_id);
        if let Some(j) = self.joined.get(&joined_slot) {
            set_t1609(alert, "group_id", Value::String(j.group_id.clone()));
            set_t1609(
                alert,
                "correlated_with",
                Value::String(j.correlated_with.clone()),
            );
            return;
        }
        let (_, group_id) = joined_slot;
        // The latest waiting alert of the other side with this key.
        let other_slot = (side.other(), key);
        let (partner, emptied) = match self.pending.get_mut(&other_slot) {
            Some(q) => (q.pop_back(), q.is_empty()),
            None => (None, false),
        };
        if emptied {
            self.pending.remove(&other_slot);
        }
        let (_, key) = other_slot;
        if let Some(other) = partner {
            self.waiting -= 1;
            set_t1609(alert, "group_id", Value::String(other.group_id.clone()));
            set_t1609(
                alert,
                "correlated_with",
                Value::String(other.event_id.clone()),
            );
            self.joined_order.push_back((now, side, group_id.clone()));
            self.joined.insert(
                (side, group_id),
                Joined {
                    group_id: other.group_id,
                    correlated_with: other.event_id,
                    at: now,
                },
            );
            self.expire(now);
            return;
        }
        self.seq += 1;
        self.arrivals.push_back((now, self.seq, side, key.clone()));
        self.pending
            .entry((side, key))
            .or_default()
            .push_back(Pending {
                seq: self.seq,
                event_id,
                group_id,
            });
        self.waiting += 1;
        self.expire(now);
    }
}
