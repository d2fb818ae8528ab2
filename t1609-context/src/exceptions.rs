//! Alert exceptions (tuning): match an alert's subject, then suppress it, lower its
//! severity or tag it. Every suppressed hit is counted per rule and per exception.
//!
//! Format (TOML, one `[[exception]]` table each; see the README for commented examples):
//! ```toml
//! [[exception]]
//! name = "ci-gitlab-runner"
//! rule_id = "*"                       # or an exact rule id
//! ancestor_name = "gitlab-runner"     # glob; also any of the fields listed on ExceptionConfig
//! action = "suppress"                 # | "lower_severity" (+ severity) | "tag" (+ tag)
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use t1609_ecs::glob_match;

use crate::process::Ancestor;

/// One value or a list of values (any of them may match).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Suppress,
    LowerSeverity,
    Tag,
}

/// The alert model's severity (defined with the rule engine's alerts).
pub use t1609_detect::Severity;

/// Weekdays and a local time range in a named IANA zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowConfig {
    /// `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`; empty or absent = every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM` (inclusive).
    pub start: String,
    /// `HH:MM` (exclusive). `end < start` spans midnight (the day is the start's day).
    pub end: String,
    /// IANA zone name (embedded database), default `UTC`.
    #[serde(default)]
    pub tz: Option<String>,
}

/// One exception as written in the config. All given conditions must hold (AND); a field
/// with a list matches if any value matches (OR). A condition on a value the alert does not
/// have (e.g. `image` for a host process) does not match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionConfig {
    /// Shown in decisions and counters; defaults to `exception[<index>]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text for humans.
    #[serde(default)]
    pub comment: Option<String>,
    /// Exact rule id, or `*` for every rule.
    pub rule_id: String,
    /// Glob on any ancestor's executable path.
    #[serde(default)]
    pub ancestor_executable: Option<OneOrMany>,
    /// Glob on any ancestor's name (comm) or executable basename.
    #[serde(default)]
    pub ancestor_name: Option<OneOrMany>,
    /// Glob on the user name.
    #[serde(default)]
    pub user: Option<OneOrMany>,
    /// Glob on the group name.
    #[serde(default)]
    pub group: Option<OneOrMany>,
    /// Glob on the parent's command line (argv joined by spaces).
    #[serde(default)]
    pub parent_command_line: Option<OneOrMany>,
    /// Glob on the process's command line.
    #[serde(default)]
    pub command_line: Option<OneOrMany>,
    /// Container id: full id or a prefix of it (case-insensitive).
    #[serde(default)]
    pub container_id: Option<OneOrMany>,
    /// Glob on the container image.
    #[serde(default)]
    pub image: Option<OneOrMany>,
    /// Glob on the systemd unit from the cgroup (`gitlab-runner.service`).
    #[serde(default)]
    pub systemd_unit: Option<OneOrMany>,
    #[serde(default)]
    pub time_window: Option<TimeWindowConfig>,
    pub action: Action,
    /// Required with `action = "lower_severity"`.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Required with `action = "tag"`.
    #[serde(default)]
    pub tag: Option<String>,
}

/// The file form: `[[exception]]` tables.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionFile {
    #[serde(default)]
    pub exception: Vec<ExceptionConfig>,
}

/// A config error, naming the exception and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExceptionError {
    #[error("exception {exception}: field `{field}`: {message}")]
    Invalid {
        exception: String,
        field: &'static str,
        message: String,
    },
    /// TOML syntax or schema error (unknown key, wrong type); the message names the key.
    #[error("exception config: {0}")]
    Parse(#[source] toml::de::Error),
}

/// What the alert is about, as the detect stage sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    pub rule_id: &'a str,
    pub ancestors: &'a [Ancestor],
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub parent_command_line: Option<&'a str>,
    pub command_line: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub image: Option<&'a str>,
    pub systemd_unit: Option<&'a str>,
}

/// One matching exception's verdict, in config order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    Suppress {
        exception: String,
    },
    LowerSeverity {
        exception: String,
        severity: Severity,
    },
    Tag {
        exception: String,
        tag: String,
    },
}

impl Decision {
    pub fn exception(&self) -> &str {
        match self {
            Decision::Suppress { exception }
            | Decision::LowerSeverity { exception, .. }
            | Decision::Tag { exception, .. } => exception,
        }
    }

    pub fn is_suppress(&self) -> bool {
        matches!(self, Decision::Suppress { .. })
    }
}

/// Folds decisions: suppressed?, the lowest severity asked for, and all tags.
pub fn summarize(decisions: &[Decision]) -> (bool, Option<Severity>, Vec<String>) {
    let mut sup = false;
    let mut sev: Option<Severity> = None;
    let mut tags = Vec::new();
    for d in decisions {
        match d {
            Decision::Suppress { .. } => sup = true,
            Decision::LowerSeverity { severity, .. } => {
                sev = Some(sev.map_or(*severity, |s| s.min(*severity)));
            }
            Decision::Tag { tag, .. } => {
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
        }
    }
    (sup, sev, tags)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hm(u16); // minutes since midnight

impl Hm {
    fn parse(s: &str) -> Option<Hm> {
        let (h, m) = s.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        // 24:00 is allowed as an end of day.
        ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(Hm(h * 60 + m))
    }
}

#[derive(Debug, Clone)]
struct TimeWindow {
    /// Bit i = weekday i (0 = Monday).
    days: u8,
    start: Hm,
    end: Hm,
    tz: jiff::tz::TimeZone,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TimeWindow {
    fn contains(&self, now: time::OffsetDateTime) -> bool {
        let Ok(ts) = jiff::Timestamp::from_nanosecond(now.unix_timestamp_nanos()) else {
            return false;
        };
        let z = self.tz.to_datetime(ts);
        // 0..=6, 0..=23 and 0..=59: never negative.
        let day = z.weekday().to_monday_zero_offset().cast_unsigned();
        let t =
            Hm(u16::from(z.hour().cast_unsigned()) * 60 + u16::from(z.minute().cast_unsigned()));
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.start.0 <= self.end.0 {
            on(day) && self.start.0 <= t.0 && t.0 < self.end.0
        } else {
            // Overnight: from `start` on a listed day until `end` the next morning.
            (on(day) && t.0 >= self.start.0) || (on((day + 6) % 7) && t.0 < self.end.0)
        }
    }
}

#[derive(Debug)]
struct Compiled {
    cfg: ExceptionConfig,
    label: String,
    window: Option<TimeWindow>,
    hits: AtomicU64,
}

/// Compiled exceptions with hit counters. `evaluate` takes `&self` (counters are atomic /
/// mutex-protected), so one instance can be shared by the detect stage.
#[derive(Debug)]
pub struct Exceptions {
    list: Vec<Compiled>,
    suppressed: Mutex<HashMap<String, u64>>,
}

fn invalid(exception: &str, field: &'static str, message: impl fmt::Display) -> ExceptionError {
    ExceptionError::Invalid {
        exception: exception.to_string(),
        field,
        message: message.to_string(),
    }
}

impl Exceptions {
    pub fn new(cfgs: Vec<ExceptionConfig>) -> Result<Self, ExceptionError> {
        let mut list = Vec::with_capacity(cfgs.len());
        for (i, cfg) in cfgs.into_iter().enumerate() {
            let label = cfg
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("exception[{i}]"));
            if cfg.rule_id.trim().is_empty() {
                return Err(invalid(&label, "rule_id", "must be a rule id or \"*\""));
            }
            match cfg.action {
                Action::LowerSeverity if cfg.severity.is_none() => {
                    return Err(invalid(
                        &label,
                        "severity",
                        "required when action = \"lower_severity\"",
                    ));
                }
                Action::Tag if cfg.tag.as_deref().is_none_or(|t| t.trim().is_empty()) => {
                    return Err(invalid(
                        &label,
                        "tag",
                        "required (non-empty) when action = \"tag\"",
                    ));
                }
                _ => {}
            }
            let lists: [(&'static str, &Option<OneOrMany>); 9] = [
                ("ancestor_executable", &cfg.ancestor_executable),
                ("ancestor_name", &cfg.ancestor_name),
                ("user", &cfg.user),
                ("group", &cfg.group),
                ("parent_command_line", &cfg.parent_command_line),
                ("command_line", &cfg.command_line),
                ("container_id", &cfg.container_id),
                ("image", &cfg.image),
                ("systemd_unit", &cfg.systemd_unit),
            ];
            for (field, v) in lists {
                if let Some(v) = v
                    && (v.values().is_empty() || v.values().iter().any(String::is_empty))
                {
                    return Err(invalid(&label, field, "empty pattern"));
                }
            }
            let window = match &cfg.time_window {
                None => None,
                Some(w) => Some(compile_window(&label, w)?),
            };
            list.push(Compiled {
                cfg,
                label,
                window,
                hits: AtomicU64::new(0),
            });
        }
        Ok(Self {
            list,
            suppressed: Mutex::new(HashMap::new()),
        })
    }

    /// Parses a TOML document of `[[exception]]` tables and compiles it.
    pub fn from_toml_str(text: &str) -> Result<Self, ExceptionError> {
        let file: ExceptionFile = toml::from_str(text).map_err(ExceptionError::Parse)?;
        Self::new(file.exception)
    }

    /// All matching exceptions' decisions, in config order (empty = no exception applies).
    /// When any decision is `Suppress`, the rule's suppressed counter is incremented once.
    pub fn evaluate(&self, subject: &Subject, now: time::OffsetDateTime) -> Vec<Decision> {
        let mut out = Vec::new();
        for c in &self.list {
            if !matches(c, subject, now) {
                continue;
            }
            c.hits.fetch_add(1, Ordering::Relaxed);
            let exception = c.label.clone();
            out.push(match c.cfg.action {
                Action::Suppress => Decision::Suppress { exception },
                Action::LowerSeverity => Decision::LowerSeverity {
                    exception,
                    severity: c.cfg.severity.unwrap_or(Severity::Low),
                },
                Action::Tag => Decision::Tag {
                    exception,
                    tag: c.cfg.tag.clone().unwrap_or_default(),
                },
            });
        }
        if out.iter().any(Decision::is_suppress) {
            let mut m = self
                .suppressed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *m.entry(subject.rule_id.to_string()).or_insert(0) += 1;
        }
        out
    }

    /// Alerts of `rule_id` suppressed so far.
    pub fn suppressed_count(&self, rule_id: &str) -> u64 {
        self.suppressed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(rule_id)
            .copied()
            .unwrap_or(0)
    }

    /// Suppressed alerts per rule id.
    pub fn suppressed_counts(&self) -> HashMap<String, u64> {
        self.suppressed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// (exception name, times it matched) in config order.
    pub fn hit_counts(&self) -> Vec<(String, u64)> {
        self.list
            .iter()
            .map(|c| (c.label.clone(), c.hits.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

fn compile_window(label: &str, w: &TimeWindowConfig) -> Result<TimeWindow, ExceptionError> {
    let mut days = 0u8;
    for d in &w.days {
        let lower = d.trim().to_ascii_lowercase();
        let idx = DAY_NAMES
            .iter()
            .position(|n| {
                lower == *n || (lower.len() > 3 && full_day_name(n).is_some_and(|f| f == lower))
            })
            .ok_or_else(|| {
                invalid(
                    label,
                    "time_window.days",
                    format!("unknown day {d:?} (use mon..sun)"),
                )
            })?;
        days |= 1 << idx;
    }
    if w.days.is_empty() {
        days = 0x7f;
    }
    let start = Hm::parse(&w.start).ok_or_else(|| {
        invalid(
            label,
            "time_window.start",
            format!("{:?} is not HH:MM", w.start),
        )
    })?;
    let end = Hm::parse(&w.end).ok_or_else(|| {
        invalid(
            label,
            "time_window.end",
            format!("{:?} is not HH:MM", w.end),
        )
    })?;
    if start == end {
        return Err(invalid(
            label,
            "time_window.end",
            "start and end are equal (empty window)",
        ));
    }
    let tz_name = w.tz.as_deref().unwrap_or("UTC");
    let tz = jiff::tz::db().get(tz_name).map_err(|e| {
        invalid(
            label,
            "time_window.tz",
            format!("unknown time zone {tz_name:?}: {e}"),
        )
    })?;
    Ok(TimeWindow {
        days,
        start,
        end,
        tz,
    })
}

fn full_day_name(short: &str) -> Option<&'static str> {
    Some(match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        "sun" => "sunday",
        _ => return None,
    })
}

fn any_glob(pats: Option<&OneOrMany>, value: Option<&str>) -> bool {
    match pats {
        None => true,
        Some(p) => value.is_some_and(|v| p.values().iter().any(|g| glob_match(g, v))),
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn matches(c: &Compiled, s: &Subject, now: time::OffsetDateTime) -> bool {
    let cfg = &c.cfg;
    if cfg.rule_id != "*" && cfg.rule_id != s.rule_id {
        return false;
    }
    if let Some(p) = &cfg.ancestor_executable {
        let hit = s.ancestors.iter().any(|a| {
            a.executable
                .as_deref()
                .is_some_and(|e| p.values().iter().any(|g| glob_match(g, e)))
        });
        if !hit {
            return false;
        }
    }
    if let Some(p) = &cfg.ancestor_name {
        let hit = s.ancestors.iter().any(|a| {
            p.values().iter().any(|g| {
                glob_match(g, &a.name)
                    || a.executable
                        .as_deref()
                        .is_some_and(|e| glob_match(g, basename(e)))
            })
        });
        if !hit {
            return false;
        }
    }
    if !any_glob(cfg.user.as_ref(), s.user)
        || !any_glob(cfg.group.as_ref(), s.group)
        || !any_glob(cfg.parent_command_line.as_ref(), s.parent_command_line)
        || !any_glob(cfg.command_line.as_ref(), s.command_line)
        || !any_glob(cfg.image.as_ref(), s.image)
        || !any_glob(cfg.systemd_unit.as_ref(), s.systemd_unit)
    {
        return false;
    }
    if let Some(ids) = &cfg.container_id {
        let Some(id) = s.container_id else {
            return false;
        };
        let id = id.to_ascii_lowercase();
        if !ids
            .values()
            .iter()
            .any(|want| id.starts_with(&want.to_ascii_lowercase()))
        {
            return false;
        }
    }
    if let Some(w) = &c.window
        && !w.contains(now)
    {
        return false;
    }
    true
}
