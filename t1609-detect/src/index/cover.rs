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
    /// The parent's name is exactly this.
    ParentName(String),
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
    EnvVars,
}

impl SubField {
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
            Field::Proc(Who::Process, Attr::EnvVars) => SubField::EnvVars,
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
            Atom::Name(n) | Atom::ViaShell(n) if common(n) => 3,
            Atom::Name(_) | Atom::ViaShell(_) => 1,
            Atom::NamePrefix(p) if short(p, 3) || common_text(p) => 6,
            Atom::ExePrefix(p) if short(p, 6) || common_text(p) => 8,
            Atom::NamePrefix(_) | Atom::ExePrefix(_) => 2,
            Atom::Arg(a) if short(a, 3) => 7,
            Atom::Arg(_) => 4,
            Atom::ParentName(n) if common(n) => 8,
            Atom::Sub(_, s) if short(s, 3) || common_text(s) => 9,
            Atom::Sub(_, s) if short(s, 5) => 6,
            Atom::ParentName(_) | Atom::Sub(..) => 5,
        }
    }
}

/// Names of processes that run all the time (shells, init, the usual parents): an atom
/// on them selects many events.
fn common(n: &str) -> bool {
    argv::SHELLS.contains(&n)
        || matches!(
            n,
            "systemd"
                | "init"
                | "sudo"
                | "su"
                | "sshd"
                | "cron"
                | "python"
                | "python3"
                | "perl"
                | "node"
                | "java"
                | "env"
                | "xargs"
                | "busybox"
                | "containerd-shim"
        )
}

/// Text nearly every exec carries somewhere (system paths, shells, URL schemes): a
/// literal inside it is found in most events, so it selects little and costs a match
/// report per event.
fn common_text(lit: &str) -> bool {
    const COMMON: &[&str] = &[
        "/usr/local/sbin/",
        "/usr/local/bin/",
        "/usr/sbin/",
        "/usr/bin/",
        "/usr/lib/",
        "/usr/lib64/",
        "/usr/share/",
        "/bin/bash",
        "/bin/dash",
        "/bin/sh",
        "/sbin/init",
        "/home/",
        "/root/",
        "/etc/",
        "/var/lib/",
        "/opt/",
        "/proc/self/",
        "systemd",
        "python3",
        "https://",
        "http://",
        "sudo",
        "zsh",
        "--help",
    ];
    COMMON.iter().any(|c| c.contains(lit))
}

/// A disjunction of atoms (empty: the condition matches nothing).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cover {
    pub atoms: Vec<Atom>,
}

impl Cover {
    pub(crate) fn cost(&self) -> (u32, usize) {
        (
            self.atoms.iter().map(Atom::cost).max().unwrap_or(0),
            self.atoms.len(),
        )
    }
}

/// Covers all of which hold on every event `n` matches (a conjunction of covers): the
/// best one, and for an `and` a second from another term when it is selective enough,
/// so that a rule on a common name (`cat`) is tried only when its arguments' literal
/// is there too. Empty when `n` has no cover.
pub(crate) fn covers(n: &Node) -> Vec<Cover> {
    let Node::And(v) = n else {
        return cover(n).into_iter().collect();
    };
    let mut all: Vec<Cover> = v.iter().filter_map(cover).collect();
    all.sort_by_key(Cover::cost);
    all.truncate(2);
    if all.len() == 2 && all[1].cost().0 > 7 {
        all.pop();
    }
    all
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
        StrTest::Wild { pats, .. } => pats.iter().map(pattern_lit).collect::<Option<Vec<_>>>()?,
        StrTest::StartsWith(s, _) => vec![Lit::Prefix(low(s))],
        StrTest::EndsWith(s, _) => vec![Lit::Suffix(low(s))],
        StrTest::Contains(s, _) => vec![Lit::Contains(low(s))],
        StrTest::Regex(re) => return regex_prefixes(re.as_str()),
        StrTest::Cmp(..) | StrTest::Set(_) => return None,
    })
}

/// Literals every match of a regex starts with (lowercase): prefixes of the value when
/// the regex is anchored at the start (EQL's always are), else substrings (Sigma's
/// `re`), or `None`.
fn regex_prefixes(src: &str) -> Option<Vec<Lit>> {
    use regex_syntax::hir::{
        Look,
        literal::{ExtractKind, Extractor},
    };
    let hir = regex_syntax::ParserBuilder::new().build().parse(src).ok()?;
    let props = hir.properties();
    let start = props.look_set_prefix().contains(Look::Start);
    let end = props.look_set_suffix().contains(Look::End);
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix);
    let seq = ex.extract(&hir);
    let lits = seq.literals()?;
    let mut out = Vec::with_capacity(lits.len());
    for l in lits {
        let s = std::str::from_utf8(l.as_bytes()).ok()?.to_lowercase();
        if s.is_empty() {
            return None;
        }
        out.push(match (start, end && l.is_exact()) {
            (true, true) => Lit::Exact(s),
            (true, false) => Lit::Prefix(s),
            (false, _) => Lit::Contains(s),
        });
    }
    (!out.is_empty()).then_some(out)
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
    // Bytes 0-2 mark the index's scanned segments: literals holding them are not indexed.
    if lits.iter().any(|l| {
        let (Lit::Exact(s) | Lit::Prefix(s) | Lit::Suffix(s) | Lit::Contains(s)) = l;
        !s.is_ascii() || s.bytes().any(|b| b <= 2)
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
            (SubField::ParentName, Lit::Exact(s)) => Atom::ParentName(s),
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
    names.extend(
        ["python", "python3", "perl"]
            .iter()
            .map(|s| (*s).to_string()),
    );
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
    atoms.extend(
        argv::SHELLS
            .iter()
            .map(|s| Atom::ViaShell((*s).to_string())),
    );
    atoms.sort();
    atoms.dedup();
    Some(Cover { atoms })
}
