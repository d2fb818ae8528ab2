//! The ECS alert document builder for every alert that is not a process-rule hit
//! (those are serialised by `t1609-detect`'s typed fast path with the same skeleton).

use serde_json::{Map, Value, json};

use crate::{Severity, Threat, new_id, now_rfc3339};

/// The `rule` object of an alert.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuleRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub reference: Option<&'a str>,
}

/// An ECS alert document under construction. [`AlertDoc::new`] writes the skeleton
/// every alert shares; the other methods add or replace parts of it.
///
/// ```
/// use t1609_ecs::{AlertDoc, RuleRef, Severity, Threat};
/// let doc = AlertDoc::new(RuleRef { id: "t1609.example", name: "Example", ..Default::default() }, Severity::High)
///     .threat(&Threat::of(&["TA0002"], &["T1609"]))
///     .message("something happened")
///     .build();
/// assert_eq!(doc["event"]["severity"], 73);
/// assert_eq!(doc["t1609"]["severity"], "high");
/// ```
#[derive(Clone, Debug)]
pub struct AlertDoc(Map<String, Value>);

impl AlertDoc {
    /// `@timestamp` now; `event.kind: alert`, a new `event.id`, `event.severity` and
    /// `event.risk_score` the severity's ECS number; `rule`; `t1609.severity`.
    pub fn new(rule: RuleRef<'_>, severity: Severity) -> Self {
        let mut r = json!({"id": rule.id, "name": rule.name});
        if let Some(d) = rule.description {
            r["description"] = json!(d);
        }
        if let Some(u) = rule.reference {
            r["reference"] = json!(u);
        }
        let mut doc = Map::new();
        doc.insert("@timestamp".into(), json!(now_rfc3339()));
        doc.insert(
            "event".into(),
            json!({
                "kind": "alert",
                "id": new_id(),
                "severity": severity.ecs_number(),
                "risk_score": severity.ecs_number(),
            }),
        );
        doc.insert("rule".into(), r);
        doc.insert("t1609".into(), json!({"severity": severity.as_str()}));
        Self(doc)
    }

    /// An alert whose severity is not known where it is built (a follow-up rebuilt from
    /// what identifies it): the skeleton without `event.severity`, `event.risk_score`
    /// and `t1609.severity`.
    pub fn without_severity(rule: RuleRef<'_>) -> Self {
        let mut doc = Self::new(rule, Severity::Low);
        let event = doc.object("event");
        event.remove("severity");
        event.remove("risk_score");
        doc.object("t1609").remove("severity");
        doc
    }

    fn object(&mut self, key: &str) -> &mut Map<String, Value> {
        let v = self.0.entry(key).or_insert_with(|| json!({}));
        if !v.is_object() {
            *v = json!({});
        }
        v.as_object_mut().expect("made an object above")
    }

    /// Replaces `event.id`.
    #[must_use]
    pub fn id(self, id: impl Into<String>) -> Self {
        self.event("id", json!(id.into()))
    }

    /// Replaces `@timestamp` (RFC 3339).
    #[must_use]
    pub fn timestamp(mut self, at: impl Into<String>) -> Self {
        self.0.insert("@timestamp".into(), json!(at.into()));
        self
    }

    /// Replaces `event.risk_score` (0–100).
    #[must_use]
    pub fn risk_score(self, score: u8) -> Self {
        self.event("risk_score", json!(score))
    }

    /// `event.category`, `event.type` and, when given, `event.action`.
    #[must_use]
    pub fn categorized(self, category: &[&str], types: &[&str], action: Option<&str>) -> Self {
        let this = self
            .event("category", json!(category))
            .event("type", json!(types));
        match action {
            Some(a) => this.event("action", json!(a)),
            None => this,
        }
    }

    /// Sets `event.<key>`.
    #[must_use]
    pub fn event(mut self, key: &str, value: Value) -> Self {
        self.object("event").insert(key.into(), value);
        self
    }

    /// `threat`.
    #[must_use]
    pub fn threat(self, threat: &Threat) -> Self {
        self.set("threat", threat.to_ecs())
    }

    /// `message`: one line a person reads.
    #[must_use]
    pub fn message(self, text: impl Into<String>) -> Self {
        self.set("message", json!(text.into()))
    }

    /// `host.hostname` (null when unknown).
    #[must_use]
    pub fn host(self, hostname: Option<&str>) -> Self {
        self.set("host", json!({"hostname": hostname}))
    }

    /// `t1609.group_id`: shared by the alerts of one incident.
    #[must_use]
    pub fn group(self, group_id: impl Into<String>) -> Self {
        self.t1609("group_id", json!(group_id.into()))
    }

    /// Sets `t1609.<key>`.
    #[must_use]
    pub fn t1609(mut self, key: &str, value: Value) -> Self {
        self.object("t1609").insert(key.into(), value);
        self
    }

    /// Sets a top-level field (`process`, `container`, `destination`...), replacing it.
    #[must_use]
    pub fn set(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    pub fn build(self) -> Value {
        Value::Object(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeleton_then_parts() {
        let doc = AlertDoc::new(
            RuleRef {
                id: "t1609.x",
                name: "X",
                description: Some("d"),
                reference: None,
            },
            Severity::Medium,
        )
        .categorized(&["network"], &["connection", "start"], Some("connect"))
        .risk_score(50)
        .group("g")
        .t1609("extra", json!(1))
        .host(None)
        .id("fixed")
        .build();
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["id"], "fixed");
        assert_eq!(doc["event"]["severity"], 47);
        assert_eq!(doc["event"]["risk_score"], 50);
        assert_eq!(doc["event"]["type"], json!(["connection", "start"]));
        assert_eq!(doc["event"]["action"], "connect");
        assert_eq!(
            doc["rule"],
            json!({"id": "t1609.x", "name": "X", "description": "d"})
        );
        assert_eq!(
            doc["t1609"],
            json!({"severity": "medium", "group_id": "g", "extra": 1})
        );
        assert!(doc["host"]["hostname"].is_null());
        assert!(doc["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn without_severity_leaves_no_severity() {
        let doc = AlertDoc::without_severity(RuleRef {
            id: "r",
            name: "r",
            ..Default::default()
        })
        .build();
        assert!(doc["event"]["severity"].is_null() && doc["event"]["risk_score"].is_null());
        assert!(doc["t1609"]["severity"].is_null());
        assert_eq!(doc["event"]["kind"], "alert");
    }

    #[test]
    fn each_alert_gets_its_own_id() {
        let rule = RuleRef {
            id: "r",
            name: "r",
            ..Default::default()
        };
        let a = AlertDoc::new(rule, Severity::Low).build();
        let b = AlertDoc::new(rule, Severity::Low).build();
        assert_ne!(a["event"]["id"], b["event"]["id"]);
    }
}
