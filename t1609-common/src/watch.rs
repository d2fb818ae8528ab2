//! The watched command names: the `WATCH` map's key, and the `WATCH_BITS` prefilter bit
//! that lets nearly every exec on the host skip the `WATCH` lookup.

use crate::record::COMM_LEN;

/// Key of the `WATCH` hash map: a command name, NUL-padded to [`COMM_LEN`].
/// The kernel matches the task's `comm`, which exec sets to the executable's basename
/// truncated to 15 bytes; the agent checks the full name again.
pub type WatchKey = [u8; COMM_LEN];

/// Bits of the `WATCH_BITS` prefilter in front of the `WATCH` map: a clear bit means
/// the command name is not watched, without a hash-map lookup on every exec.
pub const WATCH_FILTER_BITS: u32 = 4096;

const _: () = assert!(WATCH_FILTER_BITS == 1 << 12 && WATCH_FILTER_BITS.is_multiple_of(32));

/// The `WATCH_BITS` bit of a command name as the kernel holds it (NUL-padded comm).
/// The probe and the agent must compute it alike, hence here.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub fn watch_filter_bit(comm: &WatchKey) -> u32 {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&comm[..8]);
    hi.copy_from_slice(&comm[8..]);
    watch_filter_bit_of_words(u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// [`watch_filter_bit`] of a comm read as two little-endian words, as the probe holds it.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn watch_filter_bit_of_words(lo: u64, hi: u64) -> u32 {
    let mixed = (lo ^ hi.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 52) as u32 // the top 12 bits: 0..WATCH_FILTER_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_words_give_the_same_bit_inside_the_filter() {
        let mut comm: WatchKey = [0; COMM_LEN];
        comm[..7].copy_from_slice(b"kubectl");
        let lo = u64::from_le_bytes(comm[..8].try_into().unwrap());
        let hi = u64::from_le_bytes(comm[8..].try_into().unwrap());
        let bit = watch_filter_bit(&comm);
        assert_eq!(bit, watch_filter_bit_of_words(lo, hi));
        assert!(bit < WATCH_FILTER_BITS);
    }
}
