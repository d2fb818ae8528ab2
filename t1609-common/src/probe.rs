//! What the agent hands the probes at load time (kernel struct offsets and settings, as
//! globals) and what it reads back from them (the per-CPU counters).

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
    /// 1 when `task_struct` has a `loginuid` member (`CONFIG_AUDIT`).
    pub has_loginuid: u32,
    pub task_cgroups: u32,
    pub task_fs: u32,
    pub fs_pwd_mnt: u32,
    pub fs_pwd_dentry: u32,
}

const _: () = assert!(size_of::<KernelOffsets>() == 26 * 4);

/// What the identity check reads on every exec of the host: the offsets it follows from
/// the task to its executed file's inode, and its fingerprint seed. A global of their
/// own, read member by member: [`KernelOffsets`] is copied whole, on reported execs only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeSettings {
    /// 1: read the executed file's identity (`mm->exe_file->f_inode`), report the execs
    /// of files `INODES` or `VERDICTS` say are tools, and the first exec of any file they
    /// do not know. 0 when the agent's identity stage is off or the kernel's BTF lacks a
    /// member.
    pub enabled: u32,
    pub task_mm: u32,
    pub mm_exe_file: u32,
    pub file_inode: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    pub inode_ino: u32,
    pub inode_size: u32,
    pub inode_mtime_sec: u32,
    pub inode_mtime_nsec: u32,
    pub inode_ctime_sec: u32,
    pub inode_ctime_nsec: u32,
    /// 1 when the nanoseconds are a `long` (`timespec64.tv_nsec`, before 6.11), 0 for
    /// the `u32` members of 6.11 and later.
    pub nsec_long: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    /// Seed of [`crate::exe_fingerprint`], random per agent start: nobody can make a file
    /// whose fingerprint matches another's on purpose.
    pub seed: u64,
}

const _: () = assert!(size_of::<ExeSettings>() == 14 * 4 + 8);

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

const _: () = assert!(size_of::<ProbeConfig>() == 16);

// SAFETY: plain-old-data, no padding holes that matter, no pointers.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeConfig {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ExeSettings {}

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
    /// Execs whose file identity could not be read (no `mm`, `exe_file` or inode).
    pub const EXE_UNREAD: u32 = 4;
    /// Files reported for the first time (a `VERDICTS` entry set pending).
    pub const EXE_FIRST: u32 = 5;
    /// Execs reported because `INODES` or `VERDICTS` say their file is a tool.
    pub const EXE_TOOL: u32 = 6;
    /// Pending `VERDICTS` entries that could not be inserted (map update failed).
    pub const EXE_PENDING_FAILED: u32 = 7;
    pub const LEN: u32 = 8;
}
