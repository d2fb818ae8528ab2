//! Keeping the spool small: fully consumed segments are deleted, the cap drops the oldest
//! records, and [`Spool::prepend`] rewrites the front segment with older records first.

use std::{
    fs::{self, File},
    io::Write,
    os::unix::fs::FileExt,
};

use super::{
    format::frame,
    queue::{Pos, Segment, Spool, SpoolError, io_err},
    sync::fsync_dir,
};

impl Spool {
    /// Deletes fully consumed segments at the front (never the last one).
    pub(super) fn reap_front(&mut self) -> Result<(), SpoolError> {
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

    /// Drops the oldest records until `need` more bytes fit under the cap; returns how many.
    pub(super) fn make_room(&mut self, need: u64) -> Result<u64, SpoolError> {
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
        Ok(dropped)
    }

    /// Puts records in front of everything spooled (used at shutdown for alerts still in
    /// memory, which are older than the spool's contents). Ignores the cap.
    ///
    /// The unread rest of the front segment is copied behind them into a new segment one
    /// id lower (written to a temporary file, then renamed), which replaces it.
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
    use crate::spool::queue::drain;

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
}
