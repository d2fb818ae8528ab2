//! TOML rule files: the `[[rule]]` format with EQL queries, compiled into [`Rule`]s with
//! errors that point at the file, line and column.

use std::{ops::Range, sync::Arc};

use serde::Deserialize;
use t1609_ecs::{Confidence, MitreRef, Severity};

use super::mitre::{tactic_ref, technique_ref};
use crate::{
    argv,
    eql::{self, EqlError, Field, Node, StrTest},
    rules::{Condition, Rule, RuleError, RuleMeta, SeverityOverride, empty_raw},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    name: String,
    description: String,
    severity: Severity,
    confidence: Confidence,
    risk_score: u8,
    #[serde(default = "default_tactics")]
    tactics: Vec<String>,
    techniques: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    false_positives: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
    /// `false`: the rule's executable names stay out of the kernel's watch set.
    #[serde(default = "yes")]
    watch: bool,
    query: toml::Spanned<String>,
    #[serde(default)]
    severity_when: Vec<OverrideSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideSpec {
    condition: toml::Spanned<String>,
    severity: Severity,
    risk_score: Option<u8>,
}

fn default_tactics() -> Vec<String> {
    vec!["TA0002".into()]
}

fn yes() -> bool {
    true
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub(super) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The file a rule comes from, which its errors point into.
pub(super) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    pub(super) fn invalid(&self, (line, column): (usize, usize), message: String) -> RuleError {
        RuleError::Invalid {
            file: self.file.into(),
            line,
            column,
            message,
        }
    }

    /// An error at byte offset `at` of the file.
    pub(super) fn at(&self, at: usize, message: String) -> RuleError {
        self.invalid(line_col(self.text, at), message)
    }

    /// An EQL error inside the TOML string value at `span`, mapped back to the file:
    /// finds where the string's content starts (after `'''`/`"""` and a trimmed newline,
    /// or one quote) and adds the error's line/column. Exact for literal strings, which
    /// the pack uses.
    pub(super) fn in_string(&self, span: Range<usize>, e: &EqlError, message: String) -> RuleError {
        let text = self.text;
        let mut span = span;
        // The span may start at the key (`query = ...`): move to the opening quote.
        if let Some(q) = text.get(span.clone()).and_then(|r| r.find(['\'', '"'])) {
            span.start += q;
        }
        let raw = text.get(span.clone()).unwrap_or("");
        let mut start = span.start;
        if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            start += 3;
            if text[start..].starts_with("\r\n") {
                start += 2;
            } else if text[start..].starts_with('\n') {
                start += 1;
            }
        } else if raw.starts_with('\'') || raw.starts_with('"') {
            start += 1;
        }
        let (l0, c0) = line_col(text, start);
        let pos = if e.line == 1 {
            (l0, c0 + e.column - 1)
        } else {
            (l0 + e.line - 1, e.column)
        };
        self.invalid(pos, message)
    }
}

/// Parses one TOML rule file.
pub(super) fn parse_toml_rules(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let src = Source { file, text };
    let parsed: RuleFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        vec![src.at(at, e.message().trim().to_string())]
    })?;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for spec in parsed.rule {
        match compile_spec(&src, spec) {
            Ok(Some(r)) => rules.push(r),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// One `[[rule]]`: `None` when it is valid but disabled.
fn compile_spec(src: &Source, spec: RuleSpec) -> Result<Option<Rule>, RuleError> {
    let qspan = spec.query.span();
    let fail = |message: String| src.at(qspan.start, format!("rule `{}`: {message}", spec.id));
    if spec.id.trim().is_empty() || spec.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("expected an id without spaces".into()));
    }
    if spec.risk_score > 100 {
        return Err(fail(format!(
            "expected risk_score 0-100, found {}",
            spec.risk_score
        )));
    }
    // Any syntactically valid id; named by t1609-ecs's table where it knows it.
    let resolve = |ids: &[String], lookup: fn(&str, Option<&str>) -> Result<MitreRef, String>| {
        ids.iter()
            .map(|id| lookup(id, None).map_err(&fail))
            .collect::<Result<Vec<_>, _>>()
    };
    let tactics = resolve(&spec.tactics, tactic_ref)?;
    let techniques = resolve(&spec.techniques, technique_ref)?;
    if techniques.is_empty() {
        return Err(fail("expected at least one technique".into()));
    }
    let node = eql::parse_query(spec.query.get_ref()).map_err(|e| {
        src.in_string(
            qspan.clone(),
            &e,
            format!("rule `{}`: {}", spec.id, e.message),
        )
    })?;
    if let Err(r) = super::checks::check(&node) {
        return Err(src.at(qspan.start, format!("rule `{}`: {}", spec.id, r.message)));
    }
    if let Some(bad) = unknown_tool(&node) {
        return Err(fail(format!(
            "unknown t1609.argv.tool value `{bad}`; expected one of {}",
            argv::KNOWN_TOOLS.join(", ")
        )));
    }
    let overrides = spec
        .severity_when
        .iter()
        .map(|o| compile_override(src, &spec.id, o))
        .collect::<Result<Vec<_>, _>>()?;
    if !spec.enabled {
        return Ok(None);
    }
    let needs_argv = node.needs_argv() || overrides.iter().any(|o| o.cond.needs_argv());
    let meta = RuleMeta {
        id: spec.id,
        name: spec.name,
        description: spec.description,
        severity: spec.severity,
        confidence: spec.confidence,
        risk_score: spec.risk_score,
        tactics,
        techniques,
        references: spec.references,
        false_positives: spec.false_positives,
        source: src.file.into(),
        ecs_rule: empty_raw(),
        ecs_threat: empty_raw(),
        ecs_threat_masquerade: empty_raw(),
    };
    Ok(Some(Rule {
        meta: Arc::new(meta.finish()),
        cond: Condition::Eql(node),
        overrides,
        needs_argv,
        watch_names: spec.watch,
    }))
}

/// One `[[rule.severity_when]]` of rule `id`.
fn compile_override(
    src: &Source,
    id: &str,
    o: &OverrideSpec,
) -> Result<SeverityOverride, RuleError> {
    let span = o.condition.span();
    let cond = eql::parse_condition(o.condition.get_ref()).map_err(|e| {
        src.in_string(
            span.clone(),
            &e,
            format!("rule `{id}` severity_when: {}", e.message),
        )
    })?;
    if o.risk_score.is_some_and(|r| r > 100) {
        return Err(src.at(
            span.start,
            format!("rule `{id}`: expected risk_score 0-100"),
        ));
    }
    Ok(SeverityOverride {
        cond,
        severity: o.severity,
        risk_score: o.risk_score,
    })
}

/// A `t1609.argv.tool` literal that no parser produces (a typo would silently never match).
fn unknown_tool(n: &Node) -> Option<String> {
    let known = |t: &str| {
        argv::KNOWN_TOOLS.contains(&t)
            || argv::LIVE_WRAPPERS.contains(&t)
            || argv::SHELLS.contains(&t)
    };
    match n {
        Node::And(v) | Node::Or(v) => v.iter().find_map(unknown_tool),
        Node::Not(x) => unknown_tool(x),
        Node::Str(Field::ArgvTool, StrTest::In(v) | StrTest::InCi(v)) => {
            v.iter().find(|t| !known(t)).cloned()
        }
        Node::Str(Field::ArgvTool, StrTest::Cmp(_, t)) => (!known(t)).then(|| t.clone()),
        _ => None,
    }
}
