//! The metadata cost the hot path pays per alert: a cache read that hits (by container id,
//! by exec target name, by pod), alone and while a runtime's events are written in, and
//! the memory of 500 (and 5,000) cached containers. `cargo bench -p t1609-context --bench
//! runtimes` prints a table; targets: a hit ≤ 5 µs, 500 containers ≤ 5 MB.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use t1609_context::{ContainerInfo, PodInfo, RuntimeKind, runtimes::MetaCache};

/// Counts the bytes live on the heap, so the cache's footprint is measured, not guessed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size().cast_signed(), Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size().cast_signed(), Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn id(i: usize) -> String {
    format!(
        "{:064x}",
        (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835
    )
}

/// A Kubernetes container as the CRI describes one: every field filled.
fn container(i: usize) -> ContainerInfo {
    let mut c = ContainerInfo::new(&id(i), RuntimeKind::Containerd, "containerd-events+cri");
    c.name = Some(format!("app-{i}").into());
    c.namespace = Some("k8s.io".into());
    c.image = Some(format!("registry.example.com/team/service-{}:1.{i}", i % 40).into());
    c.image_digest = Some(format!("sha256:{}", id(i + 7)).into());
    c.pod = Some(PodInfo {
        name: format!("service-{}-7d9f8c6b5-{i:05}", i % 40).into(),
        namespace: format!("team-{}", i % 12).into(),
        uid: format!("{:08x}-1b2c-4d3e-8f40-{:012x}", i, i * 7919).into(),
        container_name: Some(format!("app-{i}").into()),
    });
    c
}

fn filled(n: usize) -> MetaCache {
    let cache = MetaCache::new(16_384, Duration::from_mins(1), Duration::from_secs(1));
    for i in 0..n {
        cache.insert(container(i));
    }
    cache
}

/// Median ns per call of `f` over `reads` calls, 5 rounds.
fn per_read(reads: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            for i in 0..reads {
                f(i);
            }
            t0.elapsed().as_nanos() as f64 / reads as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

fn main() {
    const N: usize = 500;
    const READS: usize = 200_000;
    let before = LIVE.load(Relaxed);
    let cache = filled(N);
    let bytes_500 = LIVE.load(Relaxed) - before;
    let before = LIVE.load(Relaxed);
    let big = filled(5_000);
    let bytes_5000 = LIVE.load(Relaxed) - before;
    drop(big);

    let ids: Vec<String> = (0..N).map(id).collect();
    let by_id = per_read(READS, |i| {
        black_box(cache.container(&ids[i % N]));
    });
    let names: Vec<String> = (0..N).map(|i| format!("app-{i}")).collect();
    // A podman name: one hash lookup of (runtime, name).
    for (i, name) in names.iter().enumerate() {
        let mut p = ContainerInfo::new(&id(N + i), RuntimeKind::Podman, "podman-storage");
        p.name = Some(name.clone().into());
        cache.insert(p);
    }
    let by_name = per_read(READS, |i| {
        black_box(cache.target("podman", None, &names[i % N]));
    });
    let prefixes: Vec<String> = ids.iter().map(|s| s[..13].to_owned()).collect();
    let by_prefix = per_read(READS, |i| {
        black_box(cache.target("crictl", None, &prefixes[i % N]));
    });
    let pods: Vec<(String, String)> = (0..N)
        .map(|i| {
            (
                format!("team-{}", i % 12),
                format!("service-{}-7d9f8c6b5-{i:05}", i % 40),
            )
        })
        .collect();
    let by_pod = per_read(20_000, |i| {
        let (ns, p) = &pods[i % N];
        black_box(cache.pod(ns, p, None));
    });

    // While a runtime's events are written in (one upsert every 100 µs, a busy node).
    let cache = Arc::new(cache);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (cache, stop) = (cache.clone(), stop.clone());
        move || {
            let mut i = 0;
            while !stop.load(Relaxed) {
                cache.insert(container(i % N));
                i += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    });
    let mut worst = Duration::ZERO;
    let mut samples: Vec<u64> = Vec::with_capacity(READS);
    for i in 0..READS {
        let t0 = Instant::now();
        black_box(cache.container(&ids[i % N]));
        let d = t0.elapsed();
        worst = worst.max(d);
        samples.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
    stop.store(true, Relaxed);
    writer.join().unwrap();
    samples.sort_unstable();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];

    let kib = |b: isize| b as f64 / 1024.0;
    println!("| metadata read (cache hit, {N} containers cached) | ns per read |");
    println!("|---|---|");
    println!("| by container id (the cgroup's) | {by_id:.0} |");
    println!("| by exec target name (`podman exec web`) | {by_name:.0} |");
    println!("| by id prefix (`crictl exec 3f1c9e2b7a4d5`) | {by_prefix:.0} |");
    println!("| by pod (`kubectl exec -n ns pod`) | {by_pod:.0} |");
    println!(
        "| by container id, events written in meanwhile: p50 / p99 / max | {p50} / {p99} / {} |",
        worst.as_nanos()
    );
    println!();
    println!("| containers cached | heap (KiB) | per container (bytes) |");
    println!("|---|---|---|");
    println!("| 500 | {:.0} | {} |", kib(bytes_500), bytes_500 / 500);
    println!("| 5,000 | {:.0} | {} |", kib(bytes_5000), bytes_5000 / 5000);
}
