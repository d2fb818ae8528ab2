//! What every t1609-agent alert shares, defined once: its [`Severity`] and ECS severity
//! number, its `event.id` ([`new_id`]) and group digests ([`digest`]), its RFC 3339 time
//! stamps ([`now_rfc3339`], [`BootClock`]), its MITRE ATT&CK references ([`mitre`]), the
//! glob matcher exceptions and rule files use ([`glob_match`]), and the builder of the
//! ECS alert documents that are not rule hits ([`AlertDoc`]).
//!
//! The process-rule hits of `t1609-detect` are serialised by a typed fast path; every
//! other alert (network, session, follow-up, loss, Kubernetes audit) is built here, so
//! that all of them carry the same `event`, `rule`, `threat` and `t1609` skeleton.

mod doc;
mod glob;
mod id;
pub mod mitre;
mod severity;
mod time;

pub use doc::{AlertDoc, RuleRef};
pub use glob::glob_match;
pub use id::{Digest, digest, hex128, new_id, splitmix};
pub use mitre::{MitreRef, Threat};
pub use severity::{Confidence, Severity, UnknownSeverity};
pub use time::{BootClock, boottime_ns, now_rfc3339, rfc3339};
