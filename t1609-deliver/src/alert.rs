//! The unit of delivery: an alert's one-line JSON text, and its ECS document, parsed
//! from the text only when a sink reads fields (journald) or a test asks.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// An alert as the sinks see it. Cloning is cheap (one `Arc`); the clones share the
/// text and the parsed document.
#[derive(Debug, Clone)]
pub struct Alert(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    json: Box<str>,
    doc: OnceLock<Arc<Value>>,
}

impl Alert {
    /// Wraps an ECS document and serializes it to compact JSON. `serde_json` escapes every
    /// control character inside strings (`\n`, `\r`, `\u0000`, `\u001b`, ...), so the
    /// result is always exactly one line.
    #[must_use]
    pub fn new(doc: Arc<Value>) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings and it holds no NaN.
        let json = serde_json::to_string(&*doc).unwrap_or_else(|_| String::from("{}"));
        debug_assert!(!json.contains('\n'));
        Self(Arc::new(Inner {
            json: json.into_boxed_str(),
            doc: OnceLock::from(doc),
        }))
    }

    /// An alert already written as one line of compact JSON (the agent's fast path,
    /// `t1609_detect::Alert::json_with`). Sinks that write text never parse it; the
    /// document is parsed on the first [`Alert::doc`].
    #[must_use]
    pub fn from_text(json: String) -> Self {
        debug_assert!(!json.contains('\n'));
        Self(Arc::new(Inner {
            json: json.into_boxed_str(),
            doc: OnceLock::new(),
        }))
    }

    /// Rebuilds an alert from a JSON line read back from the spool.
    ///
    /// # Errors
    /// When the line is not valid JSON.
    pub fn from_json(line: &[u8]) -> Result<Self, serde_json::Error> {
        let doc: Value = serde_json::from_slice(line)?;
        // Valid JSON is UTF-8; the line is kept as it was written.
        Ok(match std::str::from_utf8(line) {
            Ok(text) if !text.contains('\n') => Self(Arc::new(Inner {
                json: text.into(),
                doc: OnceLock::from(Arc::new(doc)),
            })),
            _ => Self::new(Arc::new(doc)),
        })
    }

    /// The ECS document, parsed from the text the first time it is asked for.
    #[must_use]
    pub fn doc(&self) -> &Value {
        self.0
            .doc
            .get_or_init(|| Arc::new(serde_json::from_str(&self.0.json).unwrap_or(Value::Null)))
    }

    /// The ECS document if it is at hand (made from one, or parsed already); never parses.
    #[must_use]
    pub fn parsed(&self) -> Option<&Value> {
        self.0.doc.get().map(|d| &**d)
    }

    /// The document as one line of compact JSON, without the trailing newline.
    #[must_use]
    pub fn json(&self) -> &str {
        &self.0.json
    }

    /// A string field by dotted path (`"process.command_line"`), if present.
    #[must_use]
    pub fn str_field(&self, path: &str) -> Option<&str> {
        self.field(path).and_then(Value::as_str)
    }

    /// Any field by dotted path.
    #[must_use]
    pub fn field(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.doc(), |v, k| v.get(k))
    }

    /// `event.id`, used by consumers to drop duplicates.
    #[must_use]
    pub fn event_id(&self) -> Option<&str> {
        self.str_field("event.id")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
    fn text_is_parsed_once_on_demand_and_shared_by_clones() {
        let a = Alert::from_text(r#"{"event":{"id":"e1"},"rule":{"id":"r"}}"#.to_owned());
        let b = a.clone();
        assert!(a.parsed().is_none(), "not parsed until asked");
        assert_eq!(b.str_field("rule.id"), Some("r"));
        assert_eq!(a.parsed().map(|d| &d["event"]["id"]), Some(&json!("e1")));
        assert_eq!(a.json(), b.json());
        let made = Alert::new(Arc::new(json!({"a": 1})));
        assert_eq!(made.parsed(), Some(&json!({"a": 1})));
    }

    #[test]
    fn a_spooled_line_comes_back_as_written() {
        let line = br#"{"z":1,"a":"x\ny"}"#;
        let a = Alert::from_json(line).unwrap();
        assert_eq!(a.json().as_bytes(), line);
        assert_eq!(a.parsed(), Some(&json!({"z": 1, "a": "x\ny"})));
        assert!(Alert::from_json(b"{not json").is_err());
    }
}
