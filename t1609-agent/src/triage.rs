//! Triage of an alert before its document is built: the exceptions (suppress, lower,
//! tag) and deduplication (the first of identical alerts in a window is emitted, the
//! rest counted), decided in one call from the event itself, so that in a storm of
//! repeats most alerts end here for a few hundred ns. Shared by live mode and `replay`,
//! which triages alert documents at their own event time.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use t1609_context::{
    Ancestor, DedupKey, DedupOutcome, Deduper, ExceptionConfig, ExceptionError, Exceptions,
    Severity, Subject,
};
use t1609_detect::{AlertFields, Members, event::ProcessEvent};

use crate::context::ExecContext;

/// What becomes of one alert.
#[derive(Debug)]
pub enum Triage {
    /// An exception suppressed it.
    Suppressed,
    /// An identical alert is in its open dedup window: counted there.
    Repeat(DedupKey),
    /// The first of its kind: emit it, with what the exceptions say, and keep its key
    /// for the window's follow-up.
    Emit { verdict: Verdict, key: DedupKey },
}

/// The event side of triage, shared by every alert on one event: the dedup key's event
/// part (its normalized command line) is built once, on the first alert that needs it.
pub struct Judged<'a> {
    event: &'a ProcessEvent,
    ctx: &'a ExecContext,
    key: Option<DedupKey>,
}

impl<'a> Judged<'a> {
    pub fn new(event: &'a ProcessEvent, ctx: &'a ExecContext) -> Self {
        Self {
            event,
            ctx,
            key: None,
        }
    }

    fn subject<'s>(&'s self, rule_id: &'s str) -> Subject<'s> {
        let p = &self.event.process;
        Subject {
            rule_id,
            ancestors: &self.ctx.ancestry,
            user: self.event.user.name.as_deref(),
            group: self.event.group.name.as_deref(),
            parent_command_line: p.parent.as_ref().and_then(|x| x.command_line.as_deref()),
            command_line: p.command_line.as_deref(),
            container_id: self.ctx.container_id(self.event),
            // Live events carry no image: the exec's target image is under t1609.target.
            image: None,
            systemd_unit: self.ctx.cgroup.systemd_unit.as_deref(),
        }
    }

    /// The dedup key of an alert of `rule_id` on the event, equal to [`dedup_key`] of its
    /// document.
    fn key(&mut self, rule_id: &str) -> DedupKey {
        let (event, ctx) = (self.event, self.ctx);
        let shared = self.key.get_or_insert_with(|| {
            let p = &event.process;
            DedupKey::new(
                "",
                p.command_line.as_deref().unwrap_or_default(),
                p.parent.as_ref().and_then(|x| x.executable.as_deref()),
                ctx.container_id(event),
            )
        });
        DedupKey {
            rule_id: rule_id.to_owned(),
            ..shared.clone()
        }
    }
}

/// Exceptions and deduplication.
pub struct Tuning {
    exceptions: Exceptions,
    dedup: Option<Deduper>,
}

impl Tuning {
    pub fn new(
        exceptions: Vec<ExceptionConfig>,
        dedup_window_ms: u64,
    ) -> Result<Self, ExceptionError> {
        Ok(Self {
            exceptions: Exceptions::new(exceptions)?,
            dedup: (dedup_window_ms > 0)
                .then(|| Deduper::new(Duration::from_millis(dedup_window_ms))),
        })
    }

    /// Triages an alert of `rule_id` on the event of `judged`: exceptions at `wall`, then
    /// deduplication at `now`.
    pub fn triage(
        &mut self,
        rule_id: &str,
        judged: &mut Judged<'_>,
        wall: time::OffsetDateTime,
        now: Instant,
    ) -> Triage {
        let verdict = self.verdict(&judged.subject(rule_id), wall);
        if verdict.suppress {
            return Triage::Suppressed;
        }
        let key = judged.key(rule_id);
        if self.first_of_key(key.clone(), now) {
            Triage::Emit { verdict, key }
        } else {
            Triage::Repeat(key)
        }
    }

    /// The exceptions' verdict on one alert at time `now`.
    fn verdict(&self, subject: &Subject, now: time::OffsetDateTime) -> Verdict {
        let decisions = self.exceptions.evaluate(subject, now);
        let (suppress, lower, tags) = t1609_context::summarize(&decisions);
        Verdict {
            suppress,
            lower,
            tags,
        }
    }

    /// Triages an alert document (replay): applies the exceptions at `wall` (the event's
    /// time) to it, then deduplicates at `now`. `true` when it is to be written.
    pub fn triage_doc(
        &mut self,
        doc: &mut Value,
        ancestry: &[Ancestor],
        systemd_unit: Option<&str>,
        wall: time::OffsetDateTime,
        now: Instant,
    ) -> Triage {
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let rule_id = s(&doc["rule"]["id"]).unwrap_or_default();
        let (user, group) = (s(&doc["user"]["name"]), s(&doc["group"]["name"]));
        let (parent_cl, cl) = (
            s(&doc["process"]["parent"]["command_line"]),
            s(&doc["process"]["command_line"]),
        );
        let (cid, image) = (
            s(&doc["container"]["id"]),
            s(&doc["container"]["image"]["name"]),
        );
        let verdict = self.verdict(
            &Subject {
                rule_id: &rule_id,
                ancestors: ancestry,
                user: user.as_deref(),
                group: group.as_deref(),
                parent_command_line: parent_cl.as_deref(),
                command_line: cl.as_deref(),
                container_id: cid.as_deref(),
                image: image.as_deref(),
                systemd_unit,
            },
            wall,
        );
        if !verdict.apply(doc) {
            return Triage::Suppressed;
        }
        let key = dedup_key(doc);
        if self.first_of_key(key.clone(), now) {
            Triage::Emit { verdict, key }
        } else {
            Triage::Repeat(key)
        }
    }

    /// Counts one more of each of `keys` if every one is a repeat in its open window;
    /// `false` (nothing counted) otherwise. No keys: `true`.
    pub fn count_if_all_repeats(&mut self, keys: &[DedupKey], at: Instant) -> bool {
        match self.dedup.as_mut() {
            Some(dedup) => dedup.count_if_all_repeats(keys, at),
            None => keys.is_empty(),
        }
    }

    fn first_of_key(&mut self, key: DedupKey, at: Instant) -> bool {
        let Some(dedup) = self.dedup.as_mut() else {
            return true;
        };
        matches!(dedup.check(key, at), DedupOutcome::First)
    }

    /// Windows closed by `at` (`all`: every window, closed or still open): (key, alerts
    /// in the window), count 1 included so that what was kept for a window's follow-up
    /// can go.
    pub fn closed_windows(&mut self, at: Instant, all: bool) -> Vec<(DedupKey, u64)> {
        let Some(dedup) = self.dedup.as_mut() else {
            return Vec::new();
        };
        if all {
            dedup.flush_all()
        } else {
            dedup.flush_expired(at)
        }
    }

    /// Whether a dedup window is open, or closed with a count not reported yet.
    pub fn windows_open(&self) -> bool {
        self.dedup.as_ref().is_some_and(|d| !d.is_idle())
    }

    pub fn dedup_enabled(&self) -> bool {
        self.dedup.is_some()
    }
}

/// The exceptions' decision on one alert.
#[derive(Debug, Default)]
pub struct Verdict {
    pub suppress: bool,
    pub lower: Option<Severity>,
    pub tags: Vec<String>,
}

impl Verdict {
    /// Writes the lowered severity and tags into the alert; `false` when suppressed.
    pub fn apply(&self, doc: &mut Value) -> bool {
        if self.suppress {
            return false;
        }
        if let Some(sev) = self.lower {
            doc["event"]["severity"] = json!(sev.ecs_number());
            doc["t1609"]["severity"] = json!(sev.as_str());
            doc["t1609"]["severity_lowered_by_exception"] = json!(true);
        }
        if !self.tags.is_empty() {
            doc["tags"] = json!(self.tags);
        }
        true
    }
}

/// The lowered severity and the tags, written into an alert's text.
impl AlertFields for Verdict {
    fn add_to_value(&self, doc: &mut Value) {
        // A suppressed alert is never written.
        let _ = self.apply(doc);
    }

    fn severity(&self) -> Option<Severity> {
        self.lower
    }

    fn t1609(&self, t: &mut Members<'_>) {
        if self.lower.is_some() {
            t.bool("severity_lowered_by_exception", true);
        }
    }

    fn top(&self, doc: &mut Members<'_>) {
        if !self.tags.is_empty() {
            doc.strs("tags", &self.tags);
        }
    }
}

/// The dedup key of an alert document.
pub fn dedup_key(doc: &Value) -> DedupKey {
    DedupKey::new(
        doc["rule"]["id"].as_str().unwrap_or_default(),
        doc["process"]["command_line"].as_str().unwrap_or_default(),
        doc["process"]["parent"]["executable"].as_str(),
        doc["container"]["id"].as_str(),
    )
}

#[cfg(test)]
mod tests {
    use t1609_detect::event::{ParentProcess, Process};

    use super::*;

    fn event() -> ProcessEvent {
        ProcessEvent {
            process: Process {
                command_line: Some("docker exec -it web-7 sh".into()),
                parent: Some(Box::new(ParentProcess {
                    executable: Some("/bin/bash".into()),
                    ..Default::default()
                })),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn first_alert_is_emitted_its_repeat_counted_and_both_keys_match_the_document() {
        let (ev, ctx) = (event(), ExecContext::default());
        let mut tuning = Tuning::new(vec![], 10_000).unwrap();
        let now = Instant::now();
        let wall = time::OffsetDateTime::now_utc();
        let Triage::Emit { key, .. } = tuning.triage("r", &mut Judged::new(&ev, &ctx), wall, now)
        else {
            panic!("first alert emitted");
        };
        let doc = json!({"rule": {"id": "r"}, "process": {"command_line": "docker exec -it web-7 sh",
                         "parent": {"executable": "/bin/bash"}}});
        assert_eq!(key, dedup_key(&doc));
        assert!(matches!(
            tuning.triage("r", &mut Judged::new(&ev, &ctx), wall, now),
            Triage::Repeat(_)
        ));
        assert!(matches!(
            tuning.triage("other", &mut Judged::new(&ev, &ctx), wall, now),
            Triage::Emit { .. }
        ));
        assert_eq!(tuning.closed_windows(now, true).len(), 2);
    }

    #[test]
    fn an_exception_suppresses_before_dedup_counts() {
        let exception: ExceptionConfig = toml::from_str(
            "rule_id = \"r\"\naction = \"suppress\"\ncommand_line = \"docker exec *\"\n",
        )
        .unwrap();
        let (ev, ctx) = (event(), ExecContext::default());
        let mut tuning = Tuning::new(vec![exception], 10_000).unwrap();
        let now = Instant::now();
        let wall = time::OffsetDateTime::now_utc();
        assert!(matches!(
            tuning.triage("r", &mut Judged::new(&ev, &ctx), wall, now),
            Triage::Suppressed
        ));
        assert!(
            tuning.closed_windows(now, true).is_empty(),
            "nothing counted"
        );
    }
}
