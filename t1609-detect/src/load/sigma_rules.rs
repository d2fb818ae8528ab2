//! Sigma rule files: YAML through rsigma, lowered and translated into our conditions
//! (`crate::sigma`), compiled into [`Rule`]s; a rule on another log source or on a
//! field we do not map is skipped with its reason.

use std::sync::Arc;

use rsigma_eval::compile_rule;
use rsigma_ir::{LowerOptions, lower_rule};
use rsigma_parser::{Level, SigmaRule as SigmaRuleSpec, parse_sigma_yaml};
use t1609_ecs::{Confidence, Severity};

use super::{
    SkipKind, Skipped,
    elastic_rules::Parsed,
    mitre::{tactic_by_slug, technique_ref},
};
use crate::{
    rules::{Condition, Rule, RuleError, RuleMeta, empty_raw},
    sigma::{SigmaRule, Untranslated, translate},
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

pub(super) fn parse_sigma_rules(file: &str, text: &str) -> Result<Parsed, Vec<RuleError>> {
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
    let mut out = Parsed {
        rules: Vec::new(),
        skipped: Vec::new(),
    };
    if !coll.correlations.is_empty() || !coll.filters.is_empty() {
        out.skipped.push(Skipped {
            file: file.into(),
            line: 1,
            column: 1,
            id: String::new(),
            name: String::new(),
            kind: SkipKind::Sequence,
            reason:
                "Sigma correlation and filter rules are not supported; expected detection rules"
                    .into(),
        });
        return Ok(out);
    }
    if coll.rules.is_empty() {
        return Err(vec![invalid(
            (1, 1),
            "expected at least one Sigma detection rule".into(),
        )]);
    }
    for rule in &coll.rules {
        match compile_sigma_rule(file, text, rule) {
            Ok(r) => out.rules.push(r),
            Err(s) => out.skipped.push(s),
        }
    }
    Ok(out)
}

/// One Sigma detection rule of `file` (whose text is `text`): the rule, or why it is
/// skipped.
fn compile_sigma_rule(file: &str, text: &str, rule: &SigmaRuleSpec) -> Result<Rule, Skipped> {
    let id = rule.id.clone().unwrap_or_else(|| slug_id(&rule.title));
    let skip = |kind: SkipKind, line: usize, reason: String| Skipped {
        file: file.into(),
        line,
        column: 1,
        id: id.clone(),
        name: rule.title.clone(),
        kind,
        reason,
    };
    let ls = &rule.logsource;
    let product = ls.product.as_deref().unwrap_or("");
    let category = ls.category.as_deref().unwrap_or("");
    if product != "linux" || category != "process_creation" {
        return Err(skip(
            SkipKind::OtherLogSource,
            key_line(text, "logsource"),
            format!(
                "Sigma rule `{}` refused: logsource product `{product}`, category `{category}`; only product `linux`, category `process_creation` is supported",
                rule.title
            ),
        ));
    }
    let det_line = key_line(text, "detection");
    let ir = match lower_rule(rule, &LowerOptions::default()) {
        Ok(ir) => ir,
        Err(e) => {
            return Err(skip(
                SkipKind::Unsupported,
                det_line,
                format!("Sigma rule `{}`: {e}", rule.title),
            ));
        }
    };
    let cond = match translate(&ir) {
        Ok(node) => {
            if let Err(r) = super::checks::check(&node) {
                return Err(skip(r.kind, det_line, r.message));
            }
            Condition::Eql(node)
        }
        Err(Untranslated::Field(msg)) => {
            let kind = if msg.starts_with("unknown") {
                SkipKind::UnknownField
            } else {
                SkipKind::FieldNotProvided
            };
            return Err(skip(
                kind,
                det_line,
                format!("Sigma rule `{}`: {msg}", rule.title),
            ));
        }
        // rsigma-eval runs what the translation does not cover (`what`).
        Err(Untranslated::Construct(_what)) => match compile_rule(rule) {
            Ok(c) => Condition::Sigma(Box::new(SigmaRule::new(c))),
            Err(e) => {
                return Err(skip(
                    SkipKind::Unsupported,
                    det_line,
                    format!("Sigma rule `{}`: {e}", rule.title),
                ));
            }
        },
    };
    let needs_argv = matches!(&cond, Condition::Eql(n) if n.needs_argv());
    Ok(Rule {
        meta: Arc::new(sigma_meta(rule, id, file).finish()),
        cond,
        overrides: Vec::new(),
        needs_argv,
        watch_names: true,
    })
}

/// Metadata of a Sigma rule: severity from `level`, ATT&CK from `attack.*` tags.
fn sigma_meta(rule: &SigmaRuleSpec, id: String, file: &str) -> RuleMeta {
    let severity = match rule.level {
        Some(Level::Critical) => Severity::Critical,
        Some(Level::High) => Severity::High,
        Some(Level::Medium) => Severity::Medium,
        _ => Severity::Low,
    };
    let mut tactics = Vec::new();
    let mut techniques = Vec::new();
    for tag in rule.tags.iter().filter_map(|t| t.strip_prefix("attack.")) {
        let upper = tag.to_ascii_uppercase();
        if let Ok(t) = technique_ref(&upper, None) {
            techniques.push(t);
        } else if let Some(t) = tactic_by_slug(tag) {
            tactics.push(t);
        }
    }
    RuleMeta {
        id,
        name: rule.title.clone(),
        description: rule.description.clone().unwrap_or_default(),
        severity,
        confidence: Confidence::Medium,
        risk_score: severity.ecs_number(),
        tactics,
        techniques,
        references: rule.references.clone(),
        false_positives: rule.falsepositives.clone(),
        source: file.into(),
        ecs_rule: empty_raw(),
        ecs_threat: empty_raw(),
        ecs_threat_masquerade: empty_raw(),
    }
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
