//! `run`: wires capture → decode → enrich → detect → deliver with typed channels, and
//! handles signals (SIGINT/SIGTERM stop cleanly, SIGHUP reloads config and rules).

use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use serde_json::json;
use t1609_detect::Engine;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{error, info, warn};

use crate::{
    capture::{Capture, CaptureOptions, KernelCounters},
    config::{CaptureMode, Config},
    decode::CapturedExec,
    deliver::Output,
    enrich::Enricher,
};

#[derive(Clone, Debug)]
pub struct RunArgs {
    pub config_path: Option<PathBuf>,
    pub capture: Option<CaptureMode>,
    pub record: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub outputs: Vec<String>,
}

/// Config file merged with command-line overrides.
fn effective_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config_path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(mode) = args.capture {
        config.capture.mode = mode;
    }
    config.rules.paths.extend(args.rules.iter().cloned());
    if !args.outputs.is_empty() {
        config.output.sinks.clone_from(&args.outputs);
    }
    config.validate(args.config_path.as_deref().unwrap_or_else(|| std::path::Path::new("<command line>")))?;
    Ok(config)
}

fn load_engine(config: &Config) -> anyhow::Result<Engine> {
    Engine::load(&config.rules.paths).map_err(|e| anyhow::anyhow!("{e}")).context("loading rules")
}

fn watch_names(config: &Config, engine: &Engine) -> (BTreeSet<String>, bool) {
    let set = engine.watch_set();
    let mut names = set.names;
    names.extend(config.capture.extra_watch.iter().cloned());
    let all = config.capture.mode == CaptureMode::All || set.capture_all;
    if set.capture_all && config.capture.mode != CaptureMode::All {
        warn!("a loaded rule can match any executable: capturing every exec");
    }
    (names, all)
}

#[derive(Default)]
pub struct PipelineStats {
    pub events: AtomicU64,
    pub alerts: AtomicU64,
}

/// Writes `--record` lines: one ECS document per captured exec.
struct Recorder {
    out: Box<dyn Write + Send>,
}

impl Recorder {
    fn open(path: &PathBuf) -> anyhow::Result<Self> {
        let out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening --record file {}", path.display()))?,
            )
        };
        Ok(Self { out: Box::new(std::io::BufWriter::new(out)) })
    }
}

async fn pipeline(
    mut rx: mpsc::Receiver<CapturedExec>,
    mut enricher: Enricher,
    engine: watch::Receiver<Arc<Engine>>,
    mut recorder: Option<Recorder>,
    output: Arc<Output>,
    stats: Arc<PipelineStats>,
) {
    while let Some(first) = rx.recv().await {
        let engine = engine.borrow().clone();
        let mut next = Some(first);
        // Handle everything already queued before flushing the recorder.
        while let Some(exec) = next.take().or_else(|| rx.try_recv().ok()) {
            stats.events.fetch_add(1, Ordering::Relaxed);
            let event = enricher.to_event(&exec);
            if let Some(rec) = recorder.as_mut() {
                let line = event.to_ecs().to_string();
                if let Err(e) = writeln!(rec.out, "{line}") {
                    error!(error = %e, "writing --record output");
                }
            }
            for alert in engine.evaluate(&event) {
                stats.alerts.fetch_add(1, Ordering::Relaxed);
                output.submit(Arc::new(alert.to_ecs()));
            }
        }
        if let Some(rec) = recorder.as_mut() {
            let _ = rec.out.flush();
        }
    }
}

/// An ECS alert document reporting captured events the kernel had to drop.
fn loss_alert(host: Option<&str>, lost: u64, lost_chunks: u64, total: KernelCounters) -> serde_json::Value {
    json!({
        "@timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "event": {"kind": "alert", "id": format!("loss-{}-{}", std::process::id(), total.ringbuf_full + total.chunk_ringbuf_full),
                  "category": ["process"], "type": ["info"], "severity": 47, "risk_score": 47},
        "rule": {"id": "t1609.agent_capture_loss", "name": "t1609-agent lost captured exec events",
                 "description": "The kernel ring buffer was full: exec events were dropped before the agent could read them."},
        "t1609": {"severity": "medium", "lost_events": lost, "lost_argv_chunks": lost_chunks,
                  "lost_events_total": total.ringbuf_full, "lost_argv_chunks_total": total.chunk_ringbuf_full},
        "host": {"hostname": host},
        "message": format!("t1609-agent: {lost} exec events and {lost_chunks} argv chunks lost (ring buffer full)"),
    })
}

/// Tells systemd (when it started us with Type=notify) what state we are in.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        warn!(error = %e, "sd_notify failed");
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = effective_config(&args)?;
    let engine = Arc::new(load_engine(&config)?);
    info!(rules = engine.rule_count(), "rules loaded");
    let (names, capture_all) = watch_names(&config, &engine);
    let output = Arc::new(Output::start(&config.output).await?);
    let recorder = args.record.as_ref().map(Recorder::open).transpose()?;

    let mut capture = Capture::start(&CaptureOptions {
        capture_all,
        watch: names.clone(),
        btf_path: config.capture.btf_path.clone(),
        ring_buffer_bytes: Some(config.capture.ring_buffer_bytes),
    })?;
    let reader = capture.take_reader().expect("reader taken once");
    let reader_stats = reader.stats.clone();
    let (exec_tx, exec_rx) = mpsc::channel(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (engine_tx, engine_rx) = watch::channel(engine);
    let stats = Arc::new(PipelineStats::default());
    let enricher = Enricher::new(&config.host.root, &config.host.proc);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned());

    let reader_task = tokio::spawn(reader.run(exec_tx, stop_rx));
    let pipeline_task = tokio::spawn(pipeline(exec_rx, enricher, engine_rx, recorder, output.clone(), stats.clone()));

    info!(
        watch = ?names, capture_all, pid = std::process::id(),
        "t1609-agent ready: sched_process_exec attached"
    );
    sd_notify("READY=1");

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = KernelCounters::default();
    loop {
        tokio::select! {
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sighup.recv() => {
                sd_notify("RELOADING=1");
                match effective_config(&args).and_then(|c| load_engine(&c).map(|e| (c, e))) {
                    Ok((new_config, new_engine)) => {
                        let (names, _all) = watch_names(&new_config, &new_engine);
                        // Watch set updated in place: no detach, no gap in capture.
                        if let Err(e) = capture.set_watch(&names) {
                            error!(error = %e, "reload: watch set update failed; keeping the old rules");
                        } else {
                            info!(rules = new_engine.rule_count(), watch = ?names, "reloaded config and rules");
                            let _ = engine_tx.send(Arc::new(new_engine));
                            config = new_config;
                        }
                    }
                    Err(e) => error!("reload rejected, the previous config and rules stay active: {e:#}"),
                }
                sd_notify("READY=1");
            }
            _ = tick.tick() => {
                let now = capture.kernel_counters();
                let lost = now.ringbuf_full - last.ringbuf_full;
                let lost_chunks = now.chunk_ringbuf_full - last.chunk_ringbuf_full;
                if lost > 0 || lost_chunks > 0 {
                    warn!(lost, lost_chunks, total_lost = now.ringbuf_full, "ring buffer full: exec events lost");
                    output.submit(Arc::new(loss_alert(hostname.as_deref(), lost, lost_chunks, now)));
                }
                last = now;
                sd_notify("WATCHDOG=1");
            }
        }
    }
    sd_notify("STOPPING=1");
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = reader_task.await {
        error!(error = %e, "ring-buffer reader failed");
    }
    let _ = pipeline_task.await;
    let final_counters = capture.kernel_counters();
    drop(capture); // detaches the program
    let lost = final_counters.ringbuf_full - last.ringbuf_full;
    if lost > 0 || final_counters.chunk_ringbuf_full > last.chunk_ringbuf_full {
        output.submit(Arc::new(loss_alert(
            hostname.as_deref(),
            lost,
            final_counters.chunk_ringbuf_full - last.chunk_ringbuf_full,
            final_counters,
        )));
    }
    if let Ok(output) = Arc::try_unwrap(output) {
        output.shutdown(Duration::from_secs(5)).await;
    }
    let _ = config;
    info!(
        events = stats.events.load(Ordering::Relaxed),
        alerts = stats.alerts.load(Ordering::Relaxed),
        kernel_matched = final_counters.matched,
        lost_events = final_counters.ringbuf_full,
        lost_argv_chunks = final_counters.chunk_ringbuf_full,
        kernel_read_errors = final_counters.read_errors,
        decode_errors = reader_stats.decode_errors.load(Ordering::Relaxed),
        "t1609-agent stopped"
    );
    Ok(())
}
