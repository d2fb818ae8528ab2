//! Socket-server sink: the agent listens on a Unix stream socket and writes JSON lines to
//! every connected subscriber.
//!
//! Each subscriber has its own writer task and a bounded queue (`subscriber_queue_len`).
//! A subscriber whose queue is full is disconnected at once and counted; it never stalls
//! the others or the agent. With no subscriber connected the sink counts as down: alerts
//! go to its spool and are replayed to the next subscriber that connects.
//!
//! The direct writer (see [`super::direct`]) sends a line straight to a subscriber's
//! socket, without blocking, while nothing is queued for that subscriber; what does not
//! go out whole (a full socket buffer) is queued for its task, behind which later lines
//! wait.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::OsStrExt,
            fs::{FileTypeExt, PermissionsExt},
        },
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use tokio::{
    io::{AsyncWriteExt, BufWriter},
    net::{UnixListener, UnixStream},
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use super::{
    Sink, SinkError,
    direct::{Direct, DirectWrite, send_line},
};
use crate::Alert;

/// Errors of the socket-server sink.
#[derive(Debug, thiserror::Error)]
pub enum SocketServerError {
    #[error("socket-server: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket-server: {path} exists and is not a socket")]
    NotASocket { path: PathBuf },
    #[error("socket-server: another process is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("socket-server: unknown group {group:?} for {path}")]
    UnknownGroup { group: String, path: PathBuf },
    #[error("socket-server: no subscriber connected to {path}")]
    NoSubscribers { path: PathBuf },
}

/// What a subscriber's task writes: an alert (its JSON and a newline), or bytes of a
/// line the direct writer could not send whole.
enum Chunk {
    Alert(Alert),
    Bytes(Vec<u8>),
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Chunk>,
    task: JoinHandle<()>,
    /// A second fd of the subscriber's socket, for the direct writer (owned, so it stays
    /// valid, and closed, with this entry).
    fd: OwnedFd,
    /// Chunks queued for the task and not yet flushed: a direct write waits for 0.
    pending: Arc<AtomicUsize>,
}

impl Subscriber {
    /// Queues `chunk`; `false` when the subscriber must go (queue full: too slow; or
    /// its task ended).
    fn queue(&self, chunk: Chunk, name: &str, shared: &Shared) -> bool {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(chunk) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.task.abort();
                shared.disconnected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sink = %name,
                    subscriber = self.id,
                    "socket-server: subscriber too slow, queue full: disconnected"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends `json` and a newline without blocking, or queues what did not go out;
    /// `false` when the subscriber must go.
    fn send_direct(&self, json: &[u8], name: &str, shared: &Shared) -> bool {
        let len = json.len() + 1;
        if self.pending.load(Ordering::Acquire) > 0 {
            return self.queue(Chunk::Bytes(line(json, 0)), name, shared);
        }
        match send_line(self.fd.as_raw_fd(), json) {
            Ok(n) if n == len => true,
            Ok(n) => self.queue(Chunk::Bytes(line(json, n)), name, shared),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.queue(Chunk::Bytes(line(json, 0)), name, shared)
            }
            Err(_) => false, // closed or reset: the subscriber is gone
        }
    }
}

/// The bytes of `json` and its newline from `from` on.
fn line(json: &[u8], from: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(json.len() + 1 - from);
    if from < json.len() {
        v.extend_from_slice(&json[from..]);
    }
    v.push(b'\n');
    v
}

struct Shared {
    subs: Mutex<Vec<Subscriber>>,
    connected: Notify,
    disconnected: AtomicU64,
    next_id: AtomicU64,
}

/// The socket-server sink.
pub struct SocketServerSink {
    name: String,
    path: PathBuf,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for SocketServerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketServerSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Resolves a group name or a numeric gid.
fn resolve_gid(group: &str) -> Option<libc::gid_t> {
    if let Ok(n) = group.parse::<libc::gid_t>() {
        return Some(n);
    }
    let c = CString::new(group).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the use of grp.
    let r = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &raw mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &raw mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some(grp.gr_gid)
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SocketServerError + 'a {
    move |source| SocketServerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl SocketServerSink {
    /// Binds the socket (removing a stale one), applies `mode` and `group`, and starts
    /// accepting subscribers. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// When the path is in use, not a socket, or cannot be bound or chmod/chown'ed.
    ///
    /// # Panics
    /// If `path` contains a NUL byte (`SinkSpec` parsing rejects those).
    pub fn bind(
        name: String,
        path: PathBuf,
        mode: u32,
        group: Option<&str>,
        queue_len: usize,
    ) -> Result<Self, SocketServerError> {
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                    return Err(SocketServerError::InUse { path });
                }
                std::fs::remove_file(&path).map_err(io_err("remove stale socket", &path))?;
            }
            Ok(_) => return Err(SocketServerError::NotASocket { path }),
            Err(_) => {}
        }
        let listener = UnixListener::bind(&path).map_err(io_err("bind", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &path))?;
        if let Some(g) = group {
            let gid = resolve_gid(g).ok_or_else(|| SocketServerError::UnknownGroup {
                group: g.to_owned(),
                path: path.clone(),
            })?;
            let c = CString::new(path.as_os_str().as_bytes()).expect("checked: no NUL in path");
            // SAFETY: valid C string; uid -1 leaves the owner unchanged.
            if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
                return Err(io_err("chown", &path)(io::Error::last_os_error()));
            }
        }
        let shared = Arc::new(Shared {
            subs: Mutex::new(Vec::new()),
            connected: Notify::new(),
            disconnected: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), queue_len));
        Ok(Self {
            name,
            path,
            shared,
            accept,
        })
    }

    /// Subscribers disconnected because their queue overflowed.
    #[must_use]
    pub fn disconnected(&self) -> u64 {
        self.shared.disconnected.load(Ordering::Relaxed)
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, queue_len: usize) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "socket-server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // SAFETY: F_DUPFD_CLOEXEC returns a new fd that nothing else owns, or -1.
        let dup = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "socket-server: cannot duplicate a subscriber's fd");
            continue;
        }
        // SAFETY: `dup` was just created and is owned only here.
        let fd = unsafe { OwnedFd::from_raw_fd(dup) };
        let (tx, rx) = mpsc::channel(queue_len);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_loop(stream, rx, pending.clone()));
        shared
            .subs
            .lock()
            .expect("subscriber list poisoned")
            .push(Subscriber {
                id,
                tx,
                task,
                fd,
                pending,
            });
        tracing::debug!(subscriber = id, "socket-server: subscriber connected");
        shared.connected.notify_one();
    }
}

async fn write_loop(stream: UnixStream, mut rx: mpsc::Receiver<Chunk>, pending: Arc<AtomicUsize>) {
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    while let Some(c) = rx.recv().await {
        let mut next = Some(c);
        let mut written = 0;
        while let Some(c) = next {
            let ok = match &c {
                Chunk::Alert(a) => {
                    w.write_all(a.json().as_bytes()).await.is_ok()
                        && w.write_all(b"\n").await.is_ok()
                }
                Chunk::Bytes(b) => w.write_all(b).await.is_ok(),
            };
            if !ok {
                return;
            }
            written += 1;
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
        // Only now may the direct writer send past these: they are in the socket.
        pending.fetch_sub(written, Ordering::AcqRel);
    }
    let _ = w.flush().await;
}

/// The socket-server sink's direct writer (see the module docs).
struct ServerDirect {
    name: String,
    shared: Arc<Shared>,
}

impl DirectWrite for ServerDirect {
    fn try_write(&mut self, json: &[u8]) -> Direct {
        let shared = &*self.shared;
        let mut subs = shared.subs.lock().expect("subscriber list poisoned");
        subs.retain(|s| s.send_direct(json, &self.name, shared));
        // With nobody left the worker takes it: it spools until someone connects.
        if subs.is_empty() {
            Direct::Busy
        } else {
            Direct::Written
        }
    }
}

impl Sink for SocketServerSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn direct(&self) -> Option<Box<dyn DirectWrite>> {
        Some(Box::new(ServerDirect {
            name: self.name.clone(),
            shared: self.shared.clone(),
        }))
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let delivered = {
            let shared = &*self.shared;
            let mut subs = shared.subs.lock().expect("subscriber list poisoned");
            subs.retain(|s| s.queue(Chunk::Alert(alert.clone()), &self.name, shared));
            subs.len()
        };
        if delivered == 0 {
            return Err(SocketServerError::NoSubscribers {
                path: self.path.clone(),
            }
            .into());
        }
        Ok(())
    }

    async fn wakeup(&self) {
        self.shared.connected.notified().await;
    }

    async fn close(&mut self, deadline: Instant) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
        let subs = std::mem::take(&mut *self.shared.subs.lock().expect("subscriber list poisoned"));
        for s in subs {
            drop(s.tx);
            let abort = s.task.abort_handle();
            if tokio::time::timeout_at(deadline.into(), s.task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn subscriber_counts(&self) -> Option<(usize, u64)> {
        let n = self
            .shared
            .subs
            .lock()
            .map_or(0, |s| s.iter().filter(|s| !s.tx.is_closed()).count());
        Some((n, self.disconnected()))
    }
}

impl Drop for SocketServerSink {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(subs) = self.shared.subs.lock() {
            for s in subs.iter() {
                s.task.abort();
            }
        }
    }
}
