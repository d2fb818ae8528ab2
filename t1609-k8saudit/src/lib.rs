//! Kubernetes API server audit events (`audit.k8s.io/v1`) as a second T1609 data source.
//!
//! * [`parse_event_line`] / [`parse_event_list`]: the audit log file backend's JSON lines and
//!   the webhook backend's `EventList` bodies.
//! * [`AuditRules`]: the `t1609.k8s_pod_exec` rule, shipped as data in `rules/k8s_audit.toml`.
//! * [`follow_file`] and [`serve_webhook`]: the two input modes configured by [`AuditConfig`].
//! * [`run_sources`]: both inputs and the rules together, sending alerts to a channel.
//! * [`Correlator`]: ties a `kubectl exec` process alert to the audit alert of the same exec.

mod config;
mod correlate;
mod error;
mod event;
mod file;
mod rules;
mod source;
mod stats;
mod uri;
mod webhook;

pub use config::{AuditConfig, ConfigError, FileSourceConfig, StartAt, WebhookConfig};
pub use correlate::Correlator;
pub use error::{AuditError, RuleError};
pub use event::{
    AuditEvent, AuditEventList, ObjectReference, ResponseStatus, UserInfo, looks_like_audit,
    looks_like_audit_list, parse_event_line, parse_event_list,
};
pub use file::{FileState, follow_file};
pub use rules::{AuditRules, BUILTIN_RULES, DATASET, Severity};
pub use source::run_sources;
pub use stats::AuditStats;
pub use uri::{ExecRequest, parse_exec_request, parse_query, percent_decode};
pub use webhook::{WebhookServer, serve_webhook};
