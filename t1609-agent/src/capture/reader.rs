//! The ring-buffer reader: sleeps until records arrive, drains them and joins each exec's
//! records ([`Assembler`]) into the batch the pipeline handles.
//!
//! The probe suppresses wake-ups for `wakeup_interval` after forcing one, so after each
//! wake-up the reader drains on a short tick (at most 2 ms) for three intervals: a record
//! submitted without a wake-up waits at most one tick. While those ticks find records
//! the reader stamps the probe's clock, so a steady stream is read on ticks alone and
//! the probe forces no wake-up. Between ticks the thread just sleeps: the ring's fd is
//! level-triggered and would end every sleep early while records trickle in, and `stop`
//! is looked at after each tick. A stream of nothing but exact repeats is read in
//! [`quiet`](super::quiet) mode instead.

use std::{
    os::fd::AsRawFd,
    sync::Arc,
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
    /// Drain period during a burst: faster than the probe's wake-up interval.
    tick: Duration,
    /// While a burst lasts, drain every tick until this instant.
    linger_until: Option<Instant>,
    next_tick: Instant,
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
            linger_until: None,
            next_tick: Instant::now(),
        }
    }

    /// Empties a handled batch; its exec records are decoded into again.
    pub fn recycle(&mut self, handled: &mut Vec<Captured>) {
        self.assembler.recycle(handled);
    }

    /// Paces the reader by what the pipeline made of the last batch (see
    /// [`quiet`](super::quiet)): quiet after nothing but replayed repeats, the burst's
    /// short tick at once after anything new.
    pub fn after_batch(&mut self, batch: &[Captured], handled: &[Handled]) {
        let Some(quiet) = self.quiet.as_mut() else {
            return;
        };
        match quiet.after_batch(batch, handled, &self.counters) {
            Some(true) => self.linger_until = None,
            Some(false) => self.linger(Instant::now()),
            None => {}
        }
    }

    fn linger(&mut self, now: Instant) {
        self.linger_until = Some(now + 3 * self.wakeup_interval);
        self.next_tick = now + self.tick;
    }

    /// Reads everything available now into `out`.
    fn drain(&mut self, out: &mut Vec<Captured>) {
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
        let fd = self.ring.as_raw_fd();
        if let Some(quiet) = self.quiet.as_mut().filter(|q| q.is_on()) {
            let woken = quiet.wait(fd, self.last_wakeup.as_ref(), stop, until, &self.counters)?;
            self.drain(out);
            return Ok(woken != Woken::Stop);
        }
        let now = Instant::now();
        let Some(linger_until) = self.linger_until else {
            let woken = wait::wait(fd, stop, until.saturating_duration_since(now))?;
            if woken == Woken::Readable {
                self.counters.inc(Counter::RingWakeups);
                if !self.wakeup_interval.is_zero() {
                    self.linger(Instant::now());
                }
            }
            if woken != Woken::Timeout {
                self.drain(out);
            }
            return Ok(woken != Woken::Stop);
        };
        std::thread::sleep(self.next_tick.min(until).saturating_duration_since(now));
        if stop.is_fired() {
            self.drain(out);
            return Ok(false);
        }
        let now = Instant::now();
        if now < self.next_tick {
            return Ok(true); // woke for `until`, or a signal
        }
        self.next_tick += self.tick;
        if self.next_tick <= now {
            self.next_tick = now + self.tick; // a late tick does not cause a burst of them
        }
        self.counters.inc(Counter::PollTicks);
        let before = out.len();
        self.drain(out);
        if out.len() > before {
            // Records are still flowing and we are polling for them: tell the probe a
            // wake-up just happened, so it forces none while we poll. Polling continues
            // for three intervals after this, longer than the probe then stays quiet.
            if let Some(clock) = &self.last_wakeup {
                clock.stamp(boottime_ns());
            }
            self.linger_until = Some(now + 3 * self.wakeup_interval);
        } else if now >= linger_until {
            self.linger_until = None;
        }
        Ok(true)
    }
}
