//! t1609-agent: catches MITRE ATT&CK T1609 (Container Administration Command) on Linux
//! hosts. The exec path, one stage per module, top to bottom:
//!
//! - [`capture`]: the eBPF probes, their filters, and the ring-buffer reader;
//! - [`decode`]: kernel records into typed events, length- and version-checked;
//! - [`identity`]: what each executed file is (a renamed docker is docker), classified
//!   off the hot path, the verdicts written back into the probe's map;
//! - [`pipeline`]: the steps of each exec on the hot-path thread — the repeat shortcut,
//!   the event with its [`context`], `--record`, the session, the rules (t1609-detect),
//!   [`triage`] (exceptions and dedup), emit;
//! - [`alerts`]: network, session, follow-up and loss alerts, and the emit step;
//! - [`deliver`]: the sinks (t1609-deliver).
//!
//! Around it: [`daemon`] (start-up, signals, reload, stop), [`config`], [`stats`] (every
//! counter, defined once) and [`metrics`]; [`replay`] runs recorded events through the
//! same rules and triage offline.

pub mod alerts;
pub mod capture;
pub mod config;
pub mod context;
pub mod daemon;
pub mod decode;
pub mod deliver;
pub mod identity;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod privilege;
pub mod replay;
pub mod stats;
pub mod triage;
