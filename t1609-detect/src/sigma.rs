//! Sigma rules (`logsource: {product: linux, category: process_creation}`) through the
//! rsigma-parser and rsigma-eval crates.
//!
//! Field mapping (Sigma -> our event):
//!
//! | Sigma | ECS |
//! |---|---|
//! | Image | process.executable |
//! | OriginalFileName | process.name |
//! | CommandLine | process.command_line |
//! | ParentImage | process.parent.executable |
//! | ParentCommandLine | process.parent.command_line |
//! | User | user.name |
//! | CurrentDirectory | process.working_directory |
//! | ProcessId | process.pid |
//! | ParentProcessId | process.parent.pid |
//!
//! Any other field in a rule's detection is a load error.

use std::sync::Arc;

use rsigma_eval::{
    CompiledRule, FieldSource, JsonEvent, RuleFieldSet, compile_rule, evaluate_rule,
};
use rsigma_parser::{Level, SigmaCollection, parse_sigma_yaml};
use serde_json::{Map, Value};

use t1609_ecs::{Confidence, Severity};
use crate::event::ProcessEvent;
use crate::rules::{Condition, Rule, RuleError, RuleMeta, tactic, technique};

pub const SIGMA_FIELDS: &[&str] = &[
    "Image",
    "OriginalFileName",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "User",
    "CurrentDirectory",
    "ProcessId",
    "ParentProcessId",
];

/// A compiled Sigma rule.
#[derive(Debug)]
pub struct SigmaRule {
    compiled: CompiledRule,
}

impl SigmaRule {
    pub(crate) fn matches(&self, doc: &Value) -> bool {
        evaluate_rule(&self.compiled, &JsonEvent::borrow(doc)).is_some()
    }
}

/// The event as a Sigma process_creation document (absent fields omitted).
pub(crate) fn sigma_doc(ev: &ProcessEvent) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let p = &ev.process;
    let pp = p.parent.as_deref();
    put("Image", p.executable.clone().map(Value::String));
    put("OriginalFileName", p.name.clone().map(Value::String));
    put("CommandLine", p.command_line.clone().map(Value::String));
    put(
        "ParentImage",
        pp.and_then(|x| x.executable.clone()).map(Value::String),
    );
    put(
        "ParentCommandLine",
        pp.and_then(|x| x.command_line.clone()).map(Value::String),
    );
    put("User", ev.user.name.clone().map(Value::String));
    put(
        "CurrentDirectory",
        p.working_directory.clone().map(Value::String),
    );
    put("ProcessId", p.pid.map(Value::from));
    put("ParentProcessId", pp.and_then(|x| x.pid).map(Value::from));
    Value::Object(m)
}

/// `... at line 3 column 5` in YAML error messages.
fn yaml_pos(msg: &str) -> (usize, usize) {
    let num_after = |key: &str| -> Option<usize> {
        let i = msg.find(key)? + key.len();
        msg[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    (
        num_after("line").unwrap_or(1),
        num_after("column").unwrap_or(1),
    )
}

/// Line of `key:` at the start of a line, for positioning semantic errors.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(&format!("{key}:")))
        .map_or(1, |i| i + 1)
}

pub(crate) fn parse_sigma_rules(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let invalid = |line: usize, column: usize, message: String| RuleError::Invalid {
        file: file.into(),
        line,
        column,
        message,
    };
    let coll = match parse_sigma_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            let (l, c) = yaml_pos(&msg);
            return Err(vec![invalid(l, c, format!("expected a Sigma rule: {msg}"))]);
        }
    };
    if let Some(msg) = coll.errors.first() {
        let (l, c) = yaml_pos(msg);
        return Err(vec![invalid(l, c, format!("expected a Sigma rule: {msg}"))]);
    }
    if !coll.correlations.is_empty() || !coll.filters.is_empty() {
        return Err(vec![RuleError::Unsupported {
            file: file.into(),
            message:
                "Sigma correlation and filter rules are not supported; expected detection rules"
                    .into(),
        }]);
    }
    if coll.rules.is_empty() {
        return Err(vec![invalid(
            1,
            1,
            "expected at least one Sigma detection rule".into(),
        )]);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for rule in &coll.rules {
        let ls = &rule.logsource;
        let product = ls.product.as_deref().unwrap_or("");
        let category = ls.category.as_deref().unwrap_or("");
        if product != "linux" || category != "process_creation" {
            errors.push(RuleError::Unsupported {
                file: file.into(),
                message: format!(
                    "Sigma rule `{}` refused: logsource product `{product}`, category `{category}`; only product `linux`, category `process_creation` is supported",
                    rule.title
                ),
            });
            continue;
        }
        let single = SigmaCollection {
            rules: vec![rule.clone()],
            correlations: Vec::new(),
            filters: Vec::new(),
            errors: Vec::new(),
        };
        let fields = RuleFieldSet::collect(&single, &[], false);
        let mut bad = false;
        for (name, origin) in fields.iter() {
            if origin.sources.contains(&FieldSource::Detection) && !SIGMA_FIELDS.contains(&name) {
                errors.push(invalid(
                    key_line(text, "detection"),
                    1,
                    format!(
                        "Sigma rule `{}`: unknown field `{name}`; expected one of {}",
                        rule.title,
                        SIGMA_FIELDS.join(", ")
                    ),
                ));
                bad = true;
            }
        }
        if bad {
            continue;
        }
        let compiled = match compile_rule(rule) {
            Ok(c) => c,
            Err(e) => {
                errors.push(invalid(
                    key_line(text, "detection"),
                    1,
                    format!("Sigma rule `{}`: {e}", rule.title),
                ));
                continue;
            }
        };
        let severity = match rule.level {
            Some(Level::Critical) => Severity::Critical,
            Some(Level::High) => Severity::High,
            Some(Level::Medium) => Severity::Medium,
            _ => Severity::Low,
        };
        let mut techniques: Vec<_> = rule
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix("attack."))
            .filter_map(|t| technique(&t.to_ascii_uppercase()))
            .collect();
        if techniques.is_empty() {
            techniques.extend(technique("T1609"));
        }
        let id = rule.id.clone().unwrap_or_else(|| {
            let slug: String = rule
                .title
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("sigma.{slug}")
        });
        out.push(Rule {
            meta: Arc::new(
                RuleMeta {
                    id,
                    name: rule.title.clone(),
                    description: rule.description.clone().unwrap_or_default(),
                    severity,
                    confidence: Confidence::Medium,
                    risk_score: severity.ecs_number(),
                    tactics: tactic("TA0002").into_iter().collect(),
                    techniques,
                    references: rule.references.clone(),
                    false_positives: rule.falsepositives.clone(),
                    source: file.into(),
                    ecs_rule: crate::rules::empty_raw(),
                    ecs_threat: crate::rules::empty_raw(),
                }
                .finish(),
            ),
            cond: Condition::Sigma(Box::new(SigmaRule { compiled })),
            overrides: Vec::new(),
            needs_argv: false,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
