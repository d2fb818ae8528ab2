//! journald sink: a small writer for the native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>).
//!
//! One datagram per entry to `/run/systemd/journal/socket`. Each field is `KEY=value\n`,
//! or, when the value holds a newline or any other control byte, the binary-safe form
//! `KEY\n<u64 LE length><value>\n`, so no value can forge another field. An entry too
//! large for a datagram (`EMSGSIZE`/`ENOBUFS`) is written to a sealed memfd whose
//! descriptor is passed with `SCM_RIGHTS`. When the socket is missing or refuses (journald
//! not running) the sink reports itself down and the worker spools.
//!
//! ## Entries queued when journald stops
//! A successful send only queues the datagram on journald's socket. When journald exits
//! while it holds its own socket (no systemd socket activation, as on hosts whose PID 1
//! is not systemd), the kernel discards what it had not read, and nothing tells the
//! sender. That queue is short: a datagram socket accepts a send only while it holds at
//! most `net.unix.max_dgram_qlen` datagrams, so of our entries only the last
//! `max_dgram_qlen + 1` can be unread. The sink keeps them, and when journald turns out to
//! have gone away (a send finds no socket, or the socket file is a new one, i.e. journald
//! was restarted in between), it sends them again before anything newer. Some may be
//! duplicates (delivery is at least once: dedupe on `event.id`). With socket activation
//! (systemd), the socket and its queue outlive journald and nothing is resent.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde_json::Value;
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use super::{Sink, SinkError};
use crate::Alert;

/// `SYSLOG_IDENTIFIER` of every entry.
pub const SYSLOG_IDENTIFIER: &str = "t1609-agent";
/// Longest command line quoted in `MESSAGE` (characters); the full value is in
/// `T1609_COMMAND_LINE` and `T1609_ECS`.
pub const MESSAGE_CMD_MAX: usize = 1024;

/// Errors of the journald sink.
#[derive(Debug, thiserror::Error)]
pub enum JournaldError {
    #[error("journald: cannot create a datagram socket: {source}")]
    Socket {
        #[source]
        source: io::Error,
    },
    #[error("journald: {socket} is not reachable (journald not running?): {source}")]
    Absent {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journald: sending a {bytes}-byte entry to {socket} failed: {source}")]
    Send {
        socket: PathBuf,
        bytes: usize,
        #[source]
        source: io::Error,
    },
    #[error("journald: memfd for a {bytes}-byte entry: {op} failed: {source}")]
    Memfd {
        op: &'static str,
        bytes: usize,
        #[source]
        source: io::Error,
    },
}

impl JournaldError {
    /// No journald error is permanent: a missing journald is waited for.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        false
    }
}

/// Upper bound on the bytes of recent entries kept for a resend.
const RECENT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Identity of the socket file: a restarted journald binds a new one.
type SocketId = (u64, u64, i64, i64);

/// The journald sink.
#[derive(Debug)]
pub struct JournaldSink {
    name: String,
    socket: PathBuf,
    sock: Option<UnixDatagram>,
    buf: Vec<u8>,
    /// The last entries sent, which journald may not have read yet (module docs).
    recent: VecDeque<Alert>,
    recent_bytes: usize,
    /// How many of our entries journald's socket can hold unread: `max_dgram_qlen + 1`.
    recent_max: usize,
    /// Journald went away since `recent` was sent: resend it first.
    resend: bool,
    socket_id: Option<SocketId>,
}

impl JournaldSink {
    #[must_use]
    pub fn new(name: String, socket: PathBuf) -> Self {
        let qlen = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(512);
        Self {
            name,
            socket,
            sock: None,
            buf: Vec::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            recent_max: qlen.clamp(1, 65_536) + 1,
            resend: false,
            socket_id: None,
        }
    }

    /// Notices a journald restart between two sends: its socket file is a new one.
    fn check_socket_replaced(&mut self) {
        let Ok(m) = std::fs::metadata(&self.socket) else {
            return; // gone: the send fails and says so
        };
        let id = (m.dev(), m.ino(), m.ctime(), m.ctime_nsec());
        if self.socket_id.is_some_and(|old| old != id) && !self.recent.is_empty() {
            self.resend = true;
        }
        self.socket_id = Some(id);
    }

    fn remember(&mut self, alert: &Alert) {
        self.recent_bytes += alert.json().len();
        self.recent.push_back(alert.clone());
        while self.recent.len() > self.recent_max
            || (self.recent_bytes > RECENT_MAX_BYTES && self.recent.len() > 1)
        {
            if let Some(a) = self.recent.pop_front() {
                self.recent_bytes -= a.json().len();
            }
        }
    }

    async fn send_alert(&mut self, alert: &Alert) -> Result<(), JournaldError> {
        encode(alert, &mut self.buf);
        let r = self.send().await;
        if matches!(r, Err(JournaldError::Absent { .. })) && !self.recent.is_empty() {
            self.resend = true;
        }
        r
    }
}

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

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "AF_UNIX, path bytes and the address length fit their C types"
)]
fn sockaddr(path: &std::path::Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_os_str().as_bytes();
    if b.len() >= sa.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + b.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn memfd_with(data: &[u8]) -> Result<OwnedFd, JournaldError> {
    let err = |op| {
        move |source| JournaldError::Memfd {
            op,
            bytes: data.len(),
            source,
        }
    };
    let name = CString::new("t1609-journal-entry").expect("no NUL");
    // SAFETY: valid C string; flags are constants.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(err("memfd_create")(io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, data).map_err(err("write"))?;
    let fd = OwnedFd::from(file);
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a valid descriptor.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(err("seal")(io::Error::last_os_error()));
    }
    Ok(fd)
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the size of one C int and its cmsg header fit in u32"
)]
/// Sends no payload and one descriptor (`SCM_RIGHTS`) to `path`.
fn send_fd(sock: libc::c_int, path: &std::path::Path, fd: libc::c_int) -> io::Result<()> {
    let (mut sa, salen) = sockaddr(path)?;
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut sa).cast();
    msg.msg_namelen = salen;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
    // SAFETY: msg_control points to a buffer of at least msg_controllen bytes, so
    // CMSG_FIRSTHDR returns a valid, aligned header inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
    }
    // SAFETY: msg is fully initialised and points to live buffers.
    let r = unsafe { libc::sendmsg(sock, &raw const msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR | libc::EACCES)
    )
}

impl JournaldSink {
    fn socket(&mut self) -> Result<&UnixDatagram, JournaldError> {
        if self.sock.is_none() {
            let s = UnixDatagram::unbound().map_err(|source| JournaldError::Socket { source })?;
            self.sock = Some(s);
        }
        Ok(self.sock.as_ref().expect("socket set"))
    }

    async fn send(&mut self) -> Result<(), JournaldError> {
        let path = self.socket.clone();
        let bytes = self.buf.len();
        let buf = std::mem::take(&mut self.buf);
        let r = match self.socket() {
            Ok(sock) => sock.send_to(&buf, &path).await,
            Err(e) => {
                self.buf = buf;
                return Err(e);
            }
        };
        self.buf = buf;
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS)) => {
                let fd = memfd_with(&self.buf)?;
                let sock = self.sock.as_ref().expect("socket set");
                let raw = sock.as_raw_fd();
                sock.async_io(Interest::WRITABLE, || send_fd(raw, &path, fd.as_raw_fd()))
                    .await
                    .map_err(|source| {
                        if is_absent(&source) {
                            JournaldError::Absent {
                                socket: path.clone(),
                                source,
                            }
                        } else {
                            JournaldError::Send {
                                socket: path.clone(),
                                bytes,
                                source,
                            }
                        }
                    })
            }
            Err(source) if is_absent(&source) => Err(JournaldError::Absent {
                socket: path,
                source,
            }),
            Err(source) => Err(JournaldError::Send {
                socket: path,
                bytes,
                source,
            }),
        }
    }
}

impl Sink for JournaldSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.check_socket_replaced();
        if self.resend {
            let pending: Vec<Alert> = self.recent.iter().cloned().collect();
            for a in &pending {
                self.send_alert(a).await?;
            }
            tracing::info!(sink = %self.name, resent = pending.len(), "journald: resent the entries the previous journald may not have read");
            self.resend = false;
        }
        self.send_alert(alert).await?;
        self.remember(alert);
        Ok(())
    }

    fn unconfirmed(&self) -> usize {
        if self.resend { self.recent.len() } else { 0 }
    }

    fn take_unconfirmed(&mut self) -> Vec<Alert> {
        if !self.resend {
            return Vec::new();
        }
        self.recent_bytes = 0;
        self.recent.drain(..).collect()
    }
}

#[cfg(test)]
#[expect(clippy::cast_possible_truncation, reason = "test parser on 64-bit")]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn fields(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
        // A reference parser of the native protocol, as journald reads it.
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

    fn alert(id: &str) -> Alert {
        Alert::new(Arc::new(json!({
            "rule": {"id": "t1609.container_exec"},
            "event": {"id": id},
        })))
    }

    /// `T1609_EVENT_ID`s of the datagrams waiting on a fake journald socket.
    fn received(j: &std::os::unix::net::UnixDatagram) -> Vec<String> {
        j.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut ids = Vec::new();
        while let Ok(n) = j.recv(&mut buf) {
            for (k, v) in fields(&buf[..n]) {
                if k == "T1609_EVENT_ID" {
                    ids.push(String::from_utf8(v).unwrap());
                }
            }
        }
        ids
    }

    #[tokio::test]
    async fn restarted_journald_gets_what_the_old_one_left_unread() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        let old = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut sink = JournaldSink::new("journald".into(), path.clone());
        sink.deliver(&alert("a1")).await.unwrap();
        assert_eq!(received(&old), ["a1"]);
        for id in ["a2", "a3"] {
            sink.deliver(&alert(id)).await.unwrap();
        }
        // journald exits with a2 and a3 unread (the kernel drops them), and a new one
        // binds the path again before our next send.
        drop(old);
        std::fs::remove_file(&path).unwrap();
        let new = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sink.deliver(&alert("a4")).await.unwrap();
        let got = received(&new);
        assert!(
            got.ends_with(&["a2".into(), "a3".into(), "a4".into()]),
            "{got:?}"
        );
        assert_eq!(got.iter().filter(|i| *i == "a4").count(), 1);
        // The same journald: nothing is resent.
        sink.deliver(&alert("a5")).await.unwrap();
        assert_eq!(received(&new), ["a5"]);
    }

    #[tokio::test]
    async fn absent_journald_keeps_recent_entries_for_its_return() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("socket");
        let old = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut sink = JournaldSink::new("journald".into(), path.clone());
        sink.deliver(&alert("b1")).await.unwrap();
        drop(old); // stale socket file: connection refused
        let e = sink.deliver(&alert("b2")).await.unwrap_err();
        assert!(!e.is_permanent());
        assert_eq!(sink.unconfirmed(), 1, "b1 may have been dropped unread");
        std::fs::remove_file(&path).unwrap();
        let new = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sink.deliver(&alert("b2")).await.unwrap();
        assert_eq!(received(&new), ["b1", "b2"]);
        assert_eq!(sink.unconfirmed(), 0);
    }
}
