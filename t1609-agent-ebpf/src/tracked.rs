//! Which tasks are tracked: the `TRACKED` map behind a counting filter. The filter's
//! slots also note the processes reported by name, whose exit is reported.
//!
//! Every fork and exit on the host asks whether its task is tracked, and nearly always
//! the answer is no. `TRACKED_COUNT` answers that with one load from a small array that
//! stays in cache; only a non-zero slot leads to the hash lookup.
//!
//! The count of a slot never falls below the number of its keys in `TRACKED` at a moment
//! a probe can look: an entry is counted right after it is inserted, which is safe
//! because no probe can ask about that key in between (a forked child has not run yet;
//! an exec'ing task is the one inserting), and uncounted right after it is removed.
//! The agent uncounts the entries it removes itself (`Capture::end_session`) through its
//! mapping of the array. Only an LRU eviction, when all 16,384 entries are in use, leaves
//! a count too high: a slot that keeps asking `TRACKED`, never a missed task.

use aya_ebpf::{
    bindings::{BPF_EXIST, BPF_F_MMAPABLE, BPF_NOEXIST},
    macros::map,
    maps::{Array, LruHashMap},
};
use t1609_common::{TRACKED_SLOTS, reported_tgid, tracked_keys, tracked_slot};

/// tgid (or thread id, for threads forked in a session) → session id. LRU-bounded.
/// Session id 0 marks a process reported for capture-all outside any session: only its
/// exit is reported, so the agent's table lets it go at once instead of finding it gone
/// in /proc much later. (Processes reported by name are noted in `TRACKED_COUNT`.)
#[map]
static TRACKED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Per slot (`t1609_common::tracked_slot`): the number of `TRACKED` keys in the low half
/// (`tracked_keys`), the last process reported by name in the high half
/// (`reported_tgid`). Mmapable: the agent uncounts the entries it removes with an atomic
/// on its mapping.
#[map]
static TRACKED_COUNT: Array<u64> = Array::with_max_entries(TRACKED_SLOTS, BPF_F_MMAPABLE);

/// The word of `key`'s slot.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn slot_word(key: u32) -> Option<u64> {
    let word = TRACKED_COUNT.get(tracked_slot(key))?;
    // SAFETY: a live array slot; other CPUs update it atomically.
    Some(unsafe { core::ptr::read_volatile(word) })
}

/// The session of a tracked `key` (0: a capture-all process outside any session).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
pub(crate) fn tracked_get(key: u32) -> Option<u64> {
    if tracked_keys(slot_word(key)?) == 0 {
        return None;
    }
    unsafe { TRACKED.get(&key) }.copied()
}

/// At a task's exit: whether it is a process reported by name (its note is cleared), and
/// its session if tracked. One load answers both for nearly every exit on the host.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
pub(crate) fn exit_lookup(tgid: u32, pid: u32) -> (bool, Option<u64>) {
    let Some(word) = slot_word(pid) else {
        return (false, None);
    };
    if word == 0 {
        return (false, None);
    }
    let reported = pid == tgid && reported_tgid(word) == tgid;
    if reported {
        set_reported(tgid, 0);
    }
    let session = if tracked_keys(word) != 0 {
        unsafe { TRACKED.get(&pid) }.copied()
    } else {
        None
    };
    (reported, session)
}

/// Notes `tgid`, just reported by name outside any session, for its exit. Another such
/// process alive in the same slot loses its note: its exit goes unreported, and the
/// agent finds it gone from /proc later.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub(crate) fn reported_insert(tgid: u32) {
    set_reported(tgid, tgid);
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn set_reported(key: u32, tgid: u32) {
    if let Some(word) = TRACKED_COUNT.get_ptr_mut(tracked_slot(key)) {
        // SAFETY: the high half of a live, aligned u64 slot (the target is little-endian).
        // A 4-byte store there and the atomic adds on the low half never tear each other.
        unsafe { core::ptr::write_volatile(word.cast::<u32>().add(1), tgid) };
    }
}

/// Tracks `key`, or moves it to `session` if already tracked.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
pub(crate) fn tracked_insert(key: u32, session: u64) {
    if TRACKED
        .insert(&key, &session, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        count(key, 1);
    } else {
        // Already there, so already counted. Should the agent remove it meanwhile, this
        // update fails and the task is untracked, as if it had ended the session later.
        let _ = TRACKED.insert(&key, &session, u64::from(BPF_EXIST));
    }
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
pub(crate) fn tracked_remove(key: u32) {
    if TRACKED.remove(&key).is_ok() {
        count(key, u64::MAX); // -1, wrapping
    }
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn count(key: u32, delta: u64) {
    if let Some(slot) = TRACKED_COUNT.get_ptr_mut(tracked_slot(key)) {
        // SAFETY: a live, aligned array slot; every writer uses an atomic add. The eBPF
        // target has no `AtomicU64::fetch_add` (no compare-and-swap); this intrinsic
        // compiles to the one-instruction atomic add (`lock +=`).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                slot, delta,
            )
        };
    }
}
