//! Unix-socket connects through the cgroup `connect_unix` hook (Linux >= 6.7) on the
//! root cgroup. It runs for `AF_UNIX` connects only, `io_uring`'s included, and costs the
//! host's other syscalls nothing, where a program on `syscalls:sys_enter_connect` sends
//! every syscall of every task through the slow syscall path (~1 % of a busybox exec on
//! the build VM, whose spawn makes ~150 syscalls).
//!
//! aya 0.14 has no `connect_unix` attach type, so the probe object declares the program
//! as `connect4`; this module parses the same object with aya-obj, relocates that one
//! program against the maps aya created (by name, so both share them), and loads and
//! links it with two `bpf()` calls. Until loaded here, aya holds it unloaded.

use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::{Ebpf, maps::Map};

/// The program's name in the probe object.
pub const PROGRAM: &str = "unix_connect";

// uapi/linux/bpf.h
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_UNIX_CONNECT: u32 = 49;
const CGROUP2_SUPER_MAGIC: libc::c_long = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum UnixHookError {
    #[error("{path} is not a cgroup v2 mount")]
    NotCgroup2 { path: PathBuf },
    #[error("no cgroup v2 hierarchy is mounted (/proc/self/mountinfo)")]
    NoCgroup2,
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup v2 mount here is the hierarchy's root ({mounts:?}): under a private \
         cgroup namespace, a hook there would miss the other containers; mount the host's \
         /sys/fs/cgroup (the DaemonSet does, at /host/sys/fs/cgroup)"
    )]
    NotTheRoot { mounts: Vec<PathBuf> },
    #[error("probe object: {0}")]
    Object(String),
    #[error("map {0} is not among the loaded maps")]
    MissingMap(String),
    #[error("the kernel refused to load {PROGRAM} as cgroup/connect_unix: {source}{log}")]
    Load { source: std::io::Error, log: String },
    #[error("cannot link {PROGRAM} to {path} (cgroup/connect_unix needs Linux >= 6.7): {source}")]
    Link {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The loaded and linked hook: dropping it detaches the program.
pub struct CgroupConnectHook {
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl CgroupConnectHook {
    /// Loads [`PROGRAM`] from `object` (the bytes `ebpf` was loaded from) against
    /// `ebpf`'s maps, and links it to the root cgroup. Call before taking maps out of
    /// `ebpf`.
    pub fn attach(ebpf: &Ebpf, object: &[u8]) -> Result<Self, UnixHookError> {
        let root = cgroup2_root()?;
        let root = root.as_path();
        let cgroup = open_cgroup2(root)?;
        let insns = relocated_program(ebpf, object)?;
        let prog = load(&insns)?;
        let link = bpf_fd(
            BPF_LINK_CREATE,
            &LinkCreateAttr {
                prog_fd: prog.as_raw_fd().cast_unsigned(),
                target_fd: cgroup.as_raw_fd().cast_unsigned(),
                attach_type: BPF_CGROUP_UNIX_CONNECT,
                flags: 0,
                _rest: [0; 8],
            },
        )
        .map_err(|source| UnixHookError::Link {
            path: root.to_owned(),
            source,
        })?;
        Ok(Self {
            _prog: prog,
            _link: link,
        })
    }
}

/// Where the root of the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on unified
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones, or a host mount in a container
/// (`/host/sys/fs/cgroup` in the `DaemonSet`).
///
/// Only the real root sees every task. A container's own `/sys/fs/cgroup`, under a
/// private cgroup namespace, is a subtree that looks like a root from inside; a hook
/// there would look complete and miss every other container. The kernel gives the
/// real root no `cgroup.type` file, whatever namespace looks at it, so that is the test.
fn cgroup2_root() -> Result<PathBuf, UnixHookError> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| UnixHookError::Open {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    root_among_cgroup2_mounts(&info)
}

/// [`cgroup2_root`] given the text of a `mountinfo` file.
fn root_among_cgroup2_mounts(mountinfo: &str) -> Result<PathBuf, UnixHookError> {
    let mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            // id parent dev root mountpoint options [optional...] - fstype source options
            let (left, right) = line.split_once(" - ")?;
            let mountpoint = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| PathBuf::from(mountpoint.replace("\\040", " ")))
        })
        .collect();
    if mounts.is_empty() {
        return Err(UnixHookError::NoCgroup2);
    }
    mounts
        .iter()
        .find(|m| !m.join("cgroup.type").exists())
        .cloned()
        .ok_or(UnixHookError::NotTheRoot { mounts })
}

fn open_cgroup2(path: &Path) -> Result<OwnedFd, UnixHookError> {
    let file = std::fs::File::open(path).map_err(|source| UnixHookError::Open {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: fstatfs fills the zeroed struct for a valid fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &raw mut st) } != 0
        || st.f_type as libc::c_long != CGROUP2_SUPER_MAGIC
    {
        return Err(UnixHookError::NotCgroup2 {
            path: path.to_owned(),
        });
    }
    Ok(file.into())
}

/// The program's instructions, with its map references resolved to `ebpf`'s maps and
/// the functions it calls appended, as aya does for the programs it loads.
fn relocated_program(
    ebpf: &Ebpf,
    object: &[u8],
) -> Result<Vec<aya_obj::generated::bpf_insn>, UnixHookError> {
    let mut obj =
        aya_obj::Object::parse(object).map_err(|e| UnixHookError::Object(e.to_string()))?;
    let maps: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
    let fds = maps
        .iter()
        .map(|(name, _)| {
            ebpf.map(name)
                .map(map_fd)
                .ok_or_else(|| UnixHookError::MissingMap(name.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text_sections = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(
        maps.iter()
            .zip(&fds)
            .map(|((name, map), fd)| (name.as_str(), *fd, map)),
        &text_sections,
    )
    .map_err(|e| UnixHookError::Object(e.to_string()))?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| UnixHookError::Object(e.to_string()))?;
    let key = obj
        .programs
        .get(PROGRAM)
        .ok_or_else(|| UnixHookError::Object(format!("no program {PROGRAM}")))?
        .function_key();
    let function = obj
        .functions
        .remove(&key)
        .ok_or_else(|| UnixHookError::Object(format!("no code for {PROGRAM}")))?;
    Ok(function.instructions)
}

fn map_fd(map: &Map) -> i32 {
    // The probe object has no other kinds; an fd of -1 fails the load visibly.
    let (Map::Array(data)
    | Map::HashMap(data)
    | Map::LruHashMap(data)
    | Map::PerCpuArray(data)
    | Map::PerCpuHashMap(data)
    | Map::RingBuf(data)
    | Map::Unsupported(data)) = map
    else {
        return -1;
    };
    data.fd().as_fd().as_raw_fd()
}

fn load(insns: &[aya_obj::generated::bpf_insn]) -> Result<OwnedFd, UnixHookError> {
    let license = CString::new("Dual MIT/GPL").expect("no NUL");
    let mut log = vec![0u8; 64 * 1024];
    let insn_cnt = u32::try_from(insns.len())
        .map_err(|_| UnixHookError::Object(format!("{PROGRAM} has too many instructions")))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"unix_connect\0\0\0\0",
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_UNIX_CONNECT,
        _rest: [0; 16],
    };
    if let Ok(fd) = bpf_fd(BPF_PROG_LOAD, &attr) {
        Ok(fd)
    } else {
        // Again with the verifier's log, to say why.
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
        let source = bpf_fd(BPF_PROG_LOAD, &attr)
            .err()
            .unwrap_or_else(|| std::io::Error::other("loaded only when asked for a verifier log"));
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        let tail: String = text.lines().rev().take(8).collect::<Vec<_>>().join(" / ");
        Err(UnixHookError::Load {
            source,
            log: if tail.is_empty() {
                String::new()
            } else {
                format!("; verifier: {tail}")
            },
        })
    }
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`, zero-padded.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 16],
}

/// `union bpf_attr` for `BPF_LINK_CREATE`, up to `flags`, zero-padded.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 8],
}

const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type) == 68);
const _: () = assert!(std::mem::offset_of!(LinkCreateAttr, flags) == 12);

/// bpf(cmd, attr) for a command that returns a new fd.
fn bpf_fd<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a live, zero-padded `union bpf_attr` prefix of the given size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref::<T>(attr),
            libc::c_uint::try_from(std::mem::size_of::<T>()).expect("attr structs are small"),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::other("bpf() returned no fd"))?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace's own mount, whose directory has `cgroup.type`, is passed over for
    /// the host's root; with only the former, the hook is refused.
    #[test]
    fn only_the_hierarchy_root_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (ns_root, host_root) = (dir.path().join("ns"), dir.path().join("host root"));
        for d in [&ns_root, &host_root] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        std::fs::write(ns_root.join("cgroup.type"), "domain\n").unwrap();
        let line = |id: u32, root: &str, at: &Path, fstype: &str| {
            let at = at.display().to_string().replace(' ', "\\040");
            format!("{id} 1 0:{id} {root} {at} rw,relatime - {fstype} {fstype} rw\n")
        };
        let both = line(30, "/", &ns_root, "cgroup2")
            + &line(31, "/", dir.path(), "tmpfs")
            + &line(32, "/../..", &host_root, "cgroup2");
        assert_eq!(root_among_cgroup2_mounts(&both).unwrap(), host_root);
        let ns_only = line(30, "/", &ns_root, "cgroup2");
        assert!(matches!(
            root_among_cgroup2_mounts(&ns_only),
            Err(UnixHookError::NotTheRoot { .. })
        ));
        assert!(matches!(
            root_among_cgroup2_mounts(&line(31, "/", dir.path(), "tmpfs")),
            Err(UnixHookError::NoCgroup2)
        ));
    }
}
