//! What other crates add to an alert document written by the fast path:
//! [`AlertFields`], a writer's hooks into three objects of the document (`container`,
//! the top level, `t1609`) and the severity, and [`Members`], with which a hook writes
//! typed values straight into the text. The agent's context, its exceptions' verdict,
//! its exec targets and the executed file's identity are such writers; tuples of writers
//! are one writer.

use serde_json::{Map, Value};
use t1609_ecs::Severity;

use super::{push_str, push_u64};

/// Fields a caller adds to an alert that `Alert::json_with` writes. Every hook but
/// [`AlertFields::add_to_value`] has a default that adds nothing.
///
/// A key must appear once per object: a hook writes keys that neither the alert nor the
/// other writers of a tuple write. `container.id` is the one member a writer may replace
/// ([`AlertFields::container_id`]); the severity is replaced through
/// [`AlertFields::severity`].
pub trait AlertFields {
    /// The same fields added to the document built as a `Value` (`Alert::to_ecs_with`):
    /// the definition, which the text hooks must match (tests compare the two).
    fn add_to_value(&self, doc: &mut Value);
    /// A severity replacing the rule's (`event.severity`, `t1609.severity`).
    fn severity(&self) -> Option<Severity> {
        None
    }
    /// `container.id`, replacing the event's.
    fn container_id(&self) -> Option<&str> {
        None
    }
    /// Members inside `container`, written before the event's `id` and
    /// `security_context`. The object is written only when some writer adds a member
    /// or calls [`Members::touch`].
    fn container(&self, _c: &mut Members<'_>) {}
    /// Members inside `t1609`, after the alert's own.
    fn t1609(&self, _t: &mut Members<'_>) {}
    /// Top-level members, after `t1609`.
    fn top(&self, _doc: &mut Members<'_>) {}
}

impl<F: AlertFields + ?Sized> AlertFields for &F {
    fn add_to_value(&self, doc: &mut Value) {
        (**self).add_to_value(doc);
    }
    fn severity(&self) -> Option<Severity> {
        (**self).severity()
    }
    fn container_id(&self) -> Option<&str> {
        (**self).container_id()
    }
    fn container(&self, c: &mut Members<'_>) {
        (**self).container(c);
    }
    fn t1609(&self, t: &mut Members<'_>) {
        (**self).t1609(t);
    }
    fn top(&self, doc: &mut Members<'_>) {
        (**self).top(doc);
    }
}

/// Writers of a tuple write in order; the first that replaces the severity or the
/// container id wins.
macro_rules! tuple_fields {
    ($($t:ident $i:tt),+) => {
        impl<$($t: AlertFields),+> AlertFields for ($($t,)+) {
            fn add_to_value(&self, doc: &mut Value) {
                $(self.$i.add_to_value(doc);)+
            }
            fn severity(&self) -> Option<Severity> {
                None$(.or_else(|| self.$i.severity()))+
            }
            fn container_id(&self) -> Option<&str> {
                None$(.or_else(|| self.$i.container_id()))+
            }
            fn container(&self, c: &mut Members<'_>) {
                $(self.$i.container(c);)+
            }
            fn t1609(&self, t: &mut Members<'_>) {
                $(self.$i.t1609(t);)+
            }
            fn top(&self, doc: &mut Members<'_>) {
                $(self.$i.top(doc);)+
            }
        }
    };
}

tuple_fields!(A 0, B 1);
tuple_fields!(A 0, B 1, C 2);
tuple_fields!(A 0, B 1, C 2, D 3);
tuple_fields!(A 0, B 1, C 2, D 3, E 4);

/// The generic fallback, for one-off fields: members as `serde_json` values, one map per
/// object. Typed writers are cheaper; this is for what is rare.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraFields {
    pub container: Map<String, Value>,
    pub t1609: Map<String, Value>,
    pub top: Map<String, Value>,
}

impl AlertFields for ExtraFields {
    fn add_to_value(&self, doc: &mut Value) {
        let Some(obj) = doc.as_object_mut() else {
            return;
        };
        for (key, extra) in [("container", &self.container), ("t1609", &self.t1609)] {
            if !extra.is_empty()
                && let Some(o) = obj
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
            {
                o.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        obj.extend(self.top.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    fn container(&self, c: &mut Members<'_>) {
        c.extend(&self.container);
    }
    fn t1609(&self, t: &mut Members<'_>) {
        t.extend(&self.t1609);
    }
    fn top(&self, doc: &mut Members<'_>) {
        doc.extend(&self.top);
    }
}

/// The members of one JSON object being written: each call writes one member, with its
/// separator; strings are escaped as `serde_json` escapes them.
pub struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// What opens the object (`,"container":{`) while nothing is written yet; `None` once
    /// it is open.
    unopened: Option<&'static [u8]>,
}

impl<'a> Members<'a> {
    /// A new object: writes its `{`.
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Members {
            out,
            first: true,
            unopened: None,
        }
    }

    /// An object already open, with members when `first` is false.
    pub(crate) fn resume(out: &'a mut Vec<u8>, first: bool) -> Self {
        Members {
            out,
            first,
            unopened: None,
        }
    }

    /// An object written only if it gets a member: `opening` (`,"key":{`) goes first.
    pub(crate) fn lazy(out: &'a mut Vec<u8>, opening: &'static [u8]) -> Self {
        Members {
            out,
            first: true,
            unopened: Some(opening),
        }
    }

    /// Closes the object, if it was written.
    pub(crate) fn close(self) {
        if self.unopened.is_none() {
            self.out.push(b'}');
        }
    }

    /// One object, its members written by `f`, as JSON text (for tests and one-off
    /// documents).
    pub fn object_text(f: impl FnOnce(&mut Members<'_>)) -> String {
        let mut out = Vec::new();
        let mut o = Members::open(&mut out);
        f(&mut o);
        o.close();
        // Written from `&str`s and ASCII punctuation: always UTF-8.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Writes the object even if it gets no member (`"container":{}`).
    pub fn touch(&mut self) {
        if let Some(opening) = self.unopened.take() {
            self.out.extend_from_slice(opening);
        }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.touch();
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    pub fn str(&mut self, key: &str, v: &str) {
        push_str(self.key(key), v);
    }

    pub fn opt_str(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }

    /// A string, or `null` when `None` (what `json!(option)` writes).
    pub fn str_or_null(&mut self, key: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(key, v),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    pub fn num(&mut self, key: &str, v: u64) {
        push_u64(self.key(key), v);
    }

    pub fn bool(&mut self, key: &str, v: bool) {
        self.key(key)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// An array of strings.
    pub fn strs<S: AsRef<str>>(&mut self, key: &str, v: &[S]) {
        let out = self.key(key);
        out.push(b'[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, s.as_ref());
        }
        out.push(b']');
    }

    /// A nested object, its members written by `f`.
    pub fn object(&mut self, key: &str, f: impl FnOnce(&mut Members<'_>)) {
        let mut o = Members::open(self.key(key));
        f(&mut o);
        o.close();
    }

    /// An array of objects, one per item, each written by `f`.
    pub fn objects<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Members<'_>, T),
    ) {
        let out = self.key(key);
        out.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut o = Members::open(out);
            f(&mut o, item);
            o.close();
        }
        out.push(b']');
    }

    /// Any value (the generic fallback).
    pub fn value(&mut self, key: &str, v: &Value) {
        let out = self.key(key);
        // Into a Vec, and a Value's keys are strings: this cannot fail.
        let _ = serde_json::to_writer(out, v);
    }

    /// Every member of `m` (the generic fallback).
    pub fn extend(&mut self, m: &Map<String, Value>) {
        for (k, v) in m {
            self.value(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_write_the_json_serde_json_writes() {
        let mut out = Vec::new();
        let mut o = Members::open(&mut out);
        o.str("a\"b", "x\ny\u{1}");
        o.opt_str("skipped", None);
        o.str_or_null("n", None);
        o.num("big", u64::MAX);
        o.bool("t", true);
        o.strs("tags", &["a", "é\u{0}"]);
        o.object("o", |o| o.num("z", 0));
        o.objects("list", [1u64, 2], |o, i| o.num("i", i));
        o.value("v", &json!({"k": [1.5, null, "s"]}));
        let mut lazy = Members::lazy(o.key("ignored"), b"{");
        lazy.touch();
        lazy.close();
        o.close();
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            got,
            json!({"a\"b": "x\ny\u{1}", "n": null, "big": u64::MAX, "t": true,
                   "tags": ["a", "é\u{0}"], "o": {"z": 0}, "list": [{"i": 1}, {"i": 2}],
                   "v": {"k": [1.5, null, "s"]}, "ignored": {}}),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(serde_json::to_vec(&got).unwrap().len(), out.len());
    }

    #[test]
    fn a_lazy_object_without_members_is_not_written() {
        let mut out = b"{\"a\":1".to_vec();
        Members::lazy(&mut out, b",\"c\":{").close();
        assert_eq!(out, b"{\"a\":1");
        let mut m = Members::lazy(&mut out, b",\"c\":{");
        m.str("id", "x");
        m.close();
        assert_eq!(out, b"{\"a\":1,\"c\":{\"id\":\"x\"}");
    }
}
