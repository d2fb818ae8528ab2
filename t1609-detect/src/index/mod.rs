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
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
pub(crate) use cover::{Atom, Cover, SubField, cover};

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

type Table = HashMap<String, Vec<u32>, BuildHasherDefault<NameHasher>>;

/// One automaton over a set of literals, and the rules behind each.
struct Scan {
    ac: AhoCorasick,
    rules: Vec<Vec<u32>>,
    /// Only matches at the start of the value count (prefix literals).
    anchored: bool,
}

impl Scan {
    fn build(lits: HashMap<String, Vec<u32>>, anchored: bool) -> Option<Scan> {
        if lits.is_empty() {
            return None;
        }
        let mut pats: Vec<(String, Vec<u32>)> = lits.into_iter().collect();
        pats.sort();
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(pats.iter().map(|(p, _)| p.as_bytes()))
            .ok()?;
        Some(Scan {
            ac,
            rules: pats.into_iter().map(|(_, r)| r).collect(),
            anchored,
        })
    }

    fn scan(&self, hay: &str, out: &mut Vec<u32>) {
        if !hay.is_ascii() {
            // Unicode lowercasing can yield ASCII (the Kelvin sign is `k`): scan the
            // lowercase text, which is what case-insensitive tests compare.
            return self.scan_ascii_ci(&hay.to_lowercase(), out);
        }
        self.scan_ascii_ci(hay, out);
    }

    fn scan_ascii_ci(&self, hay: &str, out: &mut Vec<u32>) {
        for m in self.ac.find_overlapping_iter(hay) {
            if self.anchored && m.start() != 0 {
                continue;
            }
            if let Some(r) = self.rules.get(m.pattern().as_usize()) {
                out.extend_from_slice(r);
            }
        }
    }
}

/// Rules by literal, for one kind of event.
#[derive(Default)]
pub(crate) struct LiteralIndex {
    names: Table,
    args: Table,
    name_prefix: Option<Scan>,
    exe_prefix: Option<Scan>,
    subs: Vec<(SubField, Scan)>,
    /// Rules with no cover: tried on every event.
    any: Vec<u32>,
}

impl std::fmt::Debug for LiteralIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteralIndex")
            .field("names", &self.names.len())
            .field("args", &self.args.len())
            .field("subs", &self.subs.len())
            .field("any", &self.any.len())
            .finish()
    }
}

impl LiteralIndex {
    /// Builds the index from each rule's cover (`None`: no cover, tried on every event;
    /// a rule absent from this kind of event is not passed at all).
    pub(crate) fn build(covers: impl IntoIterator<Item = (u32, Option<Cover>)>) -> Self {
        let mut ix = LiteralIndex::default();
        let mut name_prefix: HashMap<String, Vec<u32>> = HashMap::new();
        let mut exe_prefix: HashMap<String, Vec<u32>> = HashMap::new();
        let mut subs: HashMap<SubField, HashMap<String, Vec<u32>>> = HashMap::new();
        for (ri, c) in covers {
            let Some(c) = c else {
                ix.any.push(ri);
                continue;
            };
            for a in c.atoms {
                let slot = match a {
                    Atom::Name(n) | Atom::ViaShell(n) => ix.names.entry(n).or_default(),
                    Atom::Arg(s) => ix.args.entry(s).or_default(),
                    Atom::NamePrefix(p) => name_prefix.entry(p).or_default(),
                    Atom::ExePrefix(p) => exe_prefix.entry(p).or_default(),
                    Atom::Sub(f, s) => subs.entry(f).or_default().entry(s).or_default(),
                };
                if slot.last() != Some(&ri) {
                    slot.push(ri);
                }
            }
        }
        ix.name_prefix = Scan::build(name_prefix, true);
        ix.exe_prefix = Scan::build(exe_prefix, true);
        for f in SubField::ALL {
            if let Some(lits) = subs.remove(&f)
                && let Some(s) = Scan::build(lits, false)
            {
                ix.subs.push((f, s));
            }
        }
        ix
    }

    /// Whether no rule applies to this kind of event at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.args.is_empty()
            && self.name_prefix.is_none()
            && self.exe_prefix.is_none()
            && self.subs.is_empty()
            && self.any.is_empty()
    }

    /// The rules `ev` (whose process name is `name`) may match, sorted, each once.
    pub(crate) fn candidates(&self, ev: &ProcessEvent, name: &str, out: &mut Vec<u32>) {
        out.clear();
        let p = &ev.process;
        lookup(&self.names, name, out);
        if let Some(exe) = p.executable.as_deref() {
            let base = argv::basename(exe);
            if base != name {
                lookup(&self.names, base, out);
            }
            if let Some(s) = &self.exe_prefix {
                s.scan(exe, out);
            }
        }
        if let Some(s) = &self.name_prefix {
            s.scan(name, out);
        }
        if !self.args.is_empty() {
            for a in p.args.as_deref().unwrap_or(&[]) {
                lookup(&self.args, a, out);
            }
        }
        for (f, s) in &self.subs {
            each_value(ev, *f, name, &mut |v| s.scan(v, out));
        }
        out.extend_from_slice(&self.any);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

/// `key`'s rules, looked up lowercase (allocating only for a key that is not).
fn lookup(t: &Table, key: &str, out: &mut Vec<u32>) {
    if t.is_empty() {
        return;
    }
    let found = if key.bytes().any(|b| b.is_ascii_uppercase()) || !key.is_ascii() {
        t.get(&key.to_lowercase())
    } else {
        t.get(key)
    };
    if let Some(r) = found {
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
    }
}
