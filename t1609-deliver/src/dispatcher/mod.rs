//! The dispatcher: fans alerts out to one worker per sink.
//!
//! Per sink: `submit` → bounded ingress channel (`queue_len`, never waited on) → worker,
//! which keeps an in-memory queue (`queue_len`) and the sink's spool. While the sink is
//! healthy and keeping up, alerts stay in memory. When the sink fails, or the in-memory
//! queue is full, alerts are appended to the spool; once anything is spooled, newer
//! alerts are spooled behind it until the spool is drained, so each sink sees its alerts
//! in submission order.
//!
//! Where things are: the fan-out (`submit`, `stats`, `shutdown`) here, the per-sink worker
//! in `worker`, its memory-then-spool queue in `queue`, loss alerts in `loss`, the
//! counters in `stats`.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Alert, ConfigError, DeliverConfig, SinkError, SinkSpec,
    sink::{
        file::FileSink, journald::JournaldSink, socket_client::SocketClientSink,
        socket_server::SocketServerSink, stdout::StdoutSink,
    },
    spool::{Spool, SpoolError},
};

mod loss;
mod queue;
mod stats;
mod worker;

pub use loss::loss_alert;
pub use stats::{DeliverStats, SinkStats};
use worker::{SinkHandle, WorkerCfg, spawn_worker};

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

    /// Hands an alert to every sink. Never blocks and never fails: a healthy sink with
    /// nothing queued takes it directly, without blocking (see [`crate::sink::direct`]);
    /// otherwise its worker queues it (memory or spool), or, if its ingress queue is
    /// full, counts it as dropped.
    pub fn submit(&self, alert: Arc<Value>) {
        self.submit_alert(&Alert::new(alert));
    }

    /// [`Dispatcher::submit`] for an alert already made, such as one written as text
    /// ([`Alert::from_text`]): sinks that write text never parse it.
    pub fn submit_alert(&self, a: &Alert) {
        for s in &self.sinks {
            let Some(lane) = &s.lane else {
                Self::to_worker(s, a);
                continue;
            };
            // Routed under the lane's lock: see `worker::Lane`.
            let mut l = lane
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if l.try_write(a.json().as_bytes()) {
                s.counters
                    .delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                Self::to_worker(s, a);
            }
        }
    }

    fn to_worker(s: &SinkHandle, a: &Alert) {
        if s.tx.try_send(a.clone()).is_err() {
            s.counters.lost(1);
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
                    let ingress = s.tx.max_capacity() - s.tx.capacity();
                    s.counters.snapshot(&s.name, ingress)
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
        for s in &sinks {
            if let Some(lane) = &s.lane {
                lane.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .close();
            }
        }
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
