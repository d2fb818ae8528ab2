//! What `run` and a reload (SIGHUP) set up from the config: the effective config, the
//! rules, the watch set, file identity, and the Kubernetes audit sources.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use t1609_detect::{
    Engine,
    eql::{Attr, Field, Who},
};
use t1609_k8saudit::{AuditRules, AuditStats, Correlator};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, error, info, warn};

use super::{DaemonError, RunArgs};
use crate::{
    capture::Capture,
    config::{CaptureMode, Config},
    context::EnvVarsCapture,
    deliver::Output,
    identity::{self, Identity, IdentityControl},
    stats::Counters,
};

/// Starts the identity stage on the probe's `VERDICTS` map and fills `INODES` with the
/// installed tools; a stage that does nothing when identity is off.
pub fn start_identity(
    config: &Config,
    capture: &mut Capture,
    counters: Arc<Counters>,
) -> Result<(Identity, Option<IdentityControl>), DaemonError> {
    let (identity, control, inodes) = identity::start(
        &config.identity,
        capture.take_verdicts(),
        &config.host.proc,
        counters,
    )?;
    capture.set_inodes(&inodes)?;
    if let Err(why) = capture.identity() {
        info!(reason = why, "file identity off: only names are watched");
    }
    Ok((identity, control))
}

/// The config file merged with the command-line overrides.
pub fn effective_config(args: &RunArgs) -> Result<Config, DaemonError> {
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
                    .map_err(|source| DaemonError::Output {
                        spec: o.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    config.validate(
        args.config_path
            .as_deref()
            .unwrap_or_else(|| Path::new("<command line>")),
    )?;
    Ok(config)
}

pub fn load_engine(config: &Config) -> Result<Engine, DaemonError> {
    let engine = Engine::load(&config.rules.paths).map_err(DaemonError::Rules)?;
    report_engine(config, &engine);
    Ok(engine)
}

/// Says at the start (and after a reload) what of the rule files will not act live: the
/// rules skipped, by kind (each one at debug level; `rules check` lists them), the
/// rules that match only exits, and those testing fields the live agent leaves empty.
fn report_engine(config: &Config, engine: &Engine) {
    let skipped = engine.skipped();
    if !skipped.is_empty() {
        let report = t1609_detect::RuleReport {
            loaded: engine.rule_count(),
            loaded_ids: Vec::new(),
            skipped: skipped.to_vec(),
        };
        let kinds: Vec<String> = report
            .skipped_by_kind()
            .iter()
            .map(|(k, n)| format!("{n} {}", k.describe()))
            .collect();
        info!(
            skipped = skipped.len(),
            by_kind = %kinds.join("; "),
            "rules skipped (the engine cannot evaluate them on process events; `t1609-agent rules check` lists each)"
        );
        for s in skipped {
            debug!("{s}");
        }
    }
    let set = engine.watch_set();
    if !set.exit_only_rules.is_empty() {
        warn!(
            rules = ?set.exit_only_rules,
            "rules that match exit events apply to replayed events only: the live agent captures execs"
        );
    }
    let entry: Vec<String> = engine
        .fields_used()
        .iter()
        .filter(|f| matches!(f, Field::Proc(Who::EntryLeader, _)))
        .map(|f| f.name())
        .collect();
    if !entry.is_empty() {
        warn!(
            fields = ?entry,
            "rules test the entry leader, which the live agent does not fill: a test for its presence never matches live"
        );
    }
    if engine.fields_used().contains(&Field::ContainerPrivileged) {
        warn!(
            field = Field::ContainerPrivileged.name(),
            "rules test a container's privileged flag, which the live agent does not fill (the runtimes do not report it): such a rule matches only replayed events"
        );
    }
    let env_rules = engine
        .fields_used()
        .contains(&Field::Proc(Who::Process, Attr::EnvVars));
    if env_rules && config.context.env_vars == EnvVarsCapture::Never {
        warn!("rules test process.env_vars, which [context] env_vars = \"never\" leaves empty");
    }
}

/// The executable names the probe reports, and whether it must report every exec.
pub fn watch_names(config: &Config, engine: &Engine) -> (BTreeSet<String>, bool) {
    let set = engine.watch_set();
    let mut names = set.names;
    names.extend(config.capture.extra_watch.iter().cloned());
    let all = config.capture.mode == CaptureMode::All || set.capture_all;
    if set.capture_all && config.capture.mode != CaptureMode::All {
        warn!(
            rules = set.capture_all_reasons.len(),
            first = set.capture_all_reasons.first().map_or("", String::as_str),
            "loaded rules can match any executable: capturing every exec (costs CPU on every exec of the host)"
        );
        for why in &set.capture_all_reasons {
            debug!("{why}");
        }
    }
    (names, all)
}

/// Starts the Kubernetes audit sources when `[audit]` configures one; their alerts go
/// through the correlator to the same sinks.
pub fn start_audit(
    config: &Config,
    correlator: Arc<Mutex<Correlator>>,
    output: Arc<Output>,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, DaemonError> {
    if config.audit.file.is_none() && config.audit.webhook.is_none() {
        return Ok(None);
    }
    let rules =
        Arc::new(AuditRules::load(&config.audit.rule_files).map_err(DaemonError::AuditRules)?);
    let stats = Arc::new(AuditStats::default());
    let (tx, mut rx) = mpsc::channel::<serde_json::Value>(1024);
    let sources = tokio::spawn(t1609_k8saudit::run_sources(
        config.audit.clone(),
        rules,
        tx,
        stats,
        stop,
    ));
    info!(
        file = config.audit.file.is_some(),
        webhook = config.audit.webhook.is_some(),
        "kubernetes audit sources started"
    );
    Ok(Some(tokio::spawn(async move {
        while let Some(mut alert) = rx.recv().await {
            correlator
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
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
