//! One journal entry in the native protocol: the fields an alert becomes and their
//! binary-safe encoding.

use std::fmt::Write as _;

use serde_json::Value;

use crate::Alert;

/// `SYSLOG_IDENTIFIER` of every entry.
pub const SYSLOG_IDENTIFIER: &str = "t1609-agent";
/// Longest command line quoted in `MESSAGE` (characters); the full value is in
/// `T1609_COMMAND_LINE` and `T1609_ECS`.
pub const MESSAGE_CMD_MAX: usize = 1024;

/// The fixed `MESSAGE_ID` of a rule: 128 bits of FNV-1a over `t1609-agent/` + `rule.id`,
/// as 32 lowercase hex digits (the same id for the same rule across hosts and versions).
#[must_use]
pub fn message_id(rule_id: &str) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for b in b"t1609-agent/".iter().chain(rule_id.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:032x}")
}

/// syslog priority from `t1609.severity`, else `event.severity` (21/47/73/99):
/// critical → 2 (crit), high → 3 (err), medium → 4 (warning), low → 5 (notice).
/// Unknown or missing → 4.
#[must_use]
pub fn priority(alert: &Alert) -> u8 {
    match alert.str_field("t1609.severity") {
        Some("critical") => return 2,
        Some("high") => return 3,
        Some("medium") => return 4,
        Some("low") => return 5,
        _ => {}
    }
    match alert.field("event.severity").and_then(Value::as_f64) {
        Some(s) if s >= 99.0 => 2,
        Some(s) if s >= 73.0 => 3,
        Some(s) if s >= 47.0 => 4,
        Some(_) => 5,
        None => 4,
    }
}

/// Escapes control characters (C0, DEL, C1, U+2028/U+2029) and backslashes so the text
/// stays on one readable line; at most `max` characters of input are kept.
#[must_use]
pub fn escape_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            let rest = s.len() - s.char_indices().nth(n).map_or(0, |(i, _)| i);
            let _ = write!(out, "…(+{rest} bytes)");
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// One readable line: rule name, user, command line, container.
#[must_use]
pub fn message(alert: &Alert) -> String {
    let rule = alert
        .str_field("rule.name")
        .or_else(|| alert.str_field("rule.id"))
        .unwrap_or("T1609 container administration command");
    let user = alert
        .str_field("user.name")
        .map(str::to_owned)
        .or_else(|| alert.field("user.id").and_then(value_text))
        .unwrap_or_else(|| "?".into());
    let cmd = alert
        .str_field("process.command_line")
        .or_else(|| alert.str_field("process.executable"))
        .unwrap_or("?");
    let container = alert.str_field("container.id").unwrap_or("-");
    format!(
        "{}: user={} cmd={} container={}",
        escape_line(rule, 256),
        escape_line(&user, 256),
        escape_line(cmd, MESSAGE_CMD_MAX),
        escape_line(container, 128),
    )
}

fn put_field(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    debug_assert!(
        key.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    );
    if value.iter().any(|&b| b < 0x20 || b == 0x7f) {
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        buf.extend_from_slice(value);
        buf.push(b'\n');
    } else {
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(value);
        buf.push(b'\n');
    }
}

/// The ECS paths copied into `T1609_*` fields (first present path wins).
const FIELDS: &[(&str, &[&str])] = &[
    ("T1609_RULE_ID", &["rule.id"]),
    ("T1609_RULE_NAME", &["rule.name"]),
    ("T1609_SEVERITY", &["t1609.severity", "event.severity"]),
    ("T1609_EVENT_SEVERITY", &["event.severity"]),
    ("T1609_RISK_SCORE", &["event.risk_score"]),
    ("T1609_PROCESS_PID", &["process.pid"]),
    ("T1609_PROCESS_NAME", &["process.name"]),
    ("T1609_PROCESS_EXECUTABLE", &["process.executable"]),
    ("T1609_COMMAND_LINE", &["process.command_line"]),
    ("T1609_USER", &["user.name", "user.id"]),
    ("T1609_USER_ID", &["user.id"]),
    ("T1609_CONTAINER_ID", &["container.id"]),
    ("T1609_GROUP_ID", &["t1609.group_id"]),
    ("T1609_EVENT_ID", &["event.id"]),
    ("T1609_TIMESTAMP", &["@timestamp"]),
];

/// Encodes one journal entry in the native protocol.
pub fn encode(alert: &Alert, buf: &mut Vec<u8>) {
    buf.clear();
    put_field(buf, "MESSAGE", message(alert).as_bytes());
    put_field(buf, "PRIORITY", priority(alert).to_string().as_bytes());
    put_field(buf, "SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER.as_bytes());
    put_field(
        buf,
        "MESSAGE_ID",
        message_id(alert.str_field("rule.id").unwrap_or("")).as_bytes(),
    );
    for (key, paths) in FIELDS {
        if let Some(v) = paths
            .iter()
            .find_map(|p| alert.field(p).and_then(value_text))
        {
            put_field(buf, key, v.as_bytes());
        }
    }
    put_field(buf, "T1609_ECS", alert.json().as_bytes());
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "test parser on 64-bit")]
pub(super) mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    /// A reference parser of the native protocol, as journald reads it.
    pub(in crate::sink::journald) fn fields(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            let nl = i + buf[i..].iter().position(|&b| b == b'\n').unwrap();
            let line = &buf[i..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                out.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
                i = nl + 1;
            } else {
                let key = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(buf[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let v = buf[nl + 9..nl + 9 + len].to_vec();
                assert_eq!(buf[nl + 9 + len], b'\n');
                out.push((key, v));
                i = nl + 10 + len;
            }
        }
        out
    }

    #[test]
    fn hostile_values_cannot_forge_fields() {
        let evil = "kubectl exec -it p -- sh\nPRIORITY=0\nT1609_RULE_ID=x\n\u{0}\u{1b}[2J";
        let a = Alert::new(Arc::new(json!({
            "rule": {"id": "t1609.container_admin_command", "name": "n\nMESSAGE=forged"},
            "process": {"command_line": evil, "pid": 42},
            "t1609": {"severity": "critical"},
            "event": {"id": "e1", "severity": 99, "risk_score": 99},
        })));
        let mut buf = Vec::new();
        encode(&a, &mut buf);
        let f = fields(&buf);
        let get = |k: &str| {
            f.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("PRIORITY"), vec![b"2".to_vec()]);
        assert_eq!(
            get("T1609_RULE_ID"),
            vec![b"t1609.container_admin_command".to_vec()]
        );
        assert_eq!(get("T1609_COMMAND_LINE"), vec![evil.as_bytes().to_vec()]);
        assert_eq!(get("MESSAGE").len(), 1);
        let msg = String::from_utf8(get("MESSAGE")[0].clone()).unwrap();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.contains("\\nPRIORITY=0"), "{msg}");
        let ecs: Value = serde_json::from_slice(&get("T1609_ECS")[0]).unwrap();
        assert_eq!(ecs["process"]["command_line"], evil);
        assert_eq!(get("T1609_PROCESS_PID"), vec![b"42".to_vec()]);
    }

    #[test]
    fn message_id_is_fixed_per_rule() {
        let a = message_id("t1609.container_admin_command");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, message_id("t1609.container_admin_command"));
        assert_ne!(a, message_id("t1609.other"));
    }

    #[test]
    fn priority_follows_severity() {
        let p = |v: Value| priority(&Alert::new(Arc::new(v)));
        assert_eq!(p(json!({"t1609": {"severity": "low"}})), 5);
        assert_eq!(p(json!({"t1609": {"severity": "high"}})), 3);
        assert_eq!(p(json!({"event": {"severity": 99}})), 2);
        assert_eq!(p(json!({"event": {"severity": 47}})), 4);
        assert_eq!(p(json!({"event": {"severity": 21}})), 5);
        assert_eq!(p(json!({})), 4);
    }

    #[test]
    fn escape_truncates_long_lines() {
        let s = "a".repeat(5000);
        let e = escape_line(&s, 10);
        assert!(e.starts_with("aaaaaaaaaa…(+4990 bytes)"), "{e}");
        assert_eq!(escape_line("a\u{1b}[31m\\", 100), "a\\x1b[31m\\\\");
    }
}
