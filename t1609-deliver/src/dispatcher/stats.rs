//! A sink's counters: written by its worker and by `submit` as atomics, read as one
//! [`SinkStats`] snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::Sink;

/// Counters of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink spec (`journald`, `file:/var/log/x`, ...).
    pub name: String,
    /// Alerts waiting in memory (ingress channel plus the worker's queue).
    pub queue_depth: usize,
    /// Alerts handed to the sink.
    pub delivered: u64,
    /// Alerts written to the spool.
    pub spooled: u64,
    /// Undelivered bytes in the spool.
    pub spool_bytes: u64,
    /// Alerts lost: ingress full, spool cap (oldest dropped), spool failure, or rejected
    /// permanently by the sink.
    pub dropped: u64,
    /// False after a failed delivery, until the next success.
    pub healthy: bool,
    /// Socket server: subscribers connected.
    pub subscribers: usize,
    /// Socket server: subscribers cut off because their queue overflowed.
    pub subscribers_disconnected: u64,
    /// Socket client: alerts sent but possibly not read yet (resent on reconnect).
    pub unconfirmed: usize,
    /// Spool records skipped as torn or damaged.
    pub spool_corrupt: u64,
    /// Loss alerts emitted.
    pub loss_alerts: u64,
}

/// Counters of every sink, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliverStats {
    pub sinks: Vec<SinkStats>,
}

impl DeliverStats {
    /// The stats of the sink named `name`.
    #[must_use]
    pub fn sink(&self, name: &str) -> Option<&SinkStats> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// Alerts dropped across all sinks.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.sinks.iter().map(|s| s.dropped).sum()
    }
}

/// The live counters behind one [`SinkStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub mem: AtomicUsize,
    pub delivered: AtomicU64,
    pub spooled: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub unhealthy: AtomicBool,
    pub subscribers: AtomicUsize,
    pub subscribers_disconnected: AtomicU64,
    pub unconfirmed: AtomicUsize,
    pub spool_corrupt: AtomicU64,
    pub loss_alerts: AtomicU64,
}

impl Counters {
    /// Counts `n` alerts lost (see [`SinkStats::dropped`]).
    pub fn lost(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters the sink keeps itself.
    pub fn publish_sink<S: Sink>(&self, sink: &S) {
        if let Some((n, d)) = sink.subscriber_counts() {
            self.subscribers.store(n, Ordering::Relaxed);
            self.subscribers_disconnected.store(d, Ordering::Relaxed);
        }
        self.unconfirmed
            .store(sink.unconfirmed(), Ordering::Relaxed);
    }

    /// A snapshot, with `ingress` alerts still in the sink's ingress channel.
    pub fn snapshot(&self, name: &str, ingress: usize) -> SinkStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkStats {
            name: name.to_owned(),
            queue_depth: ingress + self.mem.load(Ordering::Relaxed),
            delivered: load(&self.delivered),
            spooled: load(&self.spooled),
            spool_bytes: load(&self.spool_bytes),
            dropped: load(&self.dropped),
            healthy: !self.unhealthy.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            subscribers_disconnected: load(&self.subscribers_disconnected),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
            spool_corrupt: load(&self.spool_corrupt),
            loss_alerts: load(&self.loss_alerts),
        }
    }
}
