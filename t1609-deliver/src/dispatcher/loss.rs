//! Loss alerts: a sink's drop counter, reported into that sink's own stream.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_ecs::{AlertDoc, RuleRef, Severity};

use crate::Alert;

/// The loss alert: an ECS document with `event.kind` `"alert"`, `rule.id`
/// `"t1609.agent_alert_loss"` and `t1609.loss.count` alerts dropped on `sink` since the
/// previous loss alert (`t1609.loss.total` since start).
#[must_use]
pub fn loss_alert(sink: &str, count: u64, total: u64) -> Value {
    let rule = RuleRef {
        id: "t1609.agent_alert_loss",
        name: "t1609-agent dropped alerts",
        ..RuleRef::default()
    };
    AlertDoc::new(rule, Severity::High)
        .categorized(&["process"], &["info"], None)
        .event("module", json!("t1609"))
        .event("dataset", json!("t1609.agent"))
        .t1609(
            "loss",
            json!({ "sink": sink, "count": count, "total": total }),
        )
        .set(
            "observer",
            json!({ "type": "agent", "product": "t1609-agent" }),
        )
        .message(format!(
            "t1609-agent dropped {count} alert(s) for sink {sink} ({total} since start)"
        ))
        .build()
}

/// What was reported so far: loss alerts go out at most once a second, each with the
/// drops since the previous one.
#[derive(Debug, Default)]
pub(super) struct LossReport {
    reported: u64,
    last: Option<Instant>,
}

impl LossReport {
    /// The loss alert due for `total` drops on `sink` so far, if one is due and `fits`
    /// (can be queued without dropping more). When it does not fit it is not made: it
    /// would only be lost too, and counted as one more drop; a later one reports the
    /// whole count.
    pub fn due(
        &mut self,
        sink: &str,
        total: u64,
        fits: impl FnOnce(&Alert) -> bool,
    ) -> Option<Alert> {
        if total <= self.reported
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        let count = total - self.reported;
        let a = Alert::new(Arc::new(loss_alert(sink, count, total)));
        if !fits(&a) {
            return None;
        }
        tracing::warn!(sink = %sink, count, total, "alerts dropped");
        self.reported = total;
        self.last = Some(Instant::now());
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_alert_document_is_pinned() {
        let mut v = loss_alert("file:/x", 3, 10);
        let id = v["event"]["id"].as_str().unwrap().to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        let at = v["@timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
        v["event"].as_object_mut().unwrap().remove("id");
        v.as_object_mut().unwrap().remove("@timestamp");
        assert_eq!(
            v,
            json!({
                "message": "t1609-agent dropped 3 alert(s) for sink file:/x (10 since start)",
                "event": {
                    "kind": "alert",
                    "category": ["process"],
                    "type": ["info"],
                    "module": "t1609",
                    "dataset": "t1609.agent",
                    "severity": 73,
                    "risk_score": 73,
                },
                "rule": {"id": "t1609.agent_alert_loss", "name": "t1609-agent dropped alerts"},
                "t1609": {
                    "severity": "high",
                    "loss": {"sink": "file:/x", "count": 3, "total": 10},
                },
                "observer": {"type": "agent", "product": "t1609-agent"},
            })
        );
    }

    #[test]
    fn loss_alert_shape() {
        let v = loss_alert("file:/x", 3, 10);
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(v["rule"]["id"], "t1609.agent_alert_loss");
        assert_eq!(v["t1609"]["loss"]["count"], 3);
        assert_eq!(v["event"]["id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn one_report_a_second_and_only_when_it_fits() {
        let mut r = LossReport::default();
        assert!(r.due("s", 0, |_| true).is_none(), "nothing dropped");
        assert!(r.due("s", 2, |_| false).is_none(), "no room");
        let a = r.due("s", 2, |_| true).expect("due");
        assert_eq!(a.doc()["t1609"]["loss"]["count"], 2);
        assert!(r.due("s", 5, |_| true).is_none(), "within a second");
        r.last = Instant::now().checked_sub(Duration::from_secs(2));
        let a = r.due("s", 5, |_| true).expect("due");
        assert_eq!(
            a.doc()["t1609"]["loss"],
            json!({"sink": "s", "count": 3, "total": 5})
        );
    }
}
