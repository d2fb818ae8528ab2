//! Agreement with Elasticsearch's semantics, property-tested: random events and random
//! queries over `==`, `!=`, `:`, `like~`, `in~`, `regex~`, `not`, `and`, `or`, on a
//! string field and an array field (each present, empty or absent), through the whole
//! engine (parse, folding, compiled lists, the literal index, evaluation), against a
//! small reference evaluator written here from the semantics:
//!
//! - a test on an absent field is false (so its `not` is true);
//! - a test on an array holds when some element passes (so `!=`, which is `not ==`,
//!   holds when no element equals);
//! - `==` compares exactly; `:`, `like~`, `in~` and `regex~` ignore case; wildcards
//!   `*` and `?` and regexes match the whole value.

use std::{io::Write, path::PathBuf};

use proptest::prelude::*;
use t1609_detect::{
    Engine,
    event::{Process, ProcessEvent, RelatedProcess},
};

#[derive(Clone, Debug)]
enum Op {
    Eq(String),
    Ne(String),
    Colon(Vec<String>),
    LikeCi(Vec<String>),
    InCi(Vec<String>),
    /// A regex of literal characters, `.` and `.*` (as tokens).
    RegexCi(Vec<Tok>),
}

#[derive(Clone, Debug)]
enum Tok {
    Char(char),
    Any,
    AnyRun,
}

#[derive(Clone, Copy, Debug)]
enum F {
    Name,
    Args,
    ParentName,
}

#[derive(Clone, Debug)]
enum Q {
    Test(F, Op),
    Not(Box<Q>),
    And(Box<Q>, Box<Q>),
    Or(Box<Q>, Box<Q>),
}

const CHARS: &[char] = &['a', 'b', 'A', 'B', 'é', 'É', '-', ' ', 'K', 'k'];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CHARS), 0..4).prop_map(|v| v.into_iter().collect())
}

fn pattern() -> impl Strategy<Value = String> {
    let mut c = CHARS.to_vec();
    c.extend(['*', '?', '*']);
    prop::collection::vec(prop::sample::select(c), 0..4).prop_map(|v| v.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        text().prop_map(Op::Eq),
        text().prop_map(Op::Ne),
        prop::collection::vec(pattern(), 1..6).prop_map(Op::Colon),
        prop::collection::vec(pattern(), 1..6).prop_map(Op::LikeCi),
        prop::collection::vec(text(), 1..6).prop_map(Op::InCi),
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(CHARS).prop_map(Tok::Char),
                Just(Tok::Any),
                Just(Tok::AnyRun)
            ],
            0..4
        )
        .prop_map(Op::RegexCi),
    ]
}

fn field() -> impl Strategy<Value = F> {
    prop_oneof![Just(F::Name), Just(F::Args), Just(F::ParentName)]
}

fn query() -> impl Strategy<Value = Q> {
    let leaf = (field(), op()).prop_map(|(f, o)| Q::Test(f, o));
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|q| Q::Not(Box::new(q))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Q::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Q::Or(Box::new(a), Box::new(b))),
        ]
    })
}

#[derive(Clone, Debug)]
struct Ev {
    name: Option<String>,
    args: Option<Vec<String>>,
    parent: Option<String>,
}

fn event() -> impl Strategy<Value = Ev> {
    (
        prop::option::of(text()),
        prop::option::of(prop::collection::vec(text(), 0..4)),
        prop::option::of(text()),
    )
        .prop_map(|(name, args, parent)| Ev { name, args, parent })
}

fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

fn list(v: &[String]) -> String {
    format!(
        "({})",
        v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
    )
}

fn regex_text(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Char(c) => c.to_string(),
            Tok::Any => ".".into(),
            Tok::AnyRun => ".*".into(),
        })
        .collect()
}

fn render(q: &Q) -> String {
    match q {
        Q::Test(f, o) => {
            let f = match f {
                F::Name => "process.name",
                F::Args => "process.args",
                F::ParentName => "process.parent.name",
            };
            match o {
                Op::Eq(s) => format!("{f} == {}", quote(s)),
                Op::Ne(s) => format!("{f} != {}", quote(s)),
                Op::Colon(p) => format!("{f} : {}", list(p)),
                Op::LikeCi(p) => format!("{f} like~ {}", list(p)),
                Op::InCi(v) => format!("{f} in~ {}", list(v)),
                Op::RegexCi(t) => format!("{f} regex~ {}", quote(&regex_text(t))),
            }
        }
        Q::Not(q) => format!("not ({})", render(q)),
        Q::And(a, b) => format!("({}) and ({})", render(a), render(b)),
        Q::Or(a, b) => format!("({}) or ({})", render(a), render(b)),
    }
}

/// Wildcard match of the whole value, by plain recursion (small inputs).
fn wild(p: &[char], x: &[char]) -> bool {
    match p.split_first() {
        None => x.is_empty(),
        Some(('*', rest)) => (0..=x.len()).any(|i| wild(rest, &x[i..])),
        Some(('?', rest)) => !x.is_empty() && wild(rest, &x[1..]),
        Some((c, rest)) => x.first() == Some(c) && wild(rest, &x[1..]),
    }
}

fn low(s: &str) -> Vec<char> {
    s.to_lowercase().chars().collect()
}

fn value_passes(o: &Op, x: &str) -> bool {
    match o {
        Op::Eq(s) | Op::Ne(s) => x == s,
        Op::Colon(ps) | Op::LikeCi(ps) => ps.iter().any(|p| wild(&low(p), &low(x))),
        Op::InCi(v) => v.iter().any(|s| s.to_lowercase() == x.to_lowercase()),
        Op::RegexCi(t) => {
            let glob: String = t
                .iter()
                .map(|t| match t {
                    Tok::Char(c) => c.to_string(),
                    Tok::Any => "?".into(),
                    Tok::AnyRun => "*".into(),
                })
                .collect();
            wild(&low(&glob), &low(x))
        }
    }
}

fn reference(q: &Q, ev: &Ev) -> bool {
    match q {
        Q::Test(f, o) => {
            let values: Option<Vec<&str>> = match f {
                F::Name => ev.name.as_deref().map(|s| vec![s]),
                F::Args => ev
                    .args
                    .as_ref()
                    .map(|v| v.iter().map(String::as_str).collect()),
                F::ParentName => ev.parent.as_deref().map(|s| vec![s]),
            };
            let any = values.is_some_and(|vs| vs.iter().any(|x| value_passes(o, x)));
            // `!=` is `not ==`: true on an absent field, and when no element equals.
            if matches!(o, Op::Ne(_)) { !any } else { any }
        }
        Q::Not(q) => !reference(q, ev),
        Q::And(a, b) => reference(a, ev) && reference(b, ev),
        Q::Or(a, b) => reference(a, ev) || reference(b, ev),
    }
}

fn to_event(e: &Ev) -> ProcessEvent {
    ProcessEvent {
        process: Process {
            name: e.name.clone(),
            args: e.args.clone(),
            parent: e.parent.as_ref().map(|p| {
                Box::new(RelatedProcess {
                    name: Some(p.clone()),
                    ..Default::default()
                })
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn rule_dir(n: u64) -> PathBuf {
    let d = std::env::temp_dir().join(format!("t1609-prop-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_agrees_with_the_reference(q in query(), events in prop::collection::vec(event(), 1..8)) {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let d = rule_dir(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let text = format!(
            "[[rule]]\nid = \"prop.q\"\nname = \"q\"\ndescription = \"q\"\nseverity = \"low\"\nconfidence = \"low\"\nrisk_score = 1\ntechniques = [\"T1609\"]\nquery = '''\nprocess where {}\n'''\n",
            render(&q)
        );
        std::fs::File::create(d.join("q.toml")).and_then(|mut f| f.write_all(text.as_bytes())).expect("write");
        let engine = match Engine::load(std::slice::from_ref(&d)) {
            Ok(e) => e,
            // A query that can never match (`x == "a" and x != "a"` folds to nothing)
            // is refused at load; the reference must agree that nothing matches.
            Err(err) => {
                prop_assert!(err.to_string().contains("can only match"), "{err}: {text}");
                for e in &events {
                    prop_assert!(!reference(&q, e), "refused but matches {e:?}: {text}");
                }
                let _ = std::fs::remove_dir_all(&d);
                return Ok(());
            }
        };
        for e in &events {
            let fired = engine.evaluate(&to_event(e)).iter().any(|a| a.rule_id == "prop.q");
            prop_assert_eq!(fired, reference(&q, e), "query {} on {:?}", render(&q), e);
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
