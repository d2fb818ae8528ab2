//! `run`: starts the stages (capture → pipeline → deliver, plus metrics and the
//! Kubernetes audit sources), then handles signals (SIGINT/SIGTERM stop cleanly, SIGHUP
//! reloads config and rules) and, every second, the kernel's loss counters, the metrics
//! snapshot and the systemd watchdog. Capture to detection runs on the hot-path thread
//! (`pipeline::hot_path`).

mod setup;
pub mod systemd;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use t1609_k8saudit::Correlator;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{error, info, warn};

use crate::{
    alerts::{emit::Emitter, loss},
    capture::{Capture, CaptureError, CaptureOptions, KernelCounters, StopSignal},
    config::{CaptureMode, ConfigError},
    deliver::Output,
    identity::{IdentityControl, IdentityError},
    memory::release_free_heap,
    metrics::{self, Health},
    pipeline::{
        self, Control, Links, Pipeline, PipelineError,
        record::{RecordError, Recorder},
    },
    privilege::{self, PrivilegeError},
    stats::{Counter, Counters},
};

#[derive(Clone, Debug)]
pub struct RunArgs {
    pub config_path: Option<PathBuf>,
    pub capture: Option<CaptureMode>,
    pub record: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub outputs: Vec<String>,
}

/// What stops the agent from starting (or, for `Thread`, from running).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--output {spec}: {source}")]
    Output {
        spec: String,
        source: t1609_deliver::ConfigError,
    },
    #[error("loading rules: {0}")]
    Rules(#[source] t1609_detect::RuleError),
    #[error("audit rules: {0}")]
    AuditRules(#[source] t1609_k8saudit::RuleError),
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("starting alert delivery: {0}")]
    Deliver(#[from] t1609_deliver::DeliverError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("metrics.listen = {listen:?}: {source}")]
    Metrics {
        listen: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

/// Copies the kernel's counters into the agent's.
fn store_kernel(counters: &Counters, k: KernelCounters) {
    counters.set(Counter::RingbufLost, k.ringbuf_full);
    counters.set(Counter::ArgvChunksLost, k.chunk_ringbuf_full);
    counters.set(Counter::KernelReadErrors, k.read_errors);
    counters.set(Counter::KernelMatched, k.matched);
    counters.set(Counter::KernelExeFirst, k.exe_first);
    counters.set(Counter::KernelExeTool, k.exe_tool);
    counters.set(Counter::KernelExeUnread, k.exe_unread);
    counters.set(Counter::KernelExePendingFailed, k.exe_pending_failed);
}

/// Copies the runtimes' cache counters into the agent's.
fn store_runtimes(counters: &Counters, runtimes: &t1609_context::Runtimes) {
    let s = runtimes.stats();
    counters.set(Counter::RuntimeHits, s.hits);
    counters.set(Counter::RuntimePending, s.pending);
    counters.set(Counter::RuntimeErrors, s.runtime_errors + s.timeouts);
    counters.set(Counter::RuntimeEvents, s.events);
    counters.set(Counter::RuntimeContainers, s.containers);
    counters.set(Counter::RuntimeEndpointsUp, s.endpoints_up);
}

/// The metrics endpoint's view, from one snapshot of everything.
fn refresh(
    health: &Health,
    counters: &Counters,
    capture: &Capture,
    output: &Output,
    reader_alive: bool,
) {
    let snapshot = metrics::Snapshot {
        counters: counters.snapshot(),
        tracked_tasks: capture.tracked_tasks(),
        programs: capture.all_program_stats(),
        sinks: output
            .stats()
            .sinks
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.queue_depth as u64,
                    s.spooled,
                    s.dropped,
                    s.healthy,
                )
            })
            .collect(),
        attached: true,
        reader_alive,
    };
    *health
        .snapshot
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = snapshot;
}

/// The signals the agent answers.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, DaemonError> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(io("SIGINT handler"))?,
            term: signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?,
            hup: signal(SignalKind::hangup()).map_err(io("SIGHUP handler"))?,
        })
    }
}

/// The running agent, as the main loop holds it.
struct Agent {
    capture: Capture,
    counters: Arc<Counters>,
    output: Arc<Output>,
    health: Arc<Health>,
    hot_path: std::thread::JoinHandle<Result<(), CaptureError>>,
    hot_stop: Arc<StopSignal>,
    stop_tx: watch::Sender<bool>,
    engine_tx: watch::Sender<Arc<t1609_detect::Engine>>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    audit_task: Option<tokio::task::JoinHandle<()>>,
    /// The identity stage's scan and verdicts, for reloads (`None`: identity off).
    identity: Option<IdentityControl>,
    hostname: Option<String>,
    /// The container runtimes' cache, for its counters.
    runtimes: t1609_context::Runtimes,
    /// The kernel's counters as the last loss check saw them.
    last: KernelCounters,
}

pub async fn run(args: RunArgs) -> Result<(), DaemonError> {
    // Handlers first: a SIGTERM during start-up must still stop us cleanly.
    let mut signals = Signals::install()?;
    let mut agent = start(&args).await?;
    agent.serve(&args, &mut signals).await;
    agent.stop().await;
    Ok(())
}

/// The metrics and health endpoint, if configured: its address, or `off`.
async fn serve_metrics(listen: &str, health: &Arc<Health>) -> Result<String, DaemonError> {
    if listen.is_empty() {
        return Ok("off".into());
    }
    let listener = metrics::bind(listen)
        .await
        .map_err(|source| DaemonError::Metrics {
            listen: listen.to_owned(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tokio::spawn(metrics::serve(listener, health.clone()));
    Ok(addr)
}

/// Starts every stage, then drops the capabilities loading needed.
async fn start(args: &RunArgs) -> Result<Agent, DaemonError> {
    let config = setup::effective_config(args)?;
    // Fail on a missing privilege before touching sinks or spools.
    privilege::check_privilege()?;
    let engine = Arc::new(setup::load_engine(&config)?);
    info!(rules = engine.rule_count(), "rules loaded");
    let (names, capture_all) = setup::watch_names(&config, &engine);
    let output = Arc::new(Output::start(config.deliver_config()).await?);
    let recorder = args.record.as_deref().map(Recorder::open).transpose()?;
    let mut capture = Capture::start(&CaptureOptions {
        capture_all,
        watch: names.clone(),
        btf_path: config.capture.btf_path.clone(),
        ring_buffer_bytes: Some(config.capture.ring_buffer_bytes),
        wakeup_interval: Duration::from_micros(u64::from(config.capture.wakeup_interval_us)),
        ports: config.network.ports.clone(),
        unix_paths: config.network.runtime_sockets.clone(),
        unix_connect_hook: config.network.unix_connect_hook,
        session_seeds: config.session.seeds.clone(),
        identity_entries: config.identity.kernel_entries(),
    })?;
    let counters = Arc::new(Counters::default());
    let (identity, identity_control) =
        setup::start_identity(&config, &mut capture, counters.clone())?;
    let reader = capture
        .take_reader(counters.clone())
        .expect("reader taken once");
    let hot_stop = Arc::new(StopSignal::new().map_err(io("creating the stop eventfd"))?);
    let (stop_tx, _) = watch::channel(false);
    let (engine_tx, engine_rx) = watch::channel(engine);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let correlator = Arc::new(Mutex::new(Correlator::new(
        config.audit.correlation_window(),
    )));
    let audit_task = setup::start_audit(
        &config,
        correlator.clone(),
        output.clone(),
        stop_tx.subscribe(),
    )?;
    let runtimes =
        t1609_context::Runtimes::start(&config.runtimes, &tokio::runtime::Handle::current());
    let pipeline = Pipeline::new(
        &config,
        Links {
            engine: engine_rx,
            emitter: Emitter::new(output.clone(), correlator, counters.clone()),
            counters: counters.clone(),
            control: control_tx,
            recorder,
            identity,
            runtimes: runtimes.clone(),
        },
    )?;
    let hostname = pipeline.hostname().map(str::to_owned);
    let hot_path = pipeline::hot_path::spawn(reader, pipeline, hot_stop.clone())
        .map_err(io("starting the pipeline thread"))?;

    let health = Arc::new(Health::default());
    let metrics_addr = serve_metrics(&config.metrics.listen, &health).await?;
    refresh(&health, &counters, &capture, &output, true);
    // Everything that needs CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN is done: drop them.
    let kept = privilege::drop_after_attach()?;
    info!(kept = ?kept, "dropped capabilities not needed after attach");
    // Start-up (BTF, /proc seeding, rule loading) is the heap's peak: hand it back.
    release_free_heap();
    health
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    info!(
        watch = ?names, capture_all, pid = std::process::id(), degraded = ?capture.degraded,
        unix_connects = capture.unix_connects,
        metrics = %metrics_addr,
        runtimes = ?runtimes.endpoints().iter().map(|e| e.endpoint.clone()).collect::<Vec<_>>(),
        "t1609-agent ready: sched_process_exec attached"
    );
    systemd::notify("READY=1");
    Ok(Agent {
        capture,
        counters,
        output,
        health,
        hot_path,
        hot_stop,
        stop_tx,
        engine_tx,
        control_rx,
        audit_task,
        identity: identity_control,
        hostname,
        runtimes,
        last: KernelCounters::default(),
    })
}

impl Agent {
    /// The main loop, until SIGINT or SIGTERM.
    async fn serve(&mut self, args: &RunArgs, signals: &mut Signals) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                Some(ctl) = self.control_rx.recv() => match ctl {
                    Control::EndSession(session) => self.capture.end_session(session),
                },
                _ = signals.int.recv() => { info!("SIGINT: stopping"); break; }
                _ = signals.term.recv() => { info!("SIGTERM: stopping"); break; }
                _ = signals.hup.recv() => self.reload(args),
                _ = tick.tick() => self.every_second(),
            }
        }
    }

    /// SIGHUP: the config and rules again, the watch set updated in place (no detach, no
    /// gap in capture); a bad config or rule file keeps the running ones.
    fn reload(&mut self, args: &RunArgs) {
        systemd::notify("RELOADING=1");
        match setup::effective_config(args).and_then(|c| setup::load_engine(&c).map(|e| (c, e))) {
            Ok((config, engine)) => {
                let (names, _all) = setup::watch_names(&config, &engine);
                if let Some(id) = &self.identity {
                    let inodes = id.reload(&config.identity, &self.counters);
                    if let Err(e) = self
                        .capture
                        .set_inodes(&inodes)
                        .and_then(|()| self.capture.forget_known_files())
                    {
                        error!(error = %e, "reload: the probe's identity maps could not be updated");
                    }
                }
                if let Err(e) = self.capture.set_watch(&names) {
                    error!(error = %e, "reload: watch set update failed; keeping the old rules");
                } else {
                    info!(rules = engine.rule_count(), watch = ?names, "reloaded config and rules");
                    let _ = self.engine_tx.send(Arc::new(engine));
                }
            }
            Err(e) => error!("reload rejected, the previous config and rules stay active: {e}"),
        }
        systemd::notify("READY=1");
    }

    /// Loss alerts, the metrics snapshot, and the watchdog while the pipeline lives.
    fn every_second(&mut self) {
        let now = self.capture.kernel_counters();
        report_loss(
            &self.output,
            self.hostname.as_deref(),
            self.last,
            now,
            false,
        );
        store_kernel(&self.counters, now);
        store_runtimes(&self.counters, &self.runtimes);
        self.last = now;
        let alive = !self.hot_path.is_finished();
        refresh(
            &self.health,
            &self.counters,
            &self.capture,
            &self.output,
            alive,
        );
        // Only a live pipeline pets the watchdog: a stuck reader gets us restarted.
        if alive {
            systemd::notify("WATCHDOG=1");
        }
    }

    /// Stops cleanly: the pipeline handles what the ring holds, the probes detach, the
    /// sinks drain, and the stop line sums it all up.
    async fn stop(self) {
        systemd::notify("STOPPING=1");
        let _ = self.stop_tx.send(true);
        self.hot_stop.fire();
        let hot_path = self.hot_path;
        match tokio::task::spawn_blocking(move || hot_path.join()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => error!(error = %e, "ring-buffer reader failed"),
            Ok(Err(_)) | Err(_) => error!("the capture pipeline thread panicked"),
        }
        if let Some(t) = self.audit_task {
            let _ = t.await;
        }
        let mut capture = self.capture;
        let final_counters = capture.kernel_counters();
        // Detached, the tracked-task map and its counts hold still and can be compared.
        capture.detach();
        let tracked = capture.tracked_check();
        drop(capture);
        report_loss(
            &self.output,
            self.hostname.as_deref(),
            self.last,
            final_counters,
            true,
        );
        store_kernel(&self.counters, final_counters);
        if let Ok(output) = Arc::try_unwrap(self.output) {
            output.shutdown(Duration::from_secs(5)).await;
        }
        let tracked = tracked.map_or_else(String::new, |t| {
            format!(
                " tracked_entries={} tracked_counted={} tracked_short_slots={}",
                t.entries, t.counted, t.short_slots
            )
        });
        info!(
            "t1609-agent stopped: {}{tracked}",
            self.counters.snapshot().stop_line()
        );
    }
}

/// Raises the loss alert when the kernel dropped events since `last` (at the stop, argv
/// chunks alone are enough).
fn report_loss(
    output: &Output,
    host: Option<&str>,
    last: KernelCounters,
    now: KernelCounters,
    stopping: bool,
) {
    let lost = now.ringbuf_full - last.ringbuf_full;
    let lost_chunks = now.chunk_ringbuf_full - last.chunk_ringbuf_full;
    if lost == 0 && lost_chunks == 0 {
        return;
    }
    if !stopping {
        warn!(
            lost,
            lost_chunks,
            total_lost = now.ringbuf_full,
            "ring buffer full: exec events lost"
        );
    }
    output.submit(Arc::new(loss::capture_loss(host, lost, lost_chunks, now)));
}
