//! A sink's pending alerts, oldest first: an in-memory queue while the sink is healthy and
//! keeping up, its spool otherwise. Once anything is spooled, newer alerts are spooled
//! behind it until the spool is drained, so the sink sees its alerts in submission order.
//! Every alert this queue loses is counted here (see [`Counters::lost`]).

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
};

use super::stats::Counters;
use crate::{
    Alert,
    spool::{Pos, Spool, SpoolError, SyncJob},
};

/// Where the alert at the head came from, to consume it there.
#[derive(Clone, Copy)]
pub(super) enum Src {
    Mem,
    Spool(Pos),
}

pub(super) struct SinkQueue {
    name: String,
    mem: VecDeque<Alert>,
    spool: Spool,
    c: Arc<Counters>,
    healthy: bool,
    queue_len: usize,
    /// An append or read failed and was logged; cleared by the next good append.
    spool_error_logged: bool,
}

impl SinkQueue {
    pub fn new(name: String, spool: Spool, c: Arc<Counters>, queue_len: usize) -> Self {
        Self {
            name,
            mem: VecDeque::new(),
            spool,
            c,
            healthy: true,
            queue_len,
            spool_error_logged: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> &Counters {
        &self.c
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Memory only while the sink is healthy, nothing older is spooled and there is room.
    fn fits_in_memory(&self) -> bool {
        self.healthy && self.spool.is_empty() && self.mem.len() < self.queue_len
    }

    pub fn enqueue(&mut self, a: Alert) {
        if self.fits_in_memory() {
            self.mem.push_back(a);
            self.c.mem.store(self.mem.len(), Ordering::Relaxed);
        } else {
            self.spool_append(&a);
        }
    }

    /// Whether `a` can be queued without dropping anything (loss alerts wait otherwise):
    /// there is room in memory, or the spool takes it under its cap and is writable.
    pub fn has_room_for(&self, a: &Alert) -> bool {
        self.fits_in_memory() || !(self.spool_error_logged || self.spool.would_drop(a.json().len()))
    }

    pub fn spool_append(&mut self, a: &Alert) {
        match self.spool.append(a.json().as_bytes()) {
            Ok(r) => {
                self.spool_error_logged = false;
                if r.stored {
                    self.c.spooled.fetch_add(1, Ordering::Relaxed);
                } else {
                    tracing::warn!(sink = %self.name, bytes = a.json().len(), "alert larger than the spool cap: dropped");
                    self.c.lost(1);
                }
                if r.dropped_oldest > 0 {
                    self.c.lost(r.dropped_oldest);
                }
            }
            Err(e) => {
                if !self.spool_error_logged {
                    tracing::error!(sink = %self.name, error = %e, "cannot spool alert: dropped");
                    self.spool_error_logged = true;
                }
                self.c.lost(1);
            }
        }
        self.c
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
    }

    /// The oldest pending alert: memory first (it is older than anything spooled).
    pub fn head(&mut self) -> Option<(Alert, Src)> {
        if let Some(a) = self.mem.front() {
            return Some((a.clone(), Src::Mem));
        }
        loop {
            match self.spool.peek() {
                Ok(None) => return None,
                Ok(Some(r)) => match Alert::from_json(&r.payload) {
                    Ok(a) => return Some((a, Src::Spool(r.next))),
                    Err(e) => {
                        tracing::warn!(sink = %self.name, error = %e, "spooled record is not JSON: skipped");
                        self.c.spool_corrupt.fetch_add(1, Ordering::Relaxed);
                        let _ = self.spool.ack(r.next);
                    }
                },
                Err(e) => {
                    if !self.spool_error_logged {
                        tracing::error!(sink = %self.name, error = %e, "cannot read spool");
                        self.spool_error_logged = true;
                    }
                    return None;
                }
            }
        }
    }

    fn consume(&mut self, src: Src) {
        match src {
            Src::Mem => {
                self.mem.pop_front();
                self.c.mem.store(self.mem.len(), Ordering::Relaxed);
            }
            Src::Spool(next) => {
                if let Err(e) = self.spool.ack(next) {
                    tracing::error!(sink = %self.name, error = %e, "cannot advance spool");
                }
                self.c
                    .spool_bytes
                    .store(self.spool.bytes(), Ordering::Relaxed);
            }
        }
    }

    /// The head was delivered. The sink is healthy again if it was not.
    pub fn delivered(&mut self, src: Src) {
        self.consume(src);
        self.c.delivered.fetch_add(1, Ordering::Relaxed);
        if !self.healthy {
            tracing::info!(sink = %self.name, "sink is back");
            self.healthy = true;
            self.c.unhealthy.store(false, Ordering::Relaxed);
        }
    }

    /// The sink can never take the head: drop it.
    pub fn rejected(&mut self, src: Src) {
        self.consume(src);
        self.c.lost(1);
    }

    /// Sink went down: if nothing is spooled yet, move the in-memory queue to the spool
    /// (in order) so it survives a crash and newer alerts queue up behind it.
    pub fn went_down(&mut self) {
        self.healthy = false;
        self.c.unhealthy.store(true, Ordering::Relaxed);
        if self.spool.is_empty() {
            let mem = std::mem::take(&mut self.mem);
            for a in &mem {
                self.spool_append(a);
            }
            self.c.mem.store(0, Ordering::Relaxed);
        }
    }

    /// The spool's pending durability work (see [`Spool::sync_job`]).
    pub fn sync_job(&mut self) -> Result<SyncJob, SpoolError> {
        self.spool.sync_job()
    }

    /// Publishes the spool's own counters.
    pub fn publish_spool(&self) {
        self.c
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
        self.c
            .spool_corrupt
            .store(self.spool.corrupt_skipped(), Ordering::Relaxed);
    }

    /// At shutdown: puts `unconfirmed` (alerts the peer may not have read) and then the
    /// in-memory queue in front of the spool, both being older than what it holds.
    pub fn persist_front(&mut self, unconfirmed: Vec<Alert>) {
        let mut front = unconfirmed;
        front.extend(self.mem.drain(..));
        if front.is_empty() {
            return;
        }
        let payloads: Vec<&[u8]> = front.iter().map(|a| a.json().as_bytes()).collect();
        if let Err(e) = self.spool.prepend(&payloads) {
            tracing::error!(sink = %self.name, error = %e, lost = front.len(), "cannot spool queued alerts at shutdown");
            self.c.lost(front.len() as u64);
        } else {
            self.c
                .spooled
                .fetch_add(front.len() as u64, Ordering::Relaxed);
        }
    }

    /// At shutdown, after everything is spooled: makes the spool durable.
    pub fn close(&mut self) {
        self.c.mem.store(0, Ordering::Relaxed);
        if let Err(e) = self.spool.sync() {
            tracing::error!(sink = %self.name, error = %e, "spool sync at shutdown failed");
        }
        self.c
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
    }
}
