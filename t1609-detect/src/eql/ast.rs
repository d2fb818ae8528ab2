//! The parsed form of a query (fields, operators, the condition tree) and the error a
//! query can have.

/// A syntax or schema error inside one query, positioned within the query text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct EqlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// What kind of problem: a rule of a third-party format is skipped for some kinds
    /// (and the report groups them by kind) rather than refused.
    pub kind: EqlErrorKind,
}

/// The kinds of [`EqlError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EqlErrorKind {
    /// Not valid in the subset's grammar (or a typo).
    Syntax,
    /// A `sequence` or `sample` query: several events to correlate.
    Sequence,
    /// An event category other than `process` (or `any`).
    Category,
    /// A field outside the registry.
    UnknownField,
    /// An ECS field the agent never provides.
    FieldNotProvided,
    /// A function, pipe or construct the engine does not evaluate.
    Unsupported,
}

pub use super::fields::{Field, Kind};

/// A field's value in one event.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Missing,
    Str(&'a str),
    Strs(&'a [String]),
    Num(i64),
    Bool(bool),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub(super) fn holds<T: PartialOrd + Copy>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// A wildcard pattern compiled once: most patterns are exact, prefix, suffix or contains,
/// which avoid the general matcher.
#[derive(Clone, Debug)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Glob(Vec<char>),
}

impl Pattern {
    /// Compiles a wildcard pattern (`*` any run, `?` one character).
    pub(crate) fn compile(p: &str) -> Pattern {
        let has_q = p.contains('?');
        let inner = p.trim_matches('*');
        if !has_q && !inner.contains('*') {
            return match (p.starts_with('*'), p.ends_with('*')) {
                // `*` alone (or `**`): anything, including "".
                _ if inner.is_empty() && p.contains('*') => Pattern::Prefix(String::new()),
                (false, false) => Pattern::Exact(p.to_string()),
                (false, true) => Pattern::Prefix(inner.to_string()),
                (true, false) => Pattern::Suffix(inner.to_string()),
                (true, true) => Pattern::Contains(inner.to_string()),
            };
        }
        Pattern::Glob(p.chars().collect())
    }
}

impl Pattern {
    /// A value the pattern matches: its literal text, `*` dropped, `?` as `a`.
    pub fn example(&self) -> String {
        match self {
            Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) | Pattern::Contains(s) => {
                s.clone()
            }
            Pattern::Glob(g) => g
                .iter()
                .filter(|c| **c != '*')
                .map(|c| if *c == '?' { 'a' } else { *c })
                .collect(),
        }
    }
}

/// A string test applied to a string field, or to each element of an array field.
#[derive(Clone, Debug)]
pub enum StrTest {
    Cmp(Cmp, String),
    /// `in`: case-sensitive membership.
    In(Vec<String>),
    /// `in~`: case-insensitive membership (entries lowercased).
    InCi(Vec<String>),
    /// `:`, `like`, `like~`; `ci` says whether patterns were lowercased.
    Wild {
        pats: Vec<Pattern>,
        ci: bool,
    },
    Regex(regex::Regex),
    /// A long list compiled for evaluation ([`Node::optimized`]).
    Set(Box<super::set::StrSet>),
    StartsWith(String, bool),
    EndsWith(String, bool),
    Contains(String, bool),
}

#[derive(Clone, Debug)]
pub enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Const(bool),
    Str(Field, StrTest),
    Num(Field, Cmp, i64),
    NumIn(Field, Vec<i64>),
    Bool(Field, Cmp, bool),
    /// `length(field) <op> n`.
    Length(Field, Cmp, i64),
    /// `field != null`: the field has a value (an array, at least one element).
    Exists(Field),
}

impl Node {
    /// Visits every field the condition references.
    pub fn fields(&self, f: &mut dyn FnMut(Field)) {
        match self {
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| n.fields(f)),
            Node::Not(n) => n.fields(f),
            Node::Const(_) => {}
            Node::Str(x, _)
            | Node::Num(x, _, _)
            | Node::NumIn(x, _)
            | Node::Bool(x, _, _)
            | Node::Length(x, _, _)
            | Node::Exists(x) => f(*x),
        }
    }

    pub fn needs_argv(&self) -> bool {
        let mut needs = false;
        self.fields(&mut |f| needs |= f.needs_argv());
        needs
    }
}
