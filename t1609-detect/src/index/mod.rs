//! The literal index: which rules an event can match, from the literals the rules test
//! (executable names, path and name prefixes, exact arguments, substrings of the
//! command line and other fields), so that a rule is tried only on events that carry
//! one of its literals instead of every rule on every event.
//!
//! Names and exact arguments are hash lookups; prefixes and substrings are one
//! Aho-Corasick scan (ASCII case-insensitive) per indexed field that some rule needs.
//! Rules with no literal cover are tried on every event.

mod cover;

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
pub(crate) use cover::{Atom, Cover, SubField, covers};

use crate::{argv, event::ProcessEvent};

/// FNV-1a over the name, for the per-exec lookups (`SipHash` was most of the cost of an
/// unwatched exec). The tables are filled from the rules only, so a hostile name can at
/// worst collide with a few keys: no flooding.
pub(crate) struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        // The table picks buckets and tags from different bits: spread them all.
        t1609_ecs::splitmix(self.0)
    }
}

/// Hash tables keyed by rule literals.
pub(crate) type FastHash = BuildHasherDefault<NameHasher>;

type Table = HashMap<String, Vec<u32>, FastHash>;

/// What a segment of the scanned text is: a field's value, or the head of the name or
/// the executable, for prefix literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Seg {
    Sub(SubField),
    NamePrefix,
    ExePrefix,
}

impl Seg {
    /// The byte a prefix segment starts with, and its literals too, so that a prefix
    /// literal can only match at the start of its value. Rule literals holding it are
    /// never indexed.
    fn marker(self) -> Option<u8> {
        match self {
            Seg::NamePrefix => Some(1),
            Seg::ExePrefix => Some(2),
            Seg::Sub(_) => None,
        }
    }
}

/// Separates segments: no literal holds it, so none matches across two.
const SEPARATOR: u8 = 0;

/// The rules behind one scanned literal, by the segment it must be found in.
type Hits = Vec<(Seg, Vec<u32>)>;

/// Every substring and prefix literal in one automaton, scanned once per event over the
/// event's fields laid end to end (one scan costs far less than one per field).
struct Scan {
    ac: AhoCorasick,
    /// Per literal: the rules behind it, by segment.
    hits: Vec<Hits>,
    /// The segments some literal needs, in scan order.
    segs: Vec<Seg>,
    /// No argument literal of the process (of the parent) holds a space: when the
    /// command line is the arguments joined by spaces, as the agent records it, a
    /// literal is in some argument exactly when it is in the command line, which is
    /// then scanned alone.
    args_in_line: bool,
    parent_args_in_line: bool,
}

/// The text one event is scanned in, reused per thread.
#[derive(Default)]
struct Text {
    bytes: Vec<u8>,
    /// Where each segment starts in `bytes`, with its kind.
    starts: Vec<(usize, Seg)>,
}

thread_local! {
    static TEXT: std::cell::RefCell<Text> = std::cell::RefCell::new(Text::default());
}

impl Scan {
    fn build(lits: HashMap<(Seg, String), Vec<u32>>) -> Option<Scan> {
        if lits.is_empty() {
            return None;
        }
        let mut by_lit: HashMap<Vec<u8>, Hits> = HashMap::new();
        let mut segs: Vec<Seg> = Vec::new();
        for ((seg, lit), rules) in lits {
            let mut key = Vec::with_capacity(lit.len() + 1);
            key.extend(seg.marker());
            key.extend_from_slice(lit.as_bytes());
            by_lit.entry(key).or_default().push((seg, rules));
            if !segs.contains(&seg) {
                segs.push(seg);
            }
        }
        let no_space = |f: SubField| {
            by_lit
                .iter()
                .all(|(lit, h)| !h.iter().any(|(s, _)| *s == Seg::Sub(f)) || !lit.contains(&b' '))
        };
        let args_in_line = segs.contains(&Seg::Sub(SubField::Args)) && no_space(SubField::Args);
        let parent_args_in_line =
            segs.contains(&Seg::Sub(SubField::ParentArgs)) && no_space(SubField::ParentArgs);
        for (on, line) in [
            (args_in_line, SubField::CommandLine),
            (parent_args_in_line, SubField::ParentCommandLine),
        ] {
            if on && !segs.contains(&Seg::Sub(line)) {
                segs.push(Seg::Sub(line));
            }
        }
        segs.sort();
        let mut pats: Vec<(Vec<u8>, Hits)> = by_lit.into_iter().collect();
        pats.sort();
        // A DFA: built once per rule load, the fastest to scan with. Literals and text
        // are both lowercase, so the automaton is case-sensitive, which keeps it small
        // and lets its prefilter work.
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(pats.iter().map(|(p, _)| p.as_slice()))
            .ok()?;
        Some(Scan {
            ac,
            hits: pats.into_iter().map(|(_, h)| h).collect(),
            segs,
            args_in_line,
            parent_args_in_line,
        })
    }

    fn scan(&self, ev: &ProcessEvent, name: &str, out: &mut Vec<u32>) {
        TEXT.with(|t| match t.try_borrow_mut() {
            Ok(mut t) => self.scan_into(&mut t, ev, name, out),
            Err(_) => self.scan_into(&mut Text::default(), ev, name, out),
        });
    }

    fn scan_into(&self, t: &mut Text, ev: &ProcessEvent, name: &str, out: &mut Vec<u32>) {
        let p = &ev.process;
        let pp = p.parent.as_deref();
        let joined = self.args_in_line && is_join(p.command_line.as_deref(), p.args.as_deref());
        let parent_joined = self.parent_args_in_line
            && is_join(
                pp.and_then(|x| x.command_line.as_deref()),
                pp.and_then(|x| x.args.as_deref()),
            );
        t.bytes.clear();
        t.starts.clear();
        for &seg in &self.segs {
            match seg {
                Seg::Sub(SubField::Args) if joined => continue,
                Seg::Sub(SubField::ParentArgs) if parent_joined => continue,
                _ => {}
            }
            let mut push = |v: &str| {
                t.starts.push((t.bytes.len(), seg));
                t.bytes.extend(seg.marker());
                if v.is_ascii() {
                    let at = t.bytes.len();
                    t.bytes.extend_from_slice(v.as_bytes());
                    t.bytes[at..].make_ascii_lowercase();
                } else {
                    // Unicode lowercasing can yield ASCII (the Kelvin sign is `k`): scan
                    // the lowercase text, which is what case-insensitive tests compare.
                    t.bytes.extend_from_slice(v.to_lowercase().as_bytes());
                }
                t.bytes.push(SEPARATOR);
            };
            match seg {
                Seg::NamePrefix => push(name),
                Seg::ExePrefix => {
                    if let Some(exe) = p.executable.as_deref() {
                        push(exe);
                    }
                }
                Seg::Sub(f) => each_value(ev, f, name, &mut push),
            }
        }
        for m in self.ac.find_overlapping_iter(&t.bytes[..]) {
            let at = t.starts.partition_point(|(s, _)| *s <= m.start());
            let Some(&(_, seg)) = at.checked_sub(1).and_then(|i| t.starts.get(i)) else {
                continue;
            };
            // The line stands for the arguments when they were not scanned apart.
            let also = match seg {
                Seg::Sub(SubField::CommandLine) if joined => Some(Seg::Sub(SubField::Args)),
                Seg::Sub(SubField::ParentCommandLine) if parent_joined => {
                    Some(Seg::Sub(SubField::ParentArgs))
                }
                _ => None,
            };
            if let Some(h) = self.hits.get(m.pattern().as_usize()) {
                for (s, rules) in h {
                    if *s == seg || Some(*s) == also {
                        out.extend_from_slice(rules);
                    }
                }
            }
        }
    }
}

/// Whether `line` is exactly `args` joined by single spaces.
fn is_join(line: Option<&str>, args: Option<&[String]>) -> bool {
    let (Some(line), Some(args)) = (line, args) else {
        return false;
    };
    let mut rest = line.as_bytes();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            match rest.split_first() {
                Some((b' ', r)) => rest = r,
                _ => return false,
            }
        }
        match rest.strip_prefix(a.as_bytes()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Rules by literal, for one kind of event.
#[derive(Default)]
pub(crate) struct LiteralIndex {
    names: Table,
    args: Table,
    parent_names: Table,
    scan: Option<Scan>,
    /// Some first cover has scanned literals, so every event is scanned; else only the
    /// events where some rule's first cover hit need their second cover scanned (most
    /// never do).
    scan_always: bool,
    /// Rules with no cover: tried on every event.
    any: Vec<u32>,
    /// Rules with two covers (hits are `rule << 1 | cover`): a candidate needs both.
    two: HashSet<u32, FastHash>,
}

impl std::fmt::Debug for LiteralIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteralIndex")
            .field("names", &self.names.len())
            .field("args", &self.args.len())
            .field("parent_names", &self.parent_names.len())
            .field(
                "scanned_literals",
                &self.scan.as_ref().map_or(0, |s| s.hits.len()),
            )
            .field(
                "scanned_segments",
                &self.scan.as_ref().map(|s| s.segs.clone()),
            )
            .field("scan_always", &self.scan_always)
            .field("any", &self.any)
            .field("two_covers", &self.two.len())
            .finish()
    }
}

impl LiteralIndex {
    /// Builds the index from each rule's covers (none: tried on every event; a rule
    /// absent from this kind of event is not passed at all).
    pub(crate) fn build(rules: impl IntoIterator<Item = (u32, Vec<Cover>)>) -> Self {
        let mut ix = LiteralIndex::default();
        // By cover: first covers' literals, second covers'.
        let mut scanned: [HashMap<(Seg, String), Vec<u32>>; 2] = Default::default();
        for (rule, cs) in rules {
            if cs.is_empty() {
                ix.any.push(rule << 1);
                continue;
            }
            if cs.len() > 1 {
                ix.two.insert(rule);
            }
            for (k, c) in cs.into_iter().take(2).enumerate() {
                let ri = rule << 1 | u32::from(k == 1);
                for a in c.atoms {
                    let slot = match a {
                        Atom::Name(n) | Atom::ViaShell(n) => ix.names.entry(n).or_default(),
                        Atom::Arg(s) => ix.args.entry(s).or_default(),
                        Atom::ParentName(s) => ix.parent_names.entry(s).or_default(),
                        Atom::NamePrefix(p) => scanned[k].entry((Seg::NamePrefix, p)).or_default(),
                        Atom::ExePrefix(p) => scanned[k].entry((Seg::ExePrefix, p)).or_default(),
                        Atom::Sub(f, s) => scanned[k].entry((Seg::Sub(f), s)).or_default(),
                    };
                    if slot.last() != Some(&ri) {
                        slot.push(ri);
                    }
                }
            }
        }
        let [mut all, second] = scanned;
        ix.scan_always = !all.is_empty();
        for (k, mut rules) in second {
            let slot = all.entry(k).or_default();
            slot.append(&mut rules);
        }
        ix.scan = Scan::build(all);
        ix
    }

    /// Whether no rule applies to this kind of event at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.args.is_empty()
            && self.parent_names.is_empty()
            && self.scan.is_none()
            && self.any.is_empty()
    }

    /// The rules `ev` (whose process name is `name`) may match, sorted, each once.
    /// Whether some rule is indexed under the executable name `name`.
    pub(crate) fn knows_name(&self, name: &str) -> bool {
        get(&self.names, name).is_some()
    }

    pub(crate) fn candidates(&self, ev: &ProcessEvent, name: &str, out: &mut Vec<u32>) {
        out.clear();
        let p = &ev.process;
        lookup(&self.names, name, out);
        if let Some(exe) = p.executable.as_deref() {
            let base = argv::basename(exe);
            if base != name {
                lookup(&self.names, base, out);
            }
        }
        if !self.args.is_empty() {
            for a in p.args.as_deref().unwrap_or(&[]) {
                lookup(&self.args, a, out);
            }
        }
        if let Some(pn) = p.parent.as_deref().and_then(|pp| pp.name.as_deref()) {
            lookup(&self.parent_names, pn, out);
        }
        if let Some(s) = &self.scan
            && (self.scan_always
                || out
                    .iter()
                    .any(|&x| x & 1 == 0 && self.two.contains(&(x >> 1))))
        {
            s.scan(ev, name, out);
        }
        out.extend_from_slice(&self.any);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        // `rule << 1 | cover` to rules: a rule of two covers needs both hits, which sort
        // next to each other.
        let mut w = 0;
        let mut i = 0;
        while i < out.len() {
            let (rule, k) = (out[i] >> 1, out[i] & 1);
            let both = k == 0 && out.get(i + 1) == Some(&(rule << 1 | 1));
            if both || !self.two.contains(&rule) {
                out[w] = rule;
                w += 1;
            }
            i += if both { 2 } else { 1 };
        }
        out.truncate(w);
    }
}

/// `key`'s rules, looked up lowercase (allocating only for a key that is not).
fn get<'t>(t: &'t Table, key: &str) -> Option<&'t Vec<u32>> {
    if t.is_empty() {
        return None;
    }
    if key.bytes().any(|b| b.is_ascii_uppercase()) || !key.is_ascii() {
        t.get(&key.to_lowercase())
    } else {
        t.get(key)
    }
}

/// Appends `key`'s rules to `out`.
fn lookup(t: &Table, key: &str, out: &mut Vec<u32>) {
    if let Some(r) = get(t, key) {
        out.extend_from_slice(r);
    }
}

/// Calls `f` on each value of field `sf` in `ev` (each element of an array).
fn each_value(ev: &ProcessEvent, sf: SubField, name: &str, f: &mut dyn FnMut(&str)) {
    let p = &ev.process;
    let pp = p.parent.as_deref();
    let mut one = |v: Option<&str>| {
        if let Some(v) = v {
            f(v);
        }
    };
    match sf {
        SubField::Name => one(Some(name)),
        SubField::Executable => one(p.executable.as_deref()),
        SubField::CommandLine => one(p.command_line.as_deref()),
        SubField::WorkingDirectory => one(p.working_directory.as_deref()),
        SubField::ParentName => one(pp.and_then(|x| x.name.as_deref())),
        SubField::ParentExecutable => one(pp.and_then(|x| x.executable.as_deref())),
        SubField::ParentCommandLine => one(pp.and_then(|x| x.command_line.as_deref())),
        SubField::Args => {
            for a in p.args.as_deref().unwrap_or(&[]) {
                f(a);
            }
        }
        SubField::ParentArgs => {
            for a in pp.and_then(|x| x.args.as_deref()).unwrap_or(&[]) {
                f(a);
            }
        }
        SubField::EnvVars => {
            for a in p.env_vars.as_deref().unwrap_or(&[]) {
                f(a);
            }
        }
    }
}
