//! On-disk spool: one per sink, an append-only queue of JSON lines.
//!
//! ## Layout
//! `DIR/lock` (flock, one process per spool), `DIR/<20-digit id>.seg` segment files and
//! `DIR/ack` (the read position `segment offset`, replaced atomically by writing
//! `DIR/ack.tmp` and renaming it).
//!
//! ## Framing
//! Every record is `magic u32 LE | len u32 LE | crc32 u32 LE | payload`, the CRC covering
//! the length and the payload. A torn write (crash in the middle of an append) leaves a
//! short or mismatching record at the tail of a segment: it is detected and skipped. A
//! damaged record in the middle is skipped by scanning forward to the next valid record.
//! A restarted process never appends to an old segment; it opens a new one.
//!
//! ## fsync policy
//! Appends are plain `write(2)`s: once `append` returns the record survives a crash of the
//! process (`kill -9`). Every `spool_sync_ms` the sink worker takes a [`SyncJob`]
//! ([`Spool::sync_job`]) and runs it on a blocking thread, so fsync latency never stalls
//! the worker: it `fdatasync`s the segments written since the last job (including ones
//! rotated out meanwhile), writes the ack file with `fsync` before its rename, and
//! `fsync`s the directory when segments were created or deleted. At shutdown the worker
//! runs [`Spool::sync`] inline. On power loss, records appended in the last sync interval
//! (plus the duration of one sync) can be lost, and records delivered in it can be
//! delivered again. Between syncs the ack file is rewritten (without fsync) every 64
//! acknowledged records and when a segment is deleted.
//!
//! ## Cap
//! `max_bytes` caps the undelivered bytes (framing included). Appending beyond it drops
//! the oldest records and reports how many. Consumed bytes at the front of the oldest
//! segment are reclaimed when that segment is deleted, so the disk usage is at most
//! `max_bytes` plus one segment (`max_bytes / 8`, at most 16 MiB).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: u32 = 0x5431_5350; // "PS1T" little-endian: T1609 spool
const HEADER: u64 = 12;
/// Largest record accepted (the payload of one alert).
pub const MAX_RECORD: u64 = 256 * 1024 * 1024;
const FIRST_SEGMENT: u64 = 1 << 32;
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

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A read position: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    seg: u64,
    off: u64,
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
struct Segment {
    id: u64,
    size: u64,
}

/// One sink's spool. Not thread safe; owned by the sink worker.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    seg_max: u64,
    segments: VecDeque<Segment>,
    read: Pos,
    writer: Option<(u64, File)>,
    reader: Option<(u64, File)>,
    live: u64,
    corrupt: u64,
    data_dirty: bool,
    dir_dirty: bool,
    /// Rotated-out segments whose data still needs an fdatasync.
    pending_sync: Vec<(File, PathBuf)>,
    /// Read position last written to `ack` with fsync.
    durable_ack: Option<Pos>,
    ack_dirty: bool,
    acked_since_persist: u32,
    /// Consecutive failed `ack` rewrites (logged at the first).
    ack_failures: u32,
    _lock: File,
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

fn crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut v = Vec::with_capacity(payload.len() + 12);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&crc(len, payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn write_ack(dir: &Path, tmp_name: &str, pos: Pos, durable: bool) -> Result<(), SpoolError> {
    let tmp = dir.join(tmp_name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    writeln!(f, "t1609-spool-ack-v1 {} {}", pos.seg, pos.off).map_err(io_err("write", &tmp))?;
    if durable {
        f.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    let ack = dir.join("ack");
    fs::rename(&tmp, &ack).map_err(io_err("rename ack file to", &ack))
}

/// Durability work taken from a [`Spool`] by [`Spool::sync_job`].
#[derive(Debug)]
pub struct SyncJob {
    dir: PathBuf,
    files: Vec<(File, PathBuf)>,
    ack: Option<Pos>,
    fsync_dir: bool,
}

impl SyncJob {
    /// True when there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.ack.is_none() && !self.fsync_dir
    }

    /// `fdatasync`s the segments, writes `ack` durably (its own temporary name, so it
    /// never races the worker's non-durable rewrites) and `fsync`s the directory.
    ///
    /// # Errors
    /// The first I/O error.
    pub fn run(self) -> Result<(), SpoolError> {
        for (f, p) in &self.files {
            f.sync_data().map_err(io_err("fdatasync", p))?;
        }
        if let Some(pos) = self.ack {
            write_ack(&self.dir, "ack.sync.tmp", pos, true)?;
        }
        if self.fsync_dir || self.ack.is_some() {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, restoring the read position and
    /// taking an exclusive lock (waiting up to 2 s for a previous owner to let go).
    ///
    /// # Errors
    /// When the directory cannot be created or read, or another process holds the lock.
    ///
    /// # Panics
    /// Only on a broken internal invariant (a bug).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(SpoolError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(dir.join("ack.tmp"));
        let _ = fs::remove_file(dir.join("ack.sync.tmp"));
        let mut ids = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let e = e.map_err(io_err("read directory", dir))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let size = e.metadata().map_err(io_err("stat", &e.path()))?.len();
                ids.push(Segment { id, size });
            } else if name.starts_with(".prepend-") {
                let _ = fs::remove_file(e.path());
            }
        }
        ids.sort_by_key(|s| s.id);
        let ack = Self::read_ack(dir);
        let mut segments: VecDeque<Segment> = ids.into();
        let mut read = Pos { seg: 0, off: 0 };
        if let Some((aseg, aoff)) = ack {
            while segments.front().is_some_and(|s| s.id < aseg) {
                let s = segments.pop_front().expect("front exists");
                let p = dir.join(seg_name(s.id));
                fs::remove_file(&p).map_err(io_err("remove", &p))?;
            }
            if let Some(f) = segments.front() {
                read = if f.id == aseg {
                    Pos {
                        seg: f.id,
                        off: aoff.min(f.size),
                    }
                } else {
                    Pos { seg: f.id, off: 0 }
                };
            }
        } else if let Some(f) = segments.front() {
            read = Pos { seg: f.id, off: 0 };
        }
        let live = segments.iter().map(|s| s.size).sum::<u64>() - read.off;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            seg_max: (max_bytes / 8).clamp(64 * 1024, 16 * 1024 * 1024),
            segments,
            read,
            writer: None,
            reader: None,
            live,
            corrupt: 0,
            data_dirty: false,
            dir_dirty: false,
            pending_sync: Vec::new(),
            durable_ack: None,
            ack_dirty: false,
            acked_since_persist: 0,
            ack_failures: 0,
            _lock: lock,
        })
    }

    fn read_ack(dir: &Path) -> Option<(u64, u64)> {
        let s = fs::read_to_string(dir.join("ack")).ok()?;
        let mut it = s.split_whitespace();
        (it.next()? == "t1609-spool-ack-v1").then_some(())?;
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }

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

    fn seg_path(&self, id: u64) -> PathBuf {
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

    /// Deletes fully consumed segments at the front (never the last one).
    fn reap_front(&mut self) -> Result<(), SpoolError> {
        while self.segments.len() > 1 {
            let f = &self.segments[0];
            if f.id != self.read.seg || self.read.off < f.size {
                break;
            }
            let id = f.id;
            self.segments.pop_front();
            let next = self.segments[0].id;
            self.read = Pos { seg: next, off: 0 };
            self.ack_dirty = true;
            if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
                self.reader = None;
            }
            // Delete before rewriting `ack`: on a full disk the new ack needs the space
            // this frees. Crash-safe either way: an ack naming a deleted segment makes
            // `open` resume at the start of the next one, which is exactly this position.
            let p = self.seg_path(id);
            fs::remove_file(&p).map_err(io_err("remove segment", &p))?;
            self.dir_dirty = true;
            self.persist_ack()?;
        }
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
        let mut dropped = 0;
        while self.live > 0 && self.live + need > self.max_bytes {
            match self.next_record(false)? {
                Some(r) => {
                    self.ack(r.next)?;
                    dropped += 1;
                }
                None => break,
            }
        }
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

    fn reader_for(&mut self, id: u64) -> Result<&File, SpoolError> {
        if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
            let p = self.seg_path(id);
            let f = File::open(&p).map_err(io_err("open segment", &p))?;
            self.reader = Some((id, f));
        }
        Ok(&self.reader.as_ref().expect("reader set").1)
    }

    fn skip_to(&mut self, off: u64) {
        self.live -= off - self.read.off;
        self.read.off = off;
        self.ack_dirty = true;
    }

    fn next_record(&mut self, with_payload: bool) -> Result<Option<Record>, SpoolError> {
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
            let magic = u32::from_le_bytes(hdr[0..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(hdr[4..8].try_into().expect("4 bytes"));
            let sum = u32::from_le_bytes(hdr[8..12].try_into().expect("4 bytes"));
            let end = off + HEADER + u64::from(len);
            if magic == MAGIC && end <= size && u64::from(len) <= MAX_RECORD {
                let mut payload = vec![0u8; len as usize];
                // The CRC is checked even when only skipping, so a damaged length is caught.
                f.read_exact_at(&mut payload, off + HEADER)
                    .map_err(io_err("read segment", &path))?;
                if crc(len, &payload) == sum {
                    if !with_payload {
                        payload = Vec::new();
                    }
                    return Ok(Some(Record {
                        payload,
                        next: Pos { seg: id, off: end },
                    }));
                }
            }
            // Torn or damaged: resynchronise on the next valid record in this segment.
            self.corrupt += 1;
            let resume = self.scan_valid(id, off + 1, size)?;
            tracing::warn!(
                spool = %self.dir.display(),
                segment = id,
                offset = off,
                skipped = resume - off,
                "spool: skipped a torn or damaged record"
            );
            self.skip_to(resume);
        }
    }

    /// Offset of the next valid record at or after `from`, or `size`.
    fn scan_valid(&mut self, id: u64, from: u64, size: u64) -> Result<u64, SpoolError> {
        let path = self.seg_path(id);
        let f = self.reader_for(id)?;
        let n = usize::try_from(size.saturating_sub(from)).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; n];
        f.read_exact_at(&mut buf, from)
            .map_err(io_err("read segment", &path))?;
        let m = MAGIC.to_le_bytes();
        let mut i = 0;
        while i + 12 <= buf.len() {
            if buf[i..i + 4] == m {
                let len = u32::from_le_bytes(buf[i + 4..i + 8].try_into().expect("4 bytes"));
                let sum = u32::from_le_bytes(buf[i + 8..i + 12].try_into().expect("4 bytes"));
                let end = i + 12 + len as usize;
                if end <= buf.len() && crc(len, &buf[i + 12..end]) == sum {
                    return Ok(from + i as u64);
                }
            }
            i += 1;
        }
        Ok(size)
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

    /// Rewrites `ack` (no fsync) when the read position moved.
    fn persist_ack(&mut self) -> Result<(), SpoolError> {
        if !self.ack_dirty {
            return Ok(());
        }
        write_ack(&self.dir, "ack.tmp", self.read, false)?;
        self.ack_dirty = false;
        self.ack_failures = 0;
        self.acked_since_persist = 0;
        Ok(())
    }

    /// Takes the pending durability work (segment fdatasyncs, a durable `ack`, a directory
    /// fsync) so it can run on a blocking thread while the worker keeps going. Run at most
    /// one job at a time.
    ///
    /// # Errors
    /// When the open segment's descriptor cannot be duplicated.
    pub fn sync_job(&mut self) -> Result<SyncJob, SpoolError> {
        let mut files = std::mem::take(&mut self.pending_sync);
        if self.data_dirty
            && let Some((id, w)) = &self.writer
        {
            let p = self.dir.join(seg_name(*id));
            files.push((
                w.try_clone()
                    .map_err(io_err("duplicate descriptor of", &p))?,
                p,
            ));
            self.data_dirty = false;
        }
        let ack = (self.durable_ack != Some(self.read)).then_some(self.read);
        self.durable_ack = Some(self.read);
        Ok(SyncJob {
            dir: self.dir.clone(),
            files,
            ack,
            fsync_dir: std::mem::take(&mut self.dir_dirty),
        })
    }

    /// Makes everything appended and acknowledged so far durable (see the module docs),
    /// on the calling thread.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.sync_job()?.run()
    }

    /// Puts records in front of everything spooled (used at shutdown for alerts still in
    /// memory, which are older than the spool's contents). Ignores the cap.
    ///
    /// # Errors
    /// On I/O errors.
    ///
    /// # Panics
    /// Only on a broken internal invariant (a bug).
    pub fn prepend(&mut self, payloads: &[&[u8]]) -> Result<(), SpoolError> {
        if payloads.is_empty() {
            return Ok(());
        }
        if self.is_empty() {
            for p in payloads {
                self.append(p)?;
            }
            return Ok(());
        }
        self.reap_front()?;
        let front = self
            .segments
            .front()
            .expect("non-empty spool has a segment");
        let (fid, fsize, off) = (front.id, front.size, self.read.off);
        let mut data: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        let added = data.len() as u64;
        let fpath = self.seg_path(fid);
        let f = self.reader_for(fid)?;
        let mut rest = vec![0u8; usize::try_from(fsize - off).unwrap_or(0)];
        f.read_exact_at(&mut rest, off)
            .map_err(io_err("read segment", &fpath))?;
        data.extend_from_slice(&rest);
        let nid = fid - 1;
        let tmp = self.dir.join(format!(".prepend-{nid}"));
        let mut t = File::create(&tmp).map_err(io_err("create", &tmp))?;
        t.write_all(&data).map_err(io_err("write", &tmp))?;
        t.sync_all().map_err(io_err("fsync", &tmp))?;
        let npath = self.seg_path(nid);
        fs::rename(&tmp, &npath).map_err(io_err("rename to", &npath))?;
        fsync_dir(&self.dir)?;
        self.segments.push_front(Segment {
            id: nid,
            size: data.len() as u64,
        });
        self.read = Pos { seg: nid, off: 0 };
        self.sync()?;
        self.live += added;
        // The copied tail of the old front segment is now in the new one.
        self.segments.remove(1);
        self.live -= fsize - off;
        if self.writer.as_ref().is_some_and(|(w, _)| *w == fid) {
            self.writer = None;
        }
        if self.reader.as_ref().is_some_and(|(r, _)| *r == fid) {
            self.reader = None;
        }
        fs::remove_file(&fpath).map_err(io_err("remove segment", &fpath))?;
        self.dir_dirty = true;
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Spool) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = s.peek().unwrap() {
            out.push(String::from_utf8(r.payload).unwrap());
            s.ack(r.next).unwrap();
        }
        out
    }

    #[test]
    fn append_read_ack_restore() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20).unwrap();
            assert!(s.is_empty());
            for i in 0..10 {
                assert!(s.append(format!("r{i}").as_bytes()).unwrap().stored);
            }
            for i in 0..3 {
                let r = s.peek().unwrap().unwrap();
                assert_eq!(r.payload, format!("r{i}").as_bytes());
                s.ack(r.next).unwrap();
            }
            s.sync().unwrap();
        }
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        let got = drain(&mut s);
        assert_eq!(got, (3..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
        assert!(s.is_empty());
        s.append(b"after").unwrap();
        assert_eq!(drain(&mut s), vec!["after"]);
    }

    #[test]
    fn lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let _a = Spool::open(d.path(), 1 << 20).unwrap();
        // A second descriptor in the same process conflicts with flock too.
        let t = Instant::now();
        assert!(matches!(
            Spool::open(d.path(), 1 << 20),
            Err(SpoolError::Locked { .. })
        ));
        assert!(t.elapsed() >= Duration::from_secs(1));
    }

    #[test]
    fn torn_tail_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20).unwrap();
            s.append(b"one").unwrap();
            s.append(b"two").unwrap();
            s.sync().unwrap();
        }
        // Simulate a crash in the middle of a third append.
        let seg = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let rec = frame(b"three-is-torn");
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&rec[..rec.len() - 4]).unwrap();
        drop(f);
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        s.append(b"four").unwrap();
        assert_eq!(drain(&mut s), vec!["one", "two", "four"]);
        assert_eq!(s.corrupt_skipped(), 1);
    }

    #[test]
    fn damaged_middle_record_resyncs() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20).unwrap();
            for r in ["aaaa", "bbbb", "cccc"] {
                s.append(r.as_bytes()).unwrap();
            }
        }
        let seg = d.path().join(seg_name(FIRST_SEGMENT));
        let mut bytes = fs::read(&seg).unwrap();
        bytes[16 + 12 + 1] ^= 0xff; // a payload byte of "bbbb"
        fs::write(&seg, bytes).unwrap();
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(drain(&mut s), vec!["aaaa", "cccc"]);
        assert_eq!(s.corrupt_skipped(), 1);
    }

    #[test]
    fn cap_drops_oldest() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 64 * 1024).unwrap();
        let payload = |i: usize| format!("{i:06}{}", "x".repeat(1000));
        let mut dropped = 0;
        for i in 0..200 {
            let a = s.append(payload(i).as_bytes()).unwrap();
            assert!(a.stored);
            dropped += a.dropped_oldest;
        }
        assert!(s.bytes() <= 64 * 1024);
        let got = drain(&mut s);
        assert_eq!(got.len() as u64 + dropped, 200);
        let first: usize = got[0][..6].parse().unwrap();
        assert_eq!(first as u64, dropped);
        assert_eq!(got.last().unwrap()[..6], *"000199");
        // Too big for the cap at all: not stored.
        assert!(!s.append(&vec![0u8; 70 * 1024]).unwrap().stored);
        // Disk usage stays bounded by cap + one segment.
        let disk: u64 = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(disk <= 64 * 1024 + 64 * 1024 + 4096, "{disk}");
    }

    #[test]
    fn segments_rotate_and_are_deleted() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 1 << 20).unwrap(); // 128 KiB segments
        for i in 0..1000 {
            s.append(format!("{i:0500}").as_bytes()).unwrap();
        }
        let segs = || {
            fs::read_dir(d.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "seg")
                })
                .count()
        };
        assert!(segs() > 3);
        assert_eq!(drain(&mut s).len(), 1000);
        assert_eq!(segs(), 1);
    }

    #[test]
    fn prepend_goes_first_and_survives_restart() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(d.path(), 1 << 20).unwrap();
            for r in ["c", "d", "e"] {
                s.append(r.as_bytes()).unwrap();
            }
            let r = s.peek().unwrap().unwrap();
            s.ack(r.next).unwrap(); // "c" consumed
            s.prepend(&[b"a", b"b"]).unwrap();
            s.append(b"f").unwrap();
            s.sync().unwrap();
        }
        let mut s = Spool::open(d.path(), 1 << 20).unwrap();
        assert_eq!(drain(&mut s), vec!["a", "b", "d", "e", "f"]);
    }

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
