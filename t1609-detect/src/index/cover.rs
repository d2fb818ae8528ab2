//! Covers: for a condition, a set of literal tests ("atoms") at least one of which
//! holds on every event the condition matches. The index tries a rule only on events
//! that hit one of its atoms.
//!
//! An atom is only ever implied by the condition, never the condition itself, so a
//! cover errs one way: an event that hits an atom may still not match (the rule's full
//! condition decides), but an event that matches always hits an atom.

use crate::{
    argv,
    eql::{Attr, Cmp, Field, Node, Pattern, StrTest, Who},
};

/// A literal test cheap enough to run on every event. Strings are lowercase: atoms are
/// tested case-insensitively, which only widens them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Atom {
    /// The process name, or the basename of its executable, is this.
    Name(String),
    /// The same test, on a shell name that only a `t1609.argv.*` rule's wrapper
    /// coverage asks for: the command a shell runs is exec'd and caught on its own, so
    /// the live watch set leaves these out (replay still tries them).
    ViaShell(String),
    /// The process name starts with this.
    NamePrefix(String),
    /// The executable path starts with this.
    ExePrefix(String),
    /// Some argument is exactly this.
    Arg(String),
    /// The field's value (an element, for arrays) contains this.
    Sub(SubField, String),
}

/// The string fields substring atoms are indexed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SubField {
    Name,
    Executable,
    CommandLine,
    Args,
    WorkingDirectory,
    ParentName,
    ParentExecutable,
    ParentCommandLine,
    ParentArgs,
}

impl SubField {
    pub(crate) const ALL: [SubField; 9] = [
        SubField::Name,
        SubField::Executable,
        SubField::CommandLine,
        SubField::Args,
        SubField::WorkingDirectory,
        SubField::ParentName,
        SubField::ParentExecutable,
        SubField::ParentCommandLine,
        SubField::ParentArgs,
    ];

    fn of(f: Field) -> Option<SubField> {
        Some(match f {
            Field::Proc(Who::Process, Attr::Name) => SubField::Name,
            Field::Proc(Who::Process, Attr::Executable) => SubField::Executable,
            Field::Proc(Who::Process, Attr::CommandLine) => SubField::CommandLine,
            Field::Proc(Who::Process, Attr::Args) => SubField::Args,
            Field::Proc(Who::Process, Attr::WorkingDirectory) => SubField::WorkingDirectory,
            Field::Proc(Who::Parent, Attr::Name) => SubField::ParentName,
            Field::Proc(Who::Parent, Attr::Executable) => SubField::ParentExecutable,
            Field::Proc(Who::Parent, Attr::CommandLine) => SubField::ParentCommandLine,
            Field::Proc(Who::Parent, Attr::Args) => SubField::ParentArgs,
            _ => return None,
        })
    }
}

impl Atom {
    /// Lower is better: how many events such an atom lets through, roughly, and whether
    /// the kernel can test it (names and path prefixes) rather than every exec being
    /// captured for it.
    fn cost(&self) -> u32 {
        let short = |s: &str, n: usize| s.chars().count() < n;
        match self {
            Atom::Name(_) | Atom::ViaShell(_) => 1,
            Atom::NamePrefix(p) if short(p, 3) => 6,
            Atom::NamePrefix(_) => 2,
            Atom::ExePrefix(p) if short(p, 6) => 6,
            Atom::ExePrefix(_) => 2,
            Atom::Arg(a) if short(a, 3) => 7,
            Atom::Arg(_) => 4,
            Atom::Sub(_, s) if short(s, 3) => 9,
            Atom::Sub(_, s) if short(s, 5) => 6,
            Atom::Sub(..) => 5,
        }
    }
}

/// A disjunction of atoms (empty: the condition matches nothing).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cover {
    pub atoms: Vec<Atom>,
}

impl Cover {
    fn cost(&self) -> (u32, usize) {
        (
            self.atoms.iter().map(Atom::cost).max().unwrap_or(0),
            self.atoms.len(),
        )
    }
}

/// A cover of `n`, or `None` when the condition can match events no literal test picks
/// out (a negation, a number comparison, an unindexed field...).
pub(crate) fn cover(n: &Node) -> Option<Cover> {
    match n {
        Node::Const(false) => Some(Cover::default()),
        Node::And(v) => v.iter().filter_map(cover).min_by_key(Cover::cost),
        Node::Or(v) => {
            let mut atoms = Vec::new();
            for c in v {
                atoms.extend(cover(c)?.atoms);
            }
            atoms.sort();
            atoms.dedup();
            Some(Cover { atoms })
        }
        Node::Str(f, t) => str_cover(*f, t),
        _ => None,
    }
}

/// The literal strings of a string test: for each alternative (an `in` entry, a
/// pattern), what a value must equal, start with, or contain.
enum Lit {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

fn lits(t: &StrTest) -> Option<Vec<Lit>> {
    let low = |s: &str| s.to_lowercase();
    Some(match t {
        StrTest::Cmp(Cmp::Eq, s) => vec![Lit::Exact(low(s))],
        StrTest::In(v) | StrTest::InCi(v) => v.iter().map(|s| Lit::Exact(low(s))).collect(),
        StrTest::Wild { pats, .. } => pats
            .iter()
            .map(|p| pattern_lit(p))
            .collect::<Option<Vec<_>>>()?,
        StrTest::StartsWith(s, _) => vec![Lit::Prefix(low(s))],
        StrTest::EndsWith(s, _) => vec![Lit::Suffix(low(s))],
        StrTest::Contains(s, _) => vec![Lit::Contains(low(s))],
        StrTest::Cmp(..) | StrTest::Regex(_) => return None,
    })
}

fn pattern_lit(p: &Pattern) -> Option<Lit> {
    let low = |s: &str| s.to_lowercase();
    Some(match p {
        Pattern::Exact(s) => Lit::Exact(low(s)),
        Pattern::Prefix(s) if s.is_empty() => return None,
        Pattern::Prefix(s) => Lit::Prefix(low(s)),
        Pattern::Suffix(s) => Lit::Suffix(low(s)),
        Pattern::Contains(s) => Lit::Contains(low(s)),
        Pattern::Glob(g) => {
            let text: String = g.iter().collect();
            let pieces: Vec<&str> = text.split(['*', '?']).collect();
            let lead = pieces.first().copied().unwrap_or("");
            let longest = pieces.iter().copied().max_by_key(|s| s.len()).unwrap_or("");
            if lead.chars().count() >= 4 || (lead.len() == longest.len() && !lead.is_empty()) {
                Lit::Prefix(low(lead))
            } else if longest.is_empty() {
                return None;
            } else {
                Lit::Contains(low(longest))
            }
        }
    })
}

fn str_cover(f: Field, t: &StrTest) -> Option<Cover> {
    if f == Field::ArgvTool {
        return tool_cover(t);
    }
    let sub = SubField::of(f)?;
    let lits = lits(t)?;
    // Literals are matched ASCII case-insensitively; a non-ASCII one could miss a
    // differently cased value, so such a test gives no cover rather than a wrong one.
    if lits.iter().any(|l| {
        let (Lit::Exact(s) | Lit::Prefix(s) | Lit::Suffix(s) | Lit::Contains(s)) = l;
        !s.is_ascii()
    }) {
        return None;
    }
    let mut atoms = Vec::with_capacity(lits.len());
    for l in lits {
        atoms.push(match (sub, l) {
            (SubField::Name, Lit::Exact(s)) => Atom::Name(s),
            (SubField::Name, Lit::Prefix(s)) => Atom::NamePrefix(s),
            (SubField::Executable, Lit::Exact(s)) => match basename(&s) {
                "" => Atom::Sub(sub, s),
                b => Atom::Name(b.to_owned()),
            },
            (SubField::Executable, Lit::Prefix(s)) => Atom::ExePrefix(s),
            // `*/bin/foo` ends in a whole basename: `foo`.
            (SubField::Executable, Lit::Suffix(s)) if s.contains('/') && !s.ends_with('/') => {
                Atom::Name(basename(&s).to_owned())
            }
            (SubField::Args, Lit::Exact(s)) => Atom::Arg(s),
            (_, Lit::Exact(s) | Lit::Prefix(s) | Lit::Suffix(s) | Lit::Contains(s)) => {
                if s.is_empty() {
                    return None;
                }
                Atom::Sub(sub, s)
            }
        });
    }
    atoms.sort();
    atoms.dedup();
    Some(Cover { atoms })
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// `t1609.argv.tool`: the executables that can yield the tools, their wrappers and
/// shims (a tool without known executables: any name might yield it).
fn tool_cover(t: &StrTest) -> Option<Cover> {
    let tools: Vec<String> = match t {
        StrTest::Cmp(Cmp::Eq, s) => vec![s.clone()],
        StrTest::In(v) | StrTest::InCi(v) => v.clone(),
        StrTest::Wild { pats, .. } => pats
            .iter()
            .map(|p| match p {
                Pattern::Exact(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let mut names: Vec<String> = Vec::new();
    for t in &tools {
        let exe = argv::exe_names_for_tool(t);
        if exe.is_empty() {
            return None;
        }
        names.extend(exe.iter().map(|s| (*s).to_string()));
    }
    // Wrappers and `#!` shims can run any tool.
    names.extend(argv::LIVE_WRAPPERS.iter().map(|s| (*s).to_string()));
    names.extend(["python", "python3", "perl"].iter().map(|s| (*s).to_string()));
    let mut atoms: Vec<Atom> = names
        .into_iter()
        .map(|n| {
            let n = n.to_lowercase();
            if argv::SHELLS.contains(&n.as_str()) {
                Atom::ViaShell(n)
            } else {
                Atom::Name(n)
            }
        })
        .collect();
    atoms.extend(argv::SHELLS.iter().map(|s| Atom::ViaShell((*s).to_string())));
    atoms.sort();
    atoms.dedup();
    Some(Cover { atoms })
}
