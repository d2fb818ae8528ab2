//! Quiet mode, the reader's half (the probe's half is in the eBPF crate's `wakeup`
//! module, the shared signature in `t1609_common::quiet`).
//!
//! A drain costs the agent 45–60 µs of CPU however few records it finds (a sleep, a
//! wake-up and caches gone cold in between; a bare nanosleep loop costs 20–40 µs a wake
//! on the build VM), several times what a replayed repeat costs. So while the pipeline
//! reports batches of nothing but exact repeats (replayed, their alerts already raised
//! and counted in an open dedup window), the reader goes quiet: it lists each replayed
//! exec's signature in the mmap-ed `QUIET` array and turns the probe's quiet mode on. The
//! probe then submits listed repeats and reported exits without a wake-up (unless the
//! ring is half full), and wakes the reader at once for anything else; the reader sleeps
//! on the ring for up to [`QUIET_DRAIN`]. The first batch with anything new (an exec
//! taking the full path, a connect) turns it off and brings back the burst's tick.
//!
//! A new command whose signature matches a listed repeat waits for the next quiet drain;
//! its alerts are counted in `reader_quiet_late_alerts`.

use std::{
    os::fd::RawFd,
    time::{Duration, Instant},
};

use t1609_common::quiet_signature;
use t1609_ecs::boottime_ns;

use super::{
    Handled,
    mapped::{QuietList, WakeupClock},
    wait::{self, StopSignal, Woken},
};
use crate::{
    decode::Captured,
    stats::{Counter, Counters},
};

/// In quiet mode the reader drains at least this often. The ring holds ~900 exec records
/// and the probe forces a wake-up when it is half full, so at the storm ceiling (~7,000
/// exec/s) the ring, not this, sets the pace.
pub const QUIET_DRAIN: Duration = Duration::from_millis(50);
/// An alerting exec that a quiet-timer drain found this long after it ran counts as
/// delayed by the quiet mode.
const QUIET_LATE_NS: u64 = 5_000_000;

pub(super) struct QuietMode {
    list: QuietList,
    /// The probe's quiet mode is on.
    on: bool,
    /// When the last drain, if it was on the quiet timer rather than a wake-up, ran
    /// (`CLOCK_BOOTTIME` ns, the probe's clock).
    timer_drain_at: Option<u64>,
}

impl QuietMode {
    pub(super) fn new(list: QuietList) -> Self {
        Self {
            list,
            on: false,
            timer_drain_at: None,
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.on
    }

    /// Sleeps on the ring for up to [`QUIET_DRAIN`] (or until `until`, or `stop`): the
    /// probe wakes the reader for anything that is not a listed repeat.
    pub(super) fn wait(
        &mut self,
        ring: RawFd,
        clock: Option<&WakeupClock>,
        stop: &StopSignal,
        until: Instant,
        counters: &Counters,
    ) -> std::io::Result<Woken> {
        let now = Instant::now();
        // Let whatever is not a listed repeat wake us at once, whenever the last forced
        // wake-up was.
        if let Some(clock) = clock {
            clock.stamp(0);
        }
        let timeout = QUIET_DRAIN.min(until.saturating_duration_since(now));
        let woken = wait::wait(ring, stop, timeout)?;
        // The fd is level-triggered: at the timeout, ppoll reports the records that
        // waited as readable. A wake-up the probe forced ends the sleep early.
        let timer =
            woken == Woken::Timeout || (woken == Woken::Readable && now.elapsed() >= timeout);
        self.timer_drain_at = timer.then(boottime_ns);
        if timer {
            counters.inc(Counter::QuietDrains);
        } else if woken == Woken::Readable {
            counters.inc(Counter::RingWakeups);
        }
        Ok(woken)
    }

    /// Takes what the pipeline made of the last drained batch: lists the replayed
    /// repeats' signatures, counts alerts the quiet timer delayed, and turns the mode on
    /// (a batch of nothing but replayed repeats) or off (anything new). Returns the new
    /// state when it changed.
    pub(super) fn after_batch(
        &mut self,
        batch: &[Captured],
        handled: &[Handled],
        counters: &Counters,
    ) -> Option<bool> {
        let mut outcomes = handled.iter();
        // Exits and forks leave the pace as it is; anything that may alert sets it.
        let mut relaxed: Option<bool> = None;
        for captured in batch {
            match captured {
                Captured::Exec(exec) => {
                    let Some(h) = outcomes.next() else { break };
                    if h.replayed {
                        self.list.list(quiet_signature(exec.ppid, &exec.argv));
                    } else if h.alerts > 0
                        && let Some(at) = self.timer_drain_at
                        && at.saturating_sub(exec.ktime_ns) > QUIET_LATE_NS
                    {
                        counters.add(Counter::QuietLateAlerts, h.alerts);
                    }
                    relaxed = Some(relaxed.unwrap_or(true) && h.replayed);
                }
                Captured::Net(_) => relaxed = Some(false),
                Captured::Task(_) => {}
            }
        }
        let relaxed = relaxed?;
        if relaxed == self.on {
            return None;
        }
        self.on = relaxed;
        // Off also forgets the signatures: a new quiet spell lists only what it replays.
        self.list.set_mode(relaxed);
        if !relaxed {
            self.timer_drain_at = None;
        }
        Some(relaxed)
    }
}
