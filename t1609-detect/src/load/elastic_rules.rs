//! Elastic's detection-rules TOML files, read as they are: `[metadata]` and one `[rule]`
//! table with `rule_id`, `name`, `risk_score`, `severity`, `type`, `language`, `query`
//! and `[[rule.threat]]`. The other keys (notes, setup guides, index patterns...) are
//! ignored, since they evolve with Elastic's schema.
//!
//! A rule the engine cannot evaluate (a sequence, another event category, KQL or
//! ES|QL, a field the agent never provides...) is skipped with its reason; a malformed
//! file is an error.

use std::sync::Arc;

use serde::Deserialize;
use t1609_ecs::{Confidence, MitreRef, Severity};

use super::{
    SkipKind, Skipped,
    checks::check,
    mitre::{tactic_ref, technique_ref},
    toml_rules::Source,
};
use crate::{
    eql::{self, EqlErrorKind},
    rules::{Condition, Rule, RuleError, RuleMeta, empty_raw},
};

#[derive(Deserialize)]
struct ElasticFile {
    rule: ElasticRule,
}

#[derive(Deserialize)]
struct ElasticRule {
    rule_id: String,
    name: String,
    #[serde(default)]
    description: String,
    risk_score: u8,
    severity: String,
    #[serde(rename = "type")]
    rule_type: String,
    language: Option<String>,
    query: Option<toml::Spanned<String>>,
    #[serde(default)]
    threat: Vec<ThreatEntry>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    false_positives: Vec<String>,
}

#[derive(Deserialize)]
struct ThreatEntry {
    tactic: MitreEntry,
    #[serde(default)]
    technique: Vec<TechniqueEntry>,
}

#[derive(Deserialize)]
struct MitreEntry {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct TechniqueEntry {
    id: String,
    name: Option<String>,
    #[serde(default)]
    subtechnique: Vec<MitreEntry>,
}

/// Whether `v` (a parsed TOML document) is in detection-rules' format: one `[rule]`
/// table with a `rule_id`, where ours has `[[rule]]` arrays.
pub(super) fn is_elastic(v: &toml::Value) -> bool {
    v.get("rule")
        .and_then(toml::Value::as_table)
        .is_some_and(|t| t.contains_key("rule_id"))
}

/// What one file gave: its rule (or none), the rules skipped, the errors.
pub(super) struct Parsed {
    pub rules: Vec<Rule>,
    pub skipped: Vec<Skipped>,
}

/// Reads one detection-rules file.
pub(super) fn parse_elastic_rule(file: &str, text: &str) -> Result<Parsed, Vec<RuleError>> {
    let src = Source { file, text };
    let parsed: ElasticFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        vec![src.at(at, e.message().trim().to_string())]
    })?;
    let r = parsed.rule;
    let id = r.rule_id.trim().to_string();
    let skip = |kind: SkipKind, (line, column): (usize, usize), reason: String| Parsed {
        rules: Vec::new(),
        skipped: vec![Skipped {
            file: file.into(),
            line,
            column,
            id: id.clone(),
            name: r.name.clone(),
            kind,
            reason,
        }],
    };
    let language = r.language.as_deref().unwrap_or("");
    let Some(query) = r
        .query
        .as_ref()
        .filter(|_| r.rule_type == "eql" && language == "eql")
    else {
        let what = match (r.rule_type.as_str(), language) {
            (_, "kuery") => "KQL".to_string(),
            (_, "lucene") => "Lucene".to_string(),
            (_, "esql") => "ES|QL".to_string(),
            (t, "") => format!("a `{t}` rule"),
            (t, l) => format!("a `{t}` rule in `{l}`"),
        };
        return Ok(skip(
            SkipKind::NotEql,
            (1, 1),
            format!(
                "{what} (rule type `{}`): only EQL rules are evaluated",
                r.rule_type
            ),
        ));
    };
    let qspan = query.span();
    let fail = |message: String| vec![src.at(qspan.start, format!("rule `{id}`: {message}"))];
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("expected a rule_id without spaces".into()));
    }
    let node = match eql::parse_query(query.get_ref()) {
        Ok(n) => n,
        Err(e) => {
            let kind = match e.kind {
                EqlErrorKind::Sequence => SkipKind::Sequence,
                EqlErrorKind::Category => SkipKind::OtherCategory,
                EqlErrorKind::UnknownField => SkipKind::UnknownField,
                EqlErrorKind::FieldNotProvided => SkipKind::FieldNotProvided,
                EqlErrorKind::Unsupported | EqlErrorKind::Syntax => SkipKind::Unsupported,
            };
            let pos = match src.in_string(qspan.clone(), &e, String::new()) {
                RuleError::Invalid { line, column, .. } => (line, column),
                _ => (1, 1),
            };
            return Ok(skip(kind, pos, e.message));
        }
    };
    if let Err(refusal) = check(&node) {
        return Ok(skip(
            refusal.kind,
            super::toml_rules::line_col(text, qspan.start),
            refusal.message,
        ));
    }
    let meta = meta(r, id.clone(), file).map_err(fail)?;
    let needs_argv = node.needs_argv();
    Ok(Parsed {
        rules: vec![Rule {
            meta: Arc::new(meta.finish()),
            cond: Condition::Eql(node),
            overrides: Vec::new(),
            needs_argv,
            watch_names: true,
        }],
        skipped: Vec::new(),
    })
}

/// The rule's metadata, or what is wrong with it.
fn meta(r: ElasticRule, id: String, file: &str) -> Result<RuleMeta, String> {
    if r.risk_score > 100 {
        return Err(format!("expected risk_score 0-100, found {}", r.risk_score));
    }
    let severity: Severity = match r.severity.as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => {
            return Err(format!(
                "expected severity low, medium, high or critical, found `{other}`"
            ));
        }
    };
    let (tactics, techniques) = threat(&r.threat)?;
    Ok(RuleMeta {
        id,
        name: r.name,
        description: r.description.trim().to_string(),
        severity,
        confidence: Confidence::Medium,
        risk_score: r.risk_score,
        tactics,
        techniques,
        references: r.references,
        false_positives: r.false_positives,
        source: file.into(),
        ecs_rule: empty_raw(),
        ecs_threat: empty_raw(),
        ecs_threat_masquerade: empty_raw(),
    })
}

/// Tactics and techniques (sub-techniques included) of `[[rule.threat]]`, each once.
fn threat(entries: &[ThreatEntry]) -> Result<(Vec<MitreRef>, Vec<MitreRef>), String> {
    let mut tactics: Vec<MitreRef> = Vec::new();
    let mut techniques: Vec<MitreRef> = Vec::new();
    let add = |v: &mut Vec<MitreRef>, r: MitreRef| {
        if !v.iter().any(|x| x.id == r.id) {
            v.push(r);
        }
    };
    for t in entries {
        add(
            &mut tactics,
            tactic_ref(&t.tactic.id, t.tactic.name.as_deref())?,
        );
        for te in &t.technique {
            add(&mut techniques, technique_ref(&te.id, te.name.as_deref())?);
            for st in &te.subtechnique {
                add(&mut techniques, technique_ref(&st.id, st.name.as_deref())?);
            }
        }
    }
    Ok((tactics, techniques))
}
