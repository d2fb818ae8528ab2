//! Types shared between the eBPF programs and the agent.
//!
//! Everything here is plain `#[repr(C)]` data with fixed-size buffers. The kernel writes
//! these records into a ring buffer and the agent decodes them with length and version
//! checks (see `t1609-agent/src/decode.rs`); nothing is transmuted.
#![no_std]

/// Bumped whenever a record layout changes; the agent refuses other versions.
pub const RECORD_VERSION: u16 = 2;

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

/// One ancestor as the kernel saw it at the exec: it may be gone by the time the agent
/// reads the record, so this is what lets alerts name short-lived parents.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AncestorSlot {
    pub tgid: u32,
    pub comm: [u8; COMM_LEN],
}

/// `sun_path` length of `struct sockaddr_un`.
pub const UNIX_PATH_LEN: usize = 108;

/// `NetRecord::net_kind` values.
pub mod net_kind {
    pub const TCP4: u16 = 1;
    pub const TCP6: u16 = 2;
    pub const UNIX: u16 = 3;
}

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
    /// The task's cgroup memberships (its css_set) are its parent's, at the exec.
    pub const SAME_CGROUPS_AS_PARENT: u32 = 1 << 8;
    /// The task's working directory (mount and dentry) is its parent's, at the exec.
    pub const SAME_CWD_AS_PARENT: u32 = 1 << 9;
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counters {
    /// Exec records that could not be reserved in the ring buffer: lost events.
    pub const RINGBUF_FULL: u32 = 0;
    /// Continuation records that could not be reserved: lost argv tails.
    pub const CHUNK_RINGBUF_FULL: u32 = 1;
    /// Kernel reads that failed (task fields, argv).
    pub const READ_ERROR: u32 = 2;
    /// Execs that matched the watch set (or all, with capture-all).
    pub const MATCHED: u32 = 3;
    pub const LEN: u32 = 4;
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

/// Kernel struct member offsets, read from the running kernel's BTF at start-up and
/// handed to the program as a global, so no offset is baked in for one kernel build.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_mm: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_cred: u32,
    pub task_loginuid: u32,
    pub task_signal: u32,
    pub task_nsproxy: u32,
    pub task_comm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// `mm_struct.start_stack`: for ELF binaries, argc sits there right after exec.
    pub mm_start_stack: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub signal_tty: u32,
    pub tty_index: u32,
    pub tty_name: u32,
    pub nsproxy_mnt_ns: u32,
    pub nsproxy_pid_ns: u32,
    pub mnt_ns_inum: u32,
    pub pid_ns_inum: u32,
    /// 1 once filled in; the program emits nothing while this is 0.
    pub valid: u32,
    /// 1 when task_struct has a `loginuid` member (CONFIG_AUDIT).
    pub has_loginuid: u32,
    pub task_cgroups: u32,
    pub task_fs: u32,
    pub fs_pwd_mnt: u32,
    pub fs_pwd_dentry: u32,
}

/// Runtime settings of the exec program, a global filled at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The agent's own tgid: its execs are never reported.
    pub agent_tgid: u32,
    /// 1: report every exec, ignoring the watch set.
    pub capture_all: u32,
    /// A ring-buffer wake-up costs the exec about 10 µs (an IPI, worse in VMs), so the
    /// probe forces one at most this often and the reader polls briefly after each; 0
    /// wakes the reader for every record.
    pub wakeup_interval_ns: u64,
}

/// Key of the `WATCH` hash map: a command name, NUL-padded to [`COMM_LEN`].
/// The kernel matches the task's `comm`, which exec sets to the executable's basename
/// truncated to 15 bytes; the agent checks the full name again.
pub type WatchKey = [u8; COMM_LEN];

/// Slots of the `TRACKED_COUNT` array, a counting filter in front of the `TRACKED` map:
/// slot [`tracked_slot`]`(key)` holds how many `TRACKED` keys fall in it. Every fork and
/// exit on the host asks whether its task is tracked; a zero slot answers "no" with one
/// load from a small, hot array (32 KiB of u64: eBPF has no 32-bit atomics) instead of
/// hashing into a random bucket of `TRACKED`'s
/// 256 KiB table (a cache and TLB miss, ~300 ns in a VM).
pub const TRACKED_SLOTS: u32 = 4096;

/// The `TRACKED_COUNT` slot of a `TRACKED` key (a pid). Pids are handed out in
/// sequence, so their low bits spread evenly.
#[inline(always)]
pub const fn tracked_slot(key: u32) -> u32 {
    key & (TRACKED_SLOTS - 1)
}

/// The low half of a `TRACKED_COUNT` slot: how many `TRACKED` keys fall in it. (Counts
/// and uncounts are atomic adds of 1 and -1 on the whole word; the count never goes
/// below 0, so they never carry into the high half.)
#[inline(always)]
pub const fn tracked_keys(slot_word: u64) -> u32 {
    slot_word as u32
}

/// The high half of a `TRACKED_COUNT` slot: the tgid of the last process reported by name,
/// outside any session, that falls in the slot, until its exit (0: none). Its exit is
/// reported without `TRACKED`: an LRU insert at the exec and a delete at the exit cost a
/// watched exec ~2 µs, and sharing the slot keeps every exit on the host at one load.
#[inline(always)]
pub const fn reported_tgid(slot_word: u64) -> u32 {
    (slot_word >> 32) as u32
}

/// Bits of the `WATCH_BITS` prefilter in front of the `WATCH` map: a clear bit means
/// the command name is not watched, without a hash-map lookup on every exec.
pub const WATCH_FILTER_BITS: u32 = 4096;

/// The `WATCH_BITS` bit of a command name as the kernel holds it (NUL-padded comm).
/// The probe and the agent must compute it alike, hence here.
#[inline(always)]
pub fn watch_filter_bit(comm: &WatchKey) -> u32 {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&comm[..8]);
    hi.copy_from_slice(&comm[8..]);
    watch_filter_bit_of_words(u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// [`watch_filter_bit`] of a comm read as two little-endian words, as the probe holds it.
#[inline(always)]
pub const fn watch_filter_bit_of_words(lo: u64, hi: u64) -> u32 {
    let mixed = (lo ^ hi.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 52) as u32 // the top 12 bits: 0..WATCH_FILTER_BITS
}

/// Signature slots of the `QUIET` map, after its mode word (slot 0). While the agent
/// replays a stream of exact repeats it sets the mode and writes each replayed exec's
/// [`quiet_signature`] to slot `1 + signature % QUIET_SIGNATURES`; a reported exec whose
/// signature is there then forces no reader wake-up, any other one does.
pub const QUIET_SIGNATURES: u32 = 64;

/// Leading argv bytes a quiet signature hashes (the probe hashes them in place, and the
/// verifier must walk every iteration of its loop). The seed holds the record's whole argv
/// length, so only commands alike in parent, length and these bytes share a signature.
pub const QUIET_ARGV_BYTES: usize = 256;

/// Seed of an exec's quiet signature: its parent and its exec record's argv length (at
/// most [`ARGV_CHUNK_LEN`]).
#[inline(always)]
pub const fn quiet_signature_seed(ppid: u32, record_argv_len: u32) -> u64 {
    ((record_argv_len as u64) << 32 | ppid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One little-endian argv word (zero-padded past the argv's end) into the signature.
#[inline(always)]
pub const fn quiet_signature_step(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(23) ^ word).wrapping_mul(0xFF51_AFD7_ED55_8CCD)
}

/// Mask of the argv bytes in a word read `remaining` bytes before the argv's end: the
/// probe reads whole words from its record, whose bytes past the argv are stale.
#[inline(always)]
pub const fn quiet_word_mask(remaining: usize) -> u64 {
    if remaining >= 8 {
        u64::MAX
    } else {
        (1u64 << (remaining * 8)) - 1
    }
}

/// The signature as stored: never 0, which marks an empty slot.
#[inline(always)]
pub const fn quiet_signature_finish(hash: u64) -> u64 {
    let h = hash ^ (hash >> 31);
    if h == 0 { 1 } else { h }
}

/// Quiet signature of an exec from its parent and captured argv, computed as the probe
/// computes it from the exec record, word by word. A collision only costs latency: an
/// exec taken for a repeat is read at the reader's next quiet drain instead of at once.
pub fn quiet_signature(ppid: u32, argv: &[u8]) -> u64 {
    let record_len = argv.len().min(ARGV_CHUNK_LEN);
    let argv = &argv[..record_len.min(QUIET_ARGV_BYTES)];
    let mut hash = quiet_signature_seed(ppid, record_len as u32);
    for chunk in argv.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = quiet_signature_step(hash, u64::from_le_bytes(word));
    }
    quiet_signature_finish(hash)
}

/// The `QUIET` slot of a signature.
#[inline(always)]
pub const fn quiet_slot(signature: u64) -> u32 {
    1 + (signature % QUIET_SIGNATURES as u64) as u32
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

/// A connect() to a watched port (TCP, seen when the socket enters SYN_SENT, in the
/// caller's context) or to a watched Unix socket path (seen at syscall entry).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetRecord {
    pub header: RecordHeader,
    pub ppid: u32,
    pub uid: u32,
    pub cgroup_id: u64,
    pub session: u64,
    pub net_kind: u16,
    /// Destination port, host byte order (0 for Unix sockets).
    pub dport: u16,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
    /// IPv4 in the first 4 bytes, or IPv6.
    pub daddr: [u8; 16],
    pub path: [u8; UNIX_PATH_LEN],
    pub _pad2: [u8; 4],
}

/// Fork or exit of a process in a tracked session.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskRecord {
    pub header: RecordHeader,
    /// For a fork, the parent's tgid (`header.tgid` is the child); for an exit, 0.
    pub parent_tgid: u32,
    pub _pad: u32,
    pub session: u64,
    pub comm: [u8; COMM_LEN],
}

/// Key of the `UNIX_PATHS` map: a socket path, NUL-padded.
pub type UnixPathKey = [u8; UNIX_PATH_LEN];

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
    pub _pad: u32,
    pub argv: [u8; ARGV_CHUNK_LEN],
}

const _: () = assert!(core::mem::size_of::<RecordHeader>() == 24);
const _: () = assert!(
    core::mem::size_of::<ExecRecord>()
        == 24 + 96 + 32 + 20 * MAX_ANCESTORS + PATH_LEN + ARGV_CHUNK_LEN
);
const _: () = assert!(core::mem::size_of::<NetRecord>() == 200);
const _: () = assert!(core::mem::size_of::<TaskRecord>() == 56);
const _: () = assert!(core::mem::size_of::<ArgvChunkRecord>() == 24 + 16 + ARGV_CHUNK_LEN);
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 26 * 4);
const _: () = assert!(ARGV_MAX_TOTAL == 32 * 1024);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 16);
const _: () = assert!(TRACKED_SLOTS.is_power_of_two());
const _: () = assert!(QUIET_ARGV_BYTES.is_multiple_of(8));
// The probe hashes the record's argv in aligned words.
const _: () = assert!(core::mem::offset_of!(ExecRecord, argv).is_multiple_of(8));
const _: () = assert!(WATCH_FILTER_BITS == 1 << 12 && WATCH_FILTER_BITS.is_multiple_of(32));

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, no padding holes that matter, no pointers.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ProbeConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's way: whole words read from a buffer whose bytes past the argv are
    /// garbage, each masked by what remains.
    fn probe_signature(ppid: u32, buf: &[u8; ARGV_CHUNK_LEN], record_len: usize) -> u64 {
        let word = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
        let covered = record_len.min(QUIET_ARGV_BYTES);
        let mut hash = quiet_signature_seed(ppid, record_len as u32);
        for i in 0..QUIET_ARGV_BYTES / 8 {
            if i >= covered / 8 {
                break;
            }
            hash = quiet_signature_step(hash, word(i));
        }
        if !covered.is_multiple_of(8) {
            hash = quiet_signature_step(hash, word(covered / 8) & quiet_word_mask(covered % 8));
        }
        quiet_signature_finish(hash)
    }

    #[test]
    fn probe_and_agent_compute_the_same_quiet_signature() {
        let argv = b"docker\0exec\0-it\0atomic-test-container\0/bin/sh\0";
        for len in [0, 1, 7, 8, 9, argv.len()] {
            let mut buf = [0xA5u8; ARGV_CHUNK_LEN];
            buf[..len].copy_from_slice(&argv[..len]);
            assert_eq!(
                probe_signature(4242, &buf, len),
                quiet_signature(4242, &argv[..len]),
                "argv length {len}"
            );
        }
        // Long argv: the record holds its first ARGV_CHUNK_LEN bytes, whose first
        // QUIET_ARGV_BYTES are hashed (odd lengths leave a partial word).
        let mut long = [0u8; ARGV_CHUNK_LEN + 100];
        for (i, b) in long.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        for len in [QUIET_ARGV_BYTES - 3, QUIET_ARGV_BYTES + 5, long.len()] {
            let buf: [u8; ARGV_CHUNK_LEN] = long[..ARGV_CHUNK_LEN].try_into().unwrap();
            assert_eq!(
                probe_signature(1, &buf, len.min(ARGV_CHUNK_LEN)),
                quiet_signature(1, &long[..len]),
                "argv length {len}"
            );
        }
        // The length tells apart long commands that share their first bytes.
        assert_ne!(
            quiet_signature(1, &long[..QUIET_ARGV_BYTES + 5]),
            quiet_signature(1, &long[..QUIET_ARGV_BYTES + 6])
        );
    }

    #[test]
    fn quiet_signature_tells_parent_and_argv_apart() {
        let a = quiet_signature(10, b"docker\0exec\0-it\0web\0sh\0");
        assert_ne!(a, quiet_signature(11, b"docker\0exec\0-it\0web\0sh\0"));
        assert_ne!(a, quiet_signature(10, b"docker\0exec\0-it\0web\0bash\0"));
        // A NUL moved between arguments changes it, as does a trailing zero byte.
        assert_ne!(
            quiet_signature(10, b"ab\0c\0"),
            quiet_signature(10, b"a\0bc\0")
        );
        assert_ne!(quiet_signature(10, b"ab"), quiet_signature(10, b"ab\0"));
        assert_ne!(quiet_signature(0, b""), 0);
        assert!((1..=QUIET_SIGNATURES).contains(&quiet_slot(a)));
    }
}
