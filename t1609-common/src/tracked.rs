//! The counting filter in front of the probes' `TRACKED` map: how a pid maps to a
//! `TRACKED_COUNT` slot, and what the two halves of a slot hold. The probe and the agent
//! (which uncounts the entries it removes) must agree on it, hence here.

/// Slots of the `TRACKED_COUNT` array, a counting filter in front of the `TRACKED` map:
/// slot [`tracked_slot`]`(key)` holds how many `TRACKED` keys fall in it. Every fork and
/// exit on the host asks whether its task is tracked; a zero slot answers "no" with one
/// load from a small, hot array (32 KiB of u64: eBPF has no 32-bit atomics) instead of
/// hashing into a random bucket of `TRACKED`'s
/// 256 KiB table (a cache and TLB miss, ~300 ns in a VM).
pub const TRACKED_SLOTS: u32 = 4096;

const _: () = assert!(TRACKED_SLOTS.is_power_of_two());

/// The `TRACKED_COUNT` slot of a `TRACKED` key (a pid). Pids are handed out in
/// sequence, so their low bits spread evenly.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn tracked_slot(key: u32) -> u32 {
    key & (TRACKED_SLOTS - 1)
}

/// The low half of a `TRACKED_COUNT` slot: how many `TRACKED` keys fall in it. (Counts
/// and uncounts are atomic adds of 1 and -1 on the whole word; the count never goes
/// below 0, so they never carry into the high half.)
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn tracked_keys(slot_word: u64) -> u32 {
    (slot_word & 0xFFFF_FFFF) as u32
}

/// The high half of a `TRACKED_COUNT` slot: the tgid of the last process reported by name,
/// outside any session, that falls in the slot, until its exit (0: none). Its exit is
/// reported without `TRACKED`: an LRU insert at the exec and a delete at the exit cost a
/// watched exec ~2 µs, and sharing the slot keeps every exit on the host at one load.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn reported_tgid(slot_word: u64) -> u32 {
    (slot_word >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_word_holds_the_key_count_low_and_the_reported_tgid_high() {
        let word = (4242u64 << 32) | 3;
        assert_eq!(tracked_keys(word), 3);
        assert_eq!(reported_tgid(word), 4242);
        assert_eq!(tracked_slot(TRACKED_SLOTS + 5), 5);
    }
}
