//! Sigma rule files: YAML through rsigma, checked against the fields we map
//! ([`SIGMA_FIELDS`]), compiled into [`Rule`]s.

use std::sync::Arc;

use rsigma_eval::{FieldSource, RuleFieldSet, compile_rule};
use rsigma_parser::{Level, SigmaCollection, SigmaRule as SigmaRuleSpec, parse_sigma_yaml};
use t1609_ecs::{
    Confidence, Severity,
    mitre::{tactic, technique},
};

use crate::{
    rules::{Condition, Rule, RuleError, RuleMeta, empty_raw},
    sigma::{SIGMA_FIELDS, SigmaRule},
};

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

pub(super) fn parse_sigma_rules(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let invalid = |(line, column): (usize, usize), message: String| RuleError::Invalid {
        file: file.into(),
        line,
        column,
        message,
    };
    let coll = match parse_sigma_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            return Err(vec![invalid(
                yaml_pos(&msg),
                format!("expected a Sigma rule: {msg}"),
            )]);
        }
    };
    if let Some(msg) = coll.errors.first() {
        return Err(vec![invalid(
            yaml_pos(msg),
            format!("expected a Sigma rule: {msg}"),
        )]);
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
            (1, 1),
            "expected at least one Sigma detection rule".into(),
        )]);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for rule in &coll.rules {
        match compile_sigma_rule(file, text, rule) {
            Ok(r) => out.push(r),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One Sigma detection rule of `file` (whose text is `text`), or why it is refused.
fn compile_sigma_rule(
    file: &str,
    text: &str,
    rule: &SigmaRuleSpec,
) -> Result<Rule, Vec<RuleError>> {
    let at_detection = |message: String| RuleError::Invalid {
        file: file.into(),
        line: key_line(text, "detection"),
        column: 1,
        message,
    };
    let ls = &rule.logsource;
    let product = ls.product.as_deref().unwrap_or("");
    let category = ls.category.as_deref().unwrap_or("");
    if product != "linux" || category != "process_creation" {
        return Err(vec![RuleError::Unsupported {
            file: file.into(),
            message: format!(
                "Sigma rule `{}` refused: logsource product `{product}`, category `{category}`; only product `linux`, category `process_creation` is supported",
                rule.title
            ),
        }]);
    }
    let single = SigmaCollection {
        rules: vec![rule.clone()],
        correlations: Vec::new(),
        filters: Vec::new(),
        errors: Vec::new(),
    };
    let fields = RuleFieldSet::collect(&single, &[], false);
    let unknown: Vec<RuleError> = fields
        .iter()
        .filter(|(name, origin)| {
            origin.sources.contains(&FieldSource::Detection) && !SIGMA_FIELDS.contains(name)
        })
        .map(|(name, _)| {
            at_detection(format!(
                "Sigma rule `{}`: unknown field `{name}`; expected one of {}",
                rule.title,
                SIGMA_FIELDS.join(", ")
            ))
        })
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let compiled = compile_rule(rule)
        .map_err(|e| vec![at_detection(format!("Sigma rule `{}`: {e}", rule.title))])?;
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
    let meta = RuleMeta {
        id: rule.id.clone().unwrap_or_else(|| slug_id(&rule.title)),
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
        ecs_rule: empty_raw(),
        ecs_threat: empty_raw(),
        ecs_threat_masquerade: empty_raw(),
    };
    Ok(Rule {
        meta: Arc::new(meta.finish()),
        cond: Condition::Sigma(Box::new(SigmaRule::new(compiled))),
        overrides: Vec::new(),
        needs_argv: false,
    })
}

/// The id of a rule without one: `sigma.` and its title, lowercased, other characters
/// as `_`.
fn slug_id(title: &str) -> String {
    let slug: String = title
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
}
