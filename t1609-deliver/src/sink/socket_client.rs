//! Socket-client sink: the agent connects to a collector's Unix socket (stream or
//! datagram) and writes one JSON line per alert (one datagram per alert in datagram mode,
//! newline included). The worker reconnects with exponential backoff.
//!
//! ## Alerts in flight when the collector dies
//! A successful `write(2)` only means the kernel queued the bytes on the collector's
//! socket; if the collector is killed, what it had not read yet is discarded. The sink
//! therefore keeps the most recent alerts whose bytes may still be unread, bounded by
//! `SIOCOUTQ` (for Unix sockets: memory still charged to the sender, at least the unread
//! bytes), and resends them first after a reconnect. Alerts the collector had already read
//! are never resent; a few alerts may be sent twice (at least once: dedupe on `event.id`).
//! A dying stream peer raises `POLLHUP` on our end before the kernel discards its unread
//! data, so the check after each write cannot mistake discarded bytes for read ones.
//! Datagram mode has no such signal: datagrams queued to a collector that is killed can
//! be lost (use stream mode where that matters).

use std::{
    collections::VecDeque,
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::{
    io::AsyncWriteExt,
    net::{UnixDatagram, UnixStream},
};

use super::{Sink, SinkError};
use crate::{Alert, ClientMode};

/// Errors of the socket-client sink.
#[derive(Debug, thiserror::Error)]
pub enum SocketClientError {
    #[error("socket-client: cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket-client: writing to {path} failed: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket-client: a {bytes}-byte alert does not fit in one datagram to {path}")]
    DatagramTooLarge { path: PathBuf, bytes: usize },
}

impl SocketClientError {
    /// A datagram that is too large will never fit: drop that alert.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::DatagramTooLarge { .. })
    }
}

enum Conn {
    Stream(UnixStream),
    Dgram(UnixDatagram),
}

impl Conn {
    fn hung_up(&self) -> bool {
        let fd = match self {
            Self::Stream(s) => s.as_raw_fd(),
            Self::Dgram(d) => d.as_raw_fd(),
        };
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&raw mut p, 1, 0) };
        r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
    }

    fn outq(&self) -> usize {
        let fd = match self {
            Self::Stream(s) => s.as_raw_fd(),
            Self::Dgram(d) => d.as_raw_fd(),
        };
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut n) };
        if r < 0 {
            usize::MAX
        } else {
            usize::try_from(n).unwrap_or(0)
        }
    }
}

/// The socket-client sink.
pub struct SocketClientSink {
    name: String,
    path: PathBuf,
    mode: ClientMode,
    conn: Option<Conn>,
    unconfirmed: VecDeque<Alert>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SocketClientSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketClientSink")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SocketClientSink {
    #[must_use]
    pub fn new(name: String, path: PathBuf, mode: ClientMode) -> Self {
        Self {
            name,
            path,
            mode,
            conn: None,
            unconfirmed: VecDeque::new(),
            buf: Vec::new(),
        }
    }

    async fn connect(&mut self) -> Result<(), SocketClientError> {
        let err = |source| SocketClientError::Connect {
            path: self.path.clone(),
            source,
        };
        let conn = match self.mode {
            ClientMode::Stream => Conn::Stream(UnixStream::connect(&self.path).await.map_err(err)?),
            ClientMode::Datagram => {
                let d = UnixDatagram::unbound().map_err(err)?;
                d.connect(&self.path).map_err(err)?;
                Conn::Dgram(d)
            }
        };
        self.conn = Some(conn);
        tracing::info!(sink = %self.name, resend = self.unconfirmed.len(), "socket-client: connected");
        // Resend what the previous collector may not have read.
        let pending: Vec<Alert> = self.unconfirmed.iter().cloned().collect();
        for a in &pending {
            self.write_one(a).await?;
        }
        Ok(())
    }

    async fn write_one(&mut self, alert: &Alert) -> Result<(), SocketClientError> {
        self.buf.clear();
        self.buf.extend_from_slice(alert.json().as_bytes());
        self.buf.push(b'\n');
        let conn = self.conn.as_mut().expect("connected");
        let r = match conn {
            Conn::Stream(s) => s.write_all(&self.buf).await,
            Conn::Dgram(d) => d.send(&self.buf).await.map(drop),
        };
        if let Err(source) = r {
            if source.raw_os_error() == Some(libc::EMSGSIZE) {
                // Nothing was sent; the connection is fine.
                return Err(SocketClientError::DatagramTooLarge {
                    path: self.path.clone(),
                    bytes: self.buf.len(),
                });
            }
            self.conn = None;
            return Err(SocketClientError::Write {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Forgets the alerts that the collector has certainly read: keeps the shortest suffix
    /// covering the `SIOCOUTQ` bytes still charged to this socket.
    fn prune(&mut self) {
        let Some(c) = &self.conn else { return };
        let outq = c.outq();
        // A dying stream peer sets our shutdown flag (POLLHUP) *before* its receive queue
        // is purged, so a zero `outq` read before this check is trustworthy only when no
        // hang-up is visible now. On hang-up keep everything and reconnect.
        if c.hung_up() {
            self.conn = None;
            return;
        }
        let mut acc = 0usize;
        let mut keep = 0usize;
        for a in self.unconfirmed.iter().rev() {
            if acc >= outq {
                break;
            }
            acc += a.json().len() + 1;
            keep += 1;
        }
        let n = self.unconfirmed.len() - keep;
        self.unconfirmed.drain(..n);
    }
}

impl Sink for SocketClientSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        self.write_one(alert).await?;
        self.unconfirmed.push_back(alert.clone());
        self.prune();
        Ok(())
    }

    async fn close(&mut self, deadline: Instant) {
        // Give the collector until the deadline to read what is queued for it.
        while self.conn.is_some() && !self.unconfirmed.is_empty() && Instant::now() < deadline {
            self.prune();
            if self.unconfirmed.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.unconfirmed.is_empty()
            && let Some(Conn::Stream(s)) = &mut self.conn
        {
            let _ = s.shutdown().await;
        }
    }

    fn unconfirmed(&self) -> usize {
        self.unconfirmed.len()
    }

    fn take_unconfirmed(&mut self) -> Vec<Alert> {
        // Only when the connection is gone: a live collector can still read its buffer
        // after we close our end.
        if self.conn.is_some() {
            return Vec::new();
        }
        self.unconfirmed.drain(..).collect()
    }
}
