//! Namespace inodes from `/proc/<pid>/ns/*`, compared with the host's (PID 1's).

use std::{fs, io, os::unix::fs::MetadataExt, path::Path};

use serde::Serialize;

/// Namespace inode numbers (`readlink /proc/<pid>/ns/<kind>` → `kind:[inode]`). A kind the
/// kernel lacks (e.g. no cgroup namespaces) reads as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Namespaces {
    pub pid: u64,
    pub mnt: u64,
    pub net: u64,
    pub user: u64,
    pub uts: u64,
    pub cgroup: u64,
}

/// Parses `pid:[4026531836]` → 4026531836.
pub fn parse_ns_link(link: &str) -> Option<u64> {
    let start = link.find('[')?;
    let end = link.rfind(']')?;
    link.get(start + 1..end)?.parse().ok()
}

fn ns_inode(dir: &Path, kind: &str) -> io::Result<u64> {
    let p = dir.join(kind);
    match fs::read_link(&p) {
        Ok(target) => parse_ns_link(&target.to_string_lossy()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unexpected link \"{}\"", p.display(), target.display()),
            )
        }),
        // Fallback: the nsfs file's inode is the namespace id.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            fs::metadata(&p).map(|m| m.ino()).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

fn read_namespaces(proc_root: &Path, pid: &str) -> io::Result<Namespaces> {
    let dir = proc_root.join(pid).join("ns");
    // pid and mnt are required; the others are best effort (0 when missing).
    let opt = |k: &str| ns_inode(&dir, k).unwrap_or(0);
    Ok(Namespaces {
        pid: ns_inode(&dir, "pid")?,
        mnt: ns_inode(&dir, "mnt")?,
        net: opt("net"),
        user: opt("user"),
        uts: opt("uts"),
        cgroup: opt("cgroup"),
    })
}

/// The host's namespaces, read from `<proc_root>/1/ns/*`. With a host `/proc` mounted into
/// the agent's container (`hostPID`), pass that mount as `proc_root`.
///
/// If PID 1's links cannot be read (e.g. PID 1 holds a capability the agent lacks, so the
/// kernel's ptrace-read check denies it, as on the build machine where `CAP_SYS_RESOURCE` is
/// missing), falls back to `kthreadd` (`<proc_root>/2`, checked by its comm): kernel
/// threads always live in the initial namespaces.
pub fn host_namespaces(proc_root: &Path) -> io::Result<Namespaces> {
    match read_namespaces(proc_root, "1") {
        Ok(ns) => Ok(ns),
        Err(e) => {
            let is_kthreadd =
                fs::read_to_string(proc_root.join("2/comm")).is_ok_and(|c| c.trim() == "kthreadd");
            if is_kthreadd {
                read_namespaces(proc_root, "2").map_err(|_| e)
            } else {
                Err(e)
            }
        }
    }
}

pub fn process_namespaces(proc_root: &Path, pid: u32) -> io::Result<Namespaces> {
    read_namespaces(proc_root, &pid.to_string())
}

/// `process.in_container`: the process's pid or mount namespace differs from the host's.
/// A 0 (unknown) inode on either side is not evidence and is ignored.
pub fn in_container(host: &Namespaces, pid_ns: u64, mnt_ns: u64) -> bool {
    let differs = |h: u64, p: u64| h != 0 && p != 0 && h != p;
    differs(host.pid, pid_ns) || differs(host.mnt, mnt_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link() {
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(4_026_531_836));
        assert_eq!(parse_ns_link("garbage"), None);
    }

    #[test]
    fn compare() {
        let h = Namespaces {
            pid: 1,
            mnt: 2,
            ..Default::default()
        };
        assert!(!in_container(&h, 1, 2));
        assert!(in_container(&h, 9, 2));
        assert!(in_container(&h, 1, 9));
        assert!(!in_container(&h, 0, 0));
    }
}
