//! Quiet signatures: while the agent replays a stream of exact repeats, it lists the
//! signature of each replayed exec in the probes' `QUIET` map, and an exec whose
//! signature is listed forces no reader wake-up. The probe hashes the signature in place
//! from its record and the agent from the decoded argv; both must agree, hence here.

use crate::record::ARGV_CHUNK_LEN;

/// Signature slots of the `QUIET` map, after its mode word (slot 0). While the agent
/// replays a stream of exact repeats it sets the mode and writes each replayed exec's
/// [`quiet_signature`] to slot `1 + signature % QUIET_SIGNATURES`; a reported exec whose
/// signature is there then forces no reader wake-up, any other one does.
pub const QUIET_SIGNATURES: u32 = 64;

/// Leading argv bytes a quiet signature hashes (the probe hashes them in place, and the
/// verifier must walk every iteration of its loop). The seed holds the record's whole argv
/// length, so only commands alike in parent, length and these bytes share a signature.
pub const QUIET_ARGV_BYTES: usize = 256;

const _: () = assert!(QUIET_ARGV_BYTES.is_multiple_of(8));

/// Seed of an exec's quiet signature: its parent and its exec record's argv length (at
/// most [`ARGV_CHUNK_LEN`]).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn quiet_signature_seed(ppid: u32, record_argv_len: u32) -> u64 {
    ((record_argv_len as u64) << 32 | ppid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One little-endian argv word (zero-padded past the argv's end) into the signature.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn quiet_signature_step(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(23) ^ word).wrapping_mul(0xFF51_AFD7_ED55_8CCD)
}

/// Mask of the argv bytes in a word read `remaining` bytes before the argv's end: the
/// probe reads whole words from its record, whose bytes past the argv are stale.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn quiet_word_mask(remaining: usize) -> u64 {
    if remaining >= 8 {
        u64::MAX
    } else {
        (1u64 << (remaining * 8)) - 1
    }
}

/// The signature as stored: never 0, which marks an empty slot.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
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
    let seed_len = u32::try_from(record_len).expect("ARGV_CHUNK_LEN fits in a u32");
    let mut hash = quiet_signature_seed(ppid, seed_len);
    for chunk in argv.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = quiet_signature_step(hash, u64::from_le_bytes(word));
    }
    quiet_signature_finish(hash)
}

/// `QUIET_SIGNATURES` as the divisor of a signature.
const QUIET_SIGNATURES_U64: u64 = QUIET_SIGNATURES as u64;

/// The `QUIET` slot of a signature.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn quiet_slot(signature: u64) -> u32 {
    1 + (signature % QUIET_SIGNATURES_U64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's way: whole words read from a buffer whose bytes past the argv are
    /// garbage, each masked by what remains.
    fn probe_signature(ppid: u32, buf: &[u8; ARGV_CHUNK_LEN], record_len: usize) -> u64 {
        let word = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
        let covered = record_len.min(QUIET_ARGV_BYTES);
        let mut hash = quiet_signature_seed(ppid, u32::try_from(record_len).unwrap());
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
            *b = u8::try_from(i % 251).unwrap();
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
