//! Rule files: the TOML rule format (EQL queries) and loading of rule files and
//! directories (TOML, and Sigma YAML through [`crate::sigma`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use t1609_ecs::{Confidence, Severity};
use crate::eql::{self, EqlError, Node};
use crate::sigma::SigmaRule;

/// A rule file problem. Positions are 1-based, within the named file.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: duplicate rule id `{id}` (already defined in {first})")]
    Duplicate {
        file: String,
        id: String,
        first: String,
    },
    #[error("{file}: {message}")]
    Unsupported { file: String, message: String },
}

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

#[derive(Clone, Debug, PartialEq)]
pub struct MitreRef {
    pub id: String,
    pub name: String,
    pub reference: String,
}

/// Rule metadata carried into alerts.
#[derive(Clone, Debug)]
pub struct RuleMeta {
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub confidence: Confidence,
    pub risk_score: u8,
    pub tactics: Vec<MitreRef>,
    pub techniques: Vec<MitreRef>,
    pub references: Vec<String>,
    pub false_positives: Vec<String>,
    /// File the rule came from (`builtin` for the shipped pack).
    pub source: String,
    /// The alert's `rule` and `threat` objects, serialised once at load time.
    pub(crate) ecs_rule: Box<serde_json::value::RawValue>,
    pub(crate) ecs_threat: Box<serde_json::value::RawValue>,
}

impl RuleMeta {
    /// Fills the pre-serialised alert fragments from the other fields.
    pub(crate) fn finish(mut self) -> Self {
        fn col(v: &[MitreRef], f: fn(&MitreRef) -> &str) -> Vec<String> {
            v.iter().map(|r| f(r).to_string()).collect()
        }
        let mut rule = serde_json::json!({
            "id": self.id, "name": self.name, "description": self.description, "ruleset": self.source,
        });
        if let (Some(first), Some(m)) = (self.references.first(), rule.as_object_mut()) {
            m.insert("reference".into(), serde_json::Value::String(first.clone()));
        }
        let threat = serde_json::json!({
            "framework": "MITRE ATT&CK",
            "tactic": {"id": col(&self.tactics, |r| &r.id), "name": col(&self.tactics, |r| &r.name), "reference": col(&self.tactics, |r| &r.reference)},
            "technique": {"id": col(&self.techniques, |r| &r.id), "name": col(&self.techniques, |r| &r.name), "reference": col(&self.techniques, |r| &r.reference)},
        });
        let raw = |v: &serde_json::Value| {
            serde_json::value::RawValue::from_string(v.to_string()).unwrap_or_else(|_| empty_raw())
        };
        self.ecs_rule = raw(&rule);
        self.ecs_threat = raw(&threat);
        self
    }
}

pub(crate) fn empty_raw() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("{}".into())
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
}

#[derive(Debug)]
pub(crate) enum Condition {
    Eql(Node),
    Sigma(Box<SigmaRule>),
}

#[derive(Debug)]
pub(crate) struct SeverityOverride {
    pub cond: Node,
    pub severity: Severity,
    pub risk_score: Option<u8>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub meta: std::sync::Arc<RuleMeta>,
    pub cond: Condition,
    pub overrides: Vec<SeverityOverride>,
    pub needs_argv: bool,
}

const TACTICS: &[(&str, &str)] = &[
    ("TA0002", "Execution"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
];
const TECHNIQUES: &[(&str, &str)] = &[
    ("T1609", "Container Administration Command"),
    ("T1610", "Deploy Container"),
    ("T1611", "Escape to Host"),
    ("T1613", "Container and Resource Discovery"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Unix Shell"),
    ("T1552.007", "Container API"),
    ("T1068", "Exploitation for Privilege Escalation"),
];

pub(crate) fn technique(id: &str) -> Option<MitreRef> {
    let (id, name) = TECHNIQUES.iter().find(|(t, _)| *t == id)?;
    Some(MitreRef {
        id: (*id).into(),
        name: (*name).into(),
        reference: format!(
            "https://attack.mitre.org/techniques/{}/",
            id.replace('.', "/")
        ),
    })
}
pub(crate) fn tactic(id: &str) -> Option<MitreRef> {
    let (id, name) = TACTICS.iter().find(|(t, _)| *t == id)?;
    Some(MitreRef {
        id: (*id).into(),
        name: (*name).into(),
        reference: format!("https://attack.mitre.org/tactics/{id}/"),
    })
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
pub(crate) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let mut at = at;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Maps an error inside a TOML string value back to the file: finds where the string's
/// content starts (after `'''`/`"""` and a trimmed newline, or one quote) and adds the
/// error's line/column. Exact for literal strings, which the pack uses.
fn eql_pos(text: &str, span: std::ops::Range<usize>, e: &EqlError) -> (usize, usize) {
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
    if e.line == 1 {
        (l0, c0 + e.column - 1)
    } else {
        (l0 + e.line - 1, e.column)
    }
}

/// Parses one TOML rule file.
pub(crate) fn parse_toml_rules(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let parsed: RuleFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        vec![RuleError::Invalid {
            file: file.into(),
            line,
            column,
            message: e.message().trim().to_string(),
        }]
    })?;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for spec in parsed.rule {
        match compile_spec(file, text, spec) {
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

fn compile_spec(file: &str, text: &str, spec: RuleSpec) -> Result<Option<Rule>, RuleError> {
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        RuleError::Invalid {
            file: file.into(),
            line,
            column,
            message,
        }
    };
    let qspan = spec.query.span();
    if spec.id.trim().is_empty() || spec.id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(at(
            qspan,
            format!("rule `{}`: expected an id without spaces", spec.id),
        ));
    }
    if spec.risk_score > 100 {
        return Err(at(
            qspan,
            format!(
                "rule `{}`: expected risk_score 0-100, found {}",
                spec.id, spec.risk_score
            ),
        ));
    }
    let mut tactics = Vec::new();
    for t in &spec.tactics {
        tactics.push(tactic(t).ok_or_else(|| {
            at(
                qspan.clone(),
                format!(
                    "rule `{}`: unknown tactic `{t}`; expected one of {}",
                    spec.id,
                    TACTICS.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
                ),
            )
        })?);
    }
    let mut techniques = Vec::new();
    for t in &spec.techniques {
        techniques.push(technique(t).ok_or_else(|| {
            at(
                qspan.clone(),
                format!(
                    "rule `{}`: unknown technique `{t}`; expected one of {}",
                    spec.id,
                    TECHNIQUES
                        .iter()
                        .map(|t| t.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?);
    }
    if techniques.is_empty() {
        return Err(at(
            qspan,
            format!("rule `{}`: expected at least one technique", spec.id),
        ));
    }
    let node = eql::parse_query(spec.query.get_ref()).map_err(|e| {
        let (line, column) = eql_pos(text, qspan.clone(), &e);
        RuleError::Invalid {
            file: file.into(),
            line,
            column,
            message: format!("rule `{}`: {}", spec.id, e.message),
        }
    })?;
    if let Some(bad) = unknown_tool(&node) {
        let (line, column) = line_col(text, qspan.start);
        return Err(RuleError::Invalid {
            file: file.into(),
            line,
            column,
            message: format!(
                "rule `{}`: unknown t1609.argv.tool value `{bad}`; expected one of {}",
                spec.id,
                crate::argv::KNOWN_TOOLS.join(", ")
            ),
        });
    }
    let mut overrides = Vec::new();
    for o in spec.severity_when {
        let span = o.condition.span();
        let cond = eql::parse_condition(o.condition.get_ref()).map_err(|e| {
            let (line, column) = eql_pos(text, span.clone(), &e);
            RuleError::Invalid {
                file: file.into(),
                line,
                column,
                message: format!("rule `{}` severity_when: {}", spec.id, e.message),
            }
        })?;
        if o.risk_score.is_some_and(|r| r > 100) {
            return Err(at(
                span,
                format!("rule `{}`: expected risk_score 0-100", spec.id),
            ));
        }
        overrides.push(SeverityOverride {
            cond,
            severity: o.severity,
            risk_score: o.risk_score,
        });
    }
    if !spec.enabled {
        return Ok(None);
    }
    let needs_argv = node.needs_argv() || overrides.iter().any(|o| o.cond.needs_argv());
    Ok(Some(Rule {
        meta: std::sync::Arc::new(
            RuleMeta {
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
                source: file.into(),
                ecs_rule: empty_raw(),
                ecs_threat: empty_raw(),
            }
            .finish(),
        ),
        cond: Condition::Eql(node),
        overrides,
        needs_argv,
    }))
}

/// A `t1609.argv.tool` literal that no parser produces (a typo would silently never match).
fn unknown_tool(n: &Node) -> Option<String> {
    use crate::eql::{Field, StrTest};
    let known = |t: &str| {
        crate::argv::KNOWN_TOOLS.contains(&t)
            || crate::argv::LIVE_WRAPPERS.contains(&t)
            || crate::argv::SHELLS.contains(&t)
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

/// The shipped pack.
pub(crate) const BUILTIN: &[(&str, &str)] = &[(
    "builtin:rules/t1609.toml",
    include_str!("../rules/t1609.toml"),
)];

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
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(source) => {
            errors.push(RuleError::Io { file, source });
            return;
        }
    };
    let r = if ext == "toml" {
        parse_toml_rules(&file, &text)
    } else {
        crate::sigma::parse_sigma_rules(&file, &text)
    };
    match r {
        Ok(r) => out.extend(r),
        Err(e) => errors.extend(e),
    }
}

fn load_path(path: &Path, out: &mut Vec<Rule>, errors: &mut Vec<RuleError>, depth: u8) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
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
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for r in &rules {
        if let Some(first) = seen.get(&r.meta.id) {
            errors.push(RuleError::Duplicate {
                file: r.meta.source.clone(),
                id: r.meta.id.clone(),
                first: first.clone(),
            });
        } else {
            seen.insert(r.meta.id.clone(), r.meta.source.clone());
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}
