//! Every counter and gauge of the agent, defined once. [`Counter`] names a value,
//! [`DEFS`] says how it is shown (metric name and help, key on the stop line), and
//! [`Counters`] holds the values: the reader and the pipeline add to them on the hot
//! path (relaxed atomics), the main loop stores the kernel's and the gauges. The metrics
//! endpoint and the stop line both render one [`Snapshot`] of them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

/// How a value is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (Prometheus `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One value the agent counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    EventsCaptured,
    NetEventsCaptured,
    Alerts,
    Suppressed,
    Deduplicated,
    Folded,
    Sessions,
    RepeatsReplayed,
    CgroupReadsSaved,
    CwdReadsSaved,
    SummariesWhole,
    SummariesLean,
    SummariesKey,
    RingbufLost,
    ArgvChunksLost,
    KernelReadErrors,
    KernelMatched,
    DecodeErrors,
    OrphanChunks,
    RingWakeups,
    PollTicks,
    QuietDrains,
    QuietLateAlerts,
    ProcessTable,
    FirstAlertsKept,
    KernelExeFirst,
    KernelExeTool,
    KernelExeUnread,
    KernelExePendingFailed,
    IdentityQueued,
    IdentityFromCache,
    IdentityAlreadyQueued,
    IdentityQueueFull,
    IdentityExeUnavailable,
    IdentityVerdictsTool,
    IdentityVerdictsNotTool,
    IdentityVerdictsFailed,
    IdentityVerdictsChanged,
    IdentityVerdictWriteErrors,
    IdentityHeld,
    IdentityHoldTimeouts,
    IdentityHoldFull,
    IdentityInstalledTools,
    MetadataFollowUps,
    RuntimeHits,
    RuntimePending,
    RuntimeErrors,
    RuntimeEvents,
    RuntimeContainers,
    RuntimeEndpointsUp,
}

/// How one [`Counter`] is shown.
#[derive(Clone, Copy, Debug)]
pub struct Def {
    pub counter: Counter,
    pub kind: Kind,
    /// Metric name after the `t1609_` prefix (counters get `_total`).
    pub metric: &'static str,
    /// A `(name, value)` label, for values that share one metric.
    pub label: Option<(&'static str, &'static str)>,
    pub help: &'static str,
    /// Key on the stop line (`key=value`), if it is there.
    pub stop_key: Option<&'static str>,
}

const fn def(
    counter: Counter,
    kind: Kind,
    metric: &'static str,
    help: &'static str,
    stop_key: Option<&'static str>,
) -> Def {
    Def {
        counter,
        kind,
        metric,
        label: None,
        help,
        stop_key,
    }
}

/// One value of a labelled counter family (`metric{name="value"}`).
const fn labelled(
    counter: Counter,
    metric: &'static str,
    label: (&'static str, &'static str),
    help: &'static str,
    stop_key: Option<&'static str>,
) -> Def {
    Def {
        counter,
        kind: Kind::Counter,
        metric,
        label: Some(label),
        help,
        stop_key,
    }
}

const EXE_REPORTS: &str = "Execs the probe reported for what their file is, not their name: the first exec of a file with no verdict, or a file the verdict or installed-tool map calls a tool";
const IDENTITY_JOBS: &str = "Executed files handed to classification, by outcome (queue_full and exe_unavailable are skipped; the probe reports the file again 10 s later)";
const IDENTITY_VERDICTS: &str = "Classification verdicts, by result (written into the probe's verdict map unless failed, changed or write_error)";
const IDENTITY_HOLDS: &str = "First execs of unclassified files held for their verdict, and how holds ended early or could not start";

const fn summaries(counter: Counter, detail: &'static str, stop_key: &'static str) -> Def {
    Def {
        counter,
        kind: Kind::Counter,
        metric: "repeat_summaries",
        label: Some(("detail", detail)),
        help: "Repeat follow-ups by how much of the first alert they carry (lean and key past the memory bound)",
        stop_key: Some(stop_key),
    }
}

use Counter as C;
use Kind::{Counter as Count, Gauge};

/// In [`Counter`] order (a test checks it).
pub const DEFS: [Def; 50] = [
    def(
        C::EventsCaptured,
        Count,
        "events_captured",
        "Exec events captured by the kernel probe",
        Some("events"),
    ),
    def(
        C::NetEventsCaptured,
        Count,
        "network_events_captured",
        "Watched connects captured",
        Some("net_events"),
    ),
    def(
        C::Alerts,
        Count,
        "alerts_raised",
        "Alerts raised (by rule: t1609_alerts_total)",
        Some("alerts"),
    ),
    def(
        C::Suppressed,
        Count,
        "alerts_suppressed",
        "Alerts suppressed by exceptions",
        Some("suppressed"),
    ),
    def(
        C::Deduplicated,
        Count,
        "alerts_deduplicated",
        "Alerts folded into an earlier identical one",
        Some("deduplicated"),
    ),
    def(
        C::Folded,
        Count,
        "alerts_folded",
        "Alerts on a runtime exec folded into the host-side alert it carries out",
        Some("folded"),
    ),
    def(
        C::Sessions,
        Count,
        "injected_sessions",
        "Sessions opened by a runtime exec or nsenter that injects a process",
        Some("sessions"),
    ),
    def(
        C::RepeatsReplayed,
        Count,
        "exec_repeats_replayed",
        "Execs identical to a recent one whose outcome was replayed without re-evaluating the rules",
        Some("repeats_replayed"),
    ),
    def(
        C::CgroupReadsSaved,
        Count,
        "cgroup_reads_saved",
        "Execs whose cgroups came from the parent's css_set instead of /proc",
        Some("cgroup_reads_saved"),
    ),
    def(
        C::CwdReadsSaved,
        Count,
        "cwd_reads_saved",
        "Execs whose working directory came from the parent instead of /proc",
        Some("cwd_reads_saved"),
    ),
    summaries(C::SummariesWhole, "whole", "repeat_summaries_whole"),
    summaries(C::SummariesLean, "lean", "repeat_summaries_lean"),
    summaries(C::SummariesKey, "key", "repeat_summaries_key"),
    def(
        C::RingbufLost,
        Count,
        "ringbuf_lost_events",
        "Exec events the kernel could not queue (ring buffer full)",
        Some("lost_events"),
    ),
    def(
        C::ArgvChunksLost,
        Count,
        "ringbuf_lost_argv_chunks",
        "argv continuation records lost",
        Some("lost_argv_chunks"),
    ),
    def(
        C::KernelReadErrors,
        Count,
        "kernel_read_errors",
        "Failed kernel reads in the probes",
        Some("kernel_read_errors"),
    ),
    def(
        C::KernelMatched,
        Count,
        "kernel_matched_events",
        "Execs the exec probe reported",
        Some("kernel_matched"),
    ),
    def(
        C::DecodeErrors,
        Count,
        "decode_errors",
        "Ring-buffer records that could not be decoded",
        Some("decode_errors"),
    ),
    def(
        C::OrphanChunks,
        Count,
        "orphan_argv_chunks",
        "argv continuation records whose exec record was not seen",
        Some("orphan_chunks"),
    ),
    def(
        C::RingWakeups,
        Count,
        "reader_ring_wakeups",
        "Times the ring-buffer reader woke on its fd outside a burst",
        Some("reader_ring_wakeups"),
    ),
    def(
        C::PollTicks,
        Count,
        "reader_poll_ticks",
        "Drains of the ring buffer on the reader's tick while events flow",
        Some("reader_poll_ticks"),
    ),
    def(
        C::QuietDrains,
        Count,
        "reader_quiet_drains",
        "Drains on the quiet mode's timer while a stream of exact repeats lasts",
        Some("reader_quiet_drains"),
    ),
    def(
        C::QuietLateAlerts,
        Count,
        "reader_quiet_late_alerts",
        "Alerts from execs the quiet mode's timer found more than 5 ms after they ran (delayed up to 50 ms)",
        Some("reader_quiet_late_alerts"),
    ),
    def(
        C::ProcessTable,
        Gauge,
        "process_table_entries",
        "Processes in the process table",
        None,
    ),
    def(
        C::FirstAlertsKept,
        Gauge,
        "dedup_first_alerts_kept",
        "Open dedup windows whose first alert is kept for its repeat follow-up",
        None,
    ),
    labelled(
        C::KernelExeFirst,
        "exe_reports",
        ("reason", "first"),
        EXE_REPORTS,
        Some("exe_first_reports"),
    ),
    labelled(
        C::KernelExeTool,
        "exe_reports",
        ("reason", "tool"),
        EXE_REPORTS,
        Some("exe_tool_reports"),
    ),
    def(
        C::KernelExeUnread,
        Count,
        "exe_identity_unread",
        "Execs whose file identity the probe could not read",
        Some("exe_unread"),
    ),
    def(
        C::KernelExePendingFailed,
        Count,
        "exe_pending_insert_failures",
        "New files the probe could not mark pending in its verdict map (not reported)",
        Some("exe_pending_failures"),
    ),
    labelled(
        C::IdentityQueued,
        "identity_jobs",
        ("outcome", "queued"),
        IDENTITY_JOBS,
        Some("identity_queued"),
    ),
    labelled(
        C::IdentityFromCache,
        "identity_jobs",
        ("outcome", "cached"),
        IDENTITY_JOBS,
        None,
    ),
    labelled(
        C::IdentityAlreadyQueued,
        "identity_jobs",
        ("outcome", "already_queued"),
        IDENTITY_JOBS,
        None,
    ),
    labelled(
        C::IdentityQueueFull,
        "identity_jobs",
        ("outcome", "queue_full"),
        IDENTITY_JOBS,
        Some("identity_queue_full"),
    ),
    labelled(
        C::IdentityExeUnavailable,
        "identity_jobs",
        ("outcome", "exe_unavailable"),
        IDENTITY_JOBS,
        Some("identity_exe_unavailable"),
    ),
    labelled(
        C::IdentityVerdictsTool,
        "identity_verdicts",
        ("result", "tool"),
        IDENTITY_VERDICTS,
        Some("identity_tools_found"),
    ),
    labelled(
        C::IdentityVerdictsNotTool,
        "identity_verdicts",
        ("result", "not_tool"),
        IDENTITY_VERDICTS,
        None,
    ),
    labelled(
        C::IdentityVerdictsFailed,
        "identity_verdicts",
        ("result", "failed"),
        IDENTITY_VERDICTS,
        Some("identity_failed"),
    ),
    labelled(
        C::IdentityVerdictsChanged,
        "identity_verdicts",
        ("result", "changed"),
        IDENTITY_VERDICTS,
        None,
    ),
    labelled(
        C::IdentityVerdictWriteErrors,
        "identity_verdicts",
        ("result", "write_error"),
        IDENTITY_VERDICTS,
        None,
    ),
    labelled(
        C::IdentityHeld,
        "identity_holds",
        ("outcome", "held"),
        IDENTITY_HOLDS,
        Some("identity_held"),
    ),
    labelled(
        C::IdentityHoldTimeouts,
        "identity_holds",
        ("outcome", "timed_out"),
        IDENTITY_HOLDS,
        Some("identity_hold_timeouts"),
    ),
    labelled(
        C::IdentityHoldFull,
        "identity_holds",
        ("outcome", "full"),
        IDENTITY_HOLDS,
        None,
    ),
    def(
        C::IdentityInstalledTools,
        Gauge,
        "identity_installed_tools",
        "Installed tools in the probe's inode map (clients and runtimes found at start-up or reload)",
        None,
    ),
    def(
        C::MetadataFollowUps,
        Count,
        "container_metadata_follow_ups",
        "Follow-ups naming the container of an earlier alert once its runtime answered",
        Some("metadata_follow_ups"),
    ),
    def(
        C::RuntimeHits,
        Count,
        "runtime_metadata_hits",
        "Container and target reads the runtimes' cache answered",
        Some("runtime_hits"),
    ),
    def(
        C::RuntimePending,
        Count,
        "runtime_metadata_pending",
        "Container and target reads the runtimes' cache could not answer (the alert says metadata_pending and why)",
        Some("runtime_pending"),
    ),
    def(
        C::RuntimeErrors,
        Count,
        "runtime_errors",
        "Calls to a container runtime that failed or timed out",
        Some("runtime_errors"),
    ),
    def(
        C::RuntimeEvents,
        Count,
        "runtime_events",
        "Container events received from the runtimes' event streams",
        None,
    ),
    def(
        C::RuntimeContainers,
        Gauge,
        "runtime_containers",
        "Containers (and pod sandboxes) in the runtimes' cache",
        None,
    ),
    def(
        C::RuntimeEndpointsUp,
        Gauge,
        "runtime_endpoints_up",
        "Container runtime endpoints answering",
        None,
    ),
];

const LEN: usize = DEFS.len();

impl Counter {
    pub fn def(self) -> &'static Def {
        &DEFS[self as usize]
    }
}

/// The agent's values, shared by the threads that update them.
#[derive(Debug)]
pub struct Counters {
    values: [AtomicU64; LEN],
    /// Alerts raised, by rule id.
    by_rule: Mutex<BTreeMap<String, u64>>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            by_rule: Mutex::default(),
        }
    }
}

impl Counters {
    pub fn add(&self, counter: Counter, n: u64) {
        self.values[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Stores a gauge, or a counter kept elsewhere (the kernel's, a stage's own).
    pub fn set(&self, counter: Counter, value: u64) {
        self.values[counter as usize].store(value, Ordering::Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }

    /// Counts one alert of `rule`.
    pub fn alert(&self, rule: &str) {
        self.inc(Counter::Alerts);
        let mut m = self.by_rule.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get_mut(rule) {
            Some(n) => *n += 1,
            None => {
                m.insert(rule.to_owned(), 1);
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            values: std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed)),
            alerts_by_rule: self
                .by_rule
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The values at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    values: [u64; LEN],
    pub alerts_by_rule: BTreeMap<String, u64>,
}

// By hand: `Default` is derived for arrays of at most 32.
impl Default for Snapshot {
    fn default() -> Self {
        Self {
            values: [0; LEN],
            alerts_by_rule: BTreeMap::new(),
        }
    }
}

impl Snapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// Every value with its definition, in [`DEFS`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static Def, u64)> + '_ {
        DEFS.iter().zip(self.values)
    }

    /// `key=value` for every value on the stop line, space-separated.
    pub fn stop_line(&self) -> String {
        let mut line = String::new();
        for (d, v) in self.iter() {
            if let Some(key) = d.stop_key {
                let sep = if line.is_empty() { "" } else { " " };
                let _ = write!(line, "{sep}{key}={v}");
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defs_are_in_counter_order_with_unique_names() {
        for (i, d) in DEFS.iter().enumerate() {
            assert_eq!(d.counter as usize, i, "{:?} is out of place", d.counter);
        }
        let mut seen = std::collections::HashSet::new();
        for d in &DEFS {
            assert!(seen.insert((d.metric, d.label)), "{} shown twice", d.metric);
            if let Some(k) = d.stop_key {
                assert!(seen.insert((k, Some(("stop", k)))), "stop key {k} twice");
            }
        }
    }

    #[test]
    fn counts_render_on_the_stop_line() {
        let c = Counters::default();
        c.add(Counter::EventsCaptured, 5);
        c.alert("t1609.container_exec");
        c.alert("t1609.container_exec");
        c.set(Counter::ProcessTable, 9);
        let s = c.snapshot();
        assert_eq!(s.get(Counter::Alerts), 2);
        assert_eq!(s.alerts_by_rule["t1609.container_exec"], 2);
        let line = s.stop_line();
        assert!(line.starts_with("events=5 "), "{line}");
        assert!(line.contains(" alerts=2 "), "{line}");
        assert!(line.contains(" reader_quiet_late_alerts=0"), "{line}");
        assert!(
            !line.contains("process_table"),
            "gauges stay off it: {line}"
        );
    }

    /// docs/metrics.md is what operators read: every value must be in it, under the name
    /// and stop-line key the agent uses.
    #[test]
    fn every_value_is_documented() {
        let doc = include_str!("../../docs/metrics.md");
        for d in &DEFS {
            assert!(
                doc.contains(&format!("`t1609_{}", d.metric)),
                "{} missing from docs/metrics.md",
                d.metric
            );
            if let Some(k) = d.stop_key {
                let k = k
                    .strip_prefix("repeat_summaries")
                    .map_or(k, |_| "repeat_summaries_whole");
                assert!(
                    doc.contains(&format!("`{k}`")),
                    "stop key {k} missing from docs/metrics.md"
                );
            }
        }
    }
}
