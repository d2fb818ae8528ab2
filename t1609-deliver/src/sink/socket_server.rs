//! Socket-server sink: the agent listens on a Unix stream socket and writes JSON lines to
//! every connected subscriber.
//!
//! Each subscriber has its own writer task and a bounded queue (`subscriber_queue_len`).
//! A subscriber whose queue is full is disconnected at once and counted; it never stalls
//! the others or the agent. With no subscriber connected the sink counts as down: alerts
//! go to its spool and are replayed to the next subscriber that connects.

use std::{
    ffi::CString,
    io,
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::{
    io::{AsyncWriteExt, BufWriter},
    net::{UnixListener, UnixStream},
    sync::{Notify, mpsc},
    task::JoinHandle,
};

use super::{Sink, SinkError};
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

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Alert>,
    task: JoinHandle<()>,
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
        let (tx, rx) = mpsc::channel(queue_len);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(write_loop(stream, rx));
        shared
            .subs
            .lock()
            .expect("subscriber list poisoned")
            .push(Subscriber { id, tx, task });
        tracing::debug!(subscriber = id, "socket-server: subscriber connected");
        shared.connected.notify_one();
    }
}

async fn write_loop(stream: UnixStream, mut rx: mpsc::Receiver<Alert>) {
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    while let Some(a) = rx.recv().await {
        let mut next = Some(a);
        while let Some(a) = next {
            if w.write_all(a.json().as_bytes()).await.is_err() || w.write_all(b"\n").await.is_err()
            {
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
}

impl Sink for SocketServerSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let mut delivered = 0usize;
        {
            let mut subs = self.shared.subs.lock().expect("subscriber list poisoned");
            subs.retain(|s| match s.tx.try_send(alert.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.task.abort();
                    self.shared.disconnected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        sink = %self.name,
                        subscriber = s.id,
                        "socket-server: subscriber too slow, queue full: disconnected"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
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
