//! When a submitted record wakes the agent's reader. A wake-up costs the exec about
//! 10 µs and the agent 20–30 µs, so:
//! - records force a wake-up at most once per `wakeup_interval_ns` after the last one or
//!   the reader's last stamp of `LAST_WAKEUP`: the reader stamps it while its ticks find
//!   records, and clears it when it goes to sleep, so that the next record wakes it;
//! - a reported process's exit never wakes it: it only updates the process table;
//! - while the agent replays a stream of exact repeats (quiet mode) the records it
//!   expects force none;
//! - a ring half full always wakes it.
//!
//! Every program asks here for its submit flag.

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use t1609_common::{
    ARGV_CHUNK_LEN, ExecRecord, QUIET_ARGV_BYTES, QUIET_SIGNATURES, flags, quiet_signature_finish,
    quiet_signature_seed, quiet_signature_step, quiet_slot, quiet_word_mask,
};

use crate::maps::{EVENTS, config};

/// Boot-time ns of the last forced reader wake-up (slot 0). Mmapable: the reader stamps it
/// with a plain store while its polls find records, not a `bpf()` call per poll.
#[map]
static LAST_WAKEUP: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Slot 0: non-zero while the agent replays a stream of exact repeats. Slots 1..: the
/// quiet signatures of the execs it replays (`t1609_common::quiet_signature`). In that
/// mode, a reported exec whose signature is here, and a reported process's exit, force
/// no wake-up: the reader drains them on its own, slow, schedule. Anything else still
/// wakes it. Mmapable: the agent writes it with plain stores.
#[map]
static QUIET: Array<u64> = Array::with_max_entries(1 + QUIET_SIGNATURES, BPF_F_MMAPABLE);

// `bpf_ringbuf_submit` flags and `bpf_ringbuf_query` fields (uapi `linux/bpf.h`).
pub(crate) const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// The submit flag of an exec record: none while quiet mode lists its signature (outside
/// a session, with its argv read), else the rate-limited one.
///
/// # Safety
/// `rec` points into a live ring-buffer reservation of a filled `ExecRecord`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) unsafe fn exec_flag(
    rec: *const ExecRecord,
    session: u64,
    rec_flags: u32,
    interval_ns: u64,
    now: u64,
) -> u64 {
    if session == 0
        && rec_flags & flags::ARGV_READ_FAILED == 0
        && quiet_mode()
        && unsafe { quiet_listed(rec) }
    {
        quiet_wakeup_flag()
    } else {
        rate_limited_flag(interval_ns, now)
    }
}

/// The submit flag of a fork or exit record. A reported process's exit (session 0) can
/// wait for the reader's next drain: it only updates the process table. A session's fork
/// or exit may end the session, which is alerted.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn task_flag(session: u64, now: u64) -> u64 {
    if session == 0 {
        quiet_wakeup_flag()
    } else {
        rate_limited_flag(config().wakeup_interval_ns, now)
    }
}

/// A wake-up at most once per `interval_ns` since `LAST_WAKEUP`, or at once when the ring
/// is half full. The reader stamps `LAST_WAKEUP` while its ticks find records, so a
/// steady stream forces none, and clears it before it sleeps, so the next record wakes it
/// (the ring's own rule would not: an exit record submitted without a wake-up may lie
/// unread before it).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn rate_limited_flag(interval_ns: u64, now: u64) -> u64 {
    if interval_ns == 0 {
        return 0;
    }
    if EVENTS.query(BPF_RB_AVAIL_DATA) > EVENTS.query(BPF_RB_RING_SIZE) / 2 {
        return BPF_RB_FORCE_WAKEUP;
    }
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: slot 0 exists; a racing CPU at worst causes one extra wake-up.
    unsafe {
        if now.wrapping_sub(*last) >= interval_ns {
            *last = now;
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        }
    }
}

/// True while the agent replays a stream of exact repeats (see `QUIET`).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn quiet_mode() -> bool {
    QUIET.get(0).is_some_and(|mode| *mode != 0)
}

/// The wake-up flag of a record the reader need not see at once: none, unless the ring
/// is half full.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn quiet_wakeup_flag() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) > EVENTS.query(BPF_RB_RING_SIZE) / 2 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Whether the exec's quiet signature, hashed from the record's parent and argv in
/// place, is in `QUIET`.
///
/// # Safety
/// `rec` points into a live ring-buffer reservation of an `ExecRecord`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(clippy::cast_ptr_alignment, reason = "argv is 8-aligned (asserted)")]
#[expect(clippy::cast_possible_truncation, reason = "at most ARGV_CHUNK_LEN")]
unsafe fn quiet_listed(rec: *const ExecRecord) -> bool {
    let (ppid, record_len, base) = unsafe {
        (
            (*rec).ppid,
            ((*rec).argv_len as usize).min(ARGV_CHUNK_LEN),
            (*rec).argv.as_ptr().cast::<u64>(),
        )
    };
    let covered = record_len.min(QUIET_ARGV_BYTES);
    let mut hash = quiet_signature_seed(ppid, record_len as u32);
    // Whole words, then the partial one masked: one exit per iteration keeps the
    // verifier's walk short.
    for i in 0..QUIET_ARGV_BYTES / 8 {
        if i >= covered / 8 {
            break;
        }
        // SAFETY: word i of the argv buffer (aligned: see t1609-common's assertion).
        hash = quiet_signature_step(hash, unsafe { base.add(i).read() });
    }
    if !covered.is_multiple_of(8) {
        // SAFETY: the word holding the argv's last bytes, inside the buffer; bytes past
        // the argv are masked off.
        let word = unsafe { base.add((covered / 8) % (QUIET_ARGV_BYTES / 8)).read() };
        hash = quiet_signature_step(hash, word & quiet_word_mask(covered % 8));
    }
    let signature = quiet_signature_finish(hash);
    QUIET
        .get(quiet_slot(signature))
        .is_some_and(|listed| *listed == signature)
}
