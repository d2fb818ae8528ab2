//! t1609-agent: catches MITRE ATT&CK T1609 (Container Administration Command) on Linux
//! hosts. Stages, one module each: capture → decode → enrich → detect (t1609-detect) →
//! deliver.

pub mod capture;
pub mod config;
pub mod context;
pub mod daemon;
pub mod decode;
pub mod deliver;
pub mod enrich;
pub mod metrics;
pub mod network;
pub mod privilege;
pub mod repeat;
pub mod replay;
pub mod session;
pub mod summary;
