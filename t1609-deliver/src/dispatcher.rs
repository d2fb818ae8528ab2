//! The dispatcher: fans alerts out to one worker per sink.
//!
//! Per sink: `submit` → bounded ingress channel (`queue_len`, never waited on) → worker,
//! which keeps an in-memory queue (`queue_len`) and the sink's spool. While the sink is
//! healthy and keeping up, alerts stay in memory. When the sink fails, or the in-memory
//! queue is full, alerts are appended to the spool; once anything is spooled, newer
//! alerts are spooled behind it until the spool is drained, so each sink sees its alerts
//! in submission order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::MissedTickBehavior;

use crate::sink::file::FileSink;
use crate::sink::journald::JournaldSink;
use crate::sink::socket_client::SocketClientSink;
use crate::sink::socket_server::SocketServerSink;
use crate::sink::stdout::StdoutSink;
use crate::spool::{Spool, SpoolError};
use crate::{Alert, ConfigError, DeliverConfig, Sink, SinkError, SinkSpec, loss_alert};

/// Errors of `Dispatcher::start`.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("invalid delivery configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("sink {sink}: cannot open its spool: {source}")]
    Spool {
        sink: String,
        #[source]
        source: SpoolError,
    },
    #[error("sink {sink}: cannot be opened: {source}")]
    Sink {
        sink: String,
        #[source]
        source: SinkError,
    },
    #[error("Dispatcher::start must be called inside a tokio runtime")]
    NoRuntime,
}

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

#[derive(Debug, Default)]
struct Counters {
    mem: AtomicUsize,
    delivered: AtomicU64,
    spooled: AtomicU64,
    spool_bytes: AtomicU64,
    dropped: AtomicU64,
    unhealthy: AtomicBool,
    subscribers: AtomicUsize,
    subscribers_disconnected: AtomicU64,
    unconfirmed: AtomicUsize,
    spool_corrupt: AtomicU64,
    loss_alerts: AtomicU64,
}

struct SinkHandle {
    name: String,
    tx: mpsc::Sender<Alert>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
    abort: AbortHandle,
    shutdown: watch::Sender<Option<Instant>>,
}

/// Delivers alerts to the configured sinks. See the crate docs and `README.md`.
pub struct Dispatcher {
    sinks: Vec<SinkHandle>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "sinks",
                &self.sinks.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Stable spool subdirectory of a sink: kind plus a 64-bit FNV-1a of the spec.
fn spool_subdir(spec: &SinkSpec) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in spec.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}-{h:016x}", spec.kind())
}

#[derive(Clone)]
struct WorkerCfg {
    queue_len: usize,
    backoff_initial: Duration,
    backoff_max: Duration,
    sync_every: Duration,
}

impl Dispatcher {
    /// Validates the configuration, opens every sink and its spool (restoring what a
    /// previous run left), and starts one worker task per sink on the current runtime.
    /// A sink that is merely unreachable (journald not running, no collector) is not an
    /// error: it starts down and spools.
    ///
    /// # Errors
    /// Invalid configuration, a spool directory that cannot be used, or a sink that cannot
    /// be opened (socket-server bind, file open).
    pub async fn start(cfg: DeliverConfig) -> Result<Self, DeliverError> {
        cfg.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| DeliverError::NoRuntime)?;
        let wcfg = WorkerCfg {
            queue_len: cfg.queue_len,
            backoff_initial: Duration::from_millis(cfg.backoff_initial_ms),
            backoff_max: Duration::from_millis(cfg.backoff_max_ms),
            sync_every: Duration::from_millis(cfg.spool_sync_ms),
        };
        let mut d = Self { sinks: Vec::new() };
        for spec in &cfg.sinks {
            let name = spec.to_string();
            let dir: PathBuf = cfg.spool_dir.join(spool_subdir(spec));
            let max = cfg.spool_max_bytes;
            let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, max))
                .await
                .map_err(|_| DeliverError::NoRuntime)?
                .map_err(|source| DeliverError::Spool {
                    sink: name.clone(),
                    source,
                })?;
            let sink_err = |source: SinkError| DeliverError::Sink {
                sink: name.clone(),
                source,
            };
            let h = match spec {
                SinkSpec::Stdout => spawn_worker(StdoutSink::new(), spool, &wcfg),
                SinkSpec::Journald { socket } => spawn_worker(
                    JournaldSink::new(name.clone(), socket.clone()),
                    spool,
                    &wcfg,
                ),
                SinkSpec::SocketServer { path } => {
                    let s = SocketServerSink::bind(
                        name.clone(),
                        path.clone(),
                        cfg.socket_mode,
                        cfg.socket_group.as_deref(),
                        cfg.subscriber_queue_len,
                    )
                    .map_err(|e| sink_err(e.into()))?;
                    spawn_worker(s, spool, &wcfg)
                }
                SinkSpec::SocketClient { path, mode } => spawn_worker(
                    SocketClientSink::new(name.clone(), path.clone(), *mode),
                    spool,
                    &wcfg,
                ),
                SinkSpec::File { path } => {
                    let s = FileSink::open(
                        name.clone(),
                        path.clone(),
                        cfg.file_max_bytes,
                        cfg.file_keep,
                    )
                    .map_err(|e| sink_err(e.into()))?;
                    spawn_worker(s, spool, &wcfg)
                }
            };
            d.sinks.push(h);
        }
        Ok(d)
    }

    /// Hands an alert to every sink. Never blocks and never fails: each sink queues it
    /// (memory or spool), or, if its ingress queue is full, counts it as dropped.
    pub fn submit(&self, alert: Arc<Value>) {
        let a = Alert::new(alert);
        for s in &self.sinks {
            if s.tx.try_send(a.clone()).is_err() {
                s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A snapshot of every sink's counters.
    #[must_use]
    pub fn stats(&self) -> DeliverStats {
        DeliverStats {
            sinks: self
                .sinks
                .iter()
                .map(|s| {
                    let c = &s.counters;
                    let ingress = s.tx.max_capacity() - s.tx.capacity();
                    SinkStats {
                        name: s.name.clone(),
                        queue_depth: ingress + c.mem.load(Ordering::Relaxed),
                        delivered: c.delivered.load(Ordering::Relaxed),
                        spooled: c.spooled.load(Ordering::Relaxed),
                        spool_bytes: c.spool_bytes.load(Ordering::Relaxed),
                        dropped: c.dropped.load(Ordering::Relaxed),
                        healthy: !c.unhealthy.load(Ordering::Relaxed),
                        subscribers: c.subscribers.load(Ordering::Relaxed),
                        subscribers_disconnected: c
                            .subscribers_disconnected
                            .load(Ordering::Relaxed),
                        unconfirmed: c.unconfirmed.load(Ordering::Relaxed),
                        spool_corrupt: c.spool_corrupt.load(Ordering::Relaxed),
                        loss_alerts: c.loss_alerts.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        }
    }

    /// Stops accepting alerts and drains: each worker keeps delivering until its queue and
    /// spool are empty or 80 % of `deadline` has passed (at once if its sink is down),
    /// then writes what is left in memory to its spool, fsyncs it and closes the sink.
    /// Returns within `deadline` (plus scheduling slack); stragglers are aborted.
    pub async fn shutdown(mut self, deadline: Duration) {
        let start = Instant::now();
        let work = start + deadline.mul_f64(0.8);
        let hard = start + deadline;
        let sinks = std::mem::take(&mut self.sinks);
        let mut tasks = Vec::new();
        for s in sinks {
            let _ = s.shutdown.send(Some(work));
            drop(s.tx);
            tasks.push((s.name, s.task, s.abort));
        }
        for (name, task, abort) in tasks {
            if tokio::time::timeout_at(hard.into(), task).await.is_err() {
                tracing::warn!(sink = %name, "delivery worker missed the shutdown deadline; aborted");
                abort.abort();
            }
        }
    }
}

impl Drop for Dispatcher {
    /// Dropping without `shutdown` aborts the workers like a crash would: nothing more is
    /// delivered or flushed, and spooled alerts are picked up by the next `start`.
    fn drop(&mut self) {
        for s in &self.sinks {
            s.abort.abort();
        }
    }
}

fn spawn_worker<S: Sink>(sink: S, spool: Spool, cfg: &WorkerCfg) -> SinkHandle {
    let name = sink.name().to_owned();
    let (tx, rx) = mpsc::channel(cfg.queue_len);
    let (stx, srx) = watch::channel(None);
    let counters = Arc::new(Counters::default());
    let st = State {
        name: name.clone(),
        mem: VecDeque::new(),
        spool,
        c: counters.clone(),
        healthy: true,
        queue_len: cfg.queue_len,
        loss_reported: 0,
        last_loss: None,
        spool_error_logged: false,
        sync_task: None,
    };
    let task = tokio::spawn(run(sink, rx, st, cfg.clone(), srx));
    let abort = task.abort_handle();
    SinkHandle {
        name,
        tx,
        counters,
        task,
        abort,
        shutdown: stx,
    }
}

struct State {
    name: String,
    mem: VecDeque<Alert>,
    spool: Spool,
    c: Arc<Counters>,
    healthy: bool,
    queue_len: usize,
    loss_reported: u64,
    last_loss: Option<Instant>,
    spool_error_logged: bool,
    sync_task: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Src {
    Mem,
    Spool(crate::spool::Pos),
}

impl State {
    fn enqueue(&mut self, a: Alert) {
        if self.healthy && self.spool.is_empty() && self.mem.len() < self.queue_len {
            self.mem.push_back(a);
            self.c.mem.store(self.mem.len(), Ordering::Relaxed);
        } else {
            self.spool_append(&a);
        }
    }

    fn spool_append(&mut self, a: &Alert) {
        match self.spool.append(a.json().as_bytes()) {
            Ok(r) => {
                self.spool_error_logged = false;
                if r.stored {
                    self.c.spooled.fetch_add(1, Ordering::Relaxed);
                } else {
                    tracing::warn!(sink = %self.name, bytes = a.json().len(), "alert larger than the spool cap: dropped");
                    self.c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                if r.dropped_oldest > 0 {
                    self.c
                        .dropped
                        .fetch_add(r.dropped_oldest, Ordering::Relaxed);
                }
            }
            Err(e) => {
                if !self.spool_error_logged {
                    tracing::error!(sink = %self.name, error = %e, "cannot spool alert: dropped");
                    self.spool_error_logged = true;
                }
                self.c.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.c
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
    }

    /// The oldest pending alert: memory first (it is older than anything spooled).
    fn head(&mut self) -> Option<(Alert, Src)> {
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

    /// Sink went down: if nothing is spooled yet, move the in-memory queue to the spool
    /// (in order) so it survives a crash and newer alerts queue up behind it.
    fn went_down(&mut self) {
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

    /// Periodic work: start a spool sync on a blocking thread (one at a time, so the
    /// worker keeps absorbing alerts during fsync), publish counters, loss alerts.
    fn tick(&mut self) {
        if self.sync_task.as_ref().is_none_or(JoinHandle::is_finished) {
            match self.spool.sync_job() {
                Ok(job) if !job.is_empty() => {
                    let name = self.name.clone();
                    self.sync_task = Some(tokio::task::spawn_blocking(move || {
                        if let Err(e) = job.run() {
                            tracing::error!(sink = %name, error = %e, "spool sync failed");
                        }
                    }));
                }
                Ok(_) => {}
                Err(e) => tracing::error!(sink = %self.name, error = %e, "spool sync failed"),
            }
        }
        self.c
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
        self.c
            .spool_corrupt
            .store(self.spool.corrupt_skipped(), Ordering::Relaxed);
        self.maybe_loss_alert();
    }

    /// Emits at most one loss alert per second, when it fits without dropping more.
    fn maybe_loss_alert(&mut self) {
        let total = self.c.dropped.load(Ordering::Relaxed);
        if total <= self.loss_reported
            || self
                .last_loss
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let count = total - self.loss_reported;
        let a = Alert::new(Arc::new(loss_alert(&self.name, count, total)));
        let to_mem = self.healthy && self.spool.is_empty() && self.mem.len() < self.queue_len;
        // No room (cap), or the last append failed (disk full): the loss alert would only
        // be lost too, and counted as one more drop. Report later, with the whole count.
        if !to_mem && (self.spool_error_logged || self.spool.would_drop(a.json().len())) {
            return;
        }
        tracing::warn!(sink = %self.name, count, total, "alerts dropped");
        self.loss_reported = total;
        self.last_loss = Some(Instant::now());
        self.c.loss_alerts.fetch_add(1, Ordering::Relaxed);
        self.enqueue(a);
    }
}

fn publish_sink_counters<S: Sink>(sink: &S, c: &Counters) {
    if let Some((n, d)) = sink.subscriber_counts() {
        c.subscribers.store(n, Ordering::Relaxed);
        c.subscribers_disconnected.store(d, Ordering::Relaxed);
    }
    c.unconfirmed.store(sink.unconfirmed(), Ordering::Relaxed);
}

#[expect(
    clippy::too_many_lines,
    reason = "one state machine; splitting it hides the ordering rules"
)]
async fn run<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<Alert>,
    mut st: State,
    cfg: WorkerCfg,
    mut shutdown: watch::Receiver<Option<Instant>>,
) {
    let mut tick = tokio::time::interval(cfg.sync_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = cfg.backoff_initial;
    let mut open = true;
    let mut deadline: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_hours(24 * 365);
    loop {
        if let Some(d) = deadline
            && (!st.healthy || Instant::now() >= d)
        {
            break;
        }
        let Some((head, src)) = st.head() else {
            if deadline.is_some() && !open {
                break;
            }
            tokio::select! {
                a = rx.recv(), if open => {
                    if let Some(a) = a {
                        st.enqueue(a);
                    } else {
                        open = false;
                        deadline.get_or_insert_with(Instant::now);
                    }
                }
                _ = tick.tick() => {
                    st.tick();
                    publish_sink_counters(&sink, &st.c);
                }
                r = shutdown.changed(), if deadline.is_none() => {
                    deadline = Some(if r.is_ok() { shutdown.borrow().unwrap_or_else(Instant::now) } else { Instant::now() });
                }
            }
            continue;
        };
        // Deliver the head while still absorbing new alerts, so `submit` never waits.
        let res = {
            let fut = sink.deliver(&head);
            tokio::pin!(fut);
            loop {
                let dl = deadline.unwrap_or_else(far);
                tokio::select! {
                    biased;
                    r = &mut fut => break Some(r),
                    a = rx.recv(), if open => match a {
                        Some(a) => st.enqueue(a),
                        None => open = false,
                    },
                    _ = tick.tick() => st.tick(),
                    r = shutdown.changed(), if deadline.is_none() => {
                        deadline = Some(if r.is_ok() { shutdown.borrow().unwrap_or_else(Instant::now) } else { Instant::now() });
                    }
                    () = tokio::time::sleep_until(dl.into()), if deadline.is_some() => break None,
                }
            }
        };
        publish_sink_counters(&sink, &st.c);
        match res {
            None => break, // shutdown deadline hit mid-delivery; the head is still queued
            Some(Ok(())) => {
                st.consume(src);
                st.c.delivered.fetch_add(1, Ordering::Relaxed);
                if !st.healthy {
                    tracing::info!(sink = %st.name, "sink is back");
                    st.healthy = true;
                    st.c.unhealthy.store(false, Ordering::Relaxed);
                }
                backoff = cfg.backoff_initial;
            }
            Some(Err(e)) if e.is_permanent() => {
                tracing::warn!(sink = %st.name, error = %e, event_id = head.event_id().unwrap_or("-"), "alert rejected by sink: dropped");
                st.consume(src);
                st.c.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                if st.healthy {
                    tracing::warn!(sink = %st.name, error = %e, "sink down: spooling, retrying with backoff");
                } else {
                    tracing::debug!(sink = %st.name, error = %e, "sink still down");
                }
                st.went_down();
                if deadline.is_some() {
                    break;
                }
                let until = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(cfg.backoff_max);
                let wake = sink.wakeup();
                tokio::pin!(wake);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        () = &mut wake => break,
                        a = rx.recv(), if open => match a {
                            Some(a) => st.enqueue(a),
                            None => open = false,
                        },
                        _ = tick.tick() => {
                            st.tick();
                            publish_sink_counters(&sink, &st.c);
                        }
                        r = shutdown.changed(), if deadline.is_none() => {
                            deadline = Some(if r.is_ok() { shutdown.borrow().unwrap_or_else(Instant::now) } else { Instant::now() });
                            break;
                        }
                    }
                }
            }
        }
    }
    finish(sink, rx, st, deadline.unwrap_or_else(Instant::now)).await;
}

/// Shutdown: close the sink, then persist what is still in memory, oldest first:
/// alerts the peer may not have read, the in-memory queue (both in front of the spool),
/// then whatever is left in the ingress channel (behind it).
async fn finish<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<Alert>,
    mut st: State,
    deadline: Instant,
) {
    sink.close(deadline).await;
    if let Some(t) = st.sync_task.take() {
        let _ = t.await;
    }
    let mut front: Vec<Alert> = sink.take_unconfirmed();
    front.extend(st.mem.drain(..));
    if !front.is_empty() {
        let payloads: Vec<&[u8]> = front.iter().map(|a| a.json().as_bytes()).collect();
        if let Err(e) = st.spool.prepend(&payloads) {
            tracing::error!(sink = %st.name, error = %e, lost = front.len(), "cannot spool queued alerts at shutdown");
            st.c.dropped
                .fetch_add(front.len() as u64, Ordering::Relaxed);
        } else {
            st.c.spooled
                .fetch_add(front.len() as u64, Ordering::Relaxed);
        }
    }
    rx.close();
    while let Ok(a) = rx.try_recv() {
        st.spool_append(&a);
    }
    st.c.mem.store(0, Ordering::Relaxed);
    if let Err(e) = st.spool.sync() {
        tracing::error!(sink = %st.name, error = %e, "spool sync at shutdown failed");
    }
    st.c.spool_bytes.store(st.spool.bytes(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn cfg(dir: &std::path::Path, sinks: &[&str]) -> DeliverConfig {
        DeliverConfig {
            sinks: sinks.iter().map(|s| s.parse().unwrap()).collect(),
            spool_dir: dir.join("spool"),
            ..DeliverConfig::default()
        }
    }

    #[tokio::test]
    async fn start_rejects_invalid_config_naming_the_field() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg(d.path(), &["stdout"]);
        c.spool_max_bytes = 10;
        let e = Dispatcher::start(c).await.unwrap_err();
        assert!(matches!(e, DeliverError::Config(_)));
        assert!(e.to_string().contains("spool_max_bytes"), "{e}");
    }

    #[tokio::test]
    async fn second_server_on_the_same_socket_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let spec = format!("socket-server:{}", d.path().join("a.sock").display());
        let a = Dispatcher::start(cfg(d.path(), &[&spec])).await.unwrap();
        let d2 = d.path().join("other");
        let e = Dispatcher::start(cfg(&d2, &[&spec])).await.unwrap_err();
        assert!(e.to_string().contains("already listening"), "{e}");
        a.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn bad_file_path_fails_at_start() {
        let d = tempfile::tempdir().unwrap();
        let spec = format!("file:{}", d.path().join("no/such/dir/a.json").display());
        let e = Dispatcher::start(cfg(d.path(), &[&spec]))
            .await
            .unwrap_err();
        assert!(matches!(e, DeliverError::Sink { .. }), "{e}");
    }

    #[tokio::test]
    async fn stats_count_per_sink_and_submit_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        let c = cfg(
            dir.path(),
            &[
                &format!("file:{}", file.display()),
                &format!("socket-client:{}", dir.path().join("none.sock").display()),
            ],
        );
        let disp = Dispatcher::start(c).await.unwrap();
        let t = Instant::now();
        for i in 0..100 {
            disp.submit(Arc::new(
                serde_json::json!({"event": {"id": i.to_string()}}),
            ));
        }
        assert!(t.elapsed() < Duration::from_millis(500));
        for _ in 0..200 {
            let s = disp.stats();
            if s.sinks[0].delivered == 100 && s.sinks[1].spooled == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = disp.stats();
        assert_eq!(s.sinks[0].delivered, 100);
        assert!(s.sinks[0].healthy);
        assert_eq!(s.sinks[1].spooled, 100);
        assert!(!s.sinks[1].healthy);
        assert!(s.sinks[1].spool_bytes > 0);
        assert_eq!(s.dropped(), 0);
        disp.shutdown(Duration::from_secs(1)).await;
    }
}
