//! Sigma rules (`logsource: {product: linux, category: process_creation}`): parsed and
//! lowered by rsigma (its modifier-resolved HIR), then translated into the engine's own
//! condition tree, so that Sigma rules share the EQL evaluator and, above all, the
//! literal index. A rule using a construct the translation does not cover (encodings,
//! CIDR, field references...) is evaluated by rsigma-eval instead, on every event.
//!
//! Field mapping (Sigma -> our event):
//!
//! | Sigma | ECS |
//! |---|---|
//! | `Image` | `process.executable` |
//! | `OriginalFileName` | `process.name` |
//! | `CommandLine` | `process.command_line` |
//! | `ParentImage` | `process.parent.executable` |
//! | `ParentCommandLine` | `process.parent.command_line` |
//! | `User` | `user.name` |
//! | `CurrentDirectory` | `process.working_directory` |
//! | `ProcessId` | `process.pid` |
//! | `ParentProcessId` | `process.parent.pid` |
//!
//! Any other field in a rule's detection is refused, with a reason when one is known
//! (the crate's `load` module reads Sigma files).

use std::collections::HashMap;

use rsigma_eval::{CompiledRule, JsonEvent, evaluate_rule};
use rsigma_ir::{
    IrCondition, IrDetection, IrDetectionItem, IrMatcher, IrNumber, IrPatternPart, IrRule, IrStrOp,
};
use rsigma_parser::{Quantifier, SelectorPattern};
use serde_json::{Map, Value};

use crate::{
    eql::{Attr, Cmp, Field, Kind, Node, Pattern, StrTest, Who},
    event::ProcessEvent,
};

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

/// The event field a Sigma field maps to, or why there is none.
pub(crate) fn sigma_field(name: &str) -> Result<Field, String> {
    let p = |a| Field::Proc(Who::Process, a);
    Ok(match name {
        "Image" => p(Attr::Executable),
        "OriginalFileName" => p(Attr::Name),
        "CommandLine" => p(Attr::CommandLine),
        "ParentImage" => Field::Proc(Who::Parent, Attr::Executable),
        "ParentCommandLine" => Field::Proc(Who::Parent, Attr::CommandLine),
        "User" => Field::UserName,
        "CurrentDirectory" => p(Attr::WorkingDirectory),
        "ProcessId" => p(Attr::Pid),
        "ParentProcessId" => Field::Proc(Who::Parent, Attr::Pid),
        "LogonId" => {
            return Err(
                "unsupported field `LogonId`: Sysmon for Linux packs the user id and the terminal's index into it, which the agent does not reproduce"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "unknown field `{other}`; expected one of {}",
                SIGMA_FIELDS.join(", ")
            ));
        }
    })
}

/// Why a rule could not be translated.
#[derive(Debug)]
pub(crate) enum Untranslated {
    /// A field with no mapping: the rule cannot be evaluated at all.
    Field(String),
    /// A construct the translation does not cover (named): rsigma-eval can still run it.
    Construct(&'static str),
}

/// The rule's condition as ours.
pub(crate) fn translate(rule: &IrRule) -> Result<Node, Untranslated> {
    let mut dets: HashMap<&str, Node> = HashMap::new();
    for (name, d) in &rule.detections {
        dets.insert(name, detection(d)?);
    }
    let mut conds = Vec::with_capacity(rule.conditions.len());
    for c in &rule.conditions {
        conds.push(condition(c, &dets)?);
    }
    Ok(match conds.len() {
        1 => conds.pop().unwrap_or(Node::Const(false)),
        _ => Node::Or(conds),
    }
    .simplified())
}

fn construct(what: &'static str) -> Untranslated {
    Untranslated::Construct(what)
}

fn condition(c: &IrCondition, dets: &HashMap<&str, Node>) -> Result<Node, Untranslated> {
    Ok(match c {
        IrCondition::Detection(name) => dets
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| construct("a condition naming an unknown detection"))?,
        IrCondition::And(v) => Node::And(
            v.iter()
                .map(|x| condition(x, dets))
                .collect::<Result<_, _>>()?,
        ),
        IrCondition::Or(v) => Node::Or(
            v.iter()
                .map(|x| condition(x, dets))
                .collect::<Result<_, _>>()?,
        ),
        IrCondition::Not(x) => Node::Not(Box::new(condition(x, dets)?)),
        IrCondition::Selector {
            quantifier,
            pattern,
        } => {
            let mut names: Vec<&&str> = dets
                .keys()
                .filter(|n| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => crate::eql::glob_ci(p, n),
                })
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(construct("a selector that names no detection"));
            }
            let nodes: Vec<Node> = names
                .iter()
                .filter_map(|n| dets.get(**n).cloned())
                .collect();
            match quantifier {
                Quantifier::Any | Quantifier::Count(1) => Node::Or(nodes),
                Quantifier::All => Node::And(nodes),
                Quantifier::Count(_) => return Err(construct("`N of` with N above 1")),
            }
        }
    })
}

fn detection(d: &IrDetection) -> Result<Node, Untranslated> {
    Ok(match d {
        IrDetection::AllOf(items) => Node::And(items.iter().map(item).collect::<Result<_, _>>()?),
        IrDetection::AnyOf(v) | IrDetection::And(v) => {
            let nodes = v.iter().map(detection).collect::<Result<_, _>>()?;
            if matches!(d, IrDetection::And(_)) {
                Node::And(nodes)
            } else {
                Node::Or(nodes)
            }
        }
        IrDetection::Keywords(_) => return Err(construct("keyword detections (no field)")),
        IrDetection::ArrayMatch { .. } | IrDetection::Conditional { .. } => {
            return Err(construct("array matching"));
        }
    })
}

fn item(i: &IrDetectionItem) -> Result<Node, Untranslated> {
    let Some(name) = i.field.as_deref() else {
        return Err(construct("keyword detections (no field)"));
    };
    let f = sigma_field(name).map_err(Untranslated::Field)?;
    if let Some(b) = i.exists {
        return Ok(exists(f, b));
    }
    matcher(f, &i.matcher)
}

fn exists(f: Field, b: bool) -> Node {
    if b {
        Node::Exists(f)
    } else {
        Node::Not(Box::new(Node::Exists(f)))
    }
}

fn number(n: &IrNumber) -> Option<i64> {
    match n {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "only integral values in i64's range get here"
        )]
        IrNumber::Literal(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(*x as i64),
        _ => None,
    }
}

fn matcher(f: Field, m: &IrMatcher) -> Result<Node, Untranslated> {
    let kind = f.kind();
    let is_str = matches!(kind, Kind::Str | Kind::StrArray);
    Ok(match m {
        IrMatcher::Str {
            op,
            pattern,
            case_insensitive,
        } => {
            if kind == Kind::Num {
                let n = pattern
                    .as_plain()
                    .and_then(|p| p.trim().parse::<i64>().ok())
                    .ok_or_else(|| construct("a string value on a number field"))?;
                return Ok(Node::Num(f, Cmp::Eq, n));
            }
            if !is_str {
                return Err(construct("a string value on a boolean field"));
            }
            Node::Str(f, str_test(*op, &pattern.parts, *case_insensitive)?)
        }
        IrMatcher::Regex {
            pattern,
            case_insensitive,
            multiline,
            dotall,
            ..
        } if is_str => {
            let mut flags = String::new();
            for (on, c) in [(*case_insensitive, 'i'), (*multiline, 'm'), (*dotall, 's')] {
                if on {
                    flags.push(c);
                }
            }
            let src = if flags.is_empty() {
                pattern.clone()
            } else {
                format!("(?{flags}){pattern}")
            };
            Node::Str(f, StrTest::Regex(regex(&src)?))
        }
        IrMatcher::NumericEq(n)
        | IrMatcher::NumericGt(n)
        | IrMatcher::NumericGte(n)
        | IrMatcher::NumericLt(n)
        | IrMatcher::NumericLte(n)
            if kind == Kind::Num =>
        {
            let x = number(n).ok_or_else(|| construct("a non-integral number"))?;
            let cmp = match m {
                IrMatcher::NumericGt(_) => Cmp::Gt,
                IrMatcher::NumericGte(_) => Cmp::Ge,
                IrMatcher::NumericLt(_) => Cmp::Lt,
                IrMatcher::NumericLte(_) => Cmp::Le,
                _ => Cmp::Eq,
            };
            Node::Num(f, cmp, x)
        }
        IrMatcher::Exists(b) => exists(f, *b),
        IrMatcher::Null => exists(f, false),
        IrMatcher::BoolEq(b) if kind == Kind::Bool => Node::Bool(f, Cmp::Eq, *b),
        IrMatcher::Not(x) => Node::Not(Box::new(matcher(f, x)?)),
        IrMatcher::AnyOf(v) => Node::Or(v.iter().map(|x| matcher(f, x)).collect::<Result<_, _>>()?),
        IrMatcher::AllOf(v) => {
            Node::And(v.iter().map(|x| matcher(f, x)).collect::<Result<_, _>>()?)
        }
        _ => {
            return Err(construct(
                "an encoding, CIDR, field reference or placeholder modifier",
            ));
        }
    })
}

fn regex(src: &str) -> Result<regex::Regex, Untranslated> {
    regex::RegexBuilder::new(src)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| construct("a regex the regex crate cannot compile"))
}

/// A Sigma string match: our wildcard pattern when its literal parts hold no `*` or `?`
/// (which our patterns cannot escape), else the regex rsigma itself would build.
fn str_test(op: IrStrOp, parts: &[IrPatternPart], ci: bool) -> Result<StrTest, Untranslated> {
    let literal_wild = parts
        .iter()
        .any(|p| matches!(p, IrPatternPart::Literal(t) if t.contains(['*', '?'])));
    let (lead, trail) = match op {
        IrStrOp::Exact => ("", ""),
        IrStrOp::Contains => ("*", "*"),
        IrStrOp::StartsWith => ("", "*"),
        IrStrOp::EndsWith => ("*", ""),
    };
    if literal_wild {
        let mut re = String::from(if ci { "(?i)" } else { "" });
        if lead.is_empty() {
            re.push('^');
        }
        for p in parts {
            match p {
                IrPatternPart::Literal(t) => re.push_str(&regex::escape(t)),
                IrPatternPart::WildcardMulti => re.push_str(".*"),
                IrPatternPart::WildcardSingle => re.push('.'),
            }
        }
        if trail.is_empty() {
            re.push('$');
        }
        return Ok(StrTest::Regex(regex(&re)?));
    }
    let mut text = String::from(lead);
    for p in parts {
        match p {
            IrPatternPart::Literal(t) => text.push_str(t),
            IrPatternPart::WildcardMulti => text.push('*'),
            IrPatternPart::WildcardSingle => text.push('?'),
        }
    }
    text.push_str(trail);
    let pat = if ci { text.to_lowercase() } else { text };
    Ok(StrTest::Wild {
        pats: vec![Pattern::compile(&pat)],
        ci,
    })
}

/// A compiled Sigma rule that rsigma-eval runs (the translation did not cover it).
#[derive(Debug)]
pub struct SigmaRule {
    compiled: CompiledRule,
}

impl SigmaRule {
    pub(crate) fn new(compiled: CompiledRule) -> Self {
        Self { compiled }
    }

    pub(crate) fn matches(&self, doc: &Value) -> bool {
        evaluate_rule(&self.compiled, &JsonEvent::borrow(doc)).is_some()
    }
}

/// The event as a Sigma `process_creation` document (absent fields omitted).
pub fn sigma_doc(ev: &ProcessEvent) -> Value {
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
