//! The unit of delivery: the ECS document plus its one-line JSON form, serialized once.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};

/// An alert as the sinks see it. Cloning is cheap (two `Arc`s).
#[derive(Debug, Clone)]
pub struct Alert {
    doc: Arc<Value>,
    json: Arc<str>,
}

impl Alert {
    /// Wraps an ECS document and serializes it to compact JSON. `serde_json` escapes every
    /// control character inside strings (`\n`, `\r`, `\u0000`, `\u001b`, ...), so the
    /// result is always exactly one line.
    #[must_use]
    pub fn new(doc: Arc<Value>) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings and it holds no NaN.
        let json: Arc<str> = serde_json::to_string(&*doc)
            .unwrap_or_else(|_| String::from("{}"))
            .into();
        debug_assert!(!json.contains('\n'));
        Self { doc, json }
    }

    /// Rebuilds an alert from a JSON line read back from the spool.
    ///
    /// # Errors
    /// When the line is not valid JSON.
    pub fn from_json(line: &[u8]) -> Result<Self, serde_json::Error> {
        let doc: Value = serde_json::from_slice(line)?;
        Ok(Self::new(Arc::new(doc)))
    }

    /// The ECS document.
    #[must_use]
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The document as one line of compact JSON, without the trailing newline.
    #[must_use]
    pub fn json(&self) -> &str {
        &self.json
    }

    /// A string field by dotted path (`"process.command_line"`), if present.
    #[must_use]
    pub fn str_field(&self, path: &str) -> Option<&str> {
        self.field(path).and_then(Value::as_str)
    }

    /// Any field by dotted path.
    #[must_use]
    pub fn field(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&*self.doc, |v, k| v.get(k))
    }

    /// `event.id`, used by consumers to drop duplicates.
    #[must_use]
    pub fn event_id(&self) -> Option<&str> {
        self.str_field("event.id")
    }
}

/// A random 128-bit id as 32 lowercase hex digits (from `getrandom(2)`).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    // SAFETY: the buffer is valid for 16 bytes of writes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 16 {
        // Fall back on time and pid; uniqueness, not secrecy, is what matters here.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The loss alert: an ECS document with `event.kind` `"alert"`, `rule.id`
/// `"t1609.agent_alert_loss"` and `t1609.loss.count` alerts dropped on `sink` since the
/// previous loss alert (`t1609.loss.total` since start).
#[must_use]
pub fn loss_alert(sink: &str, count: u64, total: u64) -> Value {
    json!({
        "@timestamp": now_rfc3339(),
        "message": format!("t1609-agent dropped {count} alert(s) for sink {sink} ({total} since start)"),
        "event": {
            "id": random_id(),
            "kind": "alert",
            "category": ["process"],
            "type": ["info"],
            "module": "t1609",
            "dataset": "t1609.agent",
            "severity": 73,
            "risk_score": 73,
        },
        "rule": {
            "id": "t1609.agent_alert_loss",
            "name": "t1609-agent dropped alerts",
        },
        "t1609": {
            "severity": "high",
            "loss": { "sink": sink, "count": count, "total": total },
        },
        "observer": { "type": "agent", "product": "t1609-agent" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_stay_on_one_line() {
        let hostile = "a\nb\r\nPRIORITY=0\n\u{0}\u{1b}[31mred\u{2028}\u{85}\"}{";
        let doc = Arc::new(json!({"process": {"command_line": hostile}, "event": {"id": "x"}}));
        let a = Alert::new(doc.clone());
        assert!(!a.json().contains('\n'));
        assert!(!a.json().contains('\r'));
        assert!(!a.json().contains('\0'));
        assert!(!a.json().contains('\u{1b}'));
        let back = Alert::from_json(a.json().as_bytes()).unwrap();
        assert_eq!(back.doc(), &*doc);
        assert_eq!(back.str_field("process.command_line"), Some(hostile));
        assert_eq!(back.event_id(), Some("x"));
    }

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
}
