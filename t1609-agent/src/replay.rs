//! `t1609-agent replay`: recorded ECS process events and Kubernetes audit events through
//! the same engines as live mode, then the same exceptions and deduplication (at each
//! event's own time), alerts to stdout.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    alerts::followup::FirstAlerts,
    config::Config,
    context::ancestry_from_doc,
    deliver::SentAlert,
    triage::{Triage, Tuning},
};

/// Applies the tuning to each alert line the engine writes, at the alert's event time.
struct TunedOutput<'a, W: Write> {
    out: W,
    tuning: &'a mut Tuning,
    buf: Vec<u8>,
    /// Maps event times to a monotonic clock for the deduplication windows.
    base: Option<(time::OffsetDateTime, Instant)>,
    suppressed: u64,
    deduplicated: u64,
    written: u64,
    first_alerts: FirstAlerts,
}

impl<W: Write> TunedOutput<'_, W> {
    fn handle(&mut self, line: &[u8]) -> std::io::Result<()> {
        let Ok(mut doc) = serde_json::from_slice::<Value>(line) else {
            return self.out.write_all(line);
        };
        let at = doc["@timestamp"]
            .as_str()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .unwrap_or_else(time::OffsetDateTime::now_utc);
        let (t0, i0) = *self.base.get_or_insert((at, Instant::now()));
        let mono = i0 + Duration::try_from(at - t0).unwrap_or_default();
        for (key, count) in self.tuning.closed_windows(mono, false) {
            self.close_window(&key, count)?;
        }
        let ancestry = ancestry_from_doc(&doc);
        let unit = doc["t1609"]["systemd_unit"].as_str().map(str::to_owned);
        match self
            .tuning
            .triage_doc(&mut doc, &ancestry, unit.as_deref(), at, mono)
        {
            Triage::Suppressed => self.suppressed += 1,
            Triage::Repeat(_) => self.deduplicated += 1,
            Triage::Emit { key, .. } => {
                self.written += 1;
                let sent = SentAlert::new(std::sync::Arc::new(doc));
                self.out.write_all(sent.json().as_bytes())?;
                self.out.write_all(b"\n")?;
                if self.tuning.dedup_enabled() {
                    self.first_alerts.remember(key, &sent, None);
                }
            }
        }
        Ok(())
    }

    fn close_window(&mut self, key: &t1609_context::DedupKey, count: u64) -> std::io::Result<()> {
        // The follow-up keeps its first alert's time: replay has no clock of its own.
        if let Some((doc, _)) = self.first_alerts.close(key, count, None) {
            self.written += 1;
            serde_json::to_writer(&mut self.out, &doc)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.handle(&line)?;
        }
        for (key, count) in self.tuning.closed_windows(Instant::now(), true) {
            self.close_window(&key, count)?;
        }
        self.out.flush()
    }
}

impl<W: Write> Write for TunedOutput<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            self.handle(&line[..line.len() - 1])?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("loading rules: {0}")]
    Rules(#[source] t1609_detect::RuleError),
    #[error("loading audit rules: {0}")]
    AuditRules(#[source] t1609_k8saudit::RuleError),
    #[error("exceptions: {0}")]
    Exceptions(#[from] t1609_context::ExceptionError),
    #[error("writing alerts: {0}")]
    Write(#[from] std::io::Error),
}

pub struct ReplayOutcome {
    pub lines: u64,
    pub bad_lines: u64,
    pub alerts: u64,
    pub audit_alerts: u64,
    pub suppressed: u64,
    pub deduplicated: u64,
}

/// Runs the replay of `text`; alerts go to `out`, line errors to `err`.
pub fn replay(
    text: &str,
    rules: &[PathBuf],
    config: &Config,
    out: impl Write,
    err: impl Write,
) -> Result<ReplayOutcome, ReplayError> {
    let mut all_rules = config.rules.paths.clone();
    all_rules.extend(rules.iter().cloned());
    let engine = t1609_detect::Engine::load(&all_rules).map_err(ReplayError::Rules)?;
    let audit = t1609_k8saudit::AuditRules::load(&config.audit.rule_files)
        .map_err(ReplayError::AuditRules)?;
    let mut tuning = Tuning::new(config.exceptions.clone(), config.context.dedup_window_ms)?;
    let mut tuned = TunedOutput {
        out,
        tuning: &mut tuning,
        buf: Vec::new(),
        base: None,
        suppressed: 0,
        deduplicated: 0,
        written: 0,
        first_alerts: FirstAlerts::new(config.context.dedup_kept_alerts),
    };
    // Audit events go to the audit rules; their lines are blanked for the process engine
    // so that its line numbers stay those of the file.
    let mut process_lines = String::with_capacity(text.len());
    let mut audit_alerts = 0u64;
    for line in text.lines() {
        let audit_doc = serde_json::from_str::<Value>(line).ok().filter(|v| {
            t1609_k8saudit::looks_like_audit(v) || t1609_k8saudit::looks_like_audit_list(v)
        });
        if let Some(Ok(alerts)) = audit_doc.map(|v| audit.evaluate_value(&v)) {
            for a in alerts {
                writeln!(tuned, "{a}")?;
                audit_alerts += 1;
            }
            process_lines.push('\n');
        } else {
            process_lines.push_str(line);
            process_lines.push('\n');
        }
    }
    let summary = t1609_detect::replay(&engine, process_lines.as_bytes(), &mut tuned, err);
    tuned.finish()?;
    Ok(ReplayOutcome {
        lines: summary.lines,
        bad_lines: summary.bad_lines,
        alerts: tuned.written,
        audit_alerts,
        suppressed: tuned.suppressed,
        deduplicated: tuned.deduplicated,
    })
}
