//! The executed file as the kernel and userspace each name it, and the checks between.
//!
//! The probe keys a file by `sb->s_dev` (the kernel's device encoding), inode, size and
//! times. `stat` gives the same inode, size and times, but its device is `st_dev` in
//! glibc's encoding, and on overlayfs and btrfs not even the same device: overlayfs
//! reports a layer's device, btrfs a subvolume's. So:
//!
//! - a file the kernel reported is checked against what `fstat` of `/proc/<pid>/exe`
//!   gives by inode, size and both times ([`same_file`]); no other file has those, and a
//!   file changed since has other times;
//! - an installed tool's device for `INODES` is its mount's device as
//!   `/proc/self/mountinfo` prints it, which is `sb->s_dev` ([`Mounts`]).

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::File,
    io,
    os::unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use t1609_common::{ExeKey, dev_from_kernel, dev_to_kernel};
use t1609_identity::FileKey;

/// Why the exec's file could not be handed to classification.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not the file the probe reported (the process exec'd again, or the file changed)", path.display())]
    NotReported { path: PathBuf },
}

/// The kernel's key as t1609-identity's [`FileKey`] (device in `stat`'s encoding: for
/// most file systems, the file's own `st_dev`, so the classifier's cache answers).
pub fn file_key(k: &ExeKey) -> FileKey {
    FileKey {
        dev: dev_from_kernel(k.dev),
        ino: k.ino,
        size: k.size,
        mtime_ns: k.mtime_ns,
        ctime_ns: k.ctime_ns,
    }
}

/// The probe's key of a [`FileKey`] made by [`file_key`].
pub fn exe_key(k: &FileKey) -> Option<ExeKey> {
    Some(ExeKey {
        dev: dev_to_kernel(k.dev)?,
        pad: 0,
        ino: k.ino,
        size: k.size,
        mtime_ns: k.mtime_ns,
        ctime_ns: k.ctime_ns,
    })
}

/// The same file in the same state, whatever device number each side uses.
pub fn same_file(a: &FileKey, b: &FileKey) -> bool {
    (a.ino, a.size, a.mtime_ns, a.ctime_ns) == (b.ino, b.size, b.mtime_ns, b.ctime_ns)
}

/// Opens the file the probe reported for process `pid`: `<proc_root>/<pid>/exe` (the
/// executed file itself, even renamed or deleted since) while the process lives, else the
/// path it was exec'd by (`filename`, absolute only), which a process that already ended
/// leaves as the one way in. Either is used only if it is the reported file (inode, size
/// and times); a path in another mount namespace that names another file is refused.
pub fn open_reported(
    proc_root: &Path,
    pid: u32,
    filename: &[u8],
    reported: &FileKey,
) -> Result<(File, PathBuf), ExeError> {
    let exe = proc_root.join(pid.to_string()).join("exe");
    let first = open_checked(&exe, reported);
    if first.is_ok() || !filename.starts_with(b"/") {
        return first;
    }
    open_checked(Path::new(OsStr::from_bytes(filename)), reported)
}

fn open_checked(path: &Path, reported: &FileKey) -> Result<(File, PathBuf), ExeError> {
    // Non-blocking, as the classifier opens paths: nothing here should ever wait.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| ExeError::Open {
            path: path.to_owned(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| ExeError::Open {
        path: path.to_owned(),
        source,
    })?;
    if !same_file(&FileKey::of(&meta), reported) {
        return Err(ExeError::NotReported {
            path: path.to_owned(),
        });
    }
    Ok((file, path.to_owned()))
}

/// Mount id → `sb->s_dev` (kernel encoding), from `/proc/self/mountinfo`.
#[derive(Debug, Default)]
pub struct Mounts {
    devs: HashMap<u64, u32>,
}

impl Mounts {
    /// Reads the agent's mount table; empty when unreadable (then `st_dev` stands in).
    pub fn read() -> Mounts {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Mounts::parse(&text)
    }

    /// `mountinfo` lines: `id parent major:minor root mountpoint …`.
    fn parse(text: &str) -> Mounts {
        let devs = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split(' ');
                let id = f.next()?.parse().ok()?;
                let (major, minor) = f.nth(1)?.split_once(':')?;
                let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
                (major < 1 << 12 && minor < 1 << 20).then_some((id, (major << 20) | minor))
            })
            .collect();
        Mounts { devs }
    }

    /// The kernel's device of the file system holding `path`: its mount's, by the mount
    /// id `statx` gives; else `st_dev` converted (right on most file systems).
    pub fn kernel_dev(&self, path: &Path, st_dev: u64) -> Option<u32> {
        mount_id(path)
            .and_then(|id| self.devs.get(&id).copied())
            .or_else(|| dev_to_kernel(st_dev))
    }
}

/// `statx(STATX_MNT_ID)` of `path` (Linux >= 5.8), following symlinks.
fn mount_id(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero is a valid statx buffer.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and buffer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_MNT_ID,
            &raw mut stx,
        )
    };
    (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn keys_convert_both_ways_and_compare_without_the_device() {
        let k = ExeKey {
            dev: (254 << 20) | 1,
            pad: 0,
            ino: 42,
            size: 7,
            mtime_ns: 1,
            ctime_ns: 2,
        };
        let f = file_key(&k);
        assert_eq!(f.dev, 0xFE01);
        assert_eq!(exe_key(&f), Some(k));
        let overlay = FileKey { dev: 99, ..f };
        assert!(same_file(&f, &overlay));
        assert!(!same_file(&f, &FileKey { ctime_ns: 3, ..f }));
        assert!(!same_file(&f, &FileKey { ino: 43, ..f }));
    }

    #[test]
    fn mountinfo_gives_each_mount_its_device() {
        let m = Mounts::parse(
            "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
             35 22 0:31 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw\n\
             garbage\n\
             36 22 9999:0 / /x rw - y z rw\n",
        );
        assert_eq!(m.devs.get(&22), Some(&(254 << 20)));
        assert_eq!(m.devs.get(&35), Some(&31));
        assert_eq!(m.devs.get(&36), None, "a major past 12 bits is no device");
    }

    /// Here, the root's device by mount id and by `st_dev` agree (ext4).
    #[test]
    fn the_agents_own_binary_gets_its_mounts_device() {
        let exe = std::env::current_exe().unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        let by_mount = Mounts::read().kernel_dev(&exe, meta.dev()).unwrap();
        assert_eq!(dev_from_kernel(by_mount), meta.dev(), "{}", exe.display());
    }

    #[test]
    fn only_the_reported_file_is_opened() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let key = FileKey::of(&std::fs::metadata(&exe).unwrap());
        let path = exe.as_os_str().as_bytes();
        let proc = Path::new("/proc");
        assert_eq!(
            open_reported(proc, me, b"", &key).unwrap().1,
            proc.join(format!("{me}/exe"))
        );
        // The process is gone: its path, when absolute, is the way in.
        let gone = Path::new("/nonexistent");
        assert_eq!(open_reported(gone, me, path, &key).unwrap().1, exe);
        assert!(matches!(
            open_reported(gone, me, b"relative/x", &key),
            Err(ExeError::Open { .. })
        ));
        // Another state of the file (or another file) is refused either way.
        let other = FileKey {
            ctime_ns: key.ctime_ns + 1,
            ..key
        };
        assert!(matches!(
            open_reported(proc, me, b"", &other),
            Err(ExeError::NotReported { .. })
        ));
        assert!(matches!(
            open_reported(gone, me, path, &other),
            Err(ExeError::NotReported { .. })
        ));
    }
}
