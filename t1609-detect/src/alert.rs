//! Alerts and their ECS documents.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, value::RawValue};
use t1609_ecs::{Confidence, Severity};

use crate::{argv::Invocation, event::ProcessEvent, rules::RuleMeta};

/// One rule hit on one event.
#[derive(Clone, Debug)]
pub struct Alert {
    pub rule_id: String,
    pub rule_name: String,
    pub severity: Severity,
    pub risk_score: u8,
    pub confidence: Confidence,
    /// This alert's own unique `event.id`.
    pub event_id: String,
    /// Shared by the alerts of one event and by a wrapper's alert and its inner command's.
    pub group_id: Option<String>,
    /// `event.id` of the process event, when it had one.
    pub source_event_id: Option<String>,
    /// Detection time (RFC 3339).
    pub created: String,
    pub rule: Arc<RuleMeta>,
    pub event: Arc<ProcessEvent>,
    /// The parsed command the rule matched (the inner one for wrappers).
    pub argv: Option<Arc<Invocation>>,
}

impl Alert {
    /// The confidence the alert states: its rule's, one step lower when the tool was
    /// recognised by the shape of its arguments alone (no name, no file identity).
    pub fn stated_confidence(&self) -> Confidence {
        if self.argv.as_deref().is_some_and(Invocation::shape_only) {
            self.confidence.lowered()
        } else {
            self.confidence
        }
    }

    /// The pre-serialised `threat`: the rule's, plus masquerading (T1036.003) when the
    /// command ran under a name that lies (`Invocation::extra_techniques`).
    pub fn threat(&self) -> &RawValue {
        let masquerade = self
            .argv
            .as_deref()
            .is_some_and(|inv| !inv.extra_techniques().is_empty());
        if masquerade {
            &self.rule.ecs_threat_masquerade
        } else {
            &self.rule.ecs_threat
        }
    }

    /// The alert as one ECS document. `Alert::write_json` (in `fastjson`, which depends
    /// on this module, not the reverse) writes the same document faster.
    pub fn to_ecs(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = &*self.rule;
        // The alert's time is the exec's when known (detection time is event.created).
        let ts = self.event.timestamp.as_deref().unwrap_or(&self.created);
        let mut doc = self.event.ecs_doc(
            AlertMeta {
                kind: "alert",
                id: &self.event_id,
                severity: self.severity.ecs_number(),
                risk_score: self.risk_score,
                category: ["process"],
                kind_type: [self.event.event_type.as_str()],
                action: self.event.action(),
                created: &self.created,
            },
            AlertExtra {
                rule: &r.ecs_rule,
                threat: self.threat(),
            },
            AlertT1609 {
                severity: self.severity.as_str(),
                confidence: self.stated_confidence().as_str(),
                group_id: self.group_id.as_deref(),
                event_id: self.source_event_id.as_deref(),
                argv: self.argv.as_deref(),
            },
        );
        doc.ts = Some(ts);
        doc.serialize(s)
    }
}

#[derive(Serialize)]
struct AlertMeta<'a> {
    kind: &'static str,
    id: &'a str,
    severity: u8,
    risk_score: u8,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_type: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    created: &'a str,
}

#[derive(Serialize)]
struct AlertExtra<'a> {
    rule: &'a RawValue,
    threat: &'a RawValue,
}

#[derive(Serialize)]
struct AlertT1609<'a> {
    severity: &'static str,
    confidence: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv: Option<&'a Invocation>,
}
