//! Audit rules as data: `rules/k8s_audit.toml` (built in) plus optional extra files.
//!
//! Where things are: the rule files and their checks in `compile`, evaluating an event in
//! `eval`, the alert document in `alert`.

use std::{
    path::PathBuf,
    sync::{Mutex, PoisonError},
};

use serde_json::Value;

use crate::{
    error::RuleError,
    event::AuditEvent,
    uri::{ExecRequest, parse_exec_request},
};

mod alert;
mod compile;
mod eval;

use alert::build_alert;
pub use compile::DATASET;
use compile::{Rule, compile_sources};
use eval::Seen;
pub use t1609_ecs::Severity;

/// The rule file shipped in the crate.
pub const BUILTIN_RULES: &str = include_str!("../../rules/k8s_audit.toml");

/// Audit rules loaded from data, ready to evaluate events.
#[derive(Debug)]
pub struct AuditRules {
    rules: Vec<Rule>,
    seen: Mutex<Seen>,
}

impl AuditRules {
    /// The rules shipped in the crate (`rules/k8s_audit.toml`).
    pub fn builtin() -> Result<Self, RuleError> {
        Self::from_sources(&[("builtin:k8s_audit.toml".into(), BUILTIN_RULES.into())])
    }

    /// The built-in rules plus extra rule files. A file's `[[rule]]` with the id of a loaded
    /// rule replaces it; a file's top-level `[[exception]]` (with `rule = "<id or glob>"`)
    /// is added to the loaded rules it names.
    pub fn load(paths: &[PathBuf]) -> Result<Self, RuleError> {
        let mut sources = vec![(
            "builtin:k8s_audit.toml".to_string(),
            BUILTIN_RULES.to_string(),
        )];
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|error| RuleError::Read {
                source_name: p.display().to_string(),
                error,
            })?;
            sources.push((p.display().to_string(), text));
        }
        Self::from_sources(&sources)
    }

    /// Rules from TOML texts, in order: (source name, text).
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, RuleError> {
        Ok(AuditRules {
            rules: compile_sources(sources)?,
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The ids of the loaded (enabled) rules.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// The alerts (ECS JSON documents) that one audit event raises. A given auditID alerts
    /// once per rule, whatever the number of stages logged for it.
    pub fn evaluate(&self, ev: &AuditEvent) -> Vec<Value> {
        let mut out = Vec::new();
        let mut req: Option<ExecRequest> = None;
        for rule in &self.rules {
            if !rule.wants_stage(&ev.stage) {
                continue;
            }
            let req = req.get_or_insert_with(|| parse_exec_request(ev));
            let first_time = |rule: &str, audit_id: &str| {
                let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                seen.first_time(rule, audit_id)
            };
            if let Some(hit) = rule.evaluate(ev, req, first_time) {
                out.push(build_alert(&hit));
            }
        }
        out
    }

    /// [`evaluate`](Self::evaluate), adding the alerts to `stats.alerts`.
    pub fn evaluate_counted(
        &self,
        ev: &AuditEvent,
        stats: &crate::stats::AuditStats,
    ) -> Vec<Value> {
        let alerts = self.evaluate(ev);
        stats
            .alerts
            .fetch_add(alerts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        alerts
    }

    /// For `replay`: the alerts of a JSON value that is an audit `Event` or `EventList`
    /// (see [`looks_like_audit`](crate::looks_like_audit)).
    pub fn evaluate_value(&self, v: &Value) -> Result<Vec<Value>, crate::error::AuditError> {
        let events = if crate::event::looks_like_audit_list(v) {
            crate::event::parse_event_list(v.to_string().as_bytes())?
        } else {
            vec![crate::event::parse_event_line(&v.to_string())?]
        };
        Ok(events.iter().flat_map(|e| self.evaluate(e)).collect())
    }
}
