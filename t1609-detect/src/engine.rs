//! The engine: rules specialised per kind of event, a literal index per kind, evaluation,
//! and what the kernel must capture for the loaded rules.

use std::{cell::RefCell, collections::BTreeSet, path::PathBuf, sync::Arc};

use t1609_ecs::{Digest, new_id, now_rfc3339};

use crate::{
    alert::Alert,
    argv::{self, Few, Invocation},
    eql::{self, Attr, Field, Node, Who},
    event::{EventType, ProcessEvent},
    index::{Atom, Cover, LiteralIndex, SubField, covers},
    load::{self, Skipped},
    rules::{Condition, Rule, RuleError},
};

/// What the kernel side must capture for the loaded rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSet {
    /// Executable basenames to capture.
    pub names: BTreeSet<String>,
    /// Some rule can match an exec that `names` does not select: capture every exec.
    /// True when `needs_every_exec` is, and also when some rule is indexed by a name or
    /// path prefix (`name_prefixes`, `exe_prefixes`), which a filter on `names` alone
    /// cannot select.
    pub capture_all: bool,
    /// Why `capture_all` is on (one line per rule), for the agent's warning.
    pub capture_all_reasons: Vec<String>,
    /// Shell names the wrapper rules also index. Not needed live (the command a shell
    /// runs is exec'd and caught on its own), so not in `names`.
    pub shells: BTreeSet<String>,
    /// Rules that use shells as wrappers (replay-only coverage).
    pub shell_rules: BTreeSet<String>,
    /// Process-name prefixes (lowercase) some rule is indexed by: a kernel filter that
    /// tests them (besides `names`) needs no capture-all for those rules.
    pub name_prefixes: BTreeSet<String>,
    /// Executable-path prefixes (lowercase) some rule is indexed by (`/tmp/`,
    /// `/dev/shm/`), likewise.
    pub exe_prefixes: BTreeSet<String>,
    /// Some rule truly needs every exec: it has no literal on the name or the path
    /// (only on arguments, the command line or other fields, or none at all).
    pub needs_every_exec: bool,
    /// Rules that match exit events (`event.type: end`).
    pub exit_rules: BTreeSet<String>,
    /// Rules that match exit events and never an exec: the live agent, which captures
    /// execs, cannot fire them.
    pub exit_only_rules: BTreeSet<String>,
}

/// Event fields that cost the agent a /proc read per exec: filled only when a rule that
/// may match the event tests them ([`Engine::extras_needed`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub session_leader: bool,
    pub group_leader: bool,
    pub env_vars: bool,
}

impl Extras {
    fn of_rule(r: &Rule) -> Extras {
        let mut x = Extras::default();
        let mut add = |f: Field| match f {
            Field::Proc(Who::SessionLeader, _) => x.session_leader = true,
            Field::Proc(Who::GroupLeader, _) => x.group_leader = true,
            Field::Proc(Who::Process, Attr::EnvVars) => x.env_vars = true,
            _ => {}
        };
        if let Condition::Eql(n) = &r.cond {
            n.fields(&mut add);
        }
        for o in &r.overrides {
            o.cond.fields(&mut add);
        }
        x
    }

    fn or(self, o: Extras) -> Extras {
        Extras {
            session_leader: self.session_leader || o.session_leader,
            group_leader: self.group_leader || o.group_leader,
            env_vars: self.env_vars || o.env_vars,
        }
    }

    pub fn any(self) -> bool {
        self.session_leader || self.group_leader || self.env_vars
    }
}

/// Which specialisation of the rules an event gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// `event.type: start`, `event.action: exec`: what the agent records for an exec.
    Exec,
    /// `event.type: end`, `event.action: end`: an exit.
    Exit,
    /// Anything else (replayed documents of other producers).
    Other,
}

impl View {
    fn of(ev: &ProcessEvent) -> View {
        match (ev.event_type, ev.event_action.as_deref()) {
            (EventType::Start, None | Some("exec")) => View::Exec,
            (EventType::End, None | Some("end")) => View::Exit,
            _ => View::Other,
        }
    }
}

/// The rules as one kind of event sees them: each rule's folded condition (`None`: it
/// can never match this kind), and the index over them.
struct Specialised {
    conds: Vec<Option<Node>>,
    /// Each rule's literal covers, from its folded condition (before `optimized`):
    /// empty when it has none.
    covers: Vec<Vec<Cover>>,
    index: LiteralIndex,
    /// Each rule's [`Extras`] (default for a rule absent from this kind of event).
    extras: Vec<Extras>,
    /// Whether any rule's [`Extras`] asks for something (most rule sets: none).
    any_extras: bool,
    /// The extras of the rules the index selects by an environment variable: the index
    /// cannot tell whether they are candidates before the variables are read.
    env_indexed: Extras,
}

impl Specialised {
    fn new(rules: &[Rule], fold: impl Fn(&Node) -> Node) -> Specialised {
        let conds: Vec<Option<Node>> = rules
            .iter()
            .map(|r| match &r.cond {
                Condition::Eql(n) => match fold(n) {
                    Node::Const(false) => None,
                    n => Some(n),
                },
                Condition::Sigma(_) => Some(Node::Const(true)),
            })
            .collect();
        // A Sigma rule rsigma evaluates has no condition of ours to index.
        let covers: Vec<Vec<Cover>> = conds
            .iter()
            .zip(rules)
            .map(|(c, r)| match (&r.cond, c) {
                (Condition::Eql(_), Some(c)) => covers(c),
                _ => Vec::new(),
            })
            .collect();
        let index = LiteralIndex::build(conds.iter().enumerate().filter_map(|(i, c)| {
            c.as_ref()?;
            Some((u32::try_from(i).ok()?, covers[i].clone()))
        }));
        let extras: Vec<Extras> = rules
            .iter()
            .zip(&conds)
            .map(|(r, c)| {
                c.as_ref()
                    .map_or_else(Extras::default, |_| Extras::of_rule(r))
            })
            .collect();
        let env_indexed = covers
            .iter()
            .zip(&extras)
            .filter(|(cs, _)| {
                cs.iter()
                    .flat_map(|c| &c.atoms)
                    .any(|a| matches!(a, Atom::Sub(SubField::EnvVars, _)))
            })
            .fold(Extras::default(), |acc, (_, x)| acc.or(*x));
        let conds = conds.into_iter().map(|c| c.map(Node::optimized)).collect();
        let any_extras = extras.iter().any(|x| x.any());
        Specialised {
            conds,
            covers,
            index,
            extras,
            any_extras,
            env_indexed,
        }
    }
}

struct Inner {
    rules: Vec<Rule>,
    exec: Specialised,
    exit: Specialised,
    other: Specialised,
    watch: WatchSet,
    skipped: Vec<Skipped>,
}

thread_local! {
    /// Candidate rule indexes, reused across evaluations.
    static CANDIDATES: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
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
            .field("skipped", &self.inner.skipped.len())
            .field("exec_index", &self.inner.exec.index)
            .finish()
    }
}

/// The watch set of the exec view.
fn watch_set(rules: &[Rule], exec: &Specialised, exit: &Specialised) -> WatchSet {
    let mut w = WatchSet::default();
    for (i, r) in rules.iter().enumerate() {
        if exit.conds[i].is_some() {
            w.exit_rules.insert(r.meta.id.clone());
        }
        if exec.conds[i].is_none() {
            if exit.conds[i].is_some() {
                w.exit_only_rules.insert(r.meta.id.clone());
            }
            continue;
        }
        let id = &r.meta.id;
        // Any one cover is implied by the rule: the kernel gets the one it can test best.
        let Some(cov) = exec.covers[i].iter().min_by_key(|c| {
            c.atoms
                .iter()
                .filter(|a| matches!(a, Atom::Arg(_) | Atom::ParentName(_) | Atom::Sub(..)))
                .count()
        }) else {
            w.needs_every_exec = true;
            w.capture_all_reasons.push(format!(
                "rule `{id}` ({}) tests no executable name, path or argument literal, so every exec must be captured",
                r.meta.source
            ));
            continue;
        };
        let mut why: Option<&str> = None;
        for a in &cov.atoms {
            match a {
                // A rule that asks not to be watched by name (it would have the probe
                // report every shell on the host) is covered live by what is captured for
                // other reasons (sessions), and evaluated on replayed events.
                Atom::Name(n) if !r.watch_names => {
                    w.shells.insert(n.clone());
                    w.shell_rules.insert(id.clone());
                }
                Atom::Name(n) => {
                    w.names.insert(n.clone());
                }
                Atom::ViaShell(n) => {
                    w.shells.insert(n.clone());
                    w.shell_rules.insert(id.clone());
                }
                Atom::NamePrefix(p) => {
                    w.name_prefixes.insert(p.clone());
                    why.get_or_insert("a process-name prefix");
                }
                Atom::ExePrefix(p) => {
                    w.exe_prefixes.insert(p.clone());
                    why.get_or_insert("an executable-path prefix");
                }
                Atom::Arg(_) | Atom::ParentName(_) | Atom::Sub(..) => {
                    w.needs_every_exec = true;
                    why = Some("argument or command-line literals only");
                }
            }
        }
        if let Some(why) = why {
            w.capture_all_reasons.push(format!(
                "rule `{id}` ({}) is selected by {why}, which the name filter cannot test, so every exec must be captured",
                r.meta.source
            ));
        }
    }
    w.capture_all = w.needs_every_exec || !w.name_prefixes.is_empty() || !w.exe_prefixes.is_empty();
    w
}

impl Engine {
    /// The shipped pack.
    pub fn builtin() -> Result<Engine, RuleError> {
        Self::load(&[])
    }

    /// The built-in pack plus rule files or directories. Returns the first error; use
    /// [`crate::check_rules`] to see them all. Rules of Elastic's detection-rules format
    /// that the engine cannot evaluate are skipped, not errors: [`Engine::skipped`].
    pub fn load(extra: &[PathBuf]) -> Result<Engine, RuleError> {
        match load::load_all(extra) {
            Ok(l) => Ok(Self::from_loaded(l.rules, l.skipped)),
            Err(mut e) => Err(e.remove(0)),
        }
    }

    fn from_loaded(rules: Vec<Rule>, skipped: Vec<Skipped>) -> Engine {
        let exec = Specialised::new(&rules, |n| n.specialize(EventType::Start, Some("exec")));
        let exit = Specialised::new(&rules, |n| n.specialize(EventType::End, Some("end")));
        let other = Specialised::new(&rules, |n| n.clone().simplified());
        let watch = watch_set(&rules, &exec, &exit);
        Engine {
            inner: Arc::new(Inner {
                rules,
                exec,
                exit,
                other,
                watch,
                skipped,
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

    /// Rule files' rules that were not loaded, each with its reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.inner.skipped
    }

    /// Every field some loaded rule tests: what the capture side must fill (the
    /// expensive ones, leaders and environment variables, only when asked for).
    pub fn fields_used(&self) -> BTreeSet<Field> {
        let mut out = BTreeSet::new();
        for r in &self.inner.rules {
            let mut add = |f: Field| {
                out.insert(f);
            };
            if let Condition::Eql(n) = &r.cond {
                n.fields(&mut add);
            }
            for o in &r.overrides {
                o.cond.fields(&mut add);
            }
        }
        out
    }

    /// The condition of rule `id`, as evaluated on exec events (after folding).
    pub fn exec_condition(&self, id: &str) -> Option<&Node> {
        let i = self.inner.rules.iter().position(|r| r.meta.id == id)?;
        self.inner.exec.conds[i].as_ref()
    }

    /// An event rule `id` matches, built from its literals (an exec, else an exit), or
    /// `None` when none could be built ([`crate::witness`]).
    pub fn example_event(&self, id: &str) -> Option<ProcessEvent> {
        let i = self.inner.rules.iter().position(|r| r.meta.id == id)?;
        [
            (&self.inner.exec, EventType::Start),
            (&self.inner.exit, EventType::End),
        ]
        .into_iter()
        .find_map(|(view, t)| crate::witness::example(view.conds[i].as_ref()?, t))
    }

    /// The condition of rule `id`, as written (Sigma rules: as translated), or `None`
    /// for a Sigma rule that rsigma evaluates.
    pub fn condition(&self, id: &str) -> Option<&Node> {
        match &self.inner.rules.iter().find(|r| r.meta.id == id)?.cond {
            Condition::Eql(n) => Some(n),
            Condition::Sigma(_) => None,
        }
    }

    /// How many rules the literal index selects for `ev` (the rules then evaluated), and
    /// their ids: the index's selectivity, for benchmarks and tuning.
    pub fn candidates(&self, ev: &ProcessEvent) -> Vec<String> {
        let view = self.view(ev);
        let mut c = Vec::new();
        view.index.candidates(ev, event_name(ev), &mut c);
        c.iter()
            .map(|&i| self.inner.rules[i as usize].meta.id.clone())
            .collect()
    }

    /// The rules as `ev`'s kind of event sees them.
    fn view(&self, ev: &ProcessEvent) -> &Specialised {
        match View::of(ev) {
            View::Exec => &self.inner.exec,
            View::Exit => &self.inner.exit,
            View::Other => &self.inner.other,
        }
    }

    /// The extras the rules that may match `ev` test (its candidates, by the literal
    /// index, and the rules indexed by an environment variable): what the agent reads
    /// from /proc for this exec before [`Engine::evaluate`].
    pub fn extras_needed(&self, ev: &ProcessEvent) -> Extras {
        let view = self.view(ev);
        if !view.any_extras {
            return Extras::default();
        }
        let name = event_name(ev);
        let scan = |c: &mut Vec<u32>| {
            view.index.candidates(ev, name, c);
            c.iter().fold(view.env_indexed, |acc, &ri| {
                acc.or(view.extras[ri as usize])
            })
        };
        CANDIDATES.with(|c| match c.try_borrow_mut() {
            Ok(mut c) => scan(&mut c),
            Err(_) => scan(&mut Vec::new()),
        })
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
        let view = self.view(ev);
        if view.index.is_empty() {
            return Vec::new();
        }
        let args: &[String] = ev.process.args.as_deref().unwrap_or(&[]);
        let name = event_name(ev);
        let identified = tool.and_then(argv::identified_name);
        // The rules of the tool the file is; else those indexed under the name; else, for
        // a name the index lacks, those of the name once normalised, a plugin's host or
        // the arguments' shape (`argv::index_key`).
        let key = match identified {
            Some(n) => n,
            None if !view.index.knows_name(name) => argv::index_key(name, args).unwrap_or(name),
            None => name,
        };
        let as_tool = tool.filter(|_| identified.is_some());
        CANDIDATES.with(|c| match c.try_borrow_mut() {
            Ok(mut c) => self.evaluate_with(ev, view, (name, key, as_tool), args, &mut c),
            Err(_) => self.evaluate_with(ev, view, (name, key, as_tool), args, &mut Vec::new()),
        })
    }

    /// `names`: the event's name, the name its rules are looked up under, and the tool
    /// the file was identified as.
    fn evaluate_with(
        &self,
        ev: &ProcessEvent,
        view: &Specialised,
        (name, key, as_tool): (&str, &str, Option<&str>),
        args: &[String],
        candidates: &mut Vec<u32>,
    ) -> Vec<Alert> {
        let inner = &*self.inner;
        view.index.candidates(ev, key, candidates);
        if candidates.is_empty() {
            return Vec::new();
        }
        let parse = || match as_tool {
            Some(t) => argv::parse_identified_shared(t, name, args),
            None => argv::parse_shared(Some(name).filter(|n| !n.is_empty()), args),
        };
        let mut parsed: Option<Vec<Arc<Invocation>>> = None;
        let mut sigma_doc: Option<serde_json::Value> = None;
        // (rule, invocation) pairs; a handful at most, so kept in place.
        let mut hits: Few<(usize, Option<usize>), 8> = Few::new((0, None));
        for &ri in candidates.iter() {
            let ri = ri as usize;
            let rule = &inner.rules[ri];
            let Some(node) = view.conds[ri].as_ref() else {
                continue;
            };
            match &rule.cond {
                Condition::Eql(_) => {
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

/// The process name the index and the argv parse go by: `process.name`, else argv[0]'s
/// basename.
fn event_name(ev: &ProcessEvent) -> &str {
    match ev.process.name.as_deref() {
        Some(n) => n,
        None => ev
            .process
            .args
            .as_deref()
            .and_then(<[String]>::first)
            .map_or("", |a| argv::basename(a)),
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
