//! Constant folding: a condition specialised for one kind of event, with the tests of
//! `event.type`, `event.action` and `event.category` replaced by their answers.
//!
//! Nearly every Elastic rule opens with `event.type == "start" and event.action in
//! (...)`. Folded once per rule and event kind at load time, those tests cost nothing
//! per event, leave the literal index only the tests that tell events apart, and show
//! which rules can never match anything the agent produces.

use super::{
    ast::{Node, StrTest},
    eval::ctx,
    fields::Field,
};
use crate::event::{EventType, ProcessEvent};

impl Node {
    /// This condition for events of `event_type` whose `event.action` is `action`.
    #[must_use]
    pub fn specialize(&self, event_type: EventType, action: Option<&str>) -> Node {
        let probe = ProcessEvent {
            event_type,
            event_action: action
                .filter(|a| Some(*a) != event_type.default_action())
                .map(str::to_owned),
            ..Default::default()
        };
        fold(self, &probe)
    }

    /// Simplifies `And`/`Or`/`Not` around constants (and flattens nested lists).
    #[must_use]
    pub fn simplified(self) -> Node {
        match self {
            Node::And(v) => {
                let mut out = Vec::with_capacity(v.len());
                for n in v {
                    match n.simplified() {
                        Node::Const(true) => {}
                        Node::Const(false) => return Node::Const(false),
                        Node::And(inner) => out.extend(inner),
                        n => out.push(n),
                    }
                }
                match out.len() {
                    0 => Node::Const(true),
                    1 => out.pop().unwrap_or(Node::Const(true)),
                    _ => Node::And(out),
                }
            }
            Node::Or(v) => {
                let mut out = Vec::with_capacity(v.len());
                for n in v {
                    match n.simplified() {
                        Node::Const(false) => {}
                        Node::Const(true) => return Node::Const(true),
                        Node::Or(inner) => out.extend(inner),
                        n => out.push(n),
                    }
                }
                match out.len() {
                    0 => Node::Const(false),
                    1 => out.pop().unwrap_or(Node::Const(false)),
                    _ => Node::Or(out),
                }
            }
            Node::Not(n) => match n.simplified() {
                Node::Const(b) => Node::Const(!b),
                Node::Not(inner) if !matches!(*inner, Node::Length(..)) => *inner,
                n => Node::Not(Box::new(n)),
            },
            n => n,
        }
    }
}

/// Whether `f` is answered by the event's kind alone.
fn by_kind(f: Field) -> bool {
    matches!(
        f,
        Field::EventType | Field::EventAction | Field::EventCategory
    )
}

fn fold(n: &Node, probe: &ProcessEvent) -> Node {
    let leaf = |f: Field| {
        if by_kind(f) {
            Node::Const(n.eval(&ctx(probe, None)))
        } else {
            n.clone()
        }
    };
    match n {
        Node::And(v) => Node::And(v.iter().map(|c| fold(c, probe)).collect()).simplified(),
        Node::Or(v) => Node::Or(v.iter().map(|c| fold(c, probe)).collect()).simplified(),
        Node::Not(c) => Node::Not(Box::new(fold(c, probe))).simplified(),
        Node::Const(_) => n.clone(),
        Node::Str(f, _)
        | Node::Num(f, _, _)
        | Node::NumIn(f, _)
        | Node::Bool(f, _, _)
        | Node::Length(f, _, _)
        | Node::Exists(f) => leaf(*f),
    }
}

/// The `event.type`/`event.action` values a condition tests, for reasons given when it
/// can never match (`event.type == "info"`).
pub(crate) fn kind_literals(n: &Node) -> Vec<String> {
    let mut out = Vec::new();
    walk(n, &mut |x| {
        if let Node::Str(f @ (Field::EventType | Field::EventAction), t) = x {
            let vals: Vec<&String> = match t {
                StrTest::Cmp(_, s) => vec![s],
                StrTest::In(v) | StrTest::InCi(v) => v.iter().collect(),
                _ => Vec::new(),
            };
            for v in vals {
                let s = format!("{f} == {v:?}");
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    });
    out
}

fn walk(n: &Node, f: &mut dyn FnMut(&Node)) {
    f(n);
    match n {
        Node::And(v) | Node::Or(v) => v.iter().for_each(|c| walk(c, f)),
        Node::Not(c) => walk(c, f),
        _ => {}
    }
}
