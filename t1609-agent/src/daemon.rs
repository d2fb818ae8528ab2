//! `run`: wires capture → decode → enrich → detect → deliver, and handles signals
//! (SIGINT/SIGTERM stop cleanly, SIGHUP reloads config and rules). Capture to detection
//! runs on one hot-path thread, batch by batch; alerts reach the sinks through their
//! bounded queues, and control messages (end a session, reload rules) through channels.

use std::{
    collections::BTreeSet,
    io::Write,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use t1609_detect::Engine;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{debug, error, info, warn};

use crate::{
    capture::{Capture, CaptureOptions, KernelCounters},
    config::{CaptureMode, Config},
    context::{Context, augment},
    decode::{Captured, CapturedExec, CapturedNet},
    deliver::Output,
    enrich::Enricher,
    network::{AlertLinks, NetworkRules},
    session::{Session, Sessions},
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
        config.deliver.sinks = args
            .outputs
            .iter()
            .map(|o| {
                o.parse::<t1609_deliver::SinkSpec>()
                    .map_err(|e| anyhow::anyhow!("--output {o}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    config.validate(
        args.config_path
            .as_deref()
            .unwrap_or_else(|| std::path::Path::new("<command line>")),
    )?;
    Ok(config)
}

fn load_engine(config: &Config) -> anyhow::Result<Engine> {
    Engine::load(&config.rules.paths)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading rules")
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
    pub net_events: AtomicU64,
    pub alerts: AtomicU64,
    pub folded: AtomicU64,
    pub sessions: AtomicU64,
    pub suppressed: AtomicU64,
    pub deduplicated: AtomicU64,
    pub table_size: AtomicU64,
    /// Execs handled by replaying an exact repeat's outcome (see `crate::repeat`).
    pub repeats_replayed: AtomicU64,
    /// Execs whose cgroups / working directory came from the parent instead of /proc.
    pub cgroup_reads_saved: AtomicU64,
    pub cwd_reads_saved: AtomicU64,
    /// Open dedup windows whose first alert is kept for the follow-up.
    pub first_alerts_kept: AtomicU64,
    /// Follow-ups ("repeated N times") by how much of the first alert they carry
    /// (indexed by `summary::Detail::index`).
    pub repeat_summaries: [AtomicU64; 3],
    pub by_rule: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
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
        Ok(Self {
            out: Box::new(std::io::BufWriter::new(out)),
        })
    }
}

/// Requests from the pipeline to the task that owns the kernel maps.
#[derive(Debug)]
pub enum Control {
    /// The exec that opened this session does not inject anything: stop tracking it.
    EndSession(u64),
}

struct Pipeline {
    correlator: Arc<std::sync::Mutex<t1609_k8saudit::Correlator>>,
    enricher: Enricher,
    context: Context,
    /// With dedup on: the first alert of each open window, for its follow-up.
    first_alerts: Option<crate::summary::FirstAlerts>,
    engine: watch::Receiver<Arc<Engine>>,
    recorder: Option<Recorder>,
    output: Arc<Output>,
    stats: Arc<PipelineStats>,
    network: NetworkRules,
    links: AlertLinks,
    sessions: Sessions,
    session_window: Duration,
    proc_root: PathBuf,
    control: mpsc::UnboundedSender<Control>,
    hostname: Option<String>,
    seq: u64,
    repeats: crate::repeat::Repeats,
    /// Runs the rare awaits of the hot path (container name lookups); set by the thread.
    lookups: Option<tokio::runtime::Runtime>,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

const EXEC_TOOLS: &[&str] = &[
    "docker", "podman", "nerdctl", "kubectl", "oc", "crictl", "ctr", "compose",
];

impl Pipeline {
    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:x}-{:x}", std::process::id(), self.seq)
    }

    /// Delivers `doc` and returns it as the sinks share it.
    fn emit(&self, mut doc: serde_json::Value) -> Arc<serde_json::Value> {
        if doc["t1609"]["argv"]["tool"] == "kubectl" {
            // A kubectl exec seen here and the API server's audit entry for it share a group.
            let mut c = self
                .correlator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.observe_process_alert(&mut doc, Instant::now());
        }
        self.stats.alerts.fetch_add(1, Ordering::Relaxed);
        if let Some(rule) = doc["rule"]["id"].as_str() {
            let mut m = self
                .stats
                .by_rule
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *m.entry(rule.to_owned()).or_default() += 1;
        }
        let doc = Arc::new(doc);
        self.output.submit(doc.clone());
        doc
    }

    /// Handles one exec; `true` when it was an exact repeat, replayed.
    fn on_exec(&mut self, exec: &CapturedExec) -> bool {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let engine = self.engine.borrow().clone();
        // An exact repeat of a recent exec whose alerts are all repeats (or suppressed)
        // replays that outcome: no event, no rule evaluation (see crate::repeat).
        let eligible = self.recorder.is_none() && self.repeats.identify(exec, &self.context.table);
        if eligible
            && let Some(outcome) = self.repeats.lookup(&engine, now)
            && self
                .context
                .tuning
                .count_if_all_repeats(&outcome.repeated, now)
        {
            self.context.on_repeat_exec(exec, outcome);
            if let Some((group, event_id)) = &outcome.link {
                self.links
                    .remember(exec.tgid, group.clone(), event_id.clone(), now);
            }
            let stats = &self.stats;
            stats
                .suppressed
                .fetch_add(outcome.suppressed, Ordering::Relaxed);
            stats
                .deduplicated
                .fetch_add(outcome.repeated.len() as u64, Ordering::Relaxed);
            stats.repeats_replayed.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let parent = self.context.parent_of(exec.ppid);
        let cwd = self.context.cwd_of(exec);
        let mut event = self
            .enricher
            .to_event_with_parent(exec, parent, cwd.as_deref());
        if event.process.parent.is_none()
            && let Some((ppid, comm)) = exec.ancestors.first()
        {
            event.process.parent = Some(Box::new(t1609_detect::event::ParentProcess {
                pid: Some(*ppid),
                name: Some(String::from_utf8_lossy(comm).into_owned()),
                ..Default::default()
            }));
        }
        let mut ctx = self.context.on_exec(exec, &event, cwd);
        if event.container_id.is_none() {
            event.container_id.clone_from(&ctx.cgroup.container_id);
        }
        // The event's own document is only needed for --record and session summaries.
        let need_ecs = self.recorder.is_some() || (exec.session != 0 && !exec.session_root);
        let mut ecs = if need_ecs {
            self.context.fill_session_leader(&mut ctx, exec.tgid);
            event.to_ecs()
        } else {
            serde_json::Value::Null
        };
        augment(&mut ecs, &ctx);
        if exec.session != 0
            && need_ecs
            && let Some(t) = ecs.get_mut("t1609").and_then(|t| t.as_object_mut())
        {
            t.insert("session_id".into(), json!(format!("{:x}", exec.session)));
            t.insert("session_root".into(), json!(exec.session_root));
        }
        if let Some(rec) = self.recorder.as_mut().filter(|_| need_ecs)
            && let Err(e) = writeln!(rec.out, "{ecs}")
        {
            error!(error = %e, "writing --record output");
        }
        let name = event.process.name.clone().unwrap_or_default();
        let args: &[String] = event.process.args.as_deref().unwrap_or_default();

        // Execs inside a tracked session are collected for its summary.
        if exec.session != 0 && !exec.session_root {
            let summary = json!({
                "pid": exec.tgid, "name": name, "executable": event.process.executable,
                "command_line": event.process.command_line, "args": args,
                "container_id": event.container_id, "@timestamp": event.timestamp, "event_id": event.event_id,
                "process": ecs.get("process").cloned(),
            });
            self.sessions.record_exec(exec.session, exec.tgid, summary);
        }
        let mut folded_into: Option<crate::session::PendingExec> = None;
        if exec.session_root {
            if crate::session::is_injection(&name, args) {
                self.stats.sessions.fetch_add(1, Ordering::Relaxed);
                folded_into = self.sessions.start(Session {
                    id: exec.session,
                    root_pid: exec.tgid,
                    root_name: name.clone(),
                    root_args: args.to_vec(),
                    root_event_id: event.event_id.clone().unwrap_or_default(),
                    container_hint: crate::session::runtime_exec_target(args),
                    started: now,
                    linked: None,
                    injected: None,
                    commands: Vec::new(),
                    dropped_commands: 0,
                    ended: false,
                });
            } else {
                let _ = self.control.send(Control::EndSession(exec.session));
            }
        }

        // What this exec decided, for its exact repeats; dropped once an alert is emitted.
        // It shares the table entry's executable and argv, as its repeats' entries will.
        let mut outcome = eligible.then(|| {
            let entry = self.context.table.get(exec.tgid);
            crate::repeat::Outcome {
                name: name.clone(),
                executable: entry.and_then(|e| e.executable.clone()),
                args: entry.and_then(|e| e.args.clone()),
                ..Default::default()
            }
        });
        let mut dedup_template: Option<t1609_context::DedupKey> = None;
        for alert in engine.evaluate(&event) {
            if let Some(pending) = &folded_into {
                // The runtime exec that carries out an alerted docker/kubectl exec is its
                // mechanism, not a second incident: it appears in the session alert.
                debug!(rule = %alert.rule_id, linked = %pending.event_id, "folded runtime exec alert into its session");
                self.stats.folded.fetch_add(1, Ordering::Relaxed);
                outcome = None;
                continue;
            }
            let group = alert
                .group_id
                .clone()
                .unwrap_or_else(|| alert.event_id.clone());
            let link: (Arc<str>, Arc<str>) =
                (group.as_str().into(), alert.event_id.as_str().into());
            self.links
                .remember(exec.tgid, link.0.clone(), link.1.clone(), now);
            if let Some(o) = outcome.as_mut() {
                o.link = Some(link);
            }
            // Exceptions and dedup are decided from the event, before the document is
            // built: in a storm of repeats most alerts end here, for a few hundred ns.
            let verdict = self.context.verdict(
                &alert.rule_id,
                &event,
                &ctx,
                time::OffsetDateTime::now_utc(),
            );
            if verdict.suppress {
                self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                if let Some(o) = outcome.as_mut() {
                    o.suppressed += 1;
                }
                continue;
            }
            // The event's part of the key (its normalized command line) is the same for
            // all of its alerts: built once.
            let shared = dedup_template
                .get_or_insert_with(|| crate::context::event_dedup_key("", &event, &ctx));
            let key = t1609_context::DedupKey {
                rule_id: alert.rule_id.clone(),
                ..shared.clone()
            };
            if !self.context.first_of_key(key.clone()) {
                self.stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                if let Some(o) = outcome.as_mut() {
                    o.repeated.push(key);
                }
                continue;
            }
            outcome = None;
            self.context.fill_session_leader(&mut ctx, exec.tgid);
            let mut doc = alert.to_ecs();
            augment(&mut doc, &ctx);
            verdict.apply(&mut doc);
            let inv = alert.argv.as_deref();
            let tool = inv.map_or("", |i| i.tool.as_str());
            let verb = inv.and_then(|i| i.verb.as_deref()).unwrap_or_default();
            let is_exec = EXEC_TOOLS.contains(&tool) && matches!(verb, "exec" | "attach");
            let container = inv.and_then(|i| i.container.as_deref());
            let mut target = container
                .or_else(|| inv.and_then(|i| i.pod.as_deref()))
                .map(str::to_owned);
            if is_exec
                && matches!(tool, "docker" | "podman" | "nerdctl")
                && let Some(name) = container
            {
                let resolved = match &self.lookups {
                    Some(rt) => rt.block_on(self.context.resolve_target(name)),
                    None => None,
                };
                if let Some(id) = resolved.as_ref().and_then(|r| r["id"].as_str()) {
                    target = Some(id.to_owned());
                }
                doc["t1609"]["target"] = match resolved {
                    Some(r) => json!({"container": r, "resolved": true}),
                    None => json!({"container": {"name": name}, "resolved": false,
                                       "reason": "the container runtime did not answer (no socket, timeout or unknown name)"}),
                };
            }
            if is_exec {
                self.sessions.expect(crate::session::PendingExec {
                    group_id: group.clone(),
                    event_id: alert.event_id.clone(),
                    at: now,
                    target,
                    tool: tool.to_owned(),
                });
            }
            let doc = self.emit(doc);
            if let Some(first) = self.first_alerts.as_mut() {
                first.remember(key, &doc);
            }
        }
        if let Some(o) = outcome {
            self.repeats.remember(&engine, o, now);
        }
        false
    }

    fn on_net(&mut self, net: &CapturedNet) {
        self.stats.net_events.fetch_add(1, Ordering::Relaxed);
        let mut proc = crate::network::read_process(&self.proc_root, net.tgid);
        proc.user_name = self.enricher.user_name_of(net.uid);
        let comm = String::from_utf8_lossy(&net.comm).into_owned();
        let exe_name = proc
            .executable
            .as_deref()
            .map_or(comm.as_str(), crate::enrich::basename)
            .to_owned();
        let now = Instant::now();
        let rules: Vec<_> = self
            .network
            .matching(net, &exe_name)
            .into_iter()
            .cloned()
            .collect();
        for rule in rules {
            let (group, related) = match self.links.lookup(net.tgid, now) {
                Some((g, e)) => (g.to_owned(), Some(e.to_owned())),
                None => (self.next_id("net"), None),
            };
            let event_id = self.next_id("net");
            let doc = crate::network::alert_doc(
                &rule,
                net,
                &proc,
                self.enricher.rfc3339(net.ktime_ns),
                event_id,
                group,
                related.as_deref(),
                self.hostname.as_deref(),
            );
            self.emit(doc);
        }
    }

    fn on_task(&mut self, task: &crate::decode::TaskEvent) {
        if task.exited {
            self.sessions.exited(task.session, task.tgid);
            self.context.on_exit(task.tgid);
        } else if let Some(parent) = task.parent_tgid {
            self.context.on_fork(parent, task.tgid, task.ktime_ns);
        }
    }

    /// Follow-up alerts for the dedup windows that closed (`all`: every open one, at
    /// shutdown). Called every period, so that a stream of distinct alerts frees its kept
    /// first alerts a few at a time.
    fn close_windows(&mut self, all: bool) {
        let closed = self.context.closed_windows(all);
        if closed.is_empty() {
            return;
        }
        if let Some(mut first) = self.first_alerts.take() {
            let now = now_rfc3339();
            for (key, count) in closed {
                let id = |_: &str| self.next_id("repeat");
                if let Some((mut doc, detail)) = first.close(&key, count, id, Some(&now)) {
                    // The whole and lean copies carry the first alert's host.
                    if detail == crate::summary::Detail::Key
                        && let Some(host) = &self.hostname
                    {
                        doc["host"]["hostname"] = json!(host);
                    }
                    self.stats.repeat_summaries[detail.index()].fetch_add(1, Ordering::Relaxed);
                    self.emit(doc);
                }
            }
            self.first_alerts = Some(first);
        }
    }

    /// Process table housekeeping, and the gauges of what the pipeline holds.
    fn housekeeping(&mut self) {
        if let Some(first) = &self.first_alerts {
            self.stats
                .first_alerts_kept
                .store(first.len() as u64, Ordering::Relaxed);
        }
        self.context.housekeeping();
        self.stats
            .table_size
            .store(self.context.table.len() as u64, Ordering::Relaxed);
        self.stats
            .cgroup_reads_saved
            .store(self.context.cgroup_reads_saved, Ordering::Relaxed);
        self.stats
            .cwd_reads_saved
            .store(self.context.cwd_reads_saved, Ordering::Relaxed);
    }

    fn flush_sessions(&mut self, all: bool) {
        let window = if all {
            Duration::ZERO
        } else {
            self.session_window
        };
        for s in self.sessions.take_due(window, Instant::now()) {
            if s.commands.is_empty() && s.linked.is_none() {
                continue; // a runtime exec that ran nothing we saw, tied to no alert
            }
            let id = self.next_id("session");
            let doc =
                crate::session::session_alert(&s, now_rfc3339(), id, self.hostname.as_deref());
            self.emit(doc);
        }
    }

    /// The hot-path loop: sleep in the reader until records arrive, handle them, and every
    /// 100 ms do the timed work. Returns when `stop` fires, after handling the last drain.
    fn run(
        mut self,
        mut reader: crate::capture::Reader,
        stop: &crate::capture::StopSignal,
    ) -> Result<(), crate::capture::CaptureError> {
        const PERIOD: Duration = Duration::from_millis(100);
        let mut batch = Vec::new();
        let mut next_period = Instant::now() + PERIOD;
        let mut periods = 0u64;
        let result = loop {
            let running = match reader.wait_and_drain(&mut batch, next_period, stop) {
                Ok(running) => running,
                Err(e) => break Err(e),
            };
            // Exits and forks leave the pace as it is; anything that may alert sets it.
            let mut pace: Option<bool> = None;
            for c in &batch {
                match c {
                    Captured::Exec(exec) => {
                        let alerts_before = self.stats.alerts.load(Ordering::Relaxed);
                        let repeat = self.on_exec(exec);
                        if repeat {
                            reader
                                .list_repeat(t1609_common::quiet_signature(exec.ppid, &exec.argv));
                        } else {
                            let raised = self.stats.alerts.load(Ordering::Relaxed) - alerts_before;
                            reader.note_alerts(exec.ktime_ns, raised);
                        }
                        pace = Some(pace.unwrap_or(true) && repeat);
                    }
                    Captured::Net(net) => {
                        self.on_net(net);
                        pace = Some(false);
                    }
                    Captured::Task(task) => self.on_task(task),
                }
            }
            if let Some(relaxed) = pace {
                reader.pace(relaxed);
            }
            if !batch.is_empty()
                && let Some(rec) = self.recorder.as_mut()
            {
                let _ = rec.out.flush();
            }
            reader.recycle(&mut batch);
            let now = Instant::now();
            if now >= next_period {
                next_period = now + PERIOD;
                if !self.sessions.is_empty() {
                    self.flush_sessions(false);
                }
                self.close_windows(false);
                periods += 1;
                if periods.is_multiple_of(10) {
                    self.housekeeping();
                }
                if periods.is_multiple_of(100) {
                    crate::capture::release_free_heap();
                }
            }
            if !running {
                break Ok(());
            }
        };
        self.flush_sessions(true);
        // Bursts still in their window get their follow-up before the agent goes.
        self.close_windows(true);
        self.housekeeping();
        if let Some(rec) = self.recorder.as_mut() {
            let _ = rec.out.flush();
        }
        result
    }
}

/// Runs the hot path — the ring-buffer reader and the pipeline — on its own thread, as a
/// plain loop with no async runtime: the thread sleeps in the reader (a `ppoll` between
/// bursts, a `nanosleep` to the next drain tick during one) and handles each drained
/// batch in place. A tokio task pair
/// here cost a channel hand-over, two task polls and the driver's bookkeeping per tick,
/// about a fifth of the agent's CPU in a watched storm. The rare awaits (a container
/// name lookup on the runtime's socket) run on a small current-thread runtime owned by
/// the thread. Sinks, metrics, audit sources and signals stay on the main runtime. The
/// thread ends when `stop` fires and the pipeline has handled what the reader drained
/// last.
fn spawn_hot_path(
    reader: crate::capture::Reader,
    mut pipeline: Pipeline,
    stop: Arc<crate::capture::StopSignal>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name("t1609-pipeline".into())
        .spawn(move || {
            pipeline.lookups = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building the pipeline's lookup runtime")?,
            );
            pipeline.run(reader, &stop).map_err(anyhow::Error::from)
        })
        .context("starting the pipeline thread")
}

/// Starts the Kubernetes audit sources when `[audit]` configures one; their alerts go
/// through the correlator to the same sinks.
async fn start_audit(
    config: &Config,
    correlator: Arc<std::sync::Mutex<t1609_k8saudit::Correlator>>,
    output: Arc<Output>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if config.audit.file.is_none() && config.audit.webhook.is_none() {
        return Ok(None);
    }
    let rules = Arc::new(
        t1609_k8saudit::AuditRules::load(&config.audit.rule_files)
            .map_err(|e| anyhow::anyhow!("audit rules: {e}"))?,
    );
    let stats = Arc::new(t1609_k8saudit::AuditStats::default());
    let (tx, mut rx) = mpsc::channel::<serde_json::Value>(1024);
    let cfg = config.audit.clone();
    let sources = tokio::spawn(t1609_k8saudit::run_sources(cfg, rules, tx, stats, stop));
    info!(
        file = config.audit.file.is_some(),
        webhook = config.audit.webhook.is_some(),
        "kubernetes audit sources started"
    );
    Ok(Some(tokio::spawn(async move {
        while let Some(mut alert) = rx.recv().await {
            correlator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .observe_audit_alert(&mut alert, Instant::now());
            output.submit(Arc::new(alert));
        }
        match sources.await {
            Ok(Err(e)) => error!(error = %e, "kubernetes audit source failed"),
            Err(e) => error!(error = %e, "kubernetes audit task panicked"),
            Ok(Ok(())) => {}
        }
    })))
}

/// An ECS alert document reporting captured events the kernel had to drop.
fn loss_alert(
    host: Option<&str>,
    lost: u64,
    lost_chunks: u64,
    total: KernelCounters,
) -> serde_json::Value {
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
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        warn!(error = %e, "sd_notify failed");
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up must still stop us cleanly.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let config = effective_config(&args)?;
    // Fail on a missing privilege before touching sinks or spools.
    crate::capture::check_privilege()?;
    let engine = Arc::new(load_engine(&config)?);
    info!(rules = engine.rule_count(), "rules loaded");
    let (names, capture_all) = watch_names(&config, &engine);
    let output = Arc::new(Output::start(config.deliver_config()).await?);
    let recorder = args.record.as_ref().map(Recorder::open).transpose()?;

    let mut network = NetworkRules::builtin()?;
    network.set_expected_clients(
        "t1609.runtime_socket_access",
        &config.network.expected_clients,
    );
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
    })?;
    let reader = capture.take_reader().expect("reader taken once");
    let reader_stats = reader.stats.clone();
    let hot_stop =
        Arc::new(crate::capture::StopSignal::new().context("creating the stop eventfd")?);
    let (stop_tx, _) = watch::channel(false);
    let (engine_tx, engine_rx) = watch::channel(engine);
    let stats = Arc::new(PipelineStats::default());
    let enricher = Enricher::new(&config.host.root, &config.host.proc);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned());
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();

    let context = Context::new(
        &config.context,
        &config.host.proc,
        config.exceptions.clone(),
    )?;
    stats
        .table_size
        .store(context.table.len() as u64, Ordering::Relaxed);
    let correlator = Arc::new(std::sync::Mutex::new(t1609_k8saudit::Correlator::new(
        config.audit.correlation_window(),
    )));
    let audit_task = start_audit(
        &config,
        correlator.clone(),
        output.clone(),
        stop_tx.subscribe(),
    )
    .await?;
    let first_alerts = context
        .dedup_enabled()
        .then(|| crate::summary::FirstAlerts::new(config.context.dedup_kept_alerts));
    let pipeline = Pipeline {
        correlator,
        enricher,
        context,
        first_alerts,
        engine: engine_rx,
        recorder,
        output: output.clone(),
        stats: stats.clone(),
        network,
        links: AlertLinks::default(),
        sessions: Sessions::default(),
        session_window: Duration::from_millis(config.session.window_ms),
        proc_root: config.host.proc.clone(),
        control: control_tx,
        hostname: hostname.clone(),
        seq: 0,
        repeats: crate::repeat::Repeats::default(),
        lookups: None,
    };
    let hot_path = spawn_hot_path(reader, pipeline, hot_stop.clone())?;

    let health = Arc::new(crate::metrics::Health::default());
    let mut metrics_addr = String::from("off");
    if !config.metrics.listen.is_empty() {
        let listener = crate::metrics::bind(&config.metrics.listen).await?;
        metrics_addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tokio::spawn(crate::metrics::serve(listener, health.clone()));
    }
    let refresh = |capture: &Capture, reader_alive: bool, last: KernelCounters| {
        let k = last;
        let mut snap = health
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        snap.events_captured = stats.events.load(Ordering::Relaxed);
        snap.net_events = stats.net_events.load(Ordering::Relaxed);
        snap.alerts_by_rule = stats
            .by_rule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        snap.suppressed = stats.suppressed.load(Ordering::Relaxed);
        snap.deduplicated = stats.deduplicated.load(Ordering::Relaxed);
        snap.ringbuf_lost = k.ringbuf_full;
        snap.argv_chunks_lost = k.chunk_ringbuf_full;
        snap.kernel_read_errors = k.read_errors;
        snap.decode_errors = reader_stats.decode_errors.load(Ordering::Relaxed);
        snap.reader_ring_wakeups = reader_stats.ring_wakeups.load(Ordering::Relaxed);
        snap.reader_poll_ticks = reader_stats.poll_ticks.load(Ordering::Relaxed);
        snap.reader_quiet_drains = reader_stats.quiet_drains.load(Ordering::Relaxed);
        snap.reader_quiet_late_alerts = reader_stats.quiet_late_alerts.load(Ordering::Relaxed);
        snap.process_table = stats.table_size.load(Ordering::Relaxed);
        snap.tracked_tasks = capture.tracked_tasks();
        snap.repeats_replayed = stats.repeats_replayed.load(Ordering::Relaxed);
        snap.cgroup_reads_saved = stats.cgroup_reads_saved.load(Ordering::Relaxed);
        snap.cwd_reads_saved = stats.cwd_reads_saved.load(Ordering::Relaxed);
        snap.first_alerts_kept = stats.first_alerts_kept.load(Ordering::Relaxed);
        snap.repeat_summaries =
            std::array::from_fn(|i| stats.repeat_summaries[i].load(Ordering::Relaxed));
        snap.programs = capture.all_program_stats();
        snap.sinks = output
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
            .collect();
        snap.attached = true;
        snap.reader_alive = reader_alive;
    };
    refresh(&capture, true, KernelCounters::default());
    // Everything that needs CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN is done: drop them.
    let kept = crate::privilege::drop_after_attach()?;
    info!(kept = ?kept, "dropped capabilities not needed after attach");
    // Start-up (BTF, /proc seeding, rule loading) is the heap's peak: hand it back.
    crate::capture::release_free_heap();
    health.ready.store(true, Ordering::Relaxed);
    info!(
        watch = ?names, capture_all, pid = std::process::id(), degraded = ?capture.degraded,
        unix_connects = capture.unix_connects,
        metrics = %metrics_addr,
        "t1609-agent ready: sched_process_exec attached"
    );
    sd_notify("READY=1");

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = KernelCounters::default();
    loop {
        tokio::select! {
            Some(ctl) = control_rx.recv() => match ctl {
                Control::EndSession(session) => capture.end_session(session),
            },
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
                refresh(&capture, !hot_path.is_finished(), now);
                // Only a live pipeline pets the watchdog: a stuck reader gets us restarted.
                if !hot_path.is_finished() {
                    sd_notify("WATCHDOG=1");
                }
            }
        }
    }
    sd_notify("STOPPING=1");
    let _ = stop_tx.send(true);
    hot_stop.fire();
    match tokio::task::spawn_blocking(move || hot_path.join()).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => error!(error = %e, "ring-buffer reader failed"),
        Ok(Err(_)) | Err(_) => error!("the capture pipeline thread panicked"),
    }
    if let Some(t) = audit_task {
        let _ = t.await;
    }
    let final_counters = capture.kernel_counters();
    // Detached, the tracked-task map and its counts hold still and can be compared.
    capture.detach();
    let tracked = capture.tracked_check();
    drop(capture);
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
    info!(
        events = stats.events.load(Ordering::Relaxed),
        alerts = stats.alerts.load(Ordering::Relaxed),
        suppressed = stats.suppressed.load(Ordering::Relaxed),
        deduplicated = stats.deduplicated.load(Ordering::Relaxed),
        repeats_replayed = stats.repeats_replayed.load(Ordering::Relaxed),
        cgroup_reads_saved = stats.cgroup_reads_saved.load(Ordering::Relaxed),
        cwd_reads_saved = stats.cwd_reads_saved.load(Ordering::Relaxed),
        sessions = stats.sessions.load(Ordering::Relaxed),
        repeat_summaries_whole = stats.repeat_summaries[0].load(Ordering::Relaxed),
        repeat_summaries_lean = stats.repeat_summaries[1].load(Ordering::Relaxed),
        repeat_summaries_key = stats.repeat_summaries[2].load(Ordering::Relaxed),
        kernel_matched = final_counters.matched,
        lost_events = final_counters.ringbuf_full,
        lost_argv_chunks = final_counters.chunk_ringbuf_full,
        kernel_read_errors = final_counters.read_errors,
        decode_errors = reader_stats.decode_errors.load(Ordering::Relaxed),
        reader_ring_wakeups = reader_stats.ring_wakeups.load(Ordering::Relaxed),
        reader_poll_ticks = reader_stats.poll_ticks.load(Ordering::Relaxed),
        reader_quiet_drains = reader_stats.quiet_drains.load(Ordering::Relaxed),
        reader_quiet_late_alerts = reader_stats.quiet_late_alerts.load(Ordering::Relaxed),
        tracked_entries = tracked.map(|t| t.entries),
        tracked_counted = tracked.map(|t| t.counted),
        tracked_short_slots = tracked.map(|t| t.short_slots),
        "t1609-agent stopped"
    );
    Ok(())
}
