//! The engine: rules indexed by executable name, evaluation, and watch-set derivation.

use std::{
    collections::{BTreeSet, HashMap},
    hash::{BuildHasherDefault, Hasher},
    path::PathBuf,
    sync::Arc,
};

use t1609_ecs::{Digest, new_id, now_rfc3339};

use crate::{
    alert::Alert,
    argv::{self, Few, Invocation},
    eql::{self, Field, Node, StrTest},
    event::ProcessEvent,
    load,
    rules::{Condition, Rule, RuleError},
};

/// What the kernel side must capture for the loaded rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet {
    /// Executable basenames to capture.
    pub names: BTreeSet<String>,
    /// Some rule can match any executable: capture every exec.
    pub capture_all: bool,
    /// Why `capture_all` is on (one line per rule), for the agent's warning.
    pub capture_all_reasons: Vec<String>,
    /// Shell names the wrapper rules also index. Not needed live (the command a shell
    /// runs is exec'd and caught on its own), so not in `names`.
    pub shells: BTreeSet<String>,
    /// Rules that use shells as wrappers (replay-only coverage).
    pub shell_rules: BTreeSet<String>,
}

struct Inner {
    rules: Vec<Rule>,
    /// Lowercased executable name -> rule indexes.
    by_name: HashMap<String, Vec<usize>, BuildHasherDefault<NameHasher>>,
    /// Rules that can match any name.
    any: Vec<usize>,
    watch: WatchSet,
    has_sigma: bool,
}

impl Inner {
    /// The rules of the tool the file is; else those `found` by name; else, for a name
    /// the index lacks, those of the name once normalised, a plugin's host or the
    /// arguments' shape (`argv::index_key`).
    fn rules_for<'a>(
        &'a self,
        identified: Option<&str>,
        found: Option<&'a Vec<usize>>,
        name: &str,
        args: &[String],
    ) -> Option<&'a Vec<usize>> {
        match identified {
            Some(n) => self.by_name.get(n),
            None => found.or_else(|| argv::index_key(name, args).and_then(|k| self.by_name.get(k))),
        }
    }
}

/// FNV-1a over the executable name, for the per-exec rule lookup (`SipHash` was most of
/// the cost of an unwatched exec). The table is filled from the rules only, so a hostile
/// name can at worst collide with a few keys: no flooding.
struct NameHasher(u64);

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

/// The rule engine. Cheap to clone (shared, immutable).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.inner.rules.len())
            .finish()
    }
}

/// Names a condition can match on: `None` means any name.
fn name_constraint(n: &Node) -> Option<BTreeSet<String>> {
    match n {
        Node::Const(false) => Some(BTreeSet::new()),
        Node::Str(Field::ProcessName, t) => match t {
            StrTest::Cmp(eql::Cmp::Eq, s) => Some([s.to_lowercase()].into()),
            StrTest::In(v) | StrTest::InCi(v) => Some(v.iter().map(|s| s.to_lowercase()).collect()),
            StrTest::Wild { pats, .. } => pats
                .iter()
                .map(|p| match p {
                    eql::Pattern::Exact(s) => Some(s.to_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        Node::Str(Field::ArgvTool, t) => {
            let tools: Vec<String> = match t {
                StrTest::Cmp(eql::Cmp::Eq, s) => vec![s.clone()],
                StrTest::In(v) | StrTest::InCi(v) => v.clone(),
                StrTest::Wild { pats, .. } => pats
                    .iter()
                    .map(|p| match p {
                        eql::Pattern::Exact(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                _ => return None,
            };
            let mut names = BTreeSet::new();
            for t in &tools {
                let exe = argv::exe_names_for_tool(t);
                if exe.is_empty() {
                    // Not a tool we know executables for: any name might yield it.
                    return None;
                }
                names.extend(exe.iter().map(|s| (*s).to_string()));
            }
            // Wrappers and shims can run any tool.
            names.extend(argv::LIVE_WRAPPERS.iter().map(|s| (*s).to_string()));
            names.extend(argv::SHELLS.iter().map(|s| (*s).to_string()));
            names.extend(
                ["python", "python3", "perl"]
                    .iter()
                    .map(|s| (*s).to_string()),
            );
            Some(names)
        }
        Node::And(v) => {
            let mut acc: Option<BTreeSet<String>> = None;
            for c in v {
                if let Some(s) = name_constraint(c) {
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.intersection(&s).cloned().collect(),
                    });
                }
            }
            acc
        }
        Node::Or(v) => {
            let mut acc = BTreeSet::new();
            for c in v {
                acc.extend(name_constraint(c)?);
            }
            Some(acc)
        }
        _ => None,
    }
}

impl Engine {
    /// The shipped pack.
    pub fn builtin() -> Result<Engine, RuleError> {
        Self::load(&[])
    }

    /// The built-in pack plus rule files or directories. Returns the first error; use
    /// [`crate::check_rules`] to see them all.
    pub fn load(extra: &[PathBuf]) -> Result<Engine, RuleError> {
        match load::load_all(extra) {
            Ok(r) => Ok(Self::from_rules(r)),
            Err(mut e) => Err(e.remove(0)),
        }
    }

    pub(crate) fn from_rules(rules: Vec<Rule>) -> Engine {
        let mut by_name: HashMap<String, Vec<usize>, BuildHasherDefault<NameHasher>> =
            HashMap::default();
        let mut any = Vec::new();
        let mut watch = WatchSet::default();
        let mut has_sigma = false;
        for (i, r) in rules.iter().enumerate() {
            let names = match &r.cond {
                Condition::Eql(n) => name_constraint(n),
                Condition::Sigma(_) => {
                    has_sigma = true;
                    None
                }
            };
            let Some(names) = names else {
                any.push(i);
                watch.capture_all = true;
                watch.capture_all_reasons.push(format!(
                    "rule `{}` ({}) does not restrict process.name or t1609.argv.tool to known names, so every exec must be captured",
                    r.meta.id, r.meta.source
                ));
                continue;
            };
            for n in names {
                if argv::SHELLS.contains(&n.as_str()) {
                    watch.shells.insert(n.clone());
                    watch.shell_rules.insert(r.meta.id.clone());
                } else {
                    watch.names.insert(n.clone());
                }
                by_name.entry(n).or_default().push(i);
            }
        }
        Engine {
            inner: Arc::new(Inner {
                rules,
                by_name,
                any,
                watch,
                has_sigma,
            }),
        }
    }

    pub fn watch_set(&self) -> WatchSet {
        self.inner.watch.clone()
    }

    pub fn rule_count(&self) -> usize {
        self.inner.rules.len()
    }

    /// Ids of the loaded rules, in load order.
    pub fn rule_ids(&self) -> Vec<String> {
        self.inner.rules.iter().map(|r| r.meta.id.clone()).collect()
    }

    /// Evaluates one event: one alert per rule hit, all sharing one group id.
    pub fn evaluate(&self, ev: &ProcessEvent) -> Vec<Alert> {
        self.evaluate_as(ev, None)
    }

    /// [`Engine::evaluate`] for an event whose executed file the agent knows is `tool`
    /// (t1609-identity's canonical name), whatever its name: that tool's rules, its argv
    /// parsed as that tool's (`argv::parse_identified`: `recognised_by: content`, and
    /// `masquerade` when the name is not the tool's).
    pub fn evaluate_identified(&self, ev: &ProcessEvent, tool: &str) -> Vec<Alert> {
        self.evaluate_as(ev, Some(tool))
    }

    fn evaluate_as(&self, ev: &ProcessEvent, tool: Option<&str>) -> Vec<Alert> {
        let inner = &*self.inner;
        let args: &[String] = ev.process.args.as_deref().unwrap_or(&[]);
        let name: &str = match ev.process.name.as_deref() {
            Some(n) => n,
            None => args.first().map_or("", |a| argv::basename(a)),
        };
        let found = inner.by_name.get(name).or_else(|| {
            if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
                inner.by_name.get(&name.to_lowercase())
            } else {
                None
            }
        });
        let identified = tool.and_then(argv::identified_name);
        let found = inner.rules_for(identified, found, name, args);
        let parse = || match (tool, identified) {
            (Some(t), Some(_)) => argv::parse_identified_shared(t, name, args),
            _ => argv::parse_shared(Some(name).filter(|n| !n.is_empty()), args),
        };
        let indexed: &[usize] = found.map_or(&[], Vec::as_slice);
        if indexed.is_empty() && inner.any.is_empty() {
            return Vec::new();
        }
        let mut parsed: Option<Vec<Arc<Invocation>>> = None;
        let mut sigma_doc: Option<serde_json::Value> = None;
        // (rule, invocation) pairs; a handful at most, so kept in place.
        let mut hits: Few<(usize, Option<usize>), 8> = Few::new((0, None));
        for &ri in indexed.iter().chain(inner.any.iter()) {
            let rule = &inner.rules[ri];
            match &rule.cond {
                Condition::Eql(node) => {
                    if rule.needs_argv {
                        let invs = parsed.get_or_insert_with(parse);
                        if invs.is_empty() {
                            if node.eval(&eql::ctx(ev, None)) {
                                hits.push((ri, None));
                            }
                        } else if let Some(k) = invs
                            .iter()
                            .position(|inv| node.eval(&eql::ctx(ev, Some(&**inv))))
                        {
                            hits.push((ri, Some(k)));
                        }
                    } else if node.eval(&eql::ctx(ev, None)) {
                        hits.push((ri, None));
                    }
                }
                Condition::Sigma(s) => {
                    let doc = sigma_doc.get_or_insert_with(|| crate::sigma::sigma_doc(ev));
                    if s.matches(doc) {
                        hits.push((ri, None));
                    }
                }
            }
        }
        let _ = inner.has_sigma;
        if hits.is_empty() {
            return Vec::new();
        }
        let invs = parsed.unwrap_or_else(parse);
        let mut group = Some(group_id(ev, &invs));
        let mut created = Some(now_rfc3339());
        let shared = crate::reuse::share(ev);
        let mut alerts = Vec::with_capacity(hits.len());
        let last = hits.len() - 1;
        for (i, &(ri, k)) in hits.iter().enumerate() {
            let rule = &inner.rules[ri];
            // Rules that don't look at argv still report the primary parse; for
            // wrappers that is the innermost tool invocation.
            let inv = match k {
                Some(k) => invs.get(k).cloned(),
                None => primary(&invs),
            };
            let mut severity = rule.meta.severity;
            let mut risk = rule.meta.risk_score;
            let ctx = eql::ctx(ev, inv.as_deref());
            if let Some(o) = rule.overrides.iter().find(|o| o.cond.eval(&ctx)) {
                severity = o.severity;
                risk = o.risk_score.unwrap_or(risk);
            }
            // The last alert takes the shared strings instead of copying them.
            let take = |s: &mut Option<String>| {
                if i == last {
                    s.take().unwrap_or_default()
                } else {
                    s.clone().unwrap_or_default()
                }
            };
            alerts.push(Alert {
                rule_id: rule.meta.id.clone(),
                rule_name: rule.meta.name.clone(),
                severity,
                risk_score: risk,
                confidence: rule.meta.confidence,
                event_id: new_id(),
                group_id: Some(take(&mut group)),
                source_event_id: ev.event_id.clone(),
                created: take(&mut created),
                rule: rule.meta.clone(),
                event: shared.clone(),
                argv: inv,
            });
        }
        alerts
    }
}

fn is_wrapper_tool(inv: &Invocation) -> bool {
    argv::exe_names_for_tool(&inv.tool).is_empty()
}

/// The first non-wrapper invocation, else the first.
fn primary(invs: &[Arc<Invocation>]) -> Option<Arc<Invocation>> {
    invs.iter()
        .find(|i| !is_wrapper_tool(i))
        .or_else(|| invs.first())
        .cloned()
}

/// Same command: argv equal, argv[0] compared by basename (a wrapper may have resolved
/// the path).
fn same_command(a: &Invocation, b: &Invocation) -> bool {
    a.argv.len() == b.argv.len()
        && a.argv
            .iter()
            .zip(b.argv.iter())
            .enumerate()
            .all(|(i, (x, y))| {
                if i == 0 {
                    argv::basename_bytes(x) == argv::basename_bytes(y)
                } else {
                    x == y
                }
            })
}

/// One id for the alerts of an event and for the alerts of the wrapper that launched it:
/// a digest of host, anchor PID and the innermost command. The anchor is the parent's PID
/// when the parent's own argv wraps exactly this command (sudo forks its child), else our
/// own PID (env and `sh -c` exec in place, keeping the PID).
fn group_id(ev: &ProcessEvent, invs: &[Arc<Invocation>]) -> String {
    let prim = primary(invs);
    let mut anchor = ev.process.pid;
    if let (Some(pp), Some(prim)) = (ev.process.parent.as_deref(), prim.as_deref())
        && let Some(pargs) = pp.args.as_deref()
    {
        let pname = pp
            .name
            .as_deref()
            .or_else(|| pargs.first().map(|a| argv::basename(a)))
            .unwrap_or("");
        // Only wrappers can have launched this very command, and only with arguments
        // (a bare `bash` or `sudo` wraps nothing); skip parsing others.
        if pargs.len() > 1
            && (argv::LIVE_WRAPPERS.contains(&pname)
                || argv::SHELLS.contains(&pname)
                || pname == "nsenter")
        {
            let pinvs = argv::parse_shared(Some(pname), pargs);
            if pinvs.len() > 1 && primary(&pinvs).is_some_and(|p| same_command(&p, prim)) {
                anchor = pp.pid;
            }
        }
    }
    let host = ev.host_hostname.as_deref().unwrap_or("");
    let mut d = Digest::new();
    d.part(host.as_bytes());
    match anchor {
        Some(p) => d.part(crate::fastjson::u64_digits(u64::from(p), &mut [0u8; 20])),
        None => d.part(b""),
    }
    if let Some(p) = prim.as_deref() {
        for (i, a) in p.argv.iter().enumerate() {
            d.part(if i == 0 { argv::basename_bytes(a) } else { a });
        }
    }
    d.finish()
}
