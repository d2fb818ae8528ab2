//! Detection engine of t1609-agent: MITRE ATT&CK T1609 (Container Administration
//! Command) from process exec events.
//!
//! - [`event`]: the ECS process event, its record format and parser;
//! - [`eql`]: the EQL subset (`process where <condition>`);
//! - [`sigma`]: Sigma `process_creation` rules (rsigma);
//! - [`argv`]: structured argv parsing of container tools, kubelet clients and wrappers;
//! - [`rules`]: what a loaded rule is; `load` reads the TOML and Sigma rule files, and
//!   the shipped pack `rules/t1609.toml`;
//! - [`engine`]: rule index, evaluation, watch set; [`alert`]: ECS alerts;
//! - [`replay`](mod@replay): offline evaluation of recorded events.

pub mod alert;
pub mod argv;
pub mod engine;
pub mod eql;
pub mod event;
mod fastjson;
mod load;
pub mod replay;
mod reuse;
pub mod rules;
pub mod sigma;

pub use alert::Alert;
pub use engine::{Engine, WatchSet};
pub use event::{EventError, ProcessEvent};
pub use replay::{ReplaySummary, replay};
pub use rules::RuleError;
pub use t1609_ecs::{Confidence, Severity, digest, new_id, now_rfc3339};

/// Validates the built-in pack plus `paths` (files or directories), returning the number
/// of rules, or every error found.
pub fn check_rules(paths: &[std::path::PathBuf]) -> Result<usize, Vec<RuleError>> {
    load::load_all(paths).map(|r| r.len())
}
