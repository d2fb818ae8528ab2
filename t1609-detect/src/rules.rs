//! What a loaded rule is: its metadata (carried into alerts), its condition (EQL or
//! Sigma), its severity overrides, and the errors a rule file can have. Reading rule
//! files is the `load` module's job.

use std::sync::Arc;

use serde_json::value::RawValue;
/// A tactic or technique of a rule (kept here under its old path).
pub use t1609_ecs::MitreRef;
use t1609_ecs::{Confidence, Severity, Threat};

use crate::{eql::Node, sigma::SigmaRule};

/// A rule file problem. Positions are 1-based, within the named file.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: duplicate rule id `{id}` (already defined in {first})")]
    Duplicate {
        file: String,
        id: String,
        first: String,
    },
    #[error("{file}: {message}")]
    Unsupported { file: String, message: String },
}

/// Rule metadata carried into alerts.
#[derive(Clone, Debug)]
pub struct RuleMeta {
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub confidence: Confidence,
    pub risk_score: u8,
    pub tactics: Vec<MitreRef>,
    pub techniques: Vec<MitreRef>,
    pub references: Vec<String>,
    pub false_positives: Vec<String>,
    /// File the rule came from (`builtin` for the shipped pack).
    pub source: String,
    /// The alert's `rule` and `threat` objects, serialised once at load time.
    pub(crate) ecs_rule: Box<RawValue>,
    pub(crate) ecs_threat: Box<RawValue>,
    /// `threat` for an alert on a tool that ran under a name that lies: the rule's,
    /// plus masquerading (T1036.003, tactic TA0005).
    pub(crate) ecs_threat_masquerade: Box<RawValue>,
}

impl RuleMeta {
    /// Fills the pre-serialised alert fragments from the other fields.
    pub(crate) fn finish(mut self) -> Self {
        let mut rule = serde_json::json!({
            "id": self.id, "name": self.name, "description": self.description, "ruleset": self.source,
        });
        if let (Some(first), Some(m)) = (self.references.first(), rule.as_object_mut()) {
            m.insert("reference".into(), serde_json::Value::String(first.clone()));
        }
        let mut threat = Threat {
            tactics: self.tactics.clone(),
            techniques: self.techniques.clone(),
        };
        let raw = |v: &serde_json::Value| {
            RawValue::from_string(v.to_string()).unwrap_or_else(|_| empty_raw())
        };
        self.ecs_rule = raw(&rule);
        self.ecs_threat = raw(&threat.to_ecs());
        let masquerade = Threat::of(&[MASQUERADE_TACTIC], &[MASQUERADE_TECHNIQUE]);
        for (have, add) in [
            (&mut threat.tactics, masquerade.tactics),
            (&mut threat.techniques, masquerade.techniques),
        ] {
            for r in add {
                if !have.iter().any(|h| h.id == r.id) {
                    have.push(r);
                }
            }
        }
        self.ecs_threat_masquerade = raw(&threat.to_ecs());
        self
    }

    /// The alert's `rule` object, as JSON text.
    pub fn ecs_rule(&self) -> &RawValue {
        &self.ecs_rule
    }

    /// The alert's `threat` object, as JSON text.
    pub fn ecs_threat(&self) -> &RawValue {
        &self.ecs_threat
    }
}

/// Masquerading: Rename Legitimate Utilities, and its tactic (Defense Evasion).
pub(crate) const MASQUERADE_TECHNIQUE: &str = "T1036.003";
pub(crate) const MASQUERADE_TACTIC: &str = "TA0005";

/// `{}`: the fragments' value until [`RuleMeta::finish`] fills them.
pub(crate) fn empty_raw() -> Box<RawValue> {
    RawValue::from_string("{}".into()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[derive(Debug)]
pub(crate) enum Condition {
    Eql(Node),
    Sigma(Box<SigmaRule>),
}

/// `severity_when`: a condition that changes the alert's severity (and risk score).
#[derive(Debug)]
pub(crate) struct SeverityOverride {
    pub cond: Node,
    pub severity: Severity,
    pub risk_score: Option<u8>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub meta: Arc<RuleMeta>,
    pub cond: Condition,
    pub overrides: Vec<SeverityOverride>,
    pub needs_argv: bool,
    /// Its executable names go into the kernel's watch set (`watch = false` in a TOML
    /// rule: evaluated only on what is captured anyway, and in replay).
    pub watch_names: bool,
}
