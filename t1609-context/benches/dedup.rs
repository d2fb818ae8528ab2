//! Cost of a new dedup key, with no window open and with the bound (65,536) reached,
//! where each new key closes the oldest window early. `cargo bench -p t1609-context`
//! prints a table; the ratio is against the first case of the same run.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use t1609_context::{DedupKey, Deduper};

const NEW_KEYS: usize = 20_000;

fn key(prefix: &str, i: usize) -> DedupKey {
    DedupKey::new(
        "t1609.container_exec",
        &format!("kubectl exec -it {prefix}-{i}x -- sh"),
        Some("/bin/bash"),
        None,
    )
}

/// ns per `check` of a new key, after `open` windows were opened.
fn per_new_key(open: usize) -> f64 {
    let t0 = Instant::now();
    let mut d = Deduper::new(Duration::from_hours(1));
    for i in 0..open {
        d.check(key("open", i), t0);
    }
    let fresh: Vec<DedupKey> = (0..NEW_KEYS).map(|i| key("new", i)).collect();
    let start = Instant::now();
    for k in fresh {
        black_box(d.check(k, t0));
    }
    start.elapsed().as_nanos() as f64 / NEW_KEYS as f64
}

fn main() {
    let mut empty = Vec::new();
    let mut full = Vec::new();
    for _ in 0..3 {
        empty.push(per_new_key(0));
        full.push(per_new_key(65_536));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (empty, full) = (median(&mut empty), median(&mut full));
    println!("| dedup windows open before | ns per new key | ratio |");
    println!("|---|---|---|");
    println!("| 0 | {empty:.0} | 1.00 |");
    println!("| 65,536 (the bound) | {full:.0} | {:.2} |", full / empty);
}
