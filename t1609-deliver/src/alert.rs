//! The unit of delivery: the ECS document plus its one-line JSON form, serialized once.

use std::sync::Arc;

use serde_json::Value;

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
}
