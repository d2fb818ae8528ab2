//! Alerts and their ECS documents.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::argv::Invocation;
use crate::event::ProcessEvent;
use crate::rules::RuleMeta;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    /// Elastic's numeric severity scale.
    pub fn ecs_number(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }
    /// `levels` steps up, at most critical.
    pub fn raised(self, levels: u8) -> Severity {
        match (self as u8).saturating_add(levels) {
            0 => Severity::Low,
            1 => Severity::Medium,
            2 => Severity::High,
            _ => Severity::Critical,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

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
    /// The alert as one ECS document.
    pub fn to_ecs(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Writes the alert's ECS JSON (no newline) straight to `w`: the fast path, with no
    /// intermediate `Value`. Same document as [`Alert::to_ecs`].
    pub fn write_json(&self, w: impl std::io::Write) -> serde_json::Result<()> {
        crate::fastjson::write_alert_to(self, w).map_err(serde_json::Error::io)
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
                kind_type: ["start"],
                action: "exec",
                created: &self.created,
            },
            AlertExtra {
                rule: &r.ecs_rule,
                threat: &r.ecs_threat,
            },
            AlertT1609 {
                severity: self.severity.as_str(),
                confidence: self.confidence.as_str(),
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
    action: &'static str,
    created: &'a str,
}

#[derive(Serialize)]
struct AlertExtra<'a> {
    rule: &'a serde_json::value::RawValue,
    threat: &'a serde_json::value::RawValue,
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

/// Random-looking, unique 128-bit ids: a per-process seed (time, pid, address) mixed with
/// a counter, so no two alerts of a process collide and processes differ by seed. Every
/// alert source of the agent (process rules, audit rules, correlation) takes its ids here.
pub fn new_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        splitmix(t ^ u64::from(std::process::id()).rotate_left(32) ^ (&raw const local as u64))
    });
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix(seed ^ c);
    let b = splitmix(a ^ seed.rotate_left(17) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    hex128(a, b)
}

/// Two u64s as 32 lowercase hex digits (`format!("{a:016x}{b:016x}")`, without `fmt`).
fn hex128(a: u64, b: u64) -> String {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&hex16(a));
    out.extend_from_slice(&hex16(b));
    String::from_utf8(out).unwrap_or_default()
}

/// The 16 hex digits of `v`, most significant first, computed for all nibbles at once:
/// every id and digest is formatted per alert.
fn hex16(v: u64) -> [u8; 16] {
    // Move each nibble into a byte of its own: halves of each lane into lanes of half
    // the width, four times.
    let lanes = |hi: u128, lo: u128, shift: u32, x: u128| ((x & hi) << shift) | (x & lo);
    let mut x = u128::from(v);
    x = lanes(0xffff_ffff_0000_0000, 0xffff_ffff, 32, x);
    x = lanes(
        0x0000_0000_ffff_0000_0000_0000_ffff_0000,
        0x0000_0000_0000_ffff_0000_0000_0000_ffff,
        16,
        x,
    );
    x = lanes(
        0x0000_ff00_0000_ff00_0000_ff00_0000_ff00,
        0x0000_00ff_0000_00ff_0000_00ff_0000_00ff,
        8,
        x,
    );
    x = lanes(
        0x00f0_00f0_00f0_00f0_00f0_00f0_00f0_00f0,
        0x000f_000f_000f_000f_000f_000f_000f_000f,
        4,
        x,
    );
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    // Bytes of 10 and more get `a`-`f`: n + 6 carries into bit 4 exactly for those.
    let letters = ((x + ONES * 6) >> 4) & ONES;
    (x + ONES * u128::from(b'0') + letters * u128::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// A stable 128-bit hex digest of a sequence of byte strings (FNV-1a, two lanes,
/// finalised with splitmix), fed part by part.
pub(crate) struct Digest {
    h1: u64,
    h2: u64,
}

impl Digest {
    pub(crate) fn new() -> Self {
        Digest {
            h1: 0xcbf2_9ce4_8422_2325,
            h2: 0x84222325_cbf29ce4,
        }
    }
    pub(crate) fn part(&mut self, p: &[u8]) {
        let (mut h1, mut h2) = (self.h1, self.h2);
        for &b in p {
            h1 = (h1 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            h2 = (h2 ^ u64::from(b))
                .wrapping_mul(0x100_0000_01b3)
                .rotate_left(5);
        }
        // Separator so ["ab","c"] and ["a","bc"] differ.
        self.h1 = (h1 ^ 0xff).wrapping_mul(0x100_0000_01b3);
        self.h2 = (h2 ^ 0xfe).wrapping_mul(0x100_0000_01b3);
    }
    pub(crate) fn finish(&self) -> String {
        hex128(splitmix(self.h1), splitmix(self.h2))
    }
}

/// [`Digest`] of `parts`: a stable 128-bit hex digest (also the audit rules' group ids).
pub fn digest(parts: &[&[u8]]) -> String {
    let mut d = Digest::new();
    for p in parts {
        d.part(p);
    }
    d.finish()
}

/// Current time as RFC 3339, exactly as `time` formats it (UTC `Z`, fraction without
/// trailing zeros). Date and time of day are formatted once per second per thread: every
/// alert needs a timestamp, and the calendar arithmetic dominated the cost.
pub fn now_rfc3339() -> String {
    thread_local! {
        static SECOND: Cell<Option<(u64, [u8; 19])>> = const { Cell::new(None) };
    }
    let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return rfc3339_slow(time::OffsetDateTime::now_utc());
    };
    let secs = d.as_secs();
    let cached = SECOND
        .try_with(|c| c.get().filter(|(s, _)| *s == secs).map(|(_, p)| p))
        .ok()
        .flatten();
    let prefix = match cached {
        Some(p) => p,
        None => match second_prefix(secs) {
            Some(p) => {
                let _ = SECOND.try_with(|c| c.set(Some((secs, p))));
                p
            }
            None => return rfc3339_slow(time::OffsetDateTime::now_utc()),
        },
    };
    with_fraction(&prefix, d.subsec_nanos())
}

fn rfc3339_slow(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second; None outside what RFC 3339 can express.
fn second_prefix(secs: u64) -> Option<[u8; 19]> {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    let s = t
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    s.as_bytes().get(..19)?.try_into().ok()
}

/// The prefix, `.` and the nanoseconds without trailing zeros (none when 0), then `Z`.
fn with_fraction(prefix: &[u8; 19], nanos: u32) -> String {
    let mut out = [0u8; 30];
    out[..19].copy_from_slice(prefix);
    let mut len = 19;
    if nanos != 0 {
        out[19] = b'.';
        let mut digits = [0u8; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let keep = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out[20..20 + keep].copy_from_slice(&digits[..keep]);
        len = 20 + keep;
    }
    out[len] = b'Z';
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out[..=len].to_vec()).unwrap_or_default()
}

pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn severity_raises_and_stops_at_critical() {
        use super::Severity::*;
        assert_eq!(Low.raised(0), Low);
        assert_eq!(Low.raised(2), High);
        assert_eq!(Medium.raised(1), High);
        assert_eq!(High.raised(5), Critical);
        assert_eq!(Critical.raised(u8::MAX), Critical);
    }

    #[test]
    fn hex128_matches_format() {
        for (a, b) in [
            (0u64, 0u64),
            (1, u64::MAX),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            (0xa0b1_c2d3_e4f5_9687, 0x0f1e_2d3c_4b5a_6978),
        ] {
            assert_eq!(super::hex128(a, b), format!("{a:016x}{b:016x}"));
        }
        for i in 0..1000u64 {
            let (a, b) = (super::splitmix(i), super::splitmix(!i));
            assert_eq!(super::hex128(a, b), format!("{a:016x}{b:016x}"));
        }
    }

    #[test]
    fn timestamp_matches_time_crate() {
        use time::format_description::well_known::Rfc3339;
        for secs in [
            0u64,
            1,
            59,
            86_399,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
        ] {
            for nanos in [
                0u32,
                1,
                10,
                999,
                1_000,
                120_000_000,
                123_456_789,
                999_999_999,
            ] {
                let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                    .unwrap()
                    .replace_nanosecond(nanos)
                    .unwrap();
                let prefix = super::second_prefix(secs).unwrap();
                assert_eq!(
                    super::with_fraction(&prefix, nanos),
                    t.format(&Rfc3339).unwrap()
                );
            }
        }
        assert!(super::now_rfc3339().ends_with('Z'));
    }

    #[test]
    fn digest_is_stable() {
        // Group ids (this digest) are also pinned by tests/alert_json.rs's golden file.
        assert_eq!(super::digest(&[]), super::digest(&[]));
        assert_ne!(super::digest(&[b"ab", b"c"]), super::digest(&[b"a", b"bc"]));
    }
}
