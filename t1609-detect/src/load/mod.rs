//! Loading rules: the built-in pack, then rule files and directories, each file read
//! by its format (our TOML with EQL queries, Elastic's detection-rules TOML, or Sigma
//! YAML), with duplicate ids refused across them all.
//!
//! A rule of a third-party format that the engine cannot evaluate is skipped and
//! reported with its reason when it comes from a directory, and is an error when its
//! file was named on its own.

mod checks;
mod elastic_rules;
mod mitre;
mod sigma_rules;
mod toml_rules;

use std::{
    collections::HashMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use elastic_rules::{Parsed, is_elastic, parse_elastic_rule};
use sigma_rules::parse_sigma_rules;
use toml_rules::parse_toml_rules;

use crate::rules::{Rule, RuleError};

/// Why a rule was skipped, by kind (the report groups them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipKind {
    /// A `sequence` or `sample` query (or a Sigma correlation): several events.
    Sequence,
    /// A query on another event category (`file`, `network`, `any`...).
    OtherCategory,
    /// Not an EQL rule: KQL, Lucene, ES|QL, machine learning, threshold, new terms.
    NotEql,
    /// Only matches event types or actions the agent does not produce (`info`,
    /// `change`, `already_running`, `uid_change`...).
    OtherEventType,
    /// Tests a field the agent does not provide (or an environment variable it does
    /// not capture).
    FieldNotProvided,
    /// Tests a field unknown to the engine.
    UnknownField,
    /// Uses a function or construct the engine does not evaluate.
    Unsupported,
    /// A Sigma rule of another log source than `linux` / `process_creation`.
    OtherLogSource,
}

impl SkipKind {
    pub fn describe(self) -> &'static str {
        match self {
            SkipKind::Sequence => "sequence or sample (several events)",
            SkipKind::OtherCategory => "another event category",
            SkipKind::NotEql => "not EQL (KQL, Lucene, ES|QL, ML, threshold, new terms)",
            SkipKind::OtherEventType => "event types the agent does not produce",
            SkipKind::FieldNotProvided => "a field the agent does not provide",
            SkipKind::UnknownField => "an unknown field",
            SkipKind::Unsupported => "a function or construct the engine does not evaluate",
            SkipKind::OtherLogSource => "another Sigma log source",
        }
    }
}

/// A rule that was not loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub id: String,
    pub name: String,
    pub kind: SkipKind,
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: skipped rule `{}` ({}): {}",
            self.file, self.line, self.column, self.id, self.name, self.reason
        )
    }
}

/// What loading gave: the rules, and the rules skipped.
pub(crate) struct Loaded {
    pub rules: Vec<Rule>,
    pub skipped: Vec<Skipped>,
}

/// The shipped pack.
const BUILTIN: &[(&str, &str)] = &[(
    "builtin:rules/t1609.toml",
    include_str!("../../rules/t1609.toml"),
)];

/// One rule file, by its extension; other files are skipped inside directories and
/// refused when named (`explicit`).
fn load_file(path: &Path, out: &mut Loaded, errors: &mut Vec<RuleError>, explicit: bool) {
    let file = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "toml" | "yml" | "yaml") {
        if explicit {
            errors.push(RuleError::Unsupported {
                file,
                message: "expected a .toml rule file or a .yml/.yaml Sigma rule".into(),
            });
        }
        return;
    }
    let text = match fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(source) => {
            errors.push(RuleError::Io { file, source });
            return;
        }
    };
    let r = if ext != "toml" {
        parse_sigma_rules(&file, &text)
    } else if toml::from_str::<toml::Value>(&text).is_ok_and(|v| is_elastic(&v)) {
        parse_elastic_rule(&file, &text)
    } else {
        parse_toml_rules(&file, &text).map(|rules| Parsed {
            rules,
            skipped: Vec::new(),
        })
    };
    match r {
        Ok(p) => {
            out.rules.extend(p.rules);
            if explicit {
                // Named on its own: the user wants this rule, so not loading it is an error.
                errors.extend(p.skipped.into_iter().map(|s| RuleError::Invalid {
                    file: s.file,
                    line: s.line,
                    column: s.column,
                    message: s.reason,
                }));
            } else {
                out.skipped.extend(p.skipped);
            }
        }
        Err(e) => errors.extend(e),
    }
}

/// A file, or a directory read in name order, eight levels deep at most.
fn load_path(path: &Path, out: &mut Loaded, errors: &mut Vec<RuleError>, depth: u8) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(source) => {
                errors.push(RuleError::Io {
                    file: path.display().to_string(),
                    source,
                });
                return;
            }
        };
        entries.sort();
        for e in entries {
            if e.is_dir() {
                if depth < 8 {
                    load_path(&e, out, errors, depth + 1);
                }
            } else {
                load_file(&e, out, errors, false);
            }
        }
    } else {
        load_file(path, out, errors, true);
    }
}

/// Loads the built-in pack plus `extra` files and directories, checking for duplicates.
pub(crate) fn load_all(extra: &[PathBuf]) -> Result<Loaded, Vec<RuleError>> {
    let mut out = Loaded {
        rules: Vec::new(),
        skipped: Vec::new(),
    };
    let mut errors = Vec::new();
    for (name, text) in BUILTIN {
        match parse_toml_rules(name, text) {
            Ok(r) => out.rules.extend(r),
            Err(e) => errors.extend(e),
        }
    }
    for p in extra {
        load_path(p, &mut out, &mut errors, 0);
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for r in &out.rules {
        if let Some(first) = seen.get(r.meta.id.as_str()) {
            errors.push(RuleError::Duplicate {
                file: r.meta.source.clone(),
                id: r.meta.id.clone(),
                first: (*first).to_owned(),
            });
        } else {
            seen.insert(&r.meta.id, &r.meta.source);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
