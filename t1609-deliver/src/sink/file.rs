//! File sink: JSON lines appended to a file, rotated by size
//! (`PATH` → `PATH.1` → ... → `PATH.N`, the oldest deleted).
//!
//! Lines are written with one `write(2)` each and not fsync'd: a crash of the agent loses
//! nothing already written; a power loss can lose the page cache's last seconds.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::{Sink, SinkError};
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
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    /// Only regular files are rotated.
    regular: bool,
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
        let mut s = Self {
            name,
            path,
            max_bytes,
            keep,
            file: None,
            size: 0,
            regular: true,
            buf: Vec::new(),
        };
        s.reopen()?;
        Ok(s)
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
        let meta = f.metadata().ok();
        self.size = meta.as_ref().map_or(0, std::fs::Metadata::len);
        self.regular = meta.is_none_or(|m| m.file_type().is_file());
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
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.buf.clear();
        self.buf.extend_from_slice(alert.json().as_bytes());
        self.buf.push(b'\n');
        let len = self.buf.len() as u64;
        if self.max_bytes > 0 && self.size > 0 && self.size + len > self.max_bytes {
            if self.regular {
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
            }
            .into());
        }
        self.size += len;
        Ok(())
    }

    async fn close(&mut self, _deadline: std::time::Instant) {
        if let Some(f) = &self.file {
            let _ = f.sync_data();
        }
    }
}
