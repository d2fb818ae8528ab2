//! The ring-buffer reader: sleeps until records arrive, drains them and joins each exec's
//! records ([`Assembler`]) into the batch the pipeline handles.
//!
//! A wake-up costs the agent 20–30 µs of CPU on a VM before any work, so the reader is
//! woken once per burst, never once per record, and never lingers when nothing comes:
//!
//! - **Armed** (nothing recent): the reader clears the probe's wake-up clock and sleeps
//!   on the ring. The next record forces a wake-up and stamps the clock, so the records
//!   that follow it within the probe's interval force none.
//! - **Ticking** (records keep coming): when a wake-up follows the previous one within a
//!   tick, or records arrived while the last batch was handled, the reader drains on a
//!   tick instead (at most 3 ms, so a record waits at most one tick), stamping the clock
//!   while its drains find records so that the probe forces no wake-up meanwhile. The
//!   first empty tick arms it again.
//!
//! Between ticks the thread just sleeps: the ring's fd is level-triggered and would end
//! every sleep early while records trickle in, and `stop` is looked at after each tick.
//! A stream of nothing but exact repeats is read in [`quiet`](super::quiet) mode instead.

use std::{
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{Ordering, fence},
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use t1609_ecs::boottime_ns;
use tracing::warn;

use super::{
    CaptureError,
    mapped::WakeupClock,
    quiet::QuietMode,
    wait::{self, StopSignal, Woken},
};
use crate::{
    decode::{Assembler, Captured},
    stats::{Counter, Counters},
};

/// What the pipeline made of one exec of a batch, in batch order: the reader paces
/// itself by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// An exact repeat whose outcome was replayed.
    pub replayed: bool,
    /// Alerts it raised.
    pub alerts: u64,
}

pub struct Reader {
    ring: RingBuf<MapData>,
    /// The probe's wake-up clock; `None` when it could not be mapped (the probe then
    /// forces its periodic wake-ups).
    last_wakeup: Option<WakeupClock>,
    quiet: Option<QuietMode>,
    assembler: Assembler,
    counters: Arc<Counters>,
    wakeup_interval: Duration,
    /// Drain period while records keep coming: shorter than the probe's wake-up interval.
    tick: Duration,
    mode: Mode,
    /// When the ring last woke the reader.
    last_wake: Instant,
}

/// How the reader waits for records (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Armed,
    /// Drain at `next`, and every tick after while drains find records.
    Ticking {
        next: Instant,
    },
}

impl Reader {
    pub(super) fn new(
        ring: RingBuf<MapData>,
        last_wakeup: Option<WakeupClock>,
        quiet: Option<QuietMode>,
        wakeup_interval: Duration,
        tick: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            ring,
            last_wakeup,
            quiet,
            assembler: Assembler::default(),
            counters,
            wakeup_interval,
            tick,
            mode: Mode::Armed,
            last_wake: Instant::now(),
        }
    }

    /// Empties a handled batch; its exec records are decoded into again.
    pub fn recycle(&mut self, handled: &mut Vec<Captured>) {
        self.assembler.recycle(handled);
    }

    /// Paces the reader by what the pipeline made of the last batch (see
    /// [`quiet`](super::quiet)): quiet after nothing but replayed repeats, armed again
    /// after anything new.
    pub fn after_batch(&mut self, batch: &[Captured], handled: &[Handled]) {
        let Some(quiet) = self.quiet.as_mut() else {
            return;
        };
        if quiet.after_batch(batch, handled, &self.counters).is_some() {
            self.mode = Mode::Armed;
        }
    }

    /// Tells the probe that a wake-up just happened (`now_ns`, `CLOCK_BOOTTIME`), or with
    /// 0 that the reader is about to sleep and the next record may wake it.
    fn stamp(&self, now_ns: u64) {
        if let Some(clock) = &self.last_wakeup {
            clock.stamp(now_ns);
        }
    }

    /// Reads everything available now into `out`; how many it read.
    fn drain(&mut self, out: &mut Vec<Captured>) -> usize {
        let before = out.len();
        while let Some(item) = self.ring.next() {
            match self.assembler.push(&item) {
                Ok(Some(exec)) => out.push(exec),
                Ok(None) => {}
                Err(e) => {
                    let c = &self.counters;
                    c.set(Counter::DecodeErrors, self.assembler.decode_errors);
                    c.set(Counter::OrphanChunks, self.assembler.orphan_chunks);
                    warn!(error = %e, "dropping undecodable ring-buffer record");
                }
            }
        }
        out.len() - before
    }

    /// Sleeps until there is something to read, `until` passes, or `stop` fires, and
    /// drains the ring into `out`. Returns `false` once `stop` has fired (after a last
    /// drain).
    pub fn wait_and_drain(
        &mut self,
        out: &mut Vec<Captured>,
        until: Instant,
        stop: &StopSignal,
    ) -> Result<bool, CaptureError> {
        if let Some(quiet) = self.quiet.as_mut().filter(|q| q.is_on()) {
            let fd = self.ring.as_raw_fd();
            let woken = quiet.wait(fd, self.last_wakeup.as_ref(), stop, until, &self.counters)?;
            self.drain(out);
            return Ok(woken != Woken::Stop);
        }
        match self.mode {
            Mode::Armed => self.armed(out, until, stop),
            Mode::Ticking { next } => Ok(self.tick(out, next, until, stop)),
        }
    }

    fn armed(
        &mut self,
        out: &mut Vec<Captured>,
        until: Instant,
        stop: &StopSignal,
    ) -> Result<bool, CaptureError> {
        let fd = self.ring.as_raw_fd();
        self.stamp(0);
        // The clock must be cleared before the ring is read: a record the probe submitted
        // without a wake-up after reading the old stamp is either seen here or, committed
        // later, found readable by the sleep below.
        fence(Ordering::SeqCst);
        if self.drain(out) > 0 {
            // Records came while the last batch was handled: they keep coming.
            self.start_ticking(Instant::now());
            return Ok(true);
        }
        let woken = wait::wait(fd, stop, until.saturating_duration_since(Instant::now()))?;
        if woken == Woken::Readable {
            self.counters.inc(Counter::RingWakeups);
            let now = Instant::now();
            if now.duration_since(self.last_wake) < self.tick && !self.wakeup_interval.is_zero() {
                self.start_ticking(now);
            }
            self.last_wake = now;
        }
        if woken != Woken::Timeout {
            self.drain(out);
        }
        Ok(woken != Woken::Stop)
    }

    fn start_ticking(&mut self, now: Instant) {
        self.stamp(boottime_ns());
        self.mode = Mode::Ticking {
            next: now + self.tick,
        };
    }

    fn tick(
        &mut self,
        out: &mut Vec<Captured>,
        next: Instant,
        until: Instant,
        stop: &StopSignal,
    ) -> bool {
        std::thread::sleep(next.min(until).saturating_duration_since(Instant::now()));
        if stop.is_fired() {
            self.drain(out);
            return false;
        }
        let now = Instant::now();
        if now < next {
            return true; // woke for `until`, or a signal
        }
        self.counters.inc(Counter::PollTicks);
        if self.drain(out) > 0 {
            // Records are still flowing and we are polling for them: tell the probe a
            // wake-up just happened, so it forces none while we poll.
            self.stamp(boottime_ns());
            // A late tick does not cause a burst of them.
            let mut next = next + self.tick;
            if next <= now {
                next = now + self.tick;
            }
            self.mode = Mode::Ticking { next };
        } else {
            self.mode = Mode::Armed;
        }
        true
    }
}
