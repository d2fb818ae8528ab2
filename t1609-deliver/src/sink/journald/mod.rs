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
//!
//! Where things are: the fields of an entry in `entry`, sending one in `socket`, and the
//! entries kept for a resend here.

use std::{collections::VecDeque, os::unix::fs::MetadataExt, path::PathBuf};

use tokio::net::UnixDatagram;

use super::{Sink, SinkError};
use crate::Alert;

mod entry;
mod socket;

pub use entry::{
    MESSAGE_CMD_MAX, SYSLOG_IDENTIFIER, encode, escape_line, message, message_id, priority,
};
pub use socket::JournaldError;

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
        let r = match socket::socket(&mut self.sock) {
            Ok(sock) => socket::send(sock, &self.socket, &self.buf).await,
            Err(e) => Err(e),
        };
        if matches!(r, Err(JournaldError::Absent { .. })) && !self.recent.is_empty() {
            self.resend = true;
        }
        r
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
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{entry::tests::fields, *};

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
