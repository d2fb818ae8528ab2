//! Loading rules: the built-in pack, then rule files and directories, each file read
//! by its format (TOML with EQL queries, or Sigma YAML), with duplicate ids refused
//! across them all.

mod sigma_rules;
mod toml_rules;

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use sigma_rules::parse_sigma_rules;
use toml_rules::parse_toml_rules;

use crate::rules::{Rule, RuleError};

/// The shipped pack.
const BUILTIN: &[(&str, &str)] = &[(
    "builtin:rules/t1609.toml",
    include_str!("../../rules/t1609.toml"),
)];

/// One rule file, by its extension; other files are skipped inside directories and
/// refused when named (`explicit`).
fn load_file(path: &Path, out: &mut Vec<Rule>, errors: &mut Vec<RuleError>, explicit: bool) {
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
    let r = if ext == "toml" {
        parse_toml_rules(&file, &text)
    } else {
        parse_sigma_rules(&file, &text)
    };
    match r {
        Ok(r) => out.extend(r),
        Err(e) => errors.extend(e),
    }
}

/// A file, or a directory read in name order, eight levels deep at most.
fn load_path(path: &Path, out: &mut Vec<Rule>, errors: &mut Vec<RuleError>, depth: u8) {
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
pub(crate) fn load_all(extra: &[PathBuf]) -> Result<Vec<Rule>, Vec<RuleError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in BUILTIN {
        match parse_toml_rules(name, text) {
            Ok(r) => rules.extend(r),
            Err(e) => errors.extend(e),
        }
    }
    for p in extra {
        load_path(p, &mut rules, &mut errors, 0);
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for r in &rules {
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
        Ok(rules)
    } else {
        Err(errors)
    }
}
