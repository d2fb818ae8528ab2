//! `t1609-agent replay`: recorded ECS process events and Kubernetes audit events through
//! the same engines as live mode, then the same exceptions and deduplication (at each
//! event's own time), alerts to stdout.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{config::Config, context::Tuning};

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
    first_alerts: crate::summary::FirstAlerts,
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
        for (key, count) in self.tuning.closed_windows(mono) {
            self.close_window(&key, count)?;
        }
        let ancestry = crate::context::ancestry_from_doc(&doc);
        let unit = doc["t1609"]["systemd_unit"].as_str().map(str::to_owned);
        if !self.tuning.tune(&mut doc, &ancestry, unit.as_deref(), at) {
            self.suppressed += 1;
            return Ok(());
        }
        if !self.tuning.first_of_kind(&doc, mono) {
            self.deduplicated += 1;
            return Ok(());
        }
        self.written += 1;
        serde_json::to_writer(&mut self.out, &doc)?;
        self.out.write_all(b"\n")?;
        if self.tuning.dedup_enabled() {
            let key = crate::context::dedup_key(&doc);
            self.first_alerts.remember(key, &std::sync::Arc::new(doc));
        }
        Ok(())
    }

    fn close_window(&mut self, key: &t1609_context::DedupKey, count: u64) -> std::io::Result<()> {
        let id = |first: &str| match first {
            "" => "alert-repeat".to_owned(),
            first => format!("{first}-repeat"),
        };
        // The follow-up keeps its first alert's time: replay has no clock of its own.
        if let Some((doc, _)) = self.first_alerts.close(key, count, id, None) {
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
        for (key, count) in self.tuning.all_windows() {
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
) -> anyhow::Result<ReplayOutcome> {
    let mut all_rules = config.rules.paths.clone();
    all_rules.extend(rules.iter().cloned());
    let engine = t1609_detect::Engine::load(&all_rules)
        .map_err(|e| anyhow::anyhow!("loading rules: {e}"))?;
    let audit = t1609_k8saudit::AuditRules::load(&config.audit.rule_files)
        .map_err(|e| anyhow::anyhow!("loading audit rules: {e}"))?;
    let mut tuning = Tuning::new(config.exceptions.clone(), config.context.dedup_window_ms)?;
    let mut tuned = TunedOutput {
        out,
        tuning: &mut tuning,
        buf: Vec::new(),
        base: None,
        suppressed: 0,
        deduplicated: 0,
        written: 0,
        first_alerts: crate::summary::FirstAlerts::new(config.context.dedup_kept_alerts),
    };
    // Audit events go to the audit rules; their lines are blanked for the process engine
    // so that its line numbers stay those of the file.
    let mut process_lines = String::with_capacity(text.len());
    let mut audit_alerts = 0u64;
    for line in text.lines() {
        let audit_doc = serde_json::from_str::<Value>(line).ok().filter(|v| {
            t1609_k8saudit::looks_like_audit(v) || t1609_k8saudit::looks_like_audit_list(v)
        });
        match audit_doc.map(|v| audit.evaluate_value(&v)) {
            Some(Ok(alerts)) => {
                for a in alerts {
                    writeln!(tuned, "{a}")?;
                    audit_alerts += 1;
                }
                process_lines.push('\n');
            }
            _ => {
                process_lines.push_str(line);
                process_lines.push('\n');
            }
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
