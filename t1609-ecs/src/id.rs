//! Alert ids and stable digests.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// Random-looking, unique 128-bit ids: a per-process seed (time, pid, address) mixed with
/// a counter, so no two alerts of a process collide and processes differ by seed. Every
/// alert source of the agent (process rules, audit rules, correlation) takes its ids here.
pub fn new_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                d.as_secs()
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(u64::from(d.subsec_nanos()))
            });
        let local = 0u8;
        splitmix(t ^ u64::from(std::process::id()).rotate_left(32) ^ (&raw const local as u64))
    });
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix(seed ^ c);
    let b = splitmix(a ^ seed.rotate_left(17) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    hex128(a, b)
}

/// Two u64s as 32 lowercase hex digits (`format!("{a:016x}{b:016x}")`, without `fmt`).
pub fn hex128(a: u64, b: u64) -> String {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&hex16(a));
    out.extend_from_slice(&hex16(b));
    String::from_utf8(out).unwrap_or_default()
}

/// The 16 hex digits of `v`, most significant first, computed for all nibbles at once:
/// every id and digest is formatted per alert.
fn hex16(v: u64) -> [u8; 16] {
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    // Move each nibble into a byte of its own: halves of each lane into lanes of half
    // the width, four times.
    let lanes = |hi: u128, lo: u128, shift: u32, x: u128| ((x & hi) << shift) | (x & lo);
    let mut x = u128::from(v);
    x = lanes(0xffff_ffff_0000_0000, 0xffff_ffff, 32, x);
    x = lanes(
        0x0000_0000_ffff_0000_0000_0000_ffff_0000,
        0x0000_0000_0000_ffff_0000_0000_0000_ffff,
        16,
        x,
    );
    x = lanes(
        0x0000_ff00_0000_ff00_0000_ff00_0000_ff00,
        0x0000_00ff_0000_00ff_0000_00ff_0000_00ff,
        8,
        x,
    );
    x = lanes(
        0x00f0_00f0_00f0_00f0_00f0_00f0_00f0_00f0,
        0x000f_000f_000f_000f_000f_000f_000f_000f,
        4,
        x,
    );
    // Bytes of 10 and more get `a`-`f`: n + 6 carries into bit 4 exactly for those.
    let letters = ((x + ONES * 6) >> 4) & ONES;
    (x + ONES * u128::from(b'0') + letters * u128::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// A stable 128-bit hex digest of a sequence of byte strings (FNV-1a, two lanes,
/// finalised with splitmix), fed part by part.
pub struct Digest {
    h1: u64,
    h2: u64,
}

impl Digest {
    pub fn new() -> Self {
        Digest {
            h1: 0xcbf2_9ce4_8422_2325,
            h2: 0x8422_2325_cbf2_9ce4,
        }
    }
    pub fn part(&mut self, p: &[u8]) {
        let (mut h1, mut h2) = (self.h1, self.h2);
        for &b in p {
            h1 = (h1 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            h2 = (h2 ^ u64::from(b))
                .wrapping_mul(0x100_0000_01b3)
                .rotate_left(5);
        }
        // Separator so ["ab","c"] and ["a","bc"] differ.
        self.h1 = (h1 ^ 0xff).wrapping_mul(0x100_0000_01b3);
        self.h2 = (h2 ^ 0xfe).wrapping_mul(0x100_0000_01b3);
    }
    pub fn finish(&self) -> String {
        hex128(splitmix(self.h1), splitmix(self.h2))
    }
}

/// [`Digest`] of `parts`: a stable 128-bit hex digest (group ids of the process and audit rules).
pub fn digest(parts: &[&[u8]]) -> String {
    let mut d = Digest::new();
    for p in parts {
        d.part(p);
    }
    d.finish()
}

/// The splitmix64 finaliser: spreads every input bit over the whole word.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex128_matches_format() {
        for (a, b) in [
            (0u64, 0u64),
            (1, u64::MAX),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            (0xa0b1_c2d3_e4f5_9687, 0x0f1e_2d3c_4b5a_6978),
        ] {
            assert_eq!(hex128(a, b), format!("{a:016x}{b:016x}"));
        }
        for i in 0..1000u64 {
            let (a, b) = (splitmix(i), splitmix(!i));
            assert_eq!(hex128(a, b), format!("{a:016x}{b:016x}"));
        }
    }

    #[test]
    fn ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|i| i.len() == 32 && i.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn digest_is_stable_and_separates_parts() {
        assert_eq!(digest(&[b"a"]), digest(&[b"a"]));
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
    }
}
