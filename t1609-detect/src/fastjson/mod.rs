//! Hand-written alert JSON: [`Alert::write_json`], the fast path.
//!
//! Writes byte for byte the document that the `Serialize` impls produce (`serde_json`'s
//! compact formatter: same key order, same omissions, same string escaping), without
//! going through serde's map/flatten machinery and with a faster escaper. The
//! `Serialize` impls remain the definition of the document (`Alert::to_ecs` uses them);
//! `tests/alert_json.rs` checks the two agree on the corpus and against a golden file.
//! A field added to the event, the alert or [`Invocation`] must be added here too.
//!
//! [`Alert::json_with`] writes the same document with what other crates add
//! ([`AlertFields`], in `fields`): the agent's context, verdict and exec target go into
//! the text as it is written, so that the agent never builds a `Value` for an alert. The
//! event's part is cached per event with the place of its `container` member, which is
//! rewritten per alert when fields add to it.

use std::{
    cell::RefCell,
    ops::Range,
    sync::{Arc, Weak},
};

use crate::{alert::Alert, argv::Invocation, event::ProcessEvent};

/// JSON string contents escaped exactly as `serde_json` does: `"` and `\`, the short forms
/// `\b \t \n \f \r`, other control bytes as `\u00xx` (lowercase hex); nothing else.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Most strings need no escaping: a cheap check, then a single copy. The escaping
    // loop lives apart so that this common path is small enough to inline.
    if needs_escape(b) {
        push_escaped(out, b);
        return;
    }
    out.reserve(b.len() + 2);
    out.push(b'"');
    out.extend_from_slice(b);
    out.push(b'"');
}

#[cold]
#[inline(never)]
fn push_escaped(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c >= 0x20 && c != b'"' && c != b'\\' {
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 0xf)],
                ]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Whether `b` holds a control byte, `"` or `\\`. Most strings are a few bytes long
/// (flags, ids, names), so short ones are tested as one word, loaded as two overlapping
/// halves; longer ones sixteen bytes per step with no early exit inside a step, so that
/// the test compiles to vector compares, ending on the last sixteen bytes (overlap is
/// harmless).
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte of `x` is below `n` (n <= 0x80); exact as a yes/no answer.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0;
    let has = |x: u64, c: u8| below(x ^ (ONES * u64::from(c)), 1);
    let word = |x: u64| below(x, 0x20) | has(x, b'"') | has(x, b'\\');
    // `|`, not `||`: no branch per byte, so the checks below compile to vector compares.
    #[expect(
        clippy::needless_bitwise_bool,
        reason = "branch-free on purpose, see above"
    )]
    let special = |c: u8| (c < 0x20) | (c == b'"') | (c == b'\\');
    let block = |c: &[u8; 16]| c.iter().fold(false, |acc, &x| acc | special(x));
    let n = b.len();
    if n < 4 {
        return b.iter().fold(false, |acc, &x| acc | special(x));
    }
    if n < 8 {
        let (Some(lo), Some(hi)) = (b.first_chunk::<4>(), b.last_chunk::<4>()) else {
            return false;
        };
        let x = u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << 32;
        return word(x);
    }
    if n < 16 {
        let (Some(lo), Some(hi)) = (b.first_chunk::<8>(), b.last_chunk::<8>()) else {
            return false;
        };
        return word(u64::from_le_bytes(*lo)) | word(u64::from_le_bytes(*hi));
    }
    let mut chunks = b.chunks_exact(16);
    for c in &mut chunks {
        if let Ok(c) = <&[u8; 16]>::try_from(c)
            && block(c)
        {
            return true;
        }
    }
    !chunks.remainder().is_empty() && b.last_chunk::<16>().is_some_and(block)
}

/// Decimal digits of `n` (what `n.to_string()` gives), in `tmp`. Two digits per
/// division: PIDs and counts are written for every event.
pub(crate) fn u64_digits(mut n: u64, tmp: &mut [u8; 20]) -> &[u8] {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut i = tmp.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i] = PAIRS[d];
        tmp[i + 1] = PAIRS[d + 1];
    }
    // n < 100 from here: the `%` below changes no value, it only bounds the casts.
    if n >= 10 {
        let d = (n % 100) as usize * 2;
        i -= 2;
        tmp[i] = PAIRS[d];
        tmp[i + 1] = PAIRS[d + 1];
    } else {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
    }
    &tmp[i..]
}

pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        // Flags, counts and ids are mostly one digit (`% 10` bounds the cast, n < 10).
        out.push(b'0' + (n % 10) as u8);
    } else {
        out.extend_from_slice(u64_digits(n, &mut [0u8; 20]));
    }
}

/// `,"name":`, the form [`Obj::key`] takes: a member's separator and key written in one
/// copy. Keys are plain ASCII identifiers.
macro_rules! k {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// Writes object members, handling the commas.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

// After `k!`, which it uses (macros are scoped by text order).
mod event;
mod fields;

use event::write_event_part;
pub use fields::{AlertFields, ExtraFields, Members};

#[expect(
    clippy::inline_always,
    reason = "inlined, each key is a copy of known length rather than a memcpy call"
)]
impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }
    /// Continues an object whose `{` (and possibly members) are already written.
    fn resume(out: &'a mut Vec<u8>, first: bool) -> Self {
        Obj { out, first }
    }
    /// `,"key":` from [`k!`], without the comma for the first member: one copy.
    /// Inlined, as are the members below, so that each key is a copy of known length
    /// rather than a `memcpy` call.
    #[inline(always)]
    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if self.first {
            self.out.extend_from_slice(&k.as_bytes()[1..]);
        } else {
            self.out.extend_from_slice(k.as_bytes());
        }
        self.first = false;
        self.out
    }
    #[inline(always)]
    fn str(&mut self, k: &str, v: &str) {
        push_str(self.key(k), v);
    }
    /// A string known to need no escaping (one of our own static names).
    #[inline(always)]
    fn static_str(&mut self, k: &str, v: &'static str) {
        let out = self.key(k);
        out.reserve(v.len() + 2);
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    }
    #[inline(always)]
    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }
    #[inline(always)]
    fn num(&mut self, k: &str, v: u64) {
        push_u64(self.key(k), v);
    }
    #[inline(always)]
    fn opt_num<T: Into<u64>>(&mut self, k: &str, v: Option<T>) {
        if let Some(v) = v {
            self.num(k, v.into());
        }
    }
    #[inline(always)]
    fn bool(&mut self, k: &str, v: bool) {
        let out = self.key(k);
        out.extend_from_slice(if v { b"true" } else { b"false" });
    }
    #[inline(always)]
    fn opt_bool(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.bool(k, v);
        }
    }
    #[inline(always)]
    fn true_only(&mut self, k: &str, v: bool) {
        if v {
            self.bool(k, true);
        }
    }
    #[inline(always)]
    fn strs(&mut self, k: &str, v: &[String]) {
        let out = self.key(k);
        push_strs(out, v);
    }
    #[inline(always)]
    fn opt_strs(&mut self, k: &str, v: Option<&[String]>) {
        if let Some(v) = v {
            self.strs(k, v);
        }
    }
    #[inline(always)]
    fn nonempty_strs(&mut self, k: &str, v: &[String]) {
        if !v.is_empty() {
            self.strs(k, v);
        }
    }
    fn close(self) {
        self.out.push(b'}');
    }
}

fn push_strs(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, s);
    }
    out.push(b']');
}

fn write_invocation(out: &mut Vec<u8>, inv: &Invocation) {
    let mut o = Obj::open(out);
    o.str(k!("tool"), &inv.tool);
    o.opt_str(k!("verb"), inv.verb.as_deref());
    o.opt_str(k!("container"), inv.container.as_deref());
    o.opt_str(k!("pod"), inv.pod.as_deref());
    o.opt_str(k!("namespace"), inv.namespace.as_deref());
    o.opt_str(k!("image"), inv.image.as_deref());
    o.bool(k!("interactive"), inv.interactive);
    o.bool(k!("tty"), inv.tty);
    o.bool(k!("privileged"), inv.privileged);
    o.nonempty_strs(k!("host_namespaces"), &inv.host_namespaces);
    o.nonempty_strs(k!("mounts"), &inv.mounts);
    o.true_only(k!("host_root_mount"), inv.host_root_mount);
    o.true_only(k!("runtime_socket_mount"), inv.runtime_socket_mount);
    o.nonempty_strs(k!("cap_add"), &inv.cap_add);
    o.true_only(k!("security_unconfined"), inv.security_unconfined);
    o.nonempty_strs(k!("devices"), &inv.devices);
    o.nonempty_strs(k!("command"), &inv.command);
    o.opt_str(k!("command_class"), inv.command_class);
    o.opt_str(k!("target_pid"), inv.target_pid.as_deref());
    o.true_only(k!("help"), inv.help);
    o.opt_str(k!("url"), inv.url.as_deref());
    o.opt_str(k!("url_host"), inv.url_host.as_deref());
    o.opt_num(k!("url_port"), inv.url_port);
    o.opt_str(k!("url_path"), inv.url_path.as_deref());
    o.opt_str(k!("api"), inv.api);
    o.opt_str(k!("api_action"), inv.api_action);
    o.opt_str(k!("unix_socket"), inv.unix_socket.as_deref());
    o.true_only(k!("runtime_socket"), inv.runtime_socket);
    o.opt_str(k!("remote_host"), inv.remote_host.as_deref());
    o.opt_num(k!("remote_port"), inv.remote_port);
    o.nonempty_strs(k!("wrappers"), &inv.wrappers);
    o.opt_str(k!("shim"), inv.shim.as_deref());
    o.opt_str(k!("recognised_by"), inv.recognised_by);
    o.opt_str(k!("masquerade"), inv.masquerade);
    o.opt_str(k!("plugin"), inv.plugin.as_deref());
    o.close();
}

/// The last event whose part was written on this thread, and those bytes. Alerts of one
/// event share one `Arc<ProcessEvent>`. The `Weak` keeps its allocation from being freed
/// (so its address cannot be reused by another event) without keeping the event alive,
/// and while it exists `Arc::get_mut` fails and `Arc::make_mut` moves to a new
/// allocation: pointer equality means the same, unmodified event.
struct EventCache {
    ev: Weak<ProcessEvent>,
    bytes: Vec<u8>,
    /// Where the `container` member lies in `bytes`.
    container: Range<usize>,
}

thread_local! {
    static CACHE: RefCell<EventCache> = const {
        RefCell::new(EventCache { ev: Weak::new(), bytes: Vec::new(), container: 0..0 })
    };
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The event part (see `event::write_event_part`), from the cache beside the engine's
/// event copy or this thread's cache, with the container rewritten when `fields` add to
/// it.
fn write_event(out: &mut Vec<u8>, ev: &Arc<ProcessEvent>, fields: Option<&dyn AlertFields>) {
    let mut splice = |bytes: &[u8], container: Range<usize>| match fields {
        None => out.extend_from_slice(bytes),
        Some(f) => {
            out.extend_from_slice(&bytes[..container.start]);
            event::write_container(out, ev, Some(f));
            out.extend_from_slice(&bytes[container.end..]);
        }
    };
    // The engine's reused event copy caches its part beside it; other events (alerts
    // kept past the next evaluation, or written on another thread) use the cache below.
    if crate::reuse::with_cached(ev, write_event_part, &mut splice) {
        return;
    }
    let cached = CACHE.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return false;
        };
        if !std::ptr::eq(c.ev.as_ptr(), Arc::as_ptr(ev)) {
            c.bytes.clear();
            c.container = write_event_part(&mut c.bytes, ev);
            c.ev = Arc::downgrade(ev);
        }
        splice(&c.bytes, c.container.clone());
        true
    });
    if !cached {
        let mut bytes = Vec::new();
        let container = write_event_part(&mut bytes, ev);
        splice(&bytes, container);
    }
}

/// The whole alert document into `out`, with what `fields` add.
pub(crate) fn write_alert(out: &mut Vec<u8>, a: &Alert, fields: Option<&dyn AlertFields>) {
    let r = &*a.rule;
    let severity = fields.and_then(AlertFields::severity).unwrap_or(a.severity);
    // The rule's fragments plus room for a typical event: one allocation at most.
    let threat = a.threat().get();
    out.reserve(r.ecs_rule.get().len() + threat.len() + 2048);
    let ts = a.event.timestamp.as_deref().unwrap_or(&a.created);
    // The members up to the event part are always present: literal runs between values.
    out.extend_from_slice(b"{\"@timestamp\":");
    push_str(out, ts);
    out.extend_from_slice(b",\"event\":{\"kind\":\"alert\",\"id\":");
    push_str(out, &a.event_id);
    out.extend_from_slice(b",\"severity\":");
    push_u64(out, u64::from(severity.ecs_number()));
    out.extend_from_slice(b",\"risk_score\":");
    push_u64(out, u64::from(a.risk_score));
    out.extend_from_slice(b",\"category\":[\"process\"],\"type\":[\"");
    // Our own static names: nothing to escape.
    out.extend_from_slice(a.event.event_type.as_str().as_bytes());
    out.extend_from_slice(b"\"]");
    if let Some(action) = a.event.action() {
        out.extend_from_slice(b",\"action\":");
        push_str(out, action);
    }
    out.extend_from_slice(b",\"created\":");
    push_str(out, &a.created);
    out.extend_from_slice(b"},\"rule\":");
    out.extend_from_slice(r.ecs_rule.get().as_bytes());
    out.extend_from_slice(b",\"threat\":");
    out.extend_from_slice(threat.as_bytes());
    write_event(out, &a.event, fields);
    // Inside the open t1609 object, which always has members by now.
    let mut t = Obj::resume(&mut *out, false);
    t.static_str(k!("severity"), severity.as_str());
    t.static_str(k!("confidence"), a.stated_confidence().as_str());
    t.opt_str(k!("group_id"), a.group_id.as_deref());
    t.opt_str(k!("event_id"), a.source_event_id.as_deref());
    if let Some(inv) = &a.argv {
        crate::reuse::write_invocation_cached(inv, t.key(k!("argv")), write_invocation);
    }
    if let Some(f) = fields {
        f.t1609(&mut Members::resume(&mut *t.out, false));
        t.close();
        f.top(&mut Members::resume(out, false));
    } else {
        t.close();
    }
    out.push(b'}');
}

impl Alert {
    /// Writes the alert's ECS JSON (no newline) straight to `w`: the fast path, with no
    /// intermediate `Value`. Same document as [`Alert::to_ecs`].
    pub fn write_json(&self, w: impl std::io::Write) -> serde_json::Result<()> {
        with_buf(|buf| {
            write_alert(buf, self, None);
            w_all(w, buf)
        })
        .map_err(serde_json::Error::io)
    }

    /// The alert as one ECS document with what `fields` add, built as a `Value`: the
    /// definition of what [`Alert::json_with`] writes.
    pub fn to_ecs_with(&self, fields: &dyn AlertFields) -> serde_json::Value {
        let mut doc = self.to_ecs();
        fields.add_to_value(&mut doc);
        doc
    }

    /// Writes the alert's ECS JSON with what `fields` add (no newline) straight to `w`.
    pub fn write_json_with(
        &self,
        fields: &dyn AlertFields,
        w: impl std::io::Write,
    ) -> serde_json::Result<()> {
        with_buf(|buf| {
            write_alert(buf, self, Some(fields));
            w_all(w, buf)
        })
        .map_err(serde_json::Error::io)
    }

    /// The alert's ECS JSON with what `fields` add, as one line without newline: every
    /// control character inside strings is escaped.
    pub fn json_with(&self, fields: &dyn AlertFields) -> String {
        with_buf(|buf| {
            write_alert(buf, self, Some(fields));
            // Written from `&str`s and ASCII punctuation: always UTF-8.
            match std::str::from_utf8(buf) {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(buf).into_owned(),
            }
        })
    }
}

fn w_all(mut w: impl std::io::Write, buf: &[u8]) -> std::io::Result<()> {
    w.write_all(buf)
}

/// Runs `f` on this thread's reused buffer, emptied; documents are built there and
/// handed on in one write or copy.
fn with_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            r
        }
        // Re-entered (a writer that writes alerts): a buffer of its own.
        Err(_) => f(&mut Vec::with_capacity(4096)),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn u64_digits_match_to_string() {
        let mut cases = vec![0u64, 9, 10, 99, 100, 101, 999, 1000, 31337, u64::MAX];
        cases.extend((0..64).map(|b| 1u64 << b));
        cases.extend((0..64).map(|b| (1u64 << b) - 1));
        cases.extend((1..20).map(|e| 10u64.pow(e)));
        cases.extend((1..20).map(|e| 10u64.pow(e) - 1));
        for n in cases {
            assert_eq!(
                super::u64_digits(n, &mut [0u8; 20]),
                n.to_string().as_bytes()
            );
        }
    }

    #[test]
    fn needs_escape_matches_bytewise_check() {
        let special = |c: u8| c < 0x20 || c == b'"' || c == b'\\';
        for len in 0..20 {
            for pos in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[pos] = c;
                    assert_eq!(super::needs_escape(&b), special(c), "{b:?}");
                    // Neighbours that borrow in the word arithmetic.
                    b.fill(0xff);
                    b[pos] = c;
                    assert_eq!(super::needs_escape(&b), special(c), "{b:?}");
                }
            }
        }
    }
}
