//! Detection engine of t1609-agent: MITRE ATT&CK T1609 (Container Administration
//! Command) from process exec events.
//!
//! - [`event`]: the ECS process event (exec or exit), its record format and parser;
//! - [`eql`]: the EQL subset (`process where <condition>`), with Elasticsearch's
//!   semantics, and the field registry;
//! - [`sigma`]: Sigma `process_creation` rules (rsigma), translated into EQL conditions;
//! - [`argv`]: structured argv parsing of container tools, kubelet clients and wrappers;
//! - [`rules`]: what a loaded rule is; `load` reads our TOML, Elastic's detection-rules
//!   TOML and Sigma rule files, and the shipped pack `rules/t1609.toml`;
//! - `index`: the literal index (which rules an event can match);
//! - [`engine`]: rules per kind of event, evaluation, watch set; [`alert`]: ECS alerts,
//!   written as JSON text by a hand-written writer (`Alert::write_json`) to which other
//!   crates add fields ([`AlertFields`]);
//! - [`witness`]: example events built from a rule's literals;
//! - [`replay`](mod@replay): offline evaluation of recorded events.

pub mod alert;
pub mod argv;
pub mod engine;
pub mod eql;
pub mod event;
mod fastjson;
mod index;
mod load;
pub mod replay;
mod reuse;
pub mod rules;
pub mod sigma;
pub mod witness;
mod witness_regex;

pub use alert::Alert;
pub use engine::{Engine, Extras, WatchSet};
pub use event::{EventError, ProcessEvent};
pub use fastjson::{AlertFields, ExtraFields, Members};
pub use load::{SkipKind, Skipped};
pub use replay::{ReplaySummary, replay};
pub use rules::RuleError;
pub use t1609_ecs::{Confidence, Severity, digest, new_id, now_rfc3339};

/// Validates the built-in pack plus `paths` (files or directories), returning the number
/// of rules loaded, or every error found. [`check_rules_report`] also says which rules
/// were skipped and why.
pub fn check_rules(paths: &[std::path::PathBuf]) -> Result<usize, Vec<RuleError>> {
    load::load_all(paths).map(|r| r.rules.len())
}

/// What [`check_rules_report`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleReport {
    /// Rules loaded, the built-in pack included.
    pub loaded: usize,
    /// Ids of the loaded rules, by source file (`builtin:rules/t1609.toml` first).
    pub loaded_ids: Vec<(String, String)>,
    /// Rules skipped (from directories), each with its reason.
    pub skipped: Vec<Skipped>,
}

impl RuleReport {
    /// The skipped rules counted by kind, most frequent first.
    pub fn skipped_by_kind(&self) -> Vec<(SkipKind, usize)> {
        let mut m: std::collections::BTreeMap<SkipKind, usize> = std::collections::BTreeMap::new();
        for s in &self.skipped {
            *m.entry(s.kind).or_default() += 1;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// [`check_rules`], with the loaded and the skipped rules.
pub fn check_rules_report(paths: &[std::path::PathBuf]) -> Result<RuleReport, Vec<RuleError>> {
    let l = load::load_all(paths)?;
    Ok(RuleReport {
        loaded: l.rules.len(),
        loaded_ids: l
            .rules
            .iter()
            .map(|r| (r.meta.source.clone(), r.meta.id.clone()))
            .collect(),
        skipped: l.skipped,
    })
}
