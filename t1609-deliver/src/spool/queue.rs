//! The spool as a queue: records appended at the tail, read and acknowledged at the head.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::format::{FIRST_SEGMENT, HEADER, Header, MAGIC, MAX_RECORD, frame, seg_name};

/// Rewrite `ack` (without fsync) every this many acknowledged records.
const ACK_EVERY: u32 = 64;

/// Spool errors; each names the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool {path} is locked by another process")]
    Locked { path: PathBuf },
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A read position: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub(super) seg: u64,
    pub(super) off: u64,
}

/// A record read from the head of the spool; pass `next` to [`Spool::ack`] once delivered.
#[derive(Debug)]
pub struct Record {
    pub payload: Vec<u8>,
    pub next: Pos,
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Oldest records dropped to make room.
    pub dropped_oldest: u64,
    /// False when the record alone is larger than the cap and was not stored.
    pub stored: bool,
}

#[derive(Debug)]
pub(super) struct Segment {
    pub(super) id: u64,
    pub(super) size: u64,
}

/// One sink's spool. Not thread safe; owned by the sink worker.
#[derive(Debug)]
pub struct Spool {
    pub(super) dir: PathBuf,
    pub(super) max_bytes: u64,
    pub(super) seg_max: u64,
    pub(super) segments: VecDeque<Segment>,
    pub(super) read: Pos,
    pub(super) writer: Option<(u64, File)>,
    pub(super) reader: Option<(u64, File)>,
    pub(super) live: u64,
    pub(super) corrupt: u64,
    pub(super) data_dirty: bool,
    pub(super) dir_dirty: bool,
    /// Rotated-out segments whose data still needs an fdatasync.
    pub(super) pending_sync: Vec<(File, PathBuf)>,
    /// Read position last written to `ack` with fsync.
    pub(super) durable_ack: Option<Pos>,
    pub(super) ack_dirty: bool,
    pub(super) acked_since_persist: u32,
    /// Consecutive failed `ack` rewrites (logged at the first).
    pub(super) ack_failures: u32,
    pub(super) _lock: File,
}

impl Spool {
    /// True when nothing is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Undelivered bytes (framing included).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.live
    }

    /// Records skipped because they were torn or damaged.
    #[must_use]
    pub fn corrupt_skipped(&self) -> u64 {
        self.corrupt
    }

    /// The directory of this spool.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether appending a payload of `len` bytes would drop older records.
    #[must_use]
    pub fn would_drop(&self, len: usize) -> bool {
        self.live + len as u64 + HEADER > self.max_bytes
    }

    pub(super) fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(seg_name(id))
    }

    fn open_new_segment(&mut self) -> Result<(), SpoolError> {
        if let Some((wid, w)) = self.writer.take()
            && self.data_dirty
        {
            // fdatasync'd by the next sync job, off the worker's thread.
            self.pending_sync.push((w, self.seg_path(wid)));
            self.data_dirty = false;
        }
        let id = self
            .segments
            .back()
            .map_or(FIRST_SEGMENT, |s| s.id + 1)
            .max(FIRST_SEGMENT);
        let p = self.seg_path(id);
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err("create segment", &p))?;
        if self.segments.is_empty() {
            self.read = Pos { seg: id, off: 0 };
        }
        self.segments.push_back(Segment { id, size: 0 });
        self.writer = Some((id, f));
        self.dir_dirty = true;
        self.reap_front()?;
        Ok(())
    }

    /// Appends one record, dropping the oldest records first if the cap requires it.
    ///
    /// # Errors
    /// On I/O errors; nothing is dropped then.
    ///
    /// # Panics
    /// Only on a broken internal invariant (a bug).
    pub fn append(&mut self, payload: &[u8]) -> Result<Appended, SpoolError> {
        let need = payload.len() as u64 + HEADER;
        if need > self.max_bytes || payload.len() as u64 > MAX_RECORD {
            return Ok(Appended {
                dropped_oldest: 0,
                stored: false,
            });
        }
        let dropped = self.make_room(need)?;
        let rotate = match (&self.writer, self.segments.back()) {
            (Some((wid, _)), Some(last)) if *wid == last.id => {
                last.size > 0 && (last.size + need > self.seg_max || self.live == 0)
            }
            _ => true,
        };
        if rotate {
            self.open_new_segment()?;
        }
        let rec = frame(payload);
        let (wid, w) = self.writer.as_mut().expect("writer opened");
        let p = self.dir.join(seg_name(*wid));
        if let Err(e) = w.write_all(&rec) {
            // A partial write (disk full) leaves a torn record. Cut it off, so the segment
            // still ends on a record boundary and can be appended to once there is room.
            let last = self.segments.back_mut().expect("segment exists");
            if w.set_len(last.size).is_err() {
                // Could not: start a fresh segment next time. The reader will skip the torn
                // bytes (`skip_to` subtracts them from `live`), so count them in `live`.
                self.writer = None;
                let now = fs::metadata(&p).map_or(last.size, |m| m.len());
                if now > last.size {
                    self.live += now - last.size;
                    last.size = now;
                }
            }
            return Err(io_err("append to", &p)(e));
        }
        let last = self.segments.back_mut().expect("segment exists");
        last.size += rec.len() as u64;
        self.live += rec.len() as u64;
        self.data_dirty = true;
        Ok(Appended {
            dropped_oldest: dropped,
            stored: true,
        })
    }

    /// Reads the oldest record without consuming it. Torn or damaged records are skipped
    /// (and counted in [`Spool::corrupt_skipped`]).
    ///
    /// # Errors
    /// On I/O errors.
    pub fn peek(&mut self) -> Result<Option<Record>, SpoolError> {
        self.next_record(true)
    }

    pub(super) fn reader_for(&mut self, id: u64) -> Result<&File, SpoolError> {
        if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
            let p = self.seg_path(id);
            let f = File::open(&p).map_err(io_err("open segment", &p))?;
            self.reader = Some((id, f));
        }
        Ok(&self.reader.as_ref().expect("reader set").1)
    }

    pub(super) fn skip_to(&mut self, off: u64) {
        self.live -= off - self.read.off;
        self.read.off = off;
        self.ack_dirty = true;
    }

    /// The record at the read position (its payload only when `with_payload`), skipping
    /// damaged ones; `None` when everything is consumed.
    pub(super) fn next_record(&mut self, with_payload: bool) -> Result<Option<Record>, SpoolError> {
        loop {
            self.reap_front()?;
            let Some(front) = self.segments.front() else {
                return Ok(None);
            };
            let (id, size, off) = (front.id, front.size, self.read.off);
            if off >= size {
                return Ok(None); // only the last segment is left, and it is consumed
            }
            let path = self.seg_path(id);
            let f = self.reader_for(id)?;
            let mut hdr = [0u8; 12];
            if size - off < HEADER {
                self.corrupt += 1;
                self.skip_to(size);
                continue;
            }
            f.read_exact_at(&mut hdr, off)
                .map_err(io_err("read segment", &path))?;
            let h = Header::parse(&hdr);
            let end = off + HEADER + u64::from(h.len);
            if h.magic == MAGIC && end <= size && u64::from(h.len) <= MAX_RECORD {
                let mut payload = vec![0u8; h.len as usize];
                // The CRC is checked even when only skipping, so a damaged length is caught.
                f.read_exact_at(&mut payload, off + HEADER)
                    .map_err(io_err("read segment", &path))?;
                if h.checks(&payload) {
                    if !with_payload {
                        payload = Vec::new();
                    }
                    return Ok(Some(Record {
                        payload,
                        next: Pos { seg: id, off: end },
                    }));
                }
            }
            self.skip_damaged(id, off, size)?;
        }
    }

    /// Consumes records up to `next` (from [`Record::next`]).
    ///
    /// # Errors
    /// When a finished segment cannot be deleted or the ack file cannot be written.
    pub fn ack(&mut self, next: Pos) -> Result<(), SpoolError> {
        if next.seg != self.read.seg || next.off < self.read.off {
            return Ok(()); // stale position (the record was dropped meanwhile)
        }
        self.skip_to(next.off);
        self.acked_since_persist += 1;
        if self.acked_since_persist >= ACK_EVERY
            && let Err(e) = self.persist_ack()
        {
            // Best effort between syncs (a disk full must not stop delivery, which is
            // what frees it): retried at the next ack; a crash meanwhile re-delivers.
            if self.ack_failures == 0 {
                tracing::warn!(spool = %self.dir.display(), error = %e, "spool: cannot rewrite ack; retrying");
            }
            self.ack_failures = self.ack_failures.saturating_add(1);
        }
        self.reap_front()
    }
}

/// Reads and acknowledges every record: their payloads as text.
#[cfg(test)]
pub(super) fn drain(s: &mut Spool) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(r) = s.peek().unwrap() {
        out.push(String::from_utf8(r.payload).unwrap());
        s.ack(r.next).unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tmpfs of `size` for one test, unmounted on drop. None when not root.
    struct SmallFs(tempfile::TempDir);

    impl SmallFs {
        fn mount(size: &str) -> Option<Self> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                assert!(
                    std::env::var("T1609_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                    "mounting a tmpfs needs root, and T1609_REQUIRE_PRIVILEGED=1"
                );
                eprintln!("skipping: mounting a tmpfs needs root");
                return None;
            }
            let d = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(d.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount -t tmpfs");
            Some(Self(d))
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0.path())
                .status();
        }
    }

    #[test]
    fn full_disk_leaves_no_torn_record_and_recovers() {
        let Some(fs) = SmallFs::mount("64k") else {
            return;
        };
        let dir = fs.0.path().join("sp");
        let mut s = Spool::open(&dir, 1 << 30).unwrap();
        let rec = |i: usize| format!("{i:05}{}", "x".repeat(995));
        let mut stored = 0;
        let err = loop {
            match s.append(rec(stored).as_bytes()) {
                Ok(r) => {
                    assert!(r.stored);
                    stored += 1;
                }
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(stored > 10, "{stored}");
        // Fill what the cut-off partial record gave back: not one byte left.
        let mut f = File::create(fs.0.path().join("filler")).unwrap();
        while f.write_all(&[0u8; 512]).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
        // The worker's periodic sync: its ack write fails on the full disk, but its
        // fdatasyncs run and it releases the descriptors of rotated-out segments.
        assert!(s.sync().is_err());
        // Everything stored reads back, nothing torn; `live` ends at zero (no underflow).
        let got = drain(&mut s);
        assert_eq!(got, (0..stored).map(rec).collect::<Vec<_>>());
        assert_eq!(s.corrupt_skipped(), 0);
        assert!(s.is_empty());
        // The consumed segment is deleted before `ack` is rewritten, so the spool works
        // again although the disk was completely full.
        assert!(s.append(b"after").unwrap().stored);
        assert_eq!(drain(&mut s), vec!["after"]);
        s.sync().unwrap();
        drop(s);
        let mut s = Spool::open(&dir, 1 << 30).unwrap();
        assert!(s.is_empty(), "nothing replayed after a restart");
        assert!(drain(&mut s).is_empty());
    }
}
