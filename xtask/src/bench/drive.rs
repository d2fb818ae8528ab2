//! Watched execs from several threads for a fixed time, as fast as possible or paced to a
//! total rate: the storm, its rate sweep and each overhead round's paced phase.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::bench::workload::spawn_wait;

/// The marker argument's prefix: `--label=t1609bench-s<step>` tells which step an exec
/// the agent recorded belongs to.
pub const MARK: &str = "t1609bench-s";

/// `args` with the marker of `step` inserted before the command (`exec -it <marker> …`).
pub fn marked_args(args: &[String], step: usize) -> Vec<String> {
    let mut args = args.to_vec();
    args.insert(3, format!("--label={MARK}{step}"));
    args
}

/// How to drive the execs.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Spawner threads.
    pub threads: usize,
    /// Wall time, seconds.
    pub secs: u64,
    /// Total execs per second over all threads; `None`: as fast as possible.
    pub rate: Option<u32>,
}

/// What a drive achieved.
pub struct StepResult {
    /// Execs that ran and exited 0.
    pub issued: u64,
    /// Wall time from the start until every thread stopped.
    pub secs: f64,
    /// Execs that failed to spawn or exited non-zero (not counted as issued).
    pub failures: u64,
}

impl StepResult {
    /// Execs per second achieved.
    pub fn rate(&self) -> f64 {
        self.issued as f64 / self.secs
    }
}

/// Runs `exe args` from `pace.threads` threads for `pace.secs`. `tick` is called about once
/// a second with the seconds elapsed and the execs issued so far.
pub fn drive(
    exe: &Path,
    args: &[String],
    pace: Pace,
    mut tick: impl FnMut(f64, u64),
) -> StepResult {
    let Pace {
        threads,
        secs,
        rate,
    } = pace;
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, issued, failures, args, exe) = (
                stop.clone(),
                issued.clone(),
                failures.clone(),
                args.to_vec(),
                exe.to_owned(),
            );
            std::thread::spawn(move || {
                // Paced: thread t owns slots t, t+threads, ...; a late thread does not sleep.
                let interval =
                    rate.map(|r| Duration::from_secs_f64(threads as f64 / f64::from(r.max(1))));
                let offset = rate.map(|r| Duration::from_secs_f64(t as f64 / f64::from(r.max(1))));
                let mut k: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let (Some(iv), Some(off)) = (interval, offset) {
                        let due = start + off + iv * k;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        k += 1;
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match spawn_wait(&exe, &args) {
                        Ok(()) => issued.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        );
        tick(
            start.elapsed().as_secs_f64(),
            issued.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    StepResult {
        issued: issued.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
        failures: failures.load(Ordering::Relaxed),
    }
}
