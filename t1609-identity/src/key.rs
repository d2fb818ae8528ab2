//! [`FileKey`]: which file, in which state. A verdict is kept under this key, so it no
//! longer applies once the file is replaced or written to.

use std::{fs::Metadata, os::unix::fs::MetadataExt as _};

use serde::Serialize;

/// The identity of an executable file and of its content's state: device and inode say
/// which file, size and times say which content.
///
/// Both times are kept: `touch` can put `mtime` back after a same-size rewrite, but
/// nothing in userspace can set `ctime`, which any write or `touch` moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl FileKey {
    /// The key of a file's current state (`stat`/`fstat` metadata).
    pub fn of(meta: &Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Which file, whatever its content: the key of the kernel's inode watch map.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Saturates instead of wrapping: a time stamp past year 2262 still gives a stable key.
fn nanos(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Write as _};

    use super::FileKey;

    #[test]
    fn key_changes_with_content_and_not_with_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"one").unwrap();
        let k1 = FileKey::of(&fs::metadata(&p).unwrap());
        let _ = fs::read(&p).unwrap();
        assert_eq!(k1, FileKey::of(&fs::metadata(&p).unwrap()));
        // Same size, new content: ctime moves even if mtime were put back.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all(b"two").unwrap();
        drop(f);
        let k2 = FileKey::of(&fs::metadata(&p).unwrap());
        assert_eq!(k1.dev_ino(), k2.dev_ino());
        assert_eq!(k1.size, k2.size);
        assert_ne!(k1, k2);
    }
}
