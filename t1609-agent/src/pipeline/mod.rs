//! The pipeline: what the hot-path thread ([`hot_path`]) does with each drained batch.
//! An exec goes through these steps, top to bottom, in [`Pipeline::on_exec`]:
//!
//! 1. **shortcut**: an exact repeat whose alerts are all repeats replays that outcome
//!    ([`repeat`]) and stops here;
//! 2. **event**: the ECS event and where it ran, in one trip to the context stage;
//! 3. **record**: `--record` writes the event ([`record`]);
//! 4. **session**: a command inside an injected session is collected for its summary; a
//!    runtime exec or nsenter opens a session (`alerts::session`);
//! 5. **evaluate**: the rules;
//! 6. **triage**: exceptions and deduplication, in one call per alert (`triage`);
//! 7. **emit**: the alert document, its container target, the session it expects, the
//!    sinks (`alerts::emit`), and the follow-up's copy;
//! 8. the shortcut remembers the outcome for the exec's repeats.
//!
//! Connects become network alerts ([`Pipeline::on_net`]); forks and exits keep the
//! process table and the sessions ([`Pipeline::on_task`]); every 100 ms the timed work
//! closes sessions and dedup windows ([`Pipeline::periodic`]).

pub mod hot_path;
pub mod record;
pub mod repeat;

use std::{
    cell::OnceCell,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use record::Recorder;
use repeat::{Fates, Repeats};
use serde_json::{Value, json};
use t1609_context::DedupKey;
use t1609_detect::{Alert, Engine, event::ProcessEvent};
use t1609_ecs::{new_id, now_rfc3339};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::{
    alerts::{
        emit::Emitter,
        followup::{Detail, FirstAlerts},
        links::AlertLinks,
        metadata::PendingMetadata,
        network::{self, NetAlertLinks, NetworkRuleError, NetworkRules},
        session::{PendingExec, SessionStep, Sessions, session_alert},
    },
    capture::Handled,
    config::Config,
    context::{Context, ExecContext, Target, Targets},
    decode::{Captured, CapturedExec, CapturedNet, TaskEvent},
    identity::Identity,
    memory::release_free_heap,
    stats::{Counter, Counters},
    triage::{Judged, Triage, Tuning, Verdict},
};

/// The timed work's period while something waits on it (a session, a dedup window, a
/// late container name, a held exec) or execs keep coming.
pub const PERIOD: Duration = Duration::from_millis(100);
/// The period of an idle pipeline: nothing waits on the timed work, and each wake-up
/// costs ~60 µs of CPU (ten a second were a third of the idle agent's CPU).
pub const IDLE_PERIOD: Duration = Duration::from_secs(1);
/// The process table's housekeeping and the pipeline's gauges.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// Freed heap handed back to the system.
const HEAP_RELEASE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("network rules: {0}")]
    NetworkRules(#[from] NetworkRuleError),
    #[error("exceptions: {0}")]
    Exceptions(#[from] t1609_context::ExceptionError),
}

/// Requests from the pipeline to the task that owns the kernel maps.
#[derive(Debug)]
pub enum Control {
    /// The exec that opened this session does not inject anything: stop tracking it.
    EndSession(u64),
}

/// What the pipeline shares with the rest of the agent.
pub struct Links {
    pub engine: watch::Receiver<Arc<Engine>>,
    pub emitter: Emitter,
    pub counters: Arc<Counters>,
    pub control: mpsc::UnboundedSender<Control>,
    pub recorder: Option<Recorder>,
    /// What each executed file is (step 0 holds a new file's first exec for its verdict).
    pub identity: Identity,
    /// The container runtimes' cache (started on the daemon's runtime).
    pub runtimes: t1609_context::Runtimes,
}

pub struct Pipeline {
    engine: watch::Receiver<Arc<Engine>>,
    repeats: Repeats,
    context: Context,
    recorder: Option<Recorder>,
    sessions: Sessions,
    session_window: Duration,
    tuning: Tuning,
    targets: Targets,
    links: AlertLinks,
    network: NetworkRules,
    /// With dedup on: the first alert of each open window, for its follow-up.
    followups: Option<FirstAlerts>,
    /// Alerts whose container the runtimes had not named yet.
    pending_metadata: PendingMetadata,
    emitter: Emitter,
    counters: Arc<Counters>,
    control: mpsc::UnboundedSender<Control>,
    proc_root: PathBuf,
    next_housekeeping: Instant,
    next_heap_release: Instant,
    identity: Identity,
}

impl Pipeline {
    pub fn new(config: &Config, links: Links) -> Result<Self, PipelineError> {
        let mut network = NetworkRules::builtin()?;
        network.set_expected_clients(
            "t1609.runtime_socket_access",
            &config.network.expected_clients,
        );
        let tuning = Tuning::new(config.exceptions.clone(), config.context.dedup_window_ms)?;
        let context = Context::new(
            &config.context,
            &config.host.root,
            &config.host.proc,
            links.runtimes,
        );
        links
            .counters
            .set(Counter::ProcessTable, context.table.len() as u64);
        Ok(Self {
            engine: links.engine,
            repeats: Repeats::new(links.recorder.is_none()),
            pending_metadata: PendingMetadata::default(),
            followups: tuning
                .dedup_enabled()
                .then(|| FirstAlerts::new(config.context.dedup_kept_alerts)),
            targets: context.targets(),
            context,
            recorder: links.recorder,
            sessions: Sessions::default(),
            session_window: Duration::from_millis(config.session.window_ms),
            tuning,
            links: AlertLinks::default(),
            network,
            emitter: links.emitter,
            counters: links.counters,
            control: links.control,
            proc_root: config.host.proc.clone(),
            next_housekeeping: Instant::now() + HOUSEKEEPING_EVERY,
            next_heap_release: Instant::now() + HEAP_RELEASE_EVERY,
            identity: links.identity,
        })
    }

    /// The host's name, as every alert carries it.
    pub fn hostname(&self) -> Option<&str> {
        self.context.host.hostname.as_deref()
    }

    /// Handles a drained batch; `handled` gets what became of each exec, in order.
    pub fn handle(&mut self, batch: &[Captured], handled: &mut Vec<Handled>) {
        handled.clear();
        self.release_held(false);
        for captured in batch {
            match captured {
                // 0. identity: a new file's first exec may wait for its verdict.
                Captured::Exec(exec) if self.identity.admit(exec, Instant::now()) => {
                    handled.push(Handled::default());
                }
                Captured::Exec(exec) => handled.push(self.on_exec(exec)),
                Captured::Net(net) => self.on_net(net),
                Captured::Task(task) => self.on_task(task),
            }
        }
        if !batch.is_empty()
            && let Some(rec) = self.recorder.as_mut()
        {
            rec.flush();
        }
    }

    /// The exec path (see the module docs for the steps).
    fn on_exec(&mut self, exec: &CapturedExec) -> Handled {
        self.counters.inc(Counter::EventsCaptured);
        let now = Instant::now();
        let engine = self.engine.borrow().clone();
        // 1. shortcut
        let c = &self.counters;
        if self.repeats.replay(
            exec,
            &engine,
            &mut self.context,
            &mut self.tuning,
            &mut self.links,
            c,
            now,
        ) {
            return Handled {
                replayed: true,
                alerts: 0,
            };
        }
        // 2. event
        let (mut event, ctx) = self.context.build(exec, &engine);
        self.identity.annotate_event(&mut event);
        // The session leader, read from /proc once, only if something is written.
        let leader = OnceCell::new();
        // 3. record
        let member = exec.session != 0 && !exec.session_root;
        // An exec reported only so that its file be classified, and not a tool, is no
        // watched exec: not recorded, though the rules still judge it by argument shape.
        let recorded = self.recorder.is_some() && !self.identity.reported_for_nothing(exec);
        let doc = (recorded || member).then(|| self.event_document(exec, &event, &ctx, &leader));
        if let (true, Some(rec), Some(doc)) = (recorded, self.recorder.as_mut(), &doc) {
            rec.write(doc);
        }
        // 4. session
        let folds_into = match self.sessions.on_exec(exec, &event, doc.as_ref(), now) {
            SessionStep::Started { folds_into } => {
                self.counters.inc(Counter::Sessions);
                folds_into
            }
            SessionStep::NotInjection => {
                let _ = self.control.send(Control::EndSession(exec.session));
                None
            }
            SessionStep::Nothing => None,
        };
        // 5. evaluate, 6. triage, 7. emit
        let mut fates = Fates {
            read_extras: ctx.extras_read,
            ..Fates::default()
        };
        let mut emitted = 0;
        let mut judged = Judged::new(&event, &ctx);
        for alert in self.identity.evaluate(&engine, exec, &event) {
            if let Some(pending) = &folds_into {
                // The runtime exec that carries out an alerted docker/kubectl exec is its
                // mechanism, not a second incident: it appears in the session alert.
                debug!(rule = %alert.rule_id, linked = %pending.event_id, "folded runtime exec alert into its session");
                self.counters.inc(Counter::Folded);
                fates.emitted_or_folded = true;
                continue;
            }
            let group = alert.group_id.as_deref().unwrap_or(&alert.event_id);
            let link: (Arc<str>, Arc<str>) = (group.into(), alert.event_id.as_str().into());
            self.links
                .remember(exec.tgid, link.0.clone(), link.1.clone(), now);
            fates.link = Some(link);
            match self.tuning.triage(
                &alert.rule_id,
                &mut judged,
                time::OffsetDateTime::now_utc(),
                Instant::now(),
            ) {
                Triage::Suppressed => {
                    self.counters.inc(Counter::Suppressed);
                    fates.suppressed += 1;
                }
                Triage::Repeat(key) => {
                    self.counters.inc(Counter::Deduplicated);
                    fates.repeated.push(key);
                }
                Triage::Emit { verdict, key } => {
                    fates.emitted_or_folded = true;
                    emitted += 1;
                    let leader = *leader.get_or_init(|| self.context.session_leader(exec.tgid));
                    self.emit(&alert, &ctx, leader, &verdict, key, now);
                }
            }
        }
        // 8. remember for repeats
        self.repeats
            .remember_fates(&engine, exec, &self.context.table, fates, now);
        Handled {
            replayed: false,
            alerts: emitted,
        }
    }

    /// The exec's own ECS event document, for `--record` and session summaries.
    fn event_document(
        &self,
        exec: &CapturedExec,
        event: &ProcessEvent,
        ctx: &ExecContext,
        leader: &OnceCell<Option<u32>>,
    ) -> Value {
        let mut doc = event.to_ecs();
        let leader = *leader.get_or_init(|| self.context.session_leader(exec.tgid));
        self.context.augment(&mut doc, ctx, leader);
        if exec.session != 0
            && let Some(t) = doc.get_mut("t1609").and_then(Value::as_object_mut)
        {
            t.insert("session_id".into(), json!(format!("{:x}", exec.session)));
            t.insert("session_root".into(), json!(exec.session_root));
        }
        doc
    }

    /// Step 7: the alert's document, written once as text with what the agent adds (the
    /// exec's context, the exceptions' verdict, the exec's target), the sinks, the session
    /// it expects, the late container name it waits for, and the follow-up's copy.
    fn emit(
        &mut self,
        alert: &Alert,
        ctx: &ExecContext,
        leader: Option<u32>,
        verdict: &Verdict,
        key: DedupKey,
        now: Instant,
    ) {
        let exec = self.context.fields(ctx, leader);
        let target = self.targets.resolve(alert.argv.as_deref());
        let identified = self.identity.alert_fields();
        let fields = (&exec, verdict, &target, &identified);
        let sent = self.emitter.emit_alert(alert, &fields);
        match sent.parsed() {
            // Built as a document (kubectl): the correlator may have regrouped it.
            Some(doc) => self.pending_metadata.note(doc, now),
            None => {
                if let Some(id) = exec.pending_container() {
                    let group = alert.group_id.as_deref().unwrap_or(&alert.event_id);
                    self.pending_metadata.note_pending(
                        id,
                        group,
                        &alert.event_id,
                        &alert.rule_id,
                        now,
                    );
                }
            }
        }
        if let Some(first) = self.followups.as_mut() {
            first.remember(key, &sent, Some((alert, &fields)));
        }
        let Target {
            key, is_exec, tool, ..
        } = target;
        if is_exec {
            self.sessions.expect(PendingExec {
                group_id: alert
                    .group_id
                    .clone()
                    .unwrap_or_else(|| alert.event_id.clone()),
                event_id: alert.event_id.clone(),
                at: now,
                target: key,
                tool,
            });
        }
    }

    /// Held execs whose verdict arrived or whose hold ran out (all of them, with `all`:
    /// the stop), through the exec path.
    fn release_held(&mut self, all: bool) {
        while let Some(exec) = self.identity.release(Instant::now(), all) {
            self.on_exec(&exec);
        }
    }

    /// Whether execs wait for their file's verdict (the hot path then wakes sooner).
    pub fn holding(&self) -> bool {
        self.identity.holding()
    }

    pub fn on_net(&mut self, net: &CapturedNet) {
        self.counters.inc(Counter::NetEventsCaptured);
        let mut proc = network::read_process(&self.proc_root, net.tgid);
        proc.user_name = self.context.user_name(net.uid);
        let name = proc.name(&net.comm);
        let now = Instant::now();
        let rules: Vec<_> = self
            .network
            .matching(net, &name)
            .into_iter()
            .cloned()
            .collect();
        for rule in rules {
            let (group_id, related) = match self.links.lookup(net.tgid, now) {
                Some((g, e)) => (g.to_owned(), Some(e.to_owned())),
                None => (new_id(), None),
            };
            let links = NetAlertLinks {
                timestamp: self.context.host.clock.rfc3339(net.ktime_ns),
                group_id,
                related: related.as_deref(),
                host: self.context.host.hostname.as_deref(),
            };
            self.emitter
                .emit(network::alert_doc(&rule, net, &proc, links));
        }
    }

    pub fn on_task(&mut self, task: &TaskEvent) {
        if task.exited {
            self.sessions.exited(task.session, task.tgid);
            self.context.on_exit(task.tgid);
        } else if let Some(parent) = task.parent_tgid {
            self.context.on_fork(parent, task.tgid, task.ktime_ns);
        }
    }

    /// The timed work, every [`PERIOD`] ([`IDLE_PERIOD`] when [`Pipeline::idle`]):
    /// sessions whose window closed, dedup windows that closed (a few at a time, so a
    /// stream of distinct alerts frees its kept first alerts as it goes), and every
    /// second the process table's housekeeping.
    pub fn periodic(&mut self) {
        self.release_held(false);
        if !self.sessions.is_empty() {
            self.flush_sessions(false);
        }
        self.late_metadata();
        self.close_windows(false);
        let now = Instant::now();
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING_EVERY;
            self.housekeeping();
        }
        if now >= self.next_heap_release {
            self.next_heap_release = now + HEAP_RELEASE_EVERY;
            release_free_heap();
        }
    }

    /// Whether nothing waits on the timed work: no session, dedup window, alert waiting
    /// for its container's name, or held exec.
    pub fn idle(&self) -> bool {
        self.sessions.is_empty()
            && !self.tuning.windows_open()
            && self.pending_metadata.is_empty()
            && !self.identity.holding()
            && self.followups.as_ref().is_none_or(FirstAlerts::is_empty)
    }

    /// At the stop: every session and dedup window gets its alert before the agent goes.
    pub fn finish(&mut self) {
        // Held execs get the verdicts they wait for (each waits at most `hold_ms`): a stop
        // does not judge a renamed tool by its name.
        while self.identity.holding() {
            std::thread::sleep(hot_path::HOLD_POLL);
            self.release_held(false);
        }
        self.release_held(true);
        self.flush_sessions(true);
        self.close_windows(true);
        self.housekeeping();
        if let Some(rec) = self.recorder.as_mut() {
            rec.flush();
        }
    }

    /// Follow-ups naming the containers the runtimes have named since alerts on them
    /// said `metadata_pending`.
    fn late_metadata(&mut self) {
        let answered = self.context.runtimes().take_answered();
        if answered.is_empty() || self.pending_metadata.is_empty() {
            return;
        }
        let now = Instant::now();
        for info in answered {
            let host = self.context.host.hostname.as_deref();
            for doc in self.pending_metadata.answered(&info, host, now) {
                self.counters.inc(Counter::MetadataFollowUps);
                self.emitter.emit(doc);
            }
        }
    }

    /// Follow-up alerts for the dedup windows that closed (`all`: every open one).
    fn close_windows(&mut self, all: bool) {
        let closed = self.tuning.closed_windows(Instant::now(), all);
        let Some(first) = self.followups.as_mut().filter(|_| !closed.is_empty()) else {
            return;
        };
        let now = now_rfc3339();
        for (key, count) in closed {
            if let Some((mut doc, detail)) = first.close(&key, count, Some(&now)) {
                // The whole and lean copies carry the first alert's host.
                if detail == Detail::Key {
                    doc["host"]["hostname"] = json!(self.context.host.hostname);
                }
                self.counters.inc(detail.counter());
                self.emitter.emit(doc);
            }
        }
    }

    /// Process table housekeeping, and the gauges of what the pipeline holds.
    fn housekeeping(&mut self) {
        if let Some(first) = &self.followups {
            self.counters
                .set(Counter::FirstAlertsKept, first.len() as u64);
        }
        self.context.housekeeping();
        let c = &self.counters;
        c.set(Counter::ProcessTable, self.context.table.len() as u64);
        c.set(Counter::CgroupReadsSaved, self.context.cgroup_reads_saved());
        c.set(Counter::CwdReadsSaved, self.context.cwd_reads_saved);
    }

    fn flush_sessions(&mut self, all: bool) {
        let window = if all {
            Duration::ZERO
        } else {
            self.session_window
        };
        for s in self.sessions.take_due(window, Instant::now()) {
            // Nothing ran that the probes saw: the host-side alert already says it all.
            if s.commands.is_empty() {
                continue;
            }
            let mut doc = session_alert(&s, self.context.host.hostname.as_deref());
            // Named by the runtime: the injected process's container, else runc's target.
            let id = doc["container"]["id"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| s.container_hint.clone());
            if let Some(id) = id {
                doc["container"]["id"] = json!(id);
                let meta = self.context.runtimes().container(&id);
                t1609_context::write_ecs(&mut doc, &meta, None);
            }
            let sent = self.emitter.emit(doc);
            self.pending_metadata.note(sent.doc(), Instant::now());
        }
    }
}
