//! The maps and globals the agent fills and reads, by the names it knows them by, and
//! the helpers every program uses with them: counting a failure, reading the settings
//! and the kernel offsets, reading kernel memory at an offset.
//!
//! Two optimisations keep their maps private, behind their module's functions, because
//! their invariants live there: `wakeup` (`LAST_WAKEUP`, `QUIET`) and `tracked`
//! (`TRACKED`, `TRACKED_COUNT`).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use t1609_common::{
    ExeKey, ExeSettings, ExeVerdict, InodeKey, KernelOffsets, ProbeConfig, UnixPathKey,
    WATCH_FILTER_BITS, WatchKey, counters,
};

/// Filled by the agent before load (`EbpfLoader::set_global`).
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    task_mm: 0,
    task_real_parent: 0,
    task_tgid: 0,
    task_cred: 0,
    task_loginuid: 0,
    task_signal: 0,
    task_nsproxy: 0,
    task_comm: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_start_stack: 0,
    cred_euid: 0,
    cred_egid: 0,
    signal_tty: 0,
    tty_index: 0,
    tty_name: 0,
    nsproxy_mnt_ns: 0,
    nsproxy_pid_ns: 0,
    mnt_ns_inum: 0,
    pid_ns_inum: 0,
    valid: 0,
    has_loginuid: 0,
    task_cgroups: 0,
    task_fs: 0,
    fs_pwd_mnt: 0,
    fs_pwd_dentry: 0,
};

/// Filled by the agent before load, like `OFFSETS`; all zero keeps identity off.
#[unsafe(no_mangle)]
pub(crate) static EXE_SETTINGS: ExeSettings = ExeSettings {
    enabled: 0,
    task_mm: 0,
    mm_exe_file: 0,
    file_inode: 0,
    inode_sb: 0,
    sb_dev: 0,
    inode_ino: 0,
    inode_size: 0,
    inode_mtime_sec: 0,
    inode_mtime_nsec: 0,
    inode_ctime_sec: 0,
    inode_ctime_nsec: 0,
    nsec_long: 0,
    pad: 0,
    seed: 0,
};

#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    agent_tgid: 0,
    capture_all: 0,
    wakeup_interval_ns: 0,
};

/// 4 MiB (the agent may resize it): about 900 exec records of 4.4 KiB in flight.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Command names to report. The agent fills and updates it in place.
#[map]
pub(crate) static WATCH: HashMap<WatchKey, u8> = HashMap::with_max_entries(1024, 0);

/// Bit `t1609_common::watch_filter_bit(name)` is set for every name in `WATCH` (the agent
/// sets it before inserting the name and clears it only after removing it), so an exec
/// whose bit is clear skips the `WATCH` lookup.
#[map]
pub(crate) static WATCH_BITS: Array<u32> = Array::with_max_entries(WATCH_FILTER_BITS / 32, 0);

/// Command names whose exec starts an injected session (runc, crun, nsenter): the
/// process and its descendants are tracked, and their execs reported, until they exit.
#[map]
pub(crate) static SESSION_SEEDS: HashMap<WatchKey, u8> = HashMap::with_max_entries(64, 0);

/// The installed container tools by (device, inode) → tool id. The agent fills it at
/// start-up and replaces it in place on reload.
#[map]
pub(crate) static INODES: HashMap<InodeKey, u32> = HashMap::with_max_entries(1024, 0);

/// Verdicts on executed files, by their identity (see `t1609_common::ExeKey`): a tool id,
/// not a tool, or pending. The probe inserts pending entries; the agent writes verdicts.
/// LRU: a storm of new files evicts old verdicts, never fails an insert (the agent sets
/// its size to `identity.cache_entries`).
#[map]
pub(crate) static VERDICTS: LruHashMap<ExeKey, ExeVerdict> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU counters, indexed by `t1609_common::counters`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::LEN, 0);

/// Watched TCP destination ports (host byte order).
#[map]
pub(crate) static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(64, 0);

/// Watched Unix socket paths.
#[map]
pub(crate) static UNIX_PATHS: HashMap<UnixPathKey, u8> = HashMap::with_max_entries(64, 0);

/// The settings, as the agent set them before load.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn config() -> ProbeConfig {
    // SAFETY: a global the agent fills before load; volatile so the compiler cannot fold
    // the zeros it was compiled with.
    unsafe { core::ptr::read_volatile(&raw const CONFIG) }
}

/// The kernel struct offsets, as the agent set them before load.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn offsets() -> KernelOffsets {
    // SAFETY: as for `config`.
    unsafe { core::ptr::read_volatile(&raw const OFFSETS) }
}

/// One member of `EXE_SETTINGS`. The identity check runs on every exec of the host: it
/// reads the members it needs where it needs them, not a copy of the struct. (Read from
/// the frozen `.rodata`, each is a constant to the verifier.)
macro_rules! exe_setting {
    ($field:ident) => {
        // SAFETY: as for `config`; one member of the global, read volatile.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::EXE_SETTINGS.$field) }
    };
}
pub(crate) use exe_setting;

/// Counts a failure in the per-CPU `COUNTERS` slot `index`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Reads a `T` at `base + offset` in kernel memory; `READ_ERROR` when that fails.
///
/// # Safety
/// `base` is a kernel address whose struct has a `T` at `offset`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) unsafe fn read_at<T>(base: u64, offset: u32) -> Result<T, u32> {
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }
        .map_err(|_| counters::READ_ERROR)
}
