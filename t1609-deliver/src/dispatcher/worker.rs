//! The per-sink worker: one task that owns a sink and its queue, delivers the oldest
//! pending alert, backs off while the sink is down, and does the periodic upkeep (spool
//! sync, counters, loss alerts).

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle},
    time::MissedTickBehavior,
};

use super::{loss::LossReport, queue::SinkQueue, stats::Counters};
use crate::{
    Alert, Sink,
    sink::direct::{Direct, DirectWrite},
    spool::Spool,
};

/// The direct lane of a sink (see [`crate::sink::direct`]): its writer, and whether
/// `submit` may use it. Whoever routes an alert holds the lock, so an alert sent to the
/// worker and the alerts after it can never overtake each other: the lane is closed by
/// the first that does not go through, and opened again only by the worker, once it has
/// nothing queued and its ingress is empty.
pub(super) struct Lane {
    open: bool,
    writer: Box<dyn DirectWrite>,
}

pub(super) type SharedLane = Arc<Mutex<Lane>>;

fn lock(lane: &SharedLane) -> MutexGuard<'_, Lane> {
    lane.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lane {
    /// Writes `json` directly if the lane is open; closes it when that fails. `true`
    /// when it was written.
    pub fn try_write(&mut self, json: &[u8]) -> bool {
        if !self.open {
            return false;
        }
        match self.writer.try_write(json) {
            Direct::Written => true,
            Direct::Busy => {
                self.open = false;
                false
            }
        }
    }

    pub fn close(&mut self) {
        self.open = false;
    }
}

/// The delivery settings every worker shares.
#[derive(Clone)]
pub(super) struct WorkerCfg {
    pub queue_len: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub sync_every: Duration,
}

/// The dispatcher's side of a worker.
pub(super) struct SinkHandle {
    pub name: String,
    pub tx: mpsc::Sender<Alert>,
    pub counters: Arc<Counters>,
    pub task: JoinHandle<()>,
    pub abort: AbortHandle,
    /// The sink's direct lane, when it has a direct writer.
    pub lane: Option<SharedLane>,
    /// Set to the time by which the worker stops delivering.
    pub shutdown: watch::Sender<Option<Instant>>,
}

pub(super) fn spawn_worker<S: Sink>(sink: S, spool: Spool, cfg: &WorkerCfg) -> SinkHandle {
    let name = sink.name().to_owned();
    let (tx, rx) = mpsc::channel(cfg.queue_len);
    let (stx, srx) = watch::channel(None);
    let counters = Arc::new(Counters::default());
    let lane = sink.direct().map(|writer| {
        Arc::new(Mutex::new(Lane {
            open: false,
            writer,
        }))
    });
    let st = State {
        queue: SinkQueue::new(name.clone(), spool, counters.clone(), cfg.queue_len),
        loss: LossReport::default(),
        sync_task: None,
    };
    let task = tokio::spawn(run(sink, rx, st, cfg.clone(), srx, lane.clone()));
    let abort = task.abort_handle();
    SinkHandle {
        name,
        tx,
        counters,
        task,
        abort,
        lane,
        shutdown: stx,
    }
}

struct State {
    queue: SinkQueue,
    loss: LossReport,
    sync_task: Option<JoinHandle<()>>,
}

impl State {
    /// Periodic work: start a spool sync on a blocking thread (one at a time, so the
    /// worker keeps absorbing alerts during fsync), publish counters, loss alerts.
    fn tick(&mut self) {
        if self.sync_task.as_ref().is_none_or(JoinHandle::is_finished) {
            match self.queue.sync_job() {
                Ok(job) if !job.is_empty() => {
                    let name = self.queue.name().to_owned();
                    self.sync_task = Some(tokio::task::spawn_blocking(move || {
                        if let Err(e) = job.run() {
                            tracing::error!(sink = %name, error = %e, "spool sync failed");
                        }
                    }));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(sink = %self.queue.name(), error = %e, "spool sync failed");
                }
            }
        }
        self.queue.publish_spool();
        self.maybe_loss_alert();
    }

    /// Queues a loss alert when drops were counted since the last one (see [`LossReport`]).
    fn maybe_loss_alert(&mut self) {
        let total = self.queue.counters().dropped.load(Ordering::Relaxed);
        let queue = &self.queue;
        if let Some(a) = self
            .loss
            .due(queue.name(), total, |a| queue.has_room_for(a))
        {
            self.queue
                .counters()
                .loss_alerts
                .fetch_add(1, Ordering::Relaxed);
            self.queue.enqueue(a);
        }
    }
}

/// The instant a shutdown request asks the worker to stop by: the one sent, or now when
/// the dispatcher is gone (`changed` failed).
fn stop_at(changed: bool, rx: &watch::Receiver<Option<Instant>>) -> Instant {
    if changed {
        rx.borrow().unwrap_or_else(Instant::now)
    } else {
        Instant::now()
    }
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
    lane: Option<SharedLane>,
) {
    let mut tick = tokio::time::interval(cfg.sync_every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = cfg.backoff_initial;
    let mut open = true;
    let mut deadline: Option<Instant> = None;
    let far = || Instant::now() + Duration::from_hours(24 * 365);
    loop {
        if let Some(d) = deadline
            && (!st.queue.healthy() || Instant::now() >= d)
        {
            break;
        }
        let Some((head, src)) = st.queue.head() else {
            if deadline.is_some() && !open {
                break;
            }
            // Caught up and healthy: `submit` may write directly again.
            if let Some(lane) = &lane
                && deadline.is_none()
                && st.queue.healthy()
            {
                let mut l = lock(lane);
                if !l.open && rx.is_empty() {
                    l.open = true;
                }
            }
            tokio::select! {
                a = rx.recv(), if open => {
                    if let Some(a) = a {
                        st.queue.enqueue(a);
                    } else {
                        open = false;
                        deadline.get_or_insert_with(Instant::now);
                    }
                }
                _ = tick.tick() => {
                    st.tick();
                    st.queue.counters().publish_sink(&sink);
                }
                r = shutdown.changed(), if deadline.is_none() => {
                    deadline = Some(stop_at(r.is_ok(), &shutdown));
                }
            }
            continue;
        };
        // The worker has something to deliver (a loss alert it queued itself, or what
        // `submit` could not write): nothing may be written directly before it.
        if let Some(lane) = &lane {
            lock(lane).close();
        }
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
                        Some(a) => st.queue.enqueue(a),
                        None => open = false,
                    },
                    _ = tick.tick() => st.tick(),
                    r = shutdown.changed(), if deadline.is_none() => {
                        deadline = Some(stop_at(r.is_ok(), &shutdown));
                    }
                    () = tokio::time::sleep_until(dl.into()), if deadline.is_some() => break None,
                }
            }
        };
        st.queue.counters().publish_sink(&sink);
        match res {
            None => break, // shutdown deadline hit mid-delivery; the head is still queued
            Some(Ok(())) => {
                st.queue.delivered(src);
                backoff = cfg.backoff_initial;
            }
            Some(Err(e)) if e.is_permanent() => {
                tracing::warn!(sink = %st.queue.name(), error = %e, event_id = head.event_id().unwrap_or("-"), "alert rejected by sink: dropped");
                st.queue.rejected(src);
            }
            Some(Err(e)) => {
                if st.queue.healthy() {
                    tracing::warn!(sink = %st.queue.name(), error = %e, "sink down: spooling, retrying with backoff");
                } else {
                    tracing::debug!(sink = %st.queue.name(), error = %e, "sink still down");
                }
                st.queue.went_down();
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
                            Some(a) => st.queue.enqueue(a),
                            None => open = false,
                        },
                        _ = tick.tick() => {
                            st.tick();
                            st.queue.counters().publish_sink(&sink);
                        }
                        r = shutdown.changed(), if deadline.is_none() => {
                            deadline = Some(stop_at(r.is_ok(), &shutdown));
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
    st.queue.persist_front(sink.take_unconfirmed());
    rx.close();
    while let Ok(a) = rx.try_recv() {
        st.queue.spool_append(&a);
    }
    st.queue.close();
}
