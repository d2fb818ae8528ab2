//! Follows the API server's audit log file (`--audit-log-path`): JSON lines, rotation by
//! rename, copy-truncate, partial last lines, and a saved offset so a restart neither
//! replays nor skips events.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncSeekExt},
    sync::{mpsc, watch},
};

use crate::{
    config::{FileSourceConfig, StartAt},
    error::AuditError,
    event::{AuditEvent, parse_event_line},
    stats::AuditStats,
};

/// What `state_file` holds: the file identity and the offset just past the last line sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub dev: u64,
    pub inode: u64,
    pub offset: u64,
}

impl FileState {
    /// The saved state, or None when absent or unreadable (then `start_at` applies).
    pub fn load(path: &Path) -> Option<FileState> {
        let text = std::fs::read_to_string(path).ok()?;
        match serde_json::from_str(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable audit file state");
                None
            }
        }
    }

    /// Writes the state atomically: a temporary file in the same directory, fsync, rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(serde_json::to_string(self).unwrap_or_default().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

struct Reader {
    file: tokio::fs::File,
    dev: u64,
    inode: u64,
    /// Where the file cursor is.
    read_pos: u64,
    /// Bytes read after the last newline.
    pending: Vec<u8>,
    /// Dropping an over-long line until its newline.
    skipping: bool,
}

impl Reader {
    fn offset(&self) -> u64 {
        self.read_pos - self.pending.len() as u64
    }
    fn state(&self) -> FileState {
        FileState {
            dev: self.dev,
            inode: self.inode,
            offset: self.offset(),
        }
    }
}

/// Whether to keep going.
enum Flow {
    Go,
    Stop,
}

struct Follower {
    cfg: FileSourceConfig,
    tx: mpsc::Sender<AuditEvent>,
    stats: Arc<AuditStats>,
    stop: watch::Receiver<bool>,
    line_no: u64,
}

async fn open_at(path: &Path, offset: u64) -> std::io::Result<Reader> {
    let mut file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    let offset = if offset > meta.len() { 0 } else { offset };
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    Ok(Reader {
        file,
        dev: meta.dev(),
        inode: meta.ino(),
        read_pos: offset,
        pending: Vec::new(),
        skipping: false,
    })
}

/// A file in `dir` with this device and inode (the rotated-away file of a saved state).
fn find_by_inode(dir: &Path, dev: u64, inode: u64) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    for e in rd.flatten() {
        if let Ok(m) = e.metadata()
            && m.is_file()
            && m.ino() == inode
            && m.dev() == dev
        {
            return Some(e.path());
        }
    }
    None
}

/// The file the saved state names, found by its inode next to `path` after a rotation
/// while the agent was down, opened at the saved offset; `None` when it is gone.
async fn resume_rotated(path: &Path, st: FileState) -> Option<Reader> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(old) = find_by_inode(dir, st.dev, st.inode) else {
        tracing::warn!(
            path = %path.display(),
            "the audit log was rotated since the saved state and the old file is gone; reading the new one from its start"
        );
        return None;
    };
    match open_at(&old, st.offset).await {
        Ok(r) => {
            tracing::info!(file = %old.display(), offset = r.read_pos, "resuming rotated audit log");
            Some(r)
        }
        Err(e) => {
            tracing::warn!(file = %old.display(), error = %e, "cannot open rotated audit log");
            None
        }
    }
}

/// Copy-truncate: when the open file is now shorter than what was read, reads it again
/// from its start. True when it did.
async fn rewind_if_truncated(r: &mut Reader, path: &Path) -> Result<bool, AuditError> {
    let len = r.file.metadata().await.map_or(r.read_pos, |m| m.len());
    if len >= r.read_pos {
        return Ok(false);
    }
    tracing::info!(path = %path.display(), was = r.read_pos, now = len, "audit log truncated; reading from its start");
    r.file
        .seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    r.read_pos = 0;
    r.pending.clear();
    r.skipping = false;
    Ok(true)
}

impl Follower {
    fn stop_requested(&self) -> bool {
        *self.stop.borrow()
    }

    async fn handle_line(&mut self, line: &[u8]) -> Flow {
        self.line_no += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Flow::Go;
        }
        let text = String::from_utf8_lossy(line);
        match parse_event_line(&text) {
            Ok(ev) => {
                AuditStats::inc(&self.stats.events);
                tokio::select! {
                    r = self.tx.send(ev) => if r.is_err() { return Flow::Stop },
                    _ = self.stop.changed() => return Flow::Stop,
                }
            }
            Err(e) => {
                AuditStats::inc(&self.stats.malformed);
                tracing::warn!(path = %self.cfg.path.display(), error = %e, "malformed audit log line skipped");
            }
        }
        Flow::Go
    }

    /// Reads to EOF, sending every complete line. Returns the bytes read.
    async fn drain(&mut self, r: &mut Reader) -> Result<(u64, Flow), AuditError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = r
                .file
                .read(&mut buf)
                .await
                .map_err(|source| AuditError::Io {
                    path: self.cfg.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok((total, Flow::Go));
            }
            total += n as u64;
            r.read_pos += n as u64;
            let mut chunk = &buf[..n];
            while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
                let (head, tail) = (&chunk[..nl], &chunk[nl + 1..]);
                if r.skipping {
                    r.skipping = false;
                } else if r.pending.is_empty() {
                    if let Flow::Stop = self.handle_line(head).await {
                        // Not sent: leave the line for the next run.
                        r.pending.extend_from_slice(head);
                        r.pending.push(b'\n');
                        r.pending.extend_from_slice(tail);
                        return Ok((total, Flow::Stop));
                    }
                } else {
                    let mut line = std::mem::take(&mut r.pending);
                    line.extend_from_slice(head);
                    if let Flow::Stop = self.handle_line(&line).await {
                        r.pending = line;
                        r.pending.push(b'\n');
                        r.pending.extend_from_slice(tail);
                        return Ok((total, Flow::Stop));
                    }
                }
                chunk = tail;
            }
            if !r.skipping {
                r.pending.extend_from_slice(chunk);
                if r.pending.len() > self.cfg.max_line_bytes {
                    AuditStats::inc(&self.stats.malformed);
                    tracing::warn!(path = %self.cfg.path.display(), max = self.cfg.max_line_bytes, "over-long audit log line skipped");
                    r.pending.clear();
                    r.skipping = true;
                }
            }
        }
    }

    fn save(&self, r: &Reader) {
        if let Err(e) = r.state().save(&self.cfg.state_file) {
            tracing::warn!(path = %self.cfg.state_file.display(), error = %e, "cannot save audit file state");
        }
    }

    /// Reads what is left of a file rotated away, its last line included when it ends
    /// without a newline.
    async fn finish_rotated(&mut self, r: &mut Reader) -> Result<Flow, AuditError> {
        let (_, flow) = self.drain(r).await?;
        if let Flow::Stop = flow {
            self.save(r);
            return Ok(Flow::Stop);
        }
        if !r.pending.is_empty() && !r.skipping {
            // The old file ended without a newline: its last line is complete.
            let line = std::mem::take(&mut r.pending);
            if let Flow::Stop = self.handle_line(&line).await {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Go)
    }

    /// Sleeps one poll interval; true when stop was asked for.
    async fn pause(&mut self) -> bool {
        let poll = Duration::from_millis(self.cfg.poll_interval_ms.max(1));
        tokio::select! {
            () = tokio::time::sleep(poll) => false,
            r = self.stop.changed() => r.is_err() || *self.stop.borrow(),
        }
    }

    async fn run(mut self) -> Result<(), AuditError> {
        let path = self.cfg.path.clone();
        let mut saved = FileState::load(&self.cfg.state_file);
        let mut cur: Option<Reader> = None;

        // A saved file that was rotated away while we were down: finish it first.
        if let Some(st) = saved {
            let same =
                std::fs::metadata(&path).is_ok_and(|m| m.ino() == st.inode && m.dev() == st.dev);
            if !same {
                cur = resume_rotated(&path, st).await;
                // Whatever happens, the file now at `path` is new to us: read it from 0.
                saved = Some(FileState {
                    dev: 0,
                    inode: 0,
                    offset: 0,
                });
            }
        }
        if saved.is_none() && cur.is_none() && std::fs::metadata(&path).is_err() {
            // No file yet: the one that appears is new, so none of it was seen. Read it whole.
            saved = Some(FileState {
                dev: 0,
                inode: 0,
                offset: 0,
            });
        }
        let mut first_open = true;
        let mut open_error_logged = false;

        loop {
            if self.stop_requested() {
                if let Some(r) = &cur {
                    self.save(r);
                }
                return Ok(());
            }
            if cur.is_none() {
                let start = match tokio::fs::metadata(&path).await {
                    Ok(m) if first_open => match saved {
                        Some(st) if st.inode == m.ino() && st.dev == m.dev() => {
                            if st.offset <= m.len() { st.offset } else { 0 }
                        }
                        Some(_) => 0,
                        None => match self.cfg.start_at {
                            StartAt::End => m.len(),
                            StartAt::Beginning => 0,
                        },
                    },
                    Ok(_) => 0,
                    Err(_) => u64::MAX,
                };
                if start != u64::MAX {
                    match open_at(&path, start).await {
                        Ok(r) => {
                            tracing::debug!(path = %path.display(), offset = r.read_pos, inode = r.inode, "following audit log");
                            first_open = false;
                            open_error_logged = false;
                            saved = None;
                            self.save(&r);
                            cur = Some(r);
                        }
                        Err(e) => {
                            if !open_error_logged {
                                tracing::warn!(path = %path.display(), error = %e, "cannot open audit log; retrying");
                                open_error_logged = true;
                            }
                        }
                    }
                }
            }
            if let Some(mut r) = cur.take() {
                let (n, flow) = self.drain(&mut r).await?;
                if n > 0 || matches!(flow, Flow::Stop) {
                    self.save(&r);
                }
                if let Flow::Stop = flow {
                    return Ok(());
                }
                if rewind_if_truncated(&mut r, &path).await? {
                    self.save(&r);
                    cur = Some(r);
                    continue;
                }
                // Rename rotation: the path now names another file. Finish the old one.
                let rotated = match tokio::fs::metadata(&path).await {
                    Ok(m) => m.ino() != r.inode || m.dev() != r.dev,
                    Err(_) => false, // renamed away, no new file yet: keep reading the old one
                };
                if rotated {
                    if let Flow::Stop = self.finish_rotated(&mut r).await? {
                        return Ok(());
                    }
                    tracing::info!(path = %path.display(), "audit log rotated; following the new file");
                    continue; // cur stays None: open the new file at 0
                }
                cur = Some(r);
            }
            if self.pause().await {
                if let Some(r) = &cur {
                    self.save(r);
                }
                return Ok(());
            }
        }
    }
}

/// Follows `cfg.path`, sending each audit event to `tx`, until `stop` turns true (or its
/// sender is dropped) or `tx` is closed. Malformed lines are counted and skipped.
pub async fn follow_file(
    cfg: FileSourceConfig,
    tx: mpsc::Sender<AuditEvent>,
    stats: Arc<AuditStats>,
    stop: watch::Receiver<bool>,
) -> Result<(), AuditError> {
    Follower {
        cfg,
        tx,
        stats,
        stop,
        line_no: 0,
    }
    .run()
    .await
}
