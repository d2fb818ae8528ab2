//! Checks of a parsed condition that every rule format shares: it can match something
//! the agent records, and it tests only environment variables the agent captures.

use crate::{
    eql::{Attr, Field, Node, StrTest, Who, kind_literals},
    event::{ENV_VARS_CAPTURED, EventType},
};

/// Why a parsed condition cannot be loaded, and which [`super::SkipKind`] that is.
pub(super) struct Refusal {
    pub kind: super::SkipKind,
    pub message: String,
}

/// Checks `node`: it must be able to match an exec or an exit, and any
/// `process.env_vars` test must name a captured variable.
pub(super) fn check(node: &Node) -> Result<(), Refusal> {
    let exec = node.specialize(EventType::Start, Some("exec"));
    let exit = node.specialize(EventType::End, Some("end"));
    if matches!(exec, Node::Const(false)) && matches!(exit, Node::Const(false)) {
        let tests = kind_literals(node);
        return Err(Refusal {
            kind: super::SkipKind::OtherEventType,
            message: format!(
                "the query can only match events the agent does not produce (it produces execs, `event.type: start`, `event.action: exec`, and exits, `end`/`end`){}",
                if tests.is_empty() {
                    String::new()
                } else {
                    format!("; it tests {}", tests.join(", "))
                }
            ),
        });
    }
    let mut bad = None;
    node_env_tests(node, &mut |t| {
        if bad.is_none() {
            bad = env_refusal(t);
        }
    });
    match bad {
        Some(message) => Err(Refusal {
            kind: super::SkipKind::FieldNotProvided,
            message,
        }),
        None => Ok(()),
    }
}

fn node_env_tests(n: &Node, f: &mut dyn FnMut(&StrTest)) {
    match n {
        Node::And(v) | Node::Or(v) => v.iter().for_each(|c| node_env_tests(c, f)),
        Node::Not(c) => node_env_tests(c, f),
        Node::Str(Field::Proc(Who::Process, Attr::EnvVars), t) => f(t),
        _ => {}
    }
}

/// A `process.env_vars` test whose values name no captured variable: it could never
/// match a captured event, so it is refused rather than silently false.
fn env_refusal(t: &StrTest) -> Option<String> {
    let values: Vec<String> = match t {
        StrTest::Cmp(_, s) => vec![s.clone()],
        StrTest::In(v) | StrTest::InCi(v) => v.clone(),
        StrTest::Wild { pats, .. } => pats.iter().map(pattern_text).collect(),
        StrTest::StartsWith(s, _) => vec![format!("{s}*")],
        StrTest::EndsWith(s, _) | StrTest::Contains(s, _) => vec![format!("*{s}")],
        StrTest::Regex(_) | StrTest::Set(_) => return None,
    };
    for v in values {
        // `NAME=value`: the name is what precedes the first `=`; a wildcard in it can
        // match several names.
        let name = v.split('=').next().unwrap_or("");
        let captured = ENV_VARS_CAPTURED
            .iter()
            .any(|c| crate::eql::glob_ci(name, c));
        if !captured {
            return Some(format!(
                "process.env_vars: `{v}` names no variable the agent captures; it captures only {}",
                ENV_VARS_CAPTURED.join(", ")
            ));
        }
    }
    None
}

fn pattern_text(p: &crate::eql::Pattern) -> String {
    use crate::eql::Pattern;
    match p {
        Pattern::Exact(s) => s.clone(),
        Pattern::Prefix(s) => format!("{s}*"),
        Pattern::Suffix(s) => format!("*{s}"),
        Pattern::Contains(s) => format!("*{s}*"),
        Pattern::Glob(g) => g.iter().collect(),
    }
}
