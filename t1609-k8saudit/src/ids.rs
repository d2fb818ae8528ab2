use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unique 128-bit hex ids: a per-process seed (time, pid, address) mixed with a counter.
pub(crate) fn new_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        splitmix(t ^ u64::from(std::process::id()).rotate_left(32) ^ (&raw const local as u64))
    });
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = splitmix(seed ^ c);
    let b = splitmix(a ^ seed.rotate_left(17) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    format!("{a:016x}{b:016x}")
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 128-bit hex digest (FNV-1a, two lanes, finalised with splitmix).
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let (mut h1, mut h2) = (0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4u64);
    for p in parts {
        for &b in *p {
            h1 = (h1 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            h2 = (h2 ^ u64::from(b))
                .wrapping_mul(0x100_0000_01b3)
                .rotate_left(5);
        }
        h1 = (h1 ^ 0xff).wrapping_mul(0x100_0000_01b3);
        h2 = (h2 ^ 0xfe).wrapping_mul(0x100_0000_01b3);
    }
    format!("{:016x}{:016x}", splitmix(h1), splitmix(h2))
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
