//! The "repeated N times" follow-up that closes a dedup window.
//!
//! The first alert of each open window is kept until the window closes, so that its
//! follow-up can repeat it with the count. Kept memory is bounded
//! (`context.dedup_kept_alerts`, 4,096 by default), and no follow-up is lost to the
//! bound: the first eighth of the open windows keep the emitted document itself (shared
//! with the sinks, not copied), the rest a lean copy of its identifying fields; past the
//! bound the follow-up is built from the dedup key. `t1609.repeat_detail` says which
//! (`whole`, `lean`, `key`).
//!
//! Entries leave when their window closes, repeated or not: a stream of distinct alerts
//! costs one shared pointer each and frees them as their windows end, never thousands
//! at once on the hot path.

use std::{collections::HashMap, sync::Arc};

use serde_json::{Map, Value, json};
use t1609_context::DedupKey;
use t1609_detect::{Alert, AlertFields, Confidence, Severity, rules::RuleMeta};
use t1609_ecs::{AlertDoc, RuleRef, new_id};

use crate::{deliver::SentAlert, stats::Counter};

/// The default bound on kept first alerts.
pub const DEFAULT_KEPT: usize = 4096;

/// The fields a lean copy keeps: what identifies the alert to a SIEM, without the
/// process ancestry, user, namespace and container detail of the whole document.
const LEAN_FIELDS: &[&str] = &[
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.severity",
    "event.risk_score",
    "rule",
    "threat",
    "host",
    "process.pid",
    "process.executable",
    "process.command_line",
    "process.parent.executable",
    "container.id",
    "t1609.severity",
    "t1609.confidence",
    "t1609.group_id",
];

enum Kept {
    /// The alert as the sinks share it: its text, parsed when the window closes.
    Whole(SentAlert),
    /// A lean copy of a document built as a `Value` (a kubectl alert).
    Lean(Value),
    /// The fields of a lean copy of an alert written as text.
    Brief(Box<LeanAlert>),
}

/// How a closed window's follow-up was built, for the agent's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Whole,
    Lean,
    Key,
}

impl Detail {
    /// The details' names, in the order of [`Detail::index`].
    pub const NAMES: [&'static str; 3] = ["whole", "lean", "key"];

    pub fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The agent's counter of follow-ups built this way.
    pub fn counter(self) -> Counter {
        match self {
            Detail::Whole => Counter::SummariesWhole,
            Detail::Lean => Counter::SummariesLean,
            Detail::Key => Counter::SummariesKey,
        }
    }
}

/// First alerts of the open dedup windows (see the module docs).
pub struct FirstAlerts {
    /// Kept first alerts, whole or lean.
    max_kept: usize,
    /// Kept whole.
    max_whole: usize,
    kept: HashMap<DedupKey, Kept>,
    /// First alerts of windows the deduper closed when their key came back (it reports
    /// them at its next flush), moved aside so the new window's entry can take the key.
    closing: HashMap<DedupKey, Kept>,
    /// Whole documents in both maps.
    whole: usize,
}

impl Default for FirstAlerts {
    fn default() -> Self {
        Self::new(DEFAULT_KEPT)
    }
}

impl FirstAlerts {
    pub fn new(max_kept: usize) -> Self {
        Self {
            max_kept,
            max_whole: max_kept / 8,
            kept: HashMap::new(),
            closing: HashMap::new(),
            whole: 0,
        }
    }

    /// Keeps `sent`, the first alert of the window just opened for `key`. Past the whole
    /// bound a lean copy is kept: of its document when it was built as one, else of the
    /// alert and the fields it was written with (`written`), so that its text is not
    /// parsed.
    pub fn remember(
        &mut self,
        key: DedupKey,
        sent: &SentAlert,
        written: Option<(&Alert, &dyn AlertFields)>,
    ) {
        let kept = if self.whole < self.max_whole {
            Kept::Whole(sent.clone())
        } else if self.len() < self.max_kept {
            match (sent.parsed(), written) {
                (None, Some((alert, fields))) => {
                    Kept::Brief(Box::new(LeanAlert::new(alert, fields)))
                }
                (Some(doc), _) => Kept::Lean(lean_copy(doc)),
                (None, None) => Kept::Lean(lean_copy(sent.doc())),
            }
        } else {
            return;
        };
        self.insert(key, kept);
    }

    fn insert(&mut self, key: DedupKey, kept: Kept) {
        if matches!(kept, Kept::Whole(_)) {
            self.whole += 1;
        }
        if let Some(previous) = self.kept.remove(&key) {
            // Two reopenings between flushes: the older entry goes (its follow-up is
            // then built from the key).
            let older = self.closing.insert(key.clone(), previous);
            self.forget(older);
        }
        self.kept.insert(key, kept);
    }

    fn forget(&mut self, kept: Option<Kept>) -> Option<Kept> {
        if let Some(Kept::Whole(_)) = kept {
            self.whole -= 1;
        }
        kept
    }

    /// Kept first alerts.
    pub fn len(&self) -> usize {
        self.kept.len() + self.closing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the window of `key`, which closed with `count` alerts, and returns its
    /// follow-up when there were repeats, with an `event.id` of its own. `now` (RFC 3339)
    /// is its time, or `None` to keep the first alert's.
    pub fn close(
        &mut self,
        key: &DedupKey,
        count: u64,
        now: Option<&str>,
    ) -> Option<(Value, Detail)> {
        let kept = match self.closing.remove(key) {
            Some(k) => Some(k),
            None => self.kept.remove(key),
        };
        let kept = self.forget(kept);
        if count <= 1 {
            return None;
        }
        let (mut doc, detail, first_id) = match kept {
            Some(Kept::Whole(sent)) => {
                let mut doc = sent.doc().clone();
                let first = doc["event"]["id"].take();
                (doc, Detail::Whole, first)
            }
            Some(Kept::Lean(mut doc)) => {
                let first = doc["event"]["id"].take();
                (doc, Detail::Lean, first)
            }
            Some(Kept::Brief(lean)) => {
                let mut doc = lean.to_value();
                let first = doc["event"]["id"].take();
                (doc, Detail::Lean, first)
            }
            // Built with an id of its own; the first alert's is not known.
            None => (key_doc(key), Detail::Key, Value::Null),
        };
        if detail != Detail::Key {
            doc["event"]["id"] = json!(new_id());
        }
        if let Some(now) = now {
            doc["@timestamp"] = json!(now);
        }
        let t = &mut doc["t1609"];
        t["repeat_count"] = json!(count);
        t["repeat_of"] = first_id;
        t["repeat_detail"] = json!(detail.as_str());
        let name = doc["rule"]["name"]
            .as_str()
            .or_else(|| doc["rule"]["id"].as_str())
            .unwrap_or("")
            .to_owned();
        doc["message"] = json!(format!("{name} (repeated {count} times)"));
        Some((doc, detail))
    }
}

/// The [`LEAN_FIELDS`] of `doc`, with its event id (the follow-up's `repeat_of`).
fn lean_copy(doc: &Value) -> Value {
    let mut out = Value::Object(Map::new());
    for path in LEAN_FIELDS.iter().copied().chain(["event.id"]) {
        let mut from = doc;
        for part in path.split('.') {
            from = &from[part];
        }
        put(&mut out, path, from.clone());
    }
    out
}

/// Sets the field at dotted `path` of `doc` to `v`, unless `v` is null.
fn put(doc: &mut Value, path: &str, v: Value) {
    if v.is_null() {
        return;
    }
    let mut to = doc;
    for part in path.split('.') {
        to = &mut to[part];
    }
    *to = v;
}

/// What a lean copy keeps of an alert written as text, taken from the alert and what the
/// agent added to it; its document ([`LeanAlert::to_value`]) is what [`lean_copy`] makes
/// of the whole document.
struct LeanAlert {
    rule: Arc<RuleMeta>,
    /// The alert's `threat` (the rule's, or with masquerading added).
    threat: Box<serde_json::value::RawValue>,
    event_id: String,
    event_type: &'static str,
    action: Option<String>,
    severity: Severity,
    risk_score: u8,
    confidence: Confidence,
    group_id: Option<String>,
    host: Value,
    pid: Option<u32>,
    executable: Option<String>,
    command_line: Option<String>,
    parent_executable: Option<String>,
    container_id: Option<String>,
}

impl LeanAlert {
    /// The lean fields of `alert` written with `fields`.
    fn new(alert: &Alert, fields: &dyn AlertFields) -> Self {
        let ev = &alert.event;
        let p = &ev.process;
        let os = &ev.host_os;
        let mut host = json!({});
        put(&mut host, "hostname", json!(ev.host_hostname));
        put(&mut host, "os.type", json!(os.kind));
        put(&mut host, "os.name", json!(os.name));
        put(&mut host, "os.kernel", json!(os.kernel));
        Self {
            rule: alert.rule.clone(),
            threat: alert.threat().to_owned(),
            event_id: alert.event_id.clone(),
            event_type: ev.event_type.as_str(),
            action: ev.action().map(str::to_owned),
            severity: fields.severity().unwrap_or(alert.severity),
            risk_score: alert.risk_score,
            confidence: alert.stated_confidence(),
            group_id: alert.group_id.clone(),
            host: if host.as_object().is_some_and(Map::is_empty) {
                Value::Null
            } else {
                host
            },
            pid: p.pid,
            executable: p.executable.clone(),
            command_line: p.command_line.clone(),
            parent_executable: p.parent.as_ref().and_then(|x| x.executable.clone()),
            container_id: fields
                .container_id()
                .or(ev.container_id.as_deref())
                .map(str::to_owned),
        }
    }

    /// The lean document, as [`lean_copy`] makes it of the whole one.
    fn to_value(&self) -> Value {
        let raw =
            |r: &serde_json::value::RawValue| serde_json::from_str(r.get()).unwrap_or(Value::Null);
        let mut doc = Value::Object(Map::new());
        for (path, v) in [
            ("event.kind", json!("alert")),
            ("event.category", json!(["process"])),
            ("event.type", json!([self.event_type])),
            ("event.action", json!(self.action)),
            ("event.severity", json!(self.severity.ecs_number())),
            ("event.risk_score", json!(self.risk_score)),
            ("event.id", json!(self.event_id)),
            ("rule", raw(self.rule.ecs_rule())),
            ("threat", raw(&self.threat)),
            ("host", self.host.clone()),
            ("process.pid", json!(self.pid)),
            ("process.executable", json!(self.executable)),
            ("process.command_line", json!(self.command_line)),
            ("process.parent.executable", json!(self.parent_executable)),
            ("container.id", json!(self.container_id)),
            ("t1609.severity", json!(self.severity.as_str())),
            ("t1609.confidence", json!(self.confidence.as_str())),
            ("t1609.group_id", json!(self.group_id)),
        ] {
            put(&mut doc, path, v);
        }
        doc
    }
}

/// A follow-up from the dedup key alone: its rule, normalized command line, parent and
/// container. Its first alert's id and severity are not known (`repeat_of` is null).
fn key_doc(key: &DedupKey) -> Value {
    let rule = RuleRef {
        id: &key.rule_id,
        name: &key.rule_id,
        ..Default::default()
    };
    let mut process = json!({"command_line": key.command_line});
    if !key.parent_executable.is_empty() {
        process["parent"] = json!({"executable": key.parent_executable});
    }
    let doc = AlertDoc::without_severity(rule)
        .categorized(&["process"], &["start"], Some("exec"))
        .set("process", process);
    if key.container_id.is_empty() {
        doc.build()
    } else {
        doc.set("container", json!({"id": key.container_id}))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> DedupKey {
        DedupKey::new(
            "t1609.container_exec",
            &format!("docker exec -it c{i}x sh"),
            Some("/bin/bash"),
            None,
        )
    }

    fn doc(i: usize) -> SentAlert {
        SentAlert::new(Arc::new(json!({
            "@timestamp": "2026-11-29T00:00:00Z",
            "event": {"id": format!("alert-{i}"), "kind": "alert", "severity": 73},
            "rule": {"id": "t1609.container_exec", "name": "Container exec"},
            "host": {"hostname": "node-1"},
            "process": {"pid": 42, "command_line": format!("docker exec -it c{i}x sh"),
                        "parent": {"executable": "/bin/bash", "pid": 1}},
            "user": {"name": "root"},
            "t1609": {"severity": "high", "ancestry": [1, 2, 3]},
        })))
    }

    #[test]
    fn windows_without_repeats_leave_no_follow_up_and_no_entry() {
        let mut f = FirstAlerts::default();
        for i in 0..10 {
            f.remember(key(i), &doc(i), None);
        }
        assert_eq!(f.len(), 10);
        for i in 0..10 {
            assert!(f.close(&key(i), 1, None).is_none());
        }
        assert!(f.is_empty());
        assert_eq!(f.whole, 0);
    }

    #[test]
    fn follow_up_repeats_the_whole_first_alert_with_its_count() {
        let mut f = FirstAlerts::default();
        let first = doc(1);
        f.remember(key(1), &first, None);
        let (up, detail) = f.close(&key(1), 7, Some("2026-11-29T00:00:10Z")).unwrap();
        assert_eq!(detail, Detail::Whole);
        assert_eq!(up["t1609"]["repeat_count"], 7);
        assert_eq!(up["t1609"]["repeat_of"], "alert-1");
        assert_eq!(up["t1609"]["repeat_detail"], "whole");
        assert_eq!(
            up["event"]["id"].as_str().map(str::len),
            Some(32),
            "an id of its own"
        );
        assert_eq!(up["@timestamp"], "2026-11-29T00:00:10Z");
        assert_eq!(up["message"], "Container exec (repeated 7 times)");
        // The whole document: the ancestry and user come along.
        assert_eq!(up["t1609"]["ancestry"], json!([1, 2, 3]));
        assert_eq!(up["user"]["name"], "root");
        // The first alert as the sinks hold it is untouched.
        assert!(first.doc()["t1609"]["repeat_count"].is_null());
    }

    #[test]
    fn past_the_whole_bound_follow_ups_are_lean_then_from_the_key() {
        const MAX_KEPT: usize = DEFAULT_KEPT;
        const MAX_WHOLE: usize = DEFAULT_KEPT / 8;
        let mut f = FirstAlerts::default();
        for i in 0..MAX_KEPT + 10 {
            f.remember(key(i), &doc(i), None);
        }
        assert_eq!(f.len(), MAX_KEPT);
        assert_eq!(f.whole, MAX_WHOLE);

        let (up, detail) = f.close(&key(MAX_WHOLE), 3, None).unwrap();
        assert_eq!(detail, Detail::Lean);
        assert_eq!(up["t1609"]["repeat_of"], format!("alert-{MAX_WHOLE}"));
        assert_eq!(up["rule"]["name"], "Container exec");
        assert_eq!(up["host"]["hostname"], "node-1");
        assert_eq!(up["process"]["parent"]["executable"], "/bin/bash");
        assert!(up["user"].is_null(), "lean: no user");
        assert!(up["t1609"]["ancestry"].is_null(), "lean: no ancestry");

        let last = MAX_KEPT + 5;
        let (up, detail) = f.close(&key(last), 4, None).unwrap();
        assert_eq!(detail, Detail::Key);
        assert_eq!(up["t1609"]["repeat_count"], 4);
        assert!(up["t1609"]["repeat_of"].is_null());
        assert_eq!(up["rule"]["id"], "t1609.container_exec");
        assert_eq!(
            up["process"]["command_line"],
            format!("docker exec -it c{last}x sh")
        );
        assert_eq!(up["message"], "t1609.container_exec (repeated 4 times)");

        // A closed whole window frees its place for the next first alert.
        f.close(&key(0), 1, None);
        f.remember(key(100_000), &doc(100_000), None);
        assert_eq!(f.whole, MAX_WHOLE);
        let (_, detail) = f.close(&key(100_000), 2, None).unwrap();
        assert_eq!(detail, Detail::Whole);
    }

    /// The deduper closes a window when its key comes back after it and reports the
    /// count at its next flush, before the new window's: each follow-up must repeat its
    /// own window's first alert.
    #[test]
    fn a_window_reopened_before_the_flush_keeps_both_first_alerts_apart() {
        let mut f = FirstAlerts::default();
        f.remember(key(1), &doc(1), None);
        f.remember(key(1), &doc(2), None);
        assert_eq!((f.len(), f.whole), (2, 2));
        let (old, _) = f.close(&key(1), 5, None).unwrap();
        assert_eq!(old["t1609"]["repeat_of"], "alert-1");
        assert_eq!(old["t1609"]["repeat_count"], 5);
        let (new, _) = f.close(&key(1), 2, None).unwrap();
        assert_eq!(new["t1609"]["repeat_of"], "alert-2");
        assert_eq!((f.len(), f.whole), (0, 0));
    }
}
