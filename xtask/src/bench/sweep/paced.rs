//! Paced execs whose command lines are built per exec (so each can be distinct and
//! carry its sequence number), with the time each was started, for the latency.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::bench::workload::spawn_wait;

/// Nanoseconds since the epoch: the clock both this side and the subscriber stamp.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What a paced phase did.
pub struct Paced {
    /// Execs that ran and exited 0.
    pub issued: u64,
    /// Execs that failed to start or exited non-zero.
    pub failures: u64,
    /// When exec `seq` was started, ns since the epoch (0: not started).
    pub started_ns: Vec<u64>,
}

/// Runs `total` execs of `exe` at `rate` a second from `threads` threads; `args(seq)` is
/// exec `seq`'s argv after argv[0]. Thread `t` owns the slots `t, t + threads, …`; a late
/// slot is not made up for by sleeping less later, only by not sleeping.
pub fn run(
    exe: &Path,
    rate: u32,
    total: usize,
    threads: usize,
    args: &(dyn Fn(usize) -> Vec<String> + Sync),
) -> Paced {
    let started: Vec<AtomicU64> = (0..total).map(|_| AtomicU64::new(0)).collect();
    let started = Arc::new(started);
    let issued = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let begin = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (started, issued, failures) = (&started, &issued, &failures);
            s.spawn(move || {
                let mut seq = t;
                while seq < total {
                    let due = begin + interval * u32::try_from(seq).unwrap_or(u32::MAX);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    started[seq].store(now_ns(), Ordering::Relaxed);
                    match spawn_wait(exe, &args(seq)) {
                        Ok(()) => issued.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                    seq += threads;
                }
            });
        }
    });
    Paced {
        issued: issued.load(Ordering::Relaxed),
        failures: failures.load(Ordering::Relaxed),
        started_ns: started.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
    }
}
