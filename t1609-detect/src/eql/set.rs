//! Long value lists compiled for evaluation: `in (...)`, `in~ (...)` and `: (...)` /
//! `like (...)` lists of many values become one hash lookup and one Aho-Corasick scan
//! instead of a comparison per value. Elastic's rules list dozens of names, paths and
//! argument patterns per test; the engine compiles them once per rule load.
//!
//! [`Node::optimized`] also orders the terms of each `and` cheapest first (evaluation
//! has no side effects, so the answer is the same).

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind};

use super::{
    ast::{Node, Pattern, StrTest},
    eval::pat_match,
};
use crate::index::FastHash;

/// Lists shorter than this stay as they are.
const MIN_LEN: usize = 4;

/// A compiled list of values and patterns: the value matches when any entry does.
#[derive(Clone, Debug)]
pub struct StrSet {
    /// Entries are lowercase and compared case-insensitively.
    ci: bool,
    exact: HashSet<String, FastHash>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    contains: Option<AhoCorasick>,
    globs: Vec<Pattern>,
    /// An entry, for example events.
    pub(crate) sample: String,
}

impl StrSet {
    fn new(pats: &[Pattern], ci: bool) -> Option<StrSet> {
        let mut s = StrSet {
            ci,
            exact: HashSet::default(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            contains: None,
            globs: Vec::new(),
            sample: String::new(),
        };
        let mut contains = Vec::new();
        for p in pats {
            match p {
                Pattern::Exact(x) => {
                    s.exact.insert(x.clone());
                }
                Pattern::Prefix(x) => s.prefixes.push(x.clone()),
                Pattern::Suffix(x) => s.suffixes.push(x.clone()),
                Pattern::Contains(x) => contains.push(x.clone()),
                Pattern::Glob(_) => s.globs.push(p.clone()),
            }
        }
        // Case-insensitive patterns are lowercase; a non-ASCII one would need Unicode
        // folding in the automaton: leave such lists to the plain evaluator.
        if ci && pats.iter().any(|p| !pattern_is_ascii(p)) {
            return None;
        }
        if !contains.is_empty() {
            s.contains = Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(ci)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&contains)
                    .ok()?,
            );
        }
        s.sample = pats.first().map(Pattern::example).unwrap_or_default();
        Some(s)
    }

    pub(crate) fn matches(&self, x: &str) -> bool {
        if self.ci {
            if x.is_ascii() {
                if x.bytes().any(|b| b.is_ascii_uppercase()) {
                    return self.matches_exact_case(&x.to_ascii_lowercase());
                }
                return self.matches_exact_case(x);
            }
            // As the plain evaluator does: lowercase non-ASCII text fully.
            return self.matches_exact_case(&x.to_lowercase());
        }
        self.matches_exact_case(x)
    }

    /// `x` is already in the entries' case.
    fn matches_exact_case(&self, x: &str) -> bool {
        self.exact.contains(x)
            || self.prefixes.iter().any(|p| x.starts_with(p.as_str()))
            || self.suffixes.iter().any(|p| x.ends_with(p.as_str()))
            || self.contains.as_ref().is_some_and(|ac| ac.is_match(x))
            || self.globs.iter().any(|g| pat_match(g, x, false))
    }
}

fn pattern_is_ascii(p: &Pattern) -> bool {
    match p {
        Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) | Pattern::Contains(s) => {
            s.is_ascii()
        }
        Pattern::Glob(g) => g.iter().all(char::is_ascii),
    }
}

/// A rough cost of evaluating `n`, to order `and` terms.
fn cost(n: &Node) -> u32 {
    match n {
        Node::Const(_) | Node::Bool(..) | Node::Exists(_) => 1,
        Node::Num(..) | Node::NumIn(..) | Node::Length(..) => 2,
        Node::Str(_, t) => match t {
            StrTest::Cmp(..) | StrTest::StartsWith(..) | StrTest::EndsWith(..) => 3,
            StrTest::In(v) | StrTest::InCi(v) => 3 + u32::try_from(v.len().min(8)).unwrap_or(8),
            StrTest::Set(_) | StrTest::Contains(..) => 6,
            StrTest::Wild { pats, .. } => 4 + 2 * u32::try_from(pats.len().min(8)).unwrap_or(8),
            StrTest::Regex(_) => 30,
        },
        Node::Not(c) => cost(c),
        Node::And(v) | Node::Or(v) => v.iter().map(cost).sum(),
    }
}

impl Node {
    /// This condition with long lists compiled and `and` terms ordered cheapest first.
    #[must_use]
    pub fn optimized(self) -> Node {
        match self {
            Node::And(v) => {
                let mut v: Vec<Node> = v.into_iter().map(Node::optimized).collect();
                v.sort_by_key(cost);
                Node::And(v)
            }
            Node::Or(v) => Node::Or(v.into_iter().map(Node::optimized).collect()),
            Node::Not(c) => Node::Not(Box::new(c.optimized())),
            Node::Str(f, t) => Node::Str(f, compile(t)),
            n => n,
        }
    }
}

fn compile(t: StrTest) -> StrTest {
    let set = match &t {
        StrTest::Wild { pats, ci } if pats.len() >= MIN_LEN => StrSet::new(pats, *ci),
        StrTest::In(v) if v.len() >= MIN_LEN => StrSet::new(
            &v.iter()
                .map(|s| Pattern::Exact(s.clone()))
                .collect::<Vec<_>>(),
            false,
        ),
        StrTest::InCi(v) if v.len() >= MIN_LEN => StrSet::new(
            &v.iter()
                .map(|s| Pattern::Exact(s.clone()))
                .collect::<Vec<_>>(),
            true,
        ),
        _ => None,
    };
    match set {
        Some(s) => StrTest::Set(Box::new(s)),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        eql::{ctx, parse_query},
        event::ProcessEvent,
    };

    /// The compiled lists answer as the plain ones on every value tried.
    #[test]
    fn compiled_lists_agree_with_plain_evaluation() {
        let queries = [
            r#"process where process.name in ("a", "bb", "ccc", "Dd", "e")"#,
            r#"process where process.name in~ ("a", "BB", "ccc", "dd", "É")"#,
            r#"process where process.name in~ ("a", "BB", "ccc", "dd", "e")"#,
            r#"process where process.name : ("a*", "*Bb", "*cC*", "d?d", "eE", "*")"#,
            r#"process where process.name like ("a*", "*Bb", "*cC*", "d?d", "eE")"#,
            r#"process where process.name like~ ("a*", "*Bb", "*cC*", "d?d", "eE")"#,
        ];
        let values = [
            "", "a", "A", "ab", "bb", "xBb", "XBB", "zccz", "ZCCZ", "dxd", "ee", "EE", "é", "É",
            "ccc", "Dd", "dd", "e", "K",
        ];
        for q in queries {
            let plain = parse_query(q).expect("parse");
            let fast = plain.clone().optimized();
            assert!(
                matches!(&fast, Node::Str(_, StrTest::Set(_))) || q.contains('É'),
                "{q}"
            );
            for v in values {
                let ev = ProcessEvent {
                    process: crate::event::Process {
                        name: Some(v.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                assert_eq!(
                    fast.eval(&ctx(&ev, None)),
                    plain.eval(&ctx(&ev, None)),
                    "{q} on {v:?}"
                );
            }
        }
    }
}
