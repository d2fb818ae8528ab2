//! The records the probes write into the `EVENTS` ring buffer: a common header, the
//! record kinds, and one `#[repr(C)]` struct per kind with its size pinned at compile time.

use crate::{exe::ExeKey, net::UNIX_PATH_LEN};

/// Bumped whenever a record layout changes; the agent refuses other versions.
pub const RECORD_VERSION: u16 = 3;

/// Record kinds, the `kind` field of [`RecordHeader`].
pub const KIND_EXEC: u16 = 1;
/// A continuation of the argv of the exec record with the same `tgid` and `ktime_ns`.
pub const KIND_ARGV_CHUNK: u16 = 2;

/// A connect to a watched TCP port or runtime socket path ([`NetRecord`]).
pub const KIND_NET: u16 = 3;
/// A tracked process forked ([`TaskRecord`]).
pub const KIND_FORK: u16 = 4;
/// A tracked process exited ([`TaskRecord`]).
pub const KIND_EXIT: u16 = 5;

/// Ancestors recorded in the kernel at exec time (parent first).
pub const MAX_ANCESTORS: usize = 8;

/// Task command name length (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Bytes of the executable path kept from the tracepoint's `filename`.
pub const PATH_LEN: usize = 256;
/// argv bytes carried by one record (the exec record and each continuation).
pub const ARGV_CHUNK_LEN: usize = 4096;
/// Continuation records after the exec record: 1 + 7 chunks = 32 KiB of argv.
pub const ARGV_MAX_CHUNKS: usize = 7;
/// Total argv bytes the agent can receive for one exec.
pub const ARGV_MAX_TOTAL: usize = ARGV_CHUNK_LEN * (1 + ARGV_MAX_CHUNKS);
/// tty name bytes (`tty_struct.name`, e.g. `pts3`), truncated.
pub const TTY_NAME_LEN: usize = 16;

const _: () = assert!(ARGV_MAX_TOTAL == 32 * 1024);

/// `flags` bits of [`ExecRecord`].
pub mod flags {
    /// argv was longer than [`super::ARGV_MAX_TOTAL`]; the tail is missing.
    pub const ARGV_TRUNCATED: u32 = 1 << 0;
    /// The process has a controlling terminal.
    pub const HAS_TTY: u32 = 1 << 1;
    /// A continuation record could not be reserved; some argv chunks are missing.
    pub const ARGV_CHUNK_LOST: u32 = 1 << 2;
    /// Reading argv from the new process's memory failed.
    pub const ARGV_READ_FAILED: u32 = 1 << 3;
    /// The executable path did not fit in [`super::PATH_LEN`].
    pub const PATH_TRUNCATED: u32 = 1 << 4;
    /// loginuid was not readable (kernel without audit support).
    pub const NO_LOGINUID: u32 = 1 << 5;
    /// This exec started an injected session (runc/crun/nsenter): its descendants are tracked.
    pub const SESSION_ROOT: u32 = 1 << 6;
    /// Reported because the process belongs to a tracked session, not because it is watched.
    pub const IN_SESSION: u32 = 1 << 7;
    /// The task's cgroup memberships (its `css_set`) are its parent's, at the exec.
    pub const SAME_CGROUPS_AS_PARENT: u32 = 1 << 8;
    /// The task's working directory (mount and dentry) is its parent's, at the exec.
    pub const SAME_CWD_AS_PARENT: u32 = 1 << 9;
    /// The executed file's identity was not read (identity off, a watched name, whose
    /// rules run by name, or a read failed): `exe` and `exe_tool` are zero.
    pub const EXE_UNREAD: u32 = 1 << 10;
    /// The first report of a file `VERDICTS` has no verdict for (now pending there): the
    /// agent classifies it and writes the verdict.
    pub const EXE_FIRST: u32 = 1 << 11;
    /// Reported only because of what its file is (a tool, or a file not classified yet),
    /// not for its name, a session or capture-all.
    pub const BY_IDENTITY: u32 = 1 << 12;
    /// Its name starts with `kubectl-` or `docker-`: a CLI plugin, reported whatever the
    /// watch set says.
    pub const PLUGIN_NAME: u32 = 1 << 13;
}

/// Common prefix of every record, so the agent can dispatch on `kind` first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordHeader {
    pub version: u16,
    pub kind: u16,
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` at the exec; also the key that ties chunks to their exec.
    pub ktime_ns: u64,
    pub tgid: u32,
    pub pid: u32,
}

const _: () = assert!(size_of::<RecordHeader>() == 24);

impl RecordHeader {
    /// The header of a `kind` record the probe writes: this version, no flags yet.
    #[inline(always)]
    #[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
    pub const fn new(kind: u16, ktime_ns: u64, tgid: u32, pid: u32) -> Self {
        Self {
            version: RECORD_VERSION,
            kind,
            flags: 0,
            ktime_ns,
            tgid,
            pid,
        }
    }
}

/// One ancestor as the kernel saw it at the exec: it may be gone by the time the agent
/// reads the record, so this is what lets alerts name short-lived parents.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AncestorSlot {
    pub tgid: u32,
    pub comm: [u8; COMM_LEN],
}

/// One exec of a watched executable.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    pub header: RecordHeader,
    /// Tgid of the real parent (`task->real_parent->tgid`).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// `u32::MAX` when unset or unknown (see `flags::NO_LOGINUID`).
    pub loginuid: u32,
    pub pid_ns: u32,
    pub mnt_ns: u32,
    pub cgroup_id: u64,
    /// Address of the task's `css_set` (its memberships in every cgroup hierarchy, v1
    /// and v2): equal values at one instant mean equal cgroups. Never dereferenced.
    pub css_set: u64,
    /// Addresses of the working directory's vfsmount and dentry (identities, never
    /// dereferenced): equal pairs at one instant mean the same directory.
    pub pwd_mnt: u64,
    pub pwd_dentry: u64,
    /// Injected-session id (the session root's exec time), 0 outside any session.
    pub session: u64,
    /// The executed file (`mm->exe_file`: for a `#!` script, its interpreter).
    pub exe: ExeKey,
    /// The tool `VERDICTS` or `INODES` say the file is (t1609-identity's tool id), 0 when
    /// neither does.
    pub exe_tool: u32,
    /// Explicit padding, zeroed by the probe.
    pub exe_pad: u32,
    /// tty index, meaningful with `flags::HAS_TTY`.
    pub tty_index: u32,
    /// Number of argv strings (NULs between `arg_start` and `arg_end`).
    pub argc: u32,
    /// Full argv length in the process (`arg_end - arg_start`), before any cap.
    pub argv_total_len: u32,
    /// Bytes of argv in this record's `argv`.
    pub argv_len: u32,
    /// Continuation records that follow this one.
    pub chunks: u32,
    pub filename_len: u32,
    pub comm: [u8; COMM_LEN],
    pub tty_name: [u8; TTY_NAME_LEN],
    /// Parent first; a slot with tgid 0 ends the chain.
    pub ancestors: [AncestorSlot; MAX_ANCESTORS],
    pub filename: [u8; PATH_LEN],
    pub argv: [u8; ARGV_CHUNK_LEN],
}

const _: () = assert!(
    size_of::<ExecRecord>() == 24 + 96 + 48 + 32 + 20 * MAX_ANCESTORS + PATH_LEN + ARGV_CHUNK_LEN
);
// The probe hashes the record's argv in aligned words (see `crate::quiet`).
const _: () = assert!(core::mem::offset_of!(ExecRecord, argv).is_multiple_of(8));

/// A further piece of argv for the exec record with the same `tgid` and `ktime_ns`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ArgvChunkRecord {
    pub header: RecordHeader,
    /// 1-based position after the exec record.
    pub seq: u32,
    /// Offset of this chunk in the full argv.
    pub offset: u32,
    pub len: u32,
    /// Explicit padding, zeroed by the probe.
    pub pad: u32,
    pub argv: [u8; ARGV_CHUNK_LEN],
}

const _: () = assert!(size_of::<ArgvChunkRecord>() == 24 + 16 + ARGV_CHUNK_LEN);

/// A `connect()` to a watched port (TCP, seen when the socket enters `SYN_SENT`, in the
/// caller's context) or to a watched Unix socket path (seen at syscall entry).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetRecord {
    pub header: RecordHeader,
    pub ppid: u32,
    pub uid: u32,
    pub cgroup_id: u64,
    pub session: u64,
    /// One of [`crate::net_kind`].
    pub net_kind: u16,
    /// Destination port, host byte order (0 for Unix sockets).
    pub dport: u16,
    /// Explicit padding, zeroed by the probe.
    pub pad: u32,
    pub comm: [u8; COMM_LEN],
    /// IPv4 in the first 4 bytes, or IPv6.
    pub daddr: [u8; 16],
    pub path: [u8; UNIX_PATH_LEN],
    /// Explicit tail padding (to a multiple of 8), zeroed by the probe.
    pub tail_pad: [u8; 4],
}

const _: () = assert!(size_of::<NetRecord>() == 200);

/// Fork or exit of a process in a tracked session.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskRecord {
    pub header: RecordHeader,
    /// For a fork, the parent's tgid (`header.tgid` is the child); for an exit, 0.
    pub parent_tgid: u32,
    /// Explicit padding, zeroed by the probe.
    pub pad: u32,
    pub session: u64,
    pub comm: [u8; COMM_LEN],
}

const _: () = assert!(size_of::<TaskRecord>() == 56);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_header_carries_this_version_and_no_flags() {
        let header = RecordHeader::new(KIND_FORK, 7, 42, 43);
        assert_eq!(
            (header.version, header.kind, header.flags),
            (RECORD_VERSION, KIND_FORK, 0)
        );
        assert_eq!((header.ktime_ns, header.tgid, header.pid), (7, 42, 43));
    }
}
