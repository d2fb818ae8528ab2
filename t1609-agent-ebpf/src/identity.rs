//! What the executed file is: its identity (`mm->exe_file->f_inode`: device, inode, size,
//! times) and what `EXE_KNOWN`, `VERDICTS` and `INODES` say about it.
//!
//! This runs for every exec on the host whose name is not watched, so it is kept cheap:
//! - the identity is read with plain loads through the task's BTF pointer
//!   (`bpf_get_current_task_btf`): the verifier checks each against the kernel's BTF at
//!   load time (the offsets are load-time constants) and the JIT makes them faulting-safe
//!   loads, a nanosecond each, where a `bpf_probe_read_kernel` call costs ~40 ns;
//! - a file classified as not a tool is answered by `EXE_KNOWN`, one slot of a 32 KiB
//!   array, before any hash map and without the per-CPU scratch: `VERDICTS` (then
//!   `INODES`, the installed tools, which the LRU cannot evict) is asked only when that
//!   slot does not hold the file's fingerprint; and only a file no map knows gets a
//!   pending entry and a report.

use aya_ebpf::{
    bindings::{BPF_EXIST, BPF_NOEXIST},
    helpers::{bpf_ktime_get_boot_ns, generated},
    macros::map,
    maps::{Array, PerCpuArray},
};
use t1609_common::{
    EXE_KNOWN_SLOTS, EXE_NOT_A_TOOL, EXE_PENDING, ExeKey, ExeVerdict, ExecRecord, InodeKey,
    counters, exe_fingerprint, exe_known_slot, flags,
};

use crate::maps::{INODES, VERDICTS, bump, exe_setting};

/// `EEXIST`: a `BPF_NOEXIST` insert found the key there.
const EEXIST: i32 = 17;

/// The bits a nanosecond count uses (< 10^9 < 2^30).
const NSEC_MASK: u64 = (1 << 30) - 1;

/// Fingerprints (`t1609_common::exe_fingerprint`) of files classified as not tools, by
/// `exe_known_slot`: the probe writes one when `VERDICTS` says so, the agent zeroes them
/// all when a reload clears `VERDICTS`.
#[map]
static EXE_KNOWN: Array<u64> = Array::with_max_entries(EXE_KNOWN_SLOTS, 0);

/// The identity check's result and the keys it hands to the map helpers, one per CPU.
/// On the stack they pushed the exec program past the 512-byte limit; carried in
/// registers down the record's long path, their every combination was a verifier state
/// of its own, past the verifier's budget. Read back from a map, they are one state. The
/// probe runs with preemption off, and only the exec program uses it.
#[repr(C)]
pub(crate) struct Scratch {
    key: ExeKey,
    inode: InodeKey,
    pending: ExeVerdict,
    /// Tool id, 0 when none is known.
    tool: u32,
    /// Record flags: `EXE_UNREAD` or `EXE_FIRST`, `BY_IDENTITY`, `PLUGIN_NAME`.
    flags: u32,
}

#[map]
static EXE_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// What [`read_seen`] reads of the executed file; `s_dev` waits until it is needed.
struct Seen {
    sb: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

/// Reads the current task's executed file and looks it up; the result waits in this
/// CPU's scratch for [`copy_into`]. A file no map knows gets a pending `VERDICTS` entry
/// (only if absent: of two CPUs racing, one reports it) and `EXE_FIRST`; so does one
/// whose pending entry has expired. `extra` are record flags to note with it;
/// `by_identity`: the exec is reported only if its file says so (then a file known not
/// to be a tool leaves the scratch alone).
///
/// Returns whether the file alone is worth a report: a tool, or a first report.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the keys would be copied to the stack: they live in the scratch"
)]
pub(crate) fn identify(extra: u32, by_identity: bool) -> bool {
    let seen = if exe_setting!(enabled) == 0 {
        None
    } else {
        // SAFETY: the offsets come from the running kernel's BTF.
        let seen = unsafe { read_seen() };
        if seen.is_none() {
            bump(counters::EXE_UNREAD);
        }
        seen
    };
    let Some(seen) = seen else {
        note(ExeKey::default(), extra | flags::EXE_UNREAD);
        return false;
    };
    #[expect(clippy::cast_sign_loss, reason = "the times' bits")]
    let fingerprint = exe_fingerprint(
        [
            seen.ino,
            seen.size,
            seen.mtime_ns as u64,
            seen.ctime_ns as u64,
        ],
        exe_setting!(seed),
    );
    let known = EXE_KNOWN.get_ptr_mut(exe_known_slot(fingerprint));
    if let Some(slot) = known
        // SAFETY: a live array slot; a racing store at worst gives another file's
        // fingerprint, which does not match.
        && unsafe { core::ptr::read_volatile(slot) } == fingerprint
    {
        if !by_identity {
            note(key(&seen), extra);
        }
        return false;
    }
    let Some(s) = EXE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch (see `Scratch`).
    let s = unsafe { &mut *s };
    s.key = key(&seen);
    s.tool = 0;
    s.flags = extra;
    if let Some(v) = VERDICTS.get_ptr(&s.key) {
        // SAFETY: a live map value; a concurrent update at worst gives the other state.
        let v = unsafe { core::ptr::read_volatile(v) };
        if v.state == EXE_NOT_A_TOOL {
            if let Some(slot) = known {
                // SAFETY: as above; one aligned 8-byte store.
                unsafe { core::ptr::write_volatile(slot, fingerprint) };
            }
            return false;
        }
        if v.state != EXE_PENDING {
            s.tool = v.state;
            return true;
        }
        let now = unsafe { bpf_ktime_get_boot_ns() };
        if !v.pending_expired(now) {
            return false;
        }
        s.pending = ExeVerdict::pending(now);
        let ok = VERDICTS
            .insert(&s.key, &s.pending, u64::from(BPF_EXIST))
            .is_ok();
        if ok {
            s.flags = extra | flags::EXE_FIRST;
        }
        return ok;
    }
    s.inode = InodeKey {
        dev: s.key.dev,
        pad: 0,
        ino: s.key.ino,
    };
    // SAFETY: a live map value, written only by the agent.
    if let Some(tool) = unsafe { INODES.get(&s.inode) } {
        s.tool = *tool;
        return true;
    }
    s.pending = ExeVerdict::pending(unsafe { bpf_ktime_get_boot_ns() });
    match VERDICTS.insert(&s.key, &s.pending, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            s.flags = extra | flags::EXE_FIRST;
            true
        }
        // Another CPU reported it first.
        Err(e) if e == -EEXIST => false,
        Err(_) => {
            bump(counters::EXE_PENDING_FAILED);
            false
        }
    }
}

/// The full key of what [`read_seen`] read: `s_dev` loaded now (another cache line).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn key(seen: &Seen) -> ExeKey {
    let sb_dev = exe_setting!(sb_dev);
    ExeKey {
        // SAFETY: `sb` came from the inode's `i_sb`, a BTF-typed pointer.
        dev: unsafe { load(seen.sb, sb_dev) },
        pad: 0,
        ino: seen.ino,
        size: seen.size,
        mtime_ns: seen.mtime_ns,
        ctime_ns: seen.ctime_ns,
    }
}

/// Notes, for [`copy_into`], that the file was not read.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn unread() {
    note(ExeKey::default(), flags::EXE_UNREAD);
}

/// Notes a result for [`copy_into`] without a lookup (the file is known, or unread).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn note(key: ExeKey, flags: u32) {
    if let Some(s) = EXE_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch.
        unsafe {
            (*s).key = key;
            (*s).tool = 0;
            (*s).flags = flags;
        }
    }
}

/// Whether the file [`identify`] read is a tool (for the counters of execs reported for
/// their identity alone).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn is_tool() -> bool {
    // SAFETY: this CPU's scratch.
    EXE_SCRATCH
        .get_ptr(0)
        .is_some_and(|s| unsafe { (*s).tool } != 0)
}

/// Whether the filled record was made only to have its file classified: no watched
/// name, no session, not a known tool. Read back from the record, not carried in a
/// register across the argv loop, where it would double the verifier's states.
///
/// # Safety
/// `rec` points into a live ring-buffer reservation of a filled `ExecRecord`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) unsafe fn only_to_classify(rec: *const ExecRecord) -> bool {
    unsafe { (*rec).header.flags & flags::BY_IDENTITY != 0 && (*rec).exe_tool == 0 }
}

/// Puts what [`identify`] found into the exec record.
///
/// # Safety
/// `rec` points into a live ring-buffer reservation of an `ExecRecord`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) unsafe fn copy_into(rec: *mut ExecRecord) {
    unsafe {
        if let Some(s) = EXE_SCRATCH.get_ptr(0) {
            (*rec).exe = (*s).key;
            (*rec).exe_tool = (*s).tool;
            (*rec).header.flags |= (*s).flags;
        } else {
            (*rec).exe = ExeKey::default();
            (*rec).exe_tool = 0;
            (*rec).header.flags |= flags::EXE_UNREAD;
        }
        (*rec).exe_pad = 0;
    }
}

/// A `T` at `base + offset`: a plain load from a BTF-typed kernel pointer, which the
/// verifier checks against the kernel's BTF (the offset is a load-time constant) and the
/// JIT turns into a load that yields 0 instead of faulting.
///
/// # Safety
/// `base` came from `bpf_get_current_task_btf` or a load like this one, and the struct
/// it points to has a `T` member at `offset`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn load<T: Copy>(base: u64, offset: u32) -> T {
    unsafe { core::ptr::read_volatile((base + u64::from(offset)) as *const T) }
}

/// The identity of the current task's `mm->exe_file`, but for `s_dev` (see [`key`]).
///
/// # Safety
/// The offsets describe the running kernel's structs.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
unsafe fn read_seen() -> Option<Seen> {
    let (task_mm, mm_exe_file, file_inode, inode_sb) = (
        exe_setting!(task_mm),
        exe_setting!(mm_exe_file),
        exe_setting!(file_inode),
        exe_setting!(inode_sb),
    );
    let (ino, size) = (exe_setting!(inode_ino), exe_setting!(inode_size));
    let (mtime, mtime_ns) = (
        exe_setting!(inode_mtime_sec),
        exe_setting!(inode_mtime_nsec),
    );
    let (ctime, ctime_ns) = (
        exe_setting!(inode_ctime_sec),
        exe_setting!(inode_ctime_nsec),
    );
    let nsec_long = exe_setting!(nsec_long) != 0;
    let task = unsafe { generated::bpf_get_current_task_btf() } as u64;
    let mm: u64 = unsafe { load(task, task_mm) };
    if mm == 0 {
        return None;
    }
    let file: u64 = unsafe { load(mm, mm_exe_file) };
    if file == 0 {
        return None;
    }
    let inode: u64 = unsafe { load(file, file_inode) };
    if inode == 0 {
        return None;
    }
    let sb: u64 = unsafe { load(inode, inode_sb) };
    if sb == 0 {
        return None;
    }
    // Nanoseconds are below 2^30. Since 6.13 the kernel keeps a flag in the top bit of
    // `i_ctime_nsec` (I_CTIME_QUERIED: a `stat` saw this ctime), which comes and goes
    // without the file changing: masked off, as `inode_get_ctime_nsec` does.
    #[expect(clippy::cast_possible_wrap, reason = "time64_t read as its bits")]
    let time = |sec: u32, ns: u32| -> i64 {
        let ns = if nsec_long {
            unsafe { load::<u64>(inode, ns) }
        } else {
            u64::from(unsafe { load::<u32>(inode, ns) })
        };
        (unsafe { load::<u64>(inode, sec) } as i64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add((ns & NSEC_MASK) as i64)
    };
    Some(Seen {
        sb,
        ino: unsafe { load(inode, ino) },
        size: unsafe { load(inode, size) },
        mtime_ns: time(mtime, mtime_ns),
        ctime_ns: time(ctime, ctime_ns),
    })
}
