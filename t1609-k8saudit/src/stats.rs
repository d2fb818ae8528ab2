use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the audit data source, shared by the inputs and the rule evaluation.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Audit events parsed and passed on.
    pub events: AtomicU64,
    /// Malformed log lines or webhook bodies (never fatal).
    pub malformed: AtomicU64,
    /// Webhook requests refused for a missing or wrong bearer token.
    pub rejected_auth: AtomicU64,
    /// Webhook bodies over `max_body_bytes`.
    pub oversized: AtomicU64,
    /// Alerts produced from audit events (counted by the caller of `AuditRules::evaluate`).
    pub alerts: AtomicU64,
}

impl AuditStats {
    pub fn new() -> Self {
        Self::default()
    }
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// A plain snapshot: (`events`, `malformed`, `rejected_auth`, `oversized`, `alerts`).
    pub fn snapshot(&self) -> [u64; 5] {
        [
            self.events.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
            self.rejected_auth.load(Ordering::Relaxed),
            self.oversized.load(Ordering::Relaxed),
            self.alerts.load(Ordering::Relaxed),
        ]
    }
}
