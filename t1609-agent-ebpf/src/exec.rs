//! The exec program on `sched:sched_process_exec`.
//!
//! For an exec whose command name is in `WATCH` or names a CLI plugin (or every exec with
//! capture-all), inside a tracked session, or whose file `identity` says is a tool or has
//! not been classified yet, it writes an [`ExecRecord`] and up to [`ARGV_MAX_CHUNKS`]
//! [`ArgvChunkRecord`]s into `EVENTS`. argv is read from the new image's memory
//! (`mm->arg_start..arg_end`) after the exec, so the caller cannot change it under us.
//! Kernel struct offsets come from userspace (`OFFSETS`), derived from the running
//! kernel's BTF.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel_buf,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, bpf_probe_read_user_buf, generated,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use t1609_common::{
    ARGV_CHUNK_LEN, ARGV_MAX_CHUNKS, ARGV_MAX_TOTAL, ArgvChunkRecord, ExecRecord, KIND_ARGV_CHUNK,
    KIND_EXEC, KernelOffsets, MAX_ANCESTORS, PATH_LEN, RecordHeader, TTY_NAME_LEN, WatchKey,
    counters, flags, plugin_comm, watch_filter_bit_of_words,
};

use crate::{
    identity,
    maps::{EVENTS, SESSION_SEEDS, WATCH, WATCH_BITS, bump, config, offsets, read_at},
    tracked::{reported_insert, tracked_get, tracked_insert},
    wakeup::{self, BPF_RB_NO_WAKEUP},
};

/// `__data_loc char[] filename` of the `sched_process_exec` tracepoint.
const TP_FILENAME_LOC: usize = 8;

#[tracepoint]
#[expect(clippy::needless_pass_by_value, reason = "aya's macro signature")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match try_sched_process_exec(&ctx) {
        Ok(()) => 0,
        Err(counter) => {
            bump(counter);
            0
        }
    }
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), u32> {
    let config = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, (pid_tgid & 0xFFFF_FFFF) as u32);
    if tgid == config.agent_tgid {
        return Ok(());
    }
    // exec has already set comm to the new executable's basename (15 bytes at most).
    let comm_words = current_comm()?;
    // SAFETY: two u64s are 16 initialized bytes; a byte array needs no more alignment.
    let comm: &WatchKey = unsafe { &*comm_words.as_ptr().cast::<WatchKey>() };
    let named = may_watch(&comm_words) && unsafe { WATCH.get(comm) }.is_some();
    // kubectl and docker CLI plugins, often scripts, have names of their own.
    let plugin = !named && plugin_comm(comm_words[0]);
    let watched = config.capture_all != 0 || named || plugin;
    // Execs inside an injected session are reported whatever their name.
    let mut session = tracked_get(tgid).unwrap_or(0);
    // What the file is: a renamed, copied or hard-linked tool has a name nobody watches.
    let by_identity = !watched && session == 0;
    let extra = if by_identity {
        flags::BY_IDENTITY
    } else if plugin {
        flags::PLUGIN_NAME
    } else {
        0
    };
    // A watched name's rules run by its name: its file is not read (that costs every
    // watched exec ~1 µs in the kernel).
    let worth = if named {
        identity::unread();
        false
    } else {
        identity::identify(extra, by_identity)
    };
    if by_identity && !worth {
        return Ok(());
    }
    let mut session_flags = if session != 0 { flags::IN_SESSION } else { 0 };
    if session == 0 && watched && unsafe { SESSION_SEEDS.get(comm) }.is_some() {
        // A runtime exec (or nsenter) starts a session; the agent ends it early when the
        // argv shows it is not an exec. Inside a session (runc re-exec'ing itself), the
        // outer session stays.
        session = unsafe { bpf_ktime_get_boot_ns() };
        tracked_insert(tgid, session);
        session_flags |= flags::SESSION_ROOT;
    }
    let off = offsets();
    if off.valid == 0 {
        return Ok(());
    }
    bump(counters::MATCHED);
    if by_identity {
        bump(if identity::is_tool() {
            counters::EXE_TOOL
        } else {
            counters::EXE_FIRST
        });
    }

    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        return Err(counters::RINGBUF_FULL);
    };
    let rec = entry.as_mut_ptr();
    let ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    let mut rec_flags = session_flags;
    let mut chunks = 0u32;
    // SAFETY: `rec` points into a live ring-buffer reservation of size_of::<ExecRecord>().
    let fill = unsafe { fill_exec(ctx, rec, &off, comm, tgid, pid, ktime_ns) };
    match fill {
        Ok(argv) => {
            rec_flags |= argv.flags;
            if argv.total > ARGV_CHUNK_LEN as u64 {
                let (n, lost) = unsafe { emit_chunks(argv.start, argv.total, tgid, pid, ktime_ns) };
                chunks = n;
                if lost {
                    rec_flags |= flags::ARGV_CHUNK_LOST;
                }
            }
            if argv.total > ARGV_MAX_TOTAL as u64 {
                rec_flags |= flags::ARGV_TRUNCATED;
            }
        }
        Err(f) => rec_flags |= f,
    }
    unsafe {
        (*rec).header.flags |= rec_flags;
        (*rec).chunks = chunks;
        (*rec).session = session;
        identity::copy_into(rec);
    }
    // A file reported only to be classified waits for the reader's next drain (at most
    // its 100 ms period): most are not tools, and each would otherwise wake it.
    // SAFETY: `rec` is the reservation, now filled.
    let wake = if unsafe { identity::only_to_classify(rec) } {
        wakeup::quiet_wakeup_flag()
    } else {
        // SAFETY: `rec` is the reservation, now filled.
        unsafe { wakeup::exec_flag(rec, session, rec_flags, config.wakeup_interval_ns, ktime_ns) }
    };
    entry.submit(wake);
    // Outside a session, a reported process is noted only for its exit record.
    if session == 0 {
        if config.capture_all == 0 || named {
            reported_insert(tgid);
        } else {
            tracked_insert(tgid, 0);
        }
    }
    Ok(())
}

/// The current task's comm as two words: moving them takes two 8-byte instructions,
/// where a zeroed `[u8; 16]` compiles to a memset call and byte-wise copies, on every
/// exec of the host.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn current_comm() -> Result<[u64; 2], u32> {
    let mut words = core::mem::MaybeUninit::<[u64; 2]>::uninit();
    // SAFETY: the helper takes uninitialized memory and, returning 0, has filled all 16
    // bytes (the name, NUL-padded).
    let ret = unsafe { generated::bpf_get_current_comm(words.as_mut_ptr().cast(), 16) };
    if ret == 0 {
        Ok(unsafe { words.assume_init() })
    } else {
        Err(counters::READ_ERROR)
    }
}

/// False when `comm` is certainly not in `WATCH` (its `WATCH_BITS` bit is clear).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn may_watch(comm: &[u64; 2]) -> bool {
    let bit = watch_filter_bit_of_words(comm[0], comm[1]);
    WATCH_BITS
        .get(bit / 32)
        .is_some_and(|word| word & (1 << (bit % 32)) != 0)
}

struct ArgvSpan {
    start: u64,
    total: u64,
    flags: u32,
}

/// Fills every field of the exec record. Failures to read optional context leave a
/// neutral value; a failure to read argv is flagged, never fatal: the exec is still
/// reported.
///
/// The ancestry, cgroup and argv reads stay in this body: as helpers of their own, LLVM
/// optimises them apart and the program's instructions change.
///
/// # Safety
/// `rec` points into a live ring-buffer reservation of an `ExecRecord` (as for every
/// `rec` of the helpers below).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(clippy::cast_possible_truncation, reason = "argv_len: at most 4 KiB")]
unsafe fn fill_exec(
    ctx: &TracePointContext,
    rec: *mut ExecRecord,
    off: &KernelOffsets,
    comm: &[u8; 16],
    tgid: u32,
    pid: u32,
    ktime_ns: u64,
) -> Result<ArgvSpan, u32> {
    let mut f = 0u32;
    unsafe {
        init_exec(rec, comm, tgid, pid, ktime_ns);
        read_filename(ctx, rec, &mut f);
        let task = bpf_get_current_task();
        // Same css_set as the parent: the agent can reuse the parent's cgroup instead of
        // reading /proc (both pointers are read now, while both tasks hold them).
        let css_set = read_at::<u64>(task, off.task_cgroups).unwrap_or(0);
        (*rec).css_set = css_set;
        let parent = read_at::<u64>(task, off.task_real_parent).unwrap_or(0);
        if parent != 0 && css_set != 0 && read_at::<u64>(parent, off.task_cgroups) == Ok(css_set) {
            f |= flags::SAME_CGROUPS_AS_PARENT;
        }
        // Likewise the working directory, which the agent otherwise reads from /proc.
        let (mnt, dentry) = pwd_of(task, off);
        (*rec).pwd_mnt = mnt;
        (*rec).pwd_dentry = dentry;
        if parent != 0 && dentry != 0 && pwd_of(parent, off) == (mnt, dentry) {
            f |= flags::SAME_CWD_AS_PARENT;
        }
        // The ancestry as it is now: short-lived parents may be gone when the agent looks.
        let mut cur = task;
        for i in 0..MAX_ANCESTORS {
            let parent = read_at::<u64>(cur, off.task_real_parent).unwrap_or(0);
            let tgid = if parent == 0 || parent == cur {
                0
            } else {
                read_at::<u32>(parent, off.task_tgid).unwrap_or(0)
            };
            (*rec).ancestors[i].tgid = tgid;
            (*rec).ancestors[i].comm = [0; 16];
            if tgid == 0 {
                cur = 0;
                continue;
            }
            let _ = bpf_probe_read_kernel_buf(
                (parent + u64::from(off.task_comm)) as *const u8,
                &mut (*rec).ancestors[i].comm,
            );
            if i == 0 {
                (*rec).ppid = tgid;
            }
            cur = parent;
            if tgid == 1 {
                cur = 0; // init: the chain ends; later slots get tgid 0
            }
        }
        read_credentials(rec, task, off, &mut f);
        read_tty(rec, task, off, &mut f);
        read_namespaces(rec, task, off);
        // argv: its full length, argc, and the first chunk.
        let mm = read_at::<u64>(task, off.task_mm).map_err(|_| f | flags::ARGV_READ_FAILED)?;
        let start =
            read_at::<u64>(mm, off.mm_arg_start).map_err(|_| f | flags::ARGV_READ_FAILED)?;
        let end = read_at::<u64>(mm, off.mm_arg_end).map_err(|_| f | flags::ARGV_READ_FAILED)?;
        let total = end.saturating_sub(start);
        (*rec).argv_total_len = u32::try_from(total).unwrap_or(u32::MAX);
        // For ELF images argc is the first word at the initial stack pointer.
        if let Ok(stack) = read_at::<u64>(mm, off.mm_start_stack)
            && let Ok(argc) = bpf_probe_read_user(stack as *const u64)
        {
            (*rec).argc = u32::try_from(argc).unwrap_or(u32::MAX);
        }
        let len = chunk_len(total);
        if len > 0 {
            let dst = &mut (&mut (*rec).argv)[..len];
            if bpf_probe_read_user_buf(start as *const u8, dst).is_err() {
                f |= flags::ARGV_READ_FAILED;
            } else {
                (*rec).argv_len = len as u32;
            }
        }
        Ok(ArgvSpan {
            start,
            total,
            flags: f,
        })
    }
}

/// The header, ids and comm, and a neutral value in every field a failed read leaves.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn init_exec(rec: *mut ExecRecord, comm: &[u8; 16], tgid: u32, pid: u32, ktime_ns: u64) {
    let uid_gid = bpf_get_current_uid_gid();
    unsafe {
        (*rec).header = RecordHeader::new(KIND_EXEC, ktime_ns, tgid, pid);
        (*rec).uid = (uid_gid & 0xFFFF_FFFF) as u32;
        (*rec).gid = (uid_gid >> 32) as u32;
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).css_set = 0;
        (*rec).pwd_mnt = 0;
        (*rec).pwd_dentry = 0;
        (*rec).session = 0;
        (*rec).comm = *comm;
        (*rec).ppid = 0;
        (*rec).euid = u32::MAX;
        (*rec).egid = u32::MAX;
        (*rec).loginuid = u32::MAX;
        (*rec).pid_ns = 0;
        (*rec).mnt_ns = 0;
        (*rec).tty_index = 0;
        (*rec).argc = 0;
        (*rec).argv_total_len = 0;
        (*rec).argv_len = 0;
        (*rec).chunks = 0;
        (*rec).tty_name = [0; TTY_NAME_LEN];
    }
}

/// The executable path as the exec was asked for it; `PATH_TRUNCATED` if it was cut.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(clippy::cast_possible_truncation, reason = "at most PATH_LEN bytes")]
unsafe fn read_filename(ctx: &TracePointContext, rec: *mut ExecRecord, f: &mut u32) {
    unsafe {
        let loc: u32 = ctx.read_at(TP_FILENAME_LOC).unwrap_or(0);
        let (loc_off, loc_len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
        let src = ctx.as_ptr().cast::<u8>().add(loc_off);
        (*rec).filename_len = match bpf_probe_read_kernel_str_bytes(src, &mut (*rec).filename) {
            Ok(name) => name.len() as u32,
            Err(_) => 0,
        };
        if loc_len > PATH_LEN {
            *f |= flags::PATH_TRUNCATED;
        }
    }
}

/// (vfsmount, dentry) addresses of a task's working directory; zeros when unreadable.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn pwd_of(task: u64, off: &KernelOffsets) -> (u64, u64) {
    let Ok(fs) = (unsafe { read_at::<u64>(task, off.task_fs) }) else {
        return (0, 0);
    };
    if fs == 0 {
        return (0, 0);
    }
    unsafe {
        (
            read_at::<u64>(fs, off.fs_pwd_mnt).unwrap_or(0),
            read_at::<u64>(fs, off.fs_pwd_dentry).unwrap_or(0),
        )
    }
}

/// Effective ids and loginuid; `NO_LOGINUID` on kernels without audit support.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn read_credentials(rec: *mut ExecRecord, task: u64, off: &KernelOffsets, f: &mut u32) {
    unsafe {
        if let Ok(cred) = read_at::<u64>(task, off.task_cred) {
            (*rec).euid = read_at::<u32>(cred, off.cred_euid).unwrap_or(u32::MAX);
            (*rec).egid = read_at::<u32>(cred, off.cred_egid).unwrap_or(u32::MAX);
        }
        if off.has_loginuid != 0 {
            (*rec).loginuid = read_at::<u32>(task, off.task_loginuid).unwrap_or(u32::MAX);
        } else {
            *f |= flags::NO_LOGINUID;
        }
    }
}

/// The controlling terminal, if any (`HAS_TTY`).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn read_tty(rec: *mut ExecRecord, task: u64, off: &KernelOffsets, f: &mut u32) {
    unsafe {
        if let Ok(signal) = read_at::<u64>(task, off.task_signal) {
            let tty = read_at::<u64>(signal, off.signal_tty).unwrap_or(0);
            if tty != 0 {
                *f |= flags::HAS_TTY;
                (*rec).tty_index = read_at::<u32>(tty, off.tty_index).unwrap_or(0);
                let _ = bpf_probe_read_kernel_buf(
                    (tty + u64::from(off.tty_name)) as *const u8,
                    &mut (*rec).tty_name,
                );
            }
        }
    }
}

/// The mount and pid namespaces' inode numbers.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn read_namespaces(rec: *mut ExecRecord, task: u64, off: &KernelOffsets) {
    unsafe {
        if let Ok(nsproxy) = read_at::<u64>(task, off.task_nsproxy)
            && nsproxy != 0
        {
            if let Ok(mnt) = read_at::<u64>(nsproxy, off.nsproxy_mnt_ns) {
                (*rec).mnt_ns = read_at::<u32>(mnt, off.mnt_ns_inum).unwrap_or(0);
            }
            if let Ok(pidns) = read_at::<u64>(nsproxy, off.nsproxy_pid_ns) {
                (*rec).pid_ns = read_at::<u32>(pidns, off.pid_ns_inum).unwrap_or(0);
            }
        }
    }
}

/// The argv bytes one record carries when `remaining` are left.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(clippy::cast_possible_truncation, reason = "at most ARGV_CHUNK_LEN")]
fn chunk_len(remaining: u64) -> usize {
    if remaining > ARGV_CHUNK_LEN as u64 {
        ARGV_CHUNK_LEN
    } else {
        remaining as usize
    }
}

/// Emits the argv beyond the first chunk as continuation records. Returns how many were
/// submitted and whether one could not be reserved.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(clippy::cast_possible_truncation, reason = "8 chunks of 4 KiB")]
unsafe fn emit_chunks(start: u64, total: u64, tgid: u32, pid: u32, ktime_ns: u64) -> (u32, bool) {
    let mut sent = 0u32;
    for seq in 1..=ARGV_MAX_CHUNKS as u32 {
        let offset = u64::from(seq) * ARGV_CHUNK_LEN as u64;
        if offset >= total {
            break;
        }
        let Some(mut entry) = EVENTS.reserve::<ArgvChunkRecord>(0) else {
            bump(counters::CHUNK_RINGBUF_FULL);
            return (sent, true);
        };
        let rec = entry.as_mut_ptr();
        let len = chunk_len(total - offset);
        unsafe {
            (*rec).header = RecordHeader::new(KIND_ARGV_CHUNK, ktime_ns, tgid, pid);
            (*rec).seq = seq;
            (*rec).offset = offset as u32;
            (*rec).pad = 0;
            let dst = &mut (&mut (*rec).argv)[..len];
            if bpf_probe_read_user_buf((start + offset) as *const u8, dst).is_err() {
                (*rec).len = 0;
                (*rec).header.flags = flags::ARGV_READ_FAILED;
            } else {
                (*rec).len = len as u32;
            }
        }
        // The exec record's submit, after the chunks, decides the wake-up.
        entry.submit(BPF_RB_NO_WAKEUP);
        sent += 1;
    }
    (sent, false)
}
