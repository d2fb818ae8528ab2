//! File sink: JSON lines appended to a file, rotated by size
//! (`PATH` → `PATH.1` → ... → `PATH.N`, the oldest deleted).
//!
//! Lines are written with one `write(2)` each and not fsync'd: a crash of the agent loses
//! nothing already written; a power loss can lose the page cache's last seconds. The
//! file's state is shared by the worker and the direct writer (see [`super::direct`]),
//! which writes from the submitting thread while the sink is healthy.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use super::{
    Sink, SinkError,
    direct::{Direct, DirectWrite, FdKind, fd_kind},
};
use crate::Alert;

/// Errors of the file sink, naming the path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file sink: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Appends JSON lines to `path`, rotating when a line would push it past `max_bytes`.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    state: Arc<Mutex<FileState>>,
}

#[derive(Debug)]
struct FileState {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    /// What the open file is: only a regular file is rotated, and only a file, `/dev/null`
    /// or a pipe with room is written directly.
    kind: Option<FdKind>,
    buf: Vec<u8>,
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    /// Opens (creating) the file now so that a bad path is reported at start.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(
        name: String,
        path: PathBuf,
        max_bytes: u64,
        keep: usize,
    ) -> Result<Self, FileError> {
        let mut s = FileState {
            path,
            max_bytes,
            keep,
            file: None,
            size: 0,
            kind: None,
            buf: Vec::new(),
        };
        s.reopen()?;
        Ok(Self {
            name,
            state: Arc::new(Mutex::new(s)),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FileState {
    fn regular(&self) -> bool {
        // Unknown (no metadata) counts as regular, as before: rotated by size.
        self.file
            .as_ref()
            .is_none_or(|f| f.metadata().is_ok_and(|m| m.file_type().is_file()))
    }

    fn reopen(&mut self) -> Result<(), FileError> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
            .map_err(|source| FileError::Io {
                op: "open",
                path: self.path.clone(),
                source,
            })?;
        self.size = f.metadata().map_or(0, |m| m.len());
        self.kind = fd_kind(f.as_raw_fd());
        self.file = Some(f);
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), FileError> {
        self.file = None;
        let _ = fs::remove_file(rotated(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1)).map_err(|source| FileError::Io {
                    op: "rotate",
                    path: from.clone(),
                    source,
                })?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1)).map_err(|source| FileError::Io {
            op: "rotate",
            path: self.path.clone(),
            source,
        })?;
        self.reopen()
    }

    /// Appends `json` and a newline, rotating first when it would pass the size cap.
    fn write_line(&mut self, json: &[u8]) -> Result<(), FileError> {
        self.buf.clear();
        self.buf.extend_from_slice(json);
        self.buf.push(b'\n');
        let len = self.buf.len() as u64;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            if self.regular() {
                self.rotate()?;
            } else {
                self.size = 0; // a device or FIFO (e.g. /dev/null): never rename it
            }
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let f = self.file.as_mut().expect("file open");
        if let Err(source) = f.write_all(&self.buf) {
            // Cut a partial line so every line stays one whole alert; reopen next time
            // (the file may have been removed or the disk filled).
            let _ = f.set_len(self.size);
            self.file = None;
            return Err(FileError::Io {
                op: "write",
                path: self.path.clone(),
                source,
            });
        }
        self.size += len;
        Ok(())
    }

    /// Whether a line can be written now without blocking.
    fn writable_now(&self) -> bool {
        if self.file.is_none() {
            return false;
        }
        match self.kind {
            Some(FdKind::Plain) => true,
            // A FIFO a reader may stop draining: the worker writes to it.
            Some(FdKind::Pipe) | None => false,
        }
    }
}

/// The file sink's direct writer: the same state as the worker's, under its lock.
struct FileDirect(Arc<Mutex<FileState>>);

impl DirectWrite for FileDirect {
    fn try_write(&mut self, json: &[u8]) -> Direct {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !s.writable_now() {
            return Direct::Busy;
        }
        match s.write_line(json) {
            Ok(()) => Direct::Written,
            // The worker retries it and reports the sink down if it fails again.
            Err(_) => Direct::Busy,
        }
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn direct(&self) -> Option<Box<dyn DirectWrite>> {
        Some(Box::new(FileDirect(self.state.clone())))
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.state().write_line(alert.json().as_bytes())?;
        Ok(())
    }

    async fn close(&mut self, _deadline: std::time::Instant) {
        if let Some(f) = &self.state().file {
            let _ = f.sync_data();
        }
    }
}
