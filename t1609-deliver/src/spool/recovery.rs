//! Picking up after a crash or a restart: the lock, the segments and the read position
//! found on disk, and skipping the torn or damaged records a crash can leave.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, OpenOptionsExt, PermissionsExt},
    },
    path::Path,
    time::{Duration, Instant},
};

use super::{
    format::{find_record, parse_ack, seg_name, segment_id},
    queue::{Pos, Segment, Spool, SpoolError, io_err},
};

/// Takes the spool's `flock`, waiting up to 2 s for a previous owner to let go (an agent
/// restarted by its supervisor while the old one is still exiting).
fn lock(dir: &Path) -> Result<File, SpoolError> {
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
            return Ok(lock);
        }
        if Instant::now() >= deadline {
            return Err(SpoolError::Locked {
                path: dir.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
        let lock = lock(dir)?;
        // What a crash in the middle of an `ack` rewrite or a `prepend` leaves.
        let _ = fs::remove_file(dir.join("ack.tmp"));
        let _ = fs::remove_file(dir.join("ack.sync.tmp"));
        let mut ids = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let e = e.map_err(io_err("read directory", dir))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = segment_id(name) {
                let size = e.metadata().map_err(io_err("stat", &e.path()))?.len();
                ids.push(Segment { id, size });
            } else if name.starts_with(".prepend-") {
                let _ = fs::remove_file(e.path());
            }
        }
        ids.sort_by_key(|s| s.id);
        let ack = fs::read_to_string(dir.join("ack"))
            .ok()
            .and_then(|s| parse_ack(&s));
        let mut segments: VecDeque<Segment> = ids.into();
        let mut read = Pos { seg: 0, off: 0 };
        if let Some((aseg, aoff)) = ack {
            // Segments before the acknowledged one were consumed; a crash kept them.
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

    /// The record at `off` in segment `id` is torn or damaged: count it and resynchronise
    /// on the next valid record in this segment (or its end).
    pub(super) fn skip_damaged(&mut self, id: u64, off: u64, size: u64) -> Result<(), SpoolError> {
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
        Ok(())
    }

    /// Offset of the next valid record at or after `from`, or `size`.
    fn scan_valid(&mut self, id: u64, from: u64, size: u64) -> Result<u64, SpoolError> {
        let path = self.seg_path(id);
        let f = self.reader_for(id)?;
        let n = usize::try_from(size.saturating_sub(from)).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; n];
        f.read_exact_at(&mut buf, from)
            .map_err(io_err("read segment", &path))?;
        Ok(find_record(&buf).map_or(size, |i| from + i as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::spool::{
        format::{FIRST_SEGMENT, frame},
        queue::drain,
    };

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
}
