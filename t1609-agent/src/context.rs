//! Context stage: who ran it (process table, ancestry, users), from where (cgroup,
//! namespaces), into which container (runtime lookups), and tuning (exceptions, dedup).
//! The heavy lifting is in t1609-context; this module applies it to our events.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_context::{
    CgroupContext, DedupKey, DedupOutcome, Deduper, DockerClient, ExceptionConfig, Exceptions,
    Namespaces, ProcInfo, ProcessTable, Subject, parse_cgroup,
};
use t1609_detect::event::ProcessEvent;

use crate::decode::CapturedExec;

/// Settings of the context stage (`[context]` in the config file).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Process-table bound.
    pub max_processes: usize,
    /// How long an exited process stays in the table, so its children's alerts name it.
    pub exit_grace_ms: u64,
    /// Docker Engine socket used to resolve `docker exec` targets; empty disables it.
    pub docker_socket: PathBuf,
    /// Timeout of one runtime lookup.
    pub runtime_timeout_ms: u64,
    /// Identical alerts within this window collapse into one with a repeat count; 0 disables.
    pub dedup_window_ms: u64,
    /// Open dedup windows whose first alert is kept for the follow-up (the first eighth
    /// whole, the rest lean); past it a follow-up is built from the dedup key.
    pub dedup_kept_alerts: usize,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            max_processes: 8_192,
            exit_grace_ms: 60_000,
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            runtime_timeout_ms: 100,
            dedup_window_ms: 10_000,
            dedup_kept_alerts: 4_096,
        }
    }
}

const MAX_LOOKUPS_PER_SEC: u32 = 20;
/// How long lookups pause after the runtime did not answer.
const RUNTIME_RETRY: Duration = Duration::from_secs(1);

/// Where an exec ran and who is behind it.
#[derive(Clone, Debug, Default)]
pub struct ExecContext {
    pub cgroup: CgroupContext,
    pub in_container: bool,
    pub ancestry: Vec<t1609_context::Ancestor>,
    pub session_leader: Option<u32>,
}

pub struct Context {
    pub table: ProcessTable,
    host_ns: Option<Namespaces>,
    proc_root: PathBuf,
    docker: Option<DockerClient>,
    resolved: HashMap<String, (Option<Value>, Instant)>,
    /// Runtime lookups run inline in the pipeline: at most this many a second, so a
    /// flood of unique target names cannot stall detection.
    lookup_budget: (Instant, u32),
    /// After a lookup found the runtime unreachable or silent, none is tried before this:
    /// a hung socket costs the capture thread one timeout a second, not one per alert.
    runtime_down_until: Option<Instant>,
    pub tuning: Tuning,
    /// mount namespace → cgroup context of a live process in it: a short-lived process
    /// whose /proc entry is gone still gets its container from a sibling (the container's
    /// init lives as long as the container).
    by_mnt_ns: HashMap<u32, (Option<CgroupContext>, Instant)>,
    /// Execs whose cgroups came from their parent's css_set instead of /proc.
    pub cgroup_reads_saved: u64,
    parsed_cgroups: HashMap<Arc<str>, CgroupContext>,
    /// Execs whose working directory came from their parent instead of /proc.
    pub cwd_reads_saved: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("exception config: {0}")]
    Exceptions(#[from] t1609_context::ExceptionError),
}

/// Session id (field 6 of /proc/<pid>/stat): the session leader's pid.
fn session_id(proc_root: &Path, pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
        .filter(|s| *s != 0)
}

fn read_cgroup(proc_root: &Path, pid: u32) -> Option<String> {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()
}

impl Context {
    pub fn new(
        cfg: &ContextConfig,
        proc_root: &Path,
        exceptions: Vec<ExceptionConfig>,
    ) -> Result<Self, ContextError> {
        let mut table = ProcessTable::new(
            proc_root,
            cfg.max_processes,
            Duration::from_millis(cfg.exit_grace_ms),
        );
        table.seed_from_proc();
        let docker = (!cfg.docker_socket.as_os_str().is_empty()).then(|| {
            DockerClient::new(
                cfg.docker_socket.clone(),
                Duration::from_millis(cfg.runtime_timeout_ms),
            )
        });
        Ok(Self {
            table,
            host_ns: t1609_context::host_namespaces(proc_root).ok(),
            proc_root: proc_root.to_owned(),
            docker,
            resolved: HashMap::new(),
            lookup_budget: (Instant::now(), 0),
            runtime_down_until: None,
            tuning: Tuning::new(exceptions, cfg.dedup_window_ms)?,
            by_mnt_ns: HashMap::new(),
            cgroup_reads_saved: 0,
            parsed_cgroups: HashMap::new(),
            cwd_reads_saved: 0,
        })
    }

    fn cgroup_by_mnt_ns(&mut self, mnt_ns: u32) -> Option<CgroupContext> {
        if mnt_ns == 0 {
            return None;
        }
        if let Some((c, at)) = self.by_mnt_ns.get(&mnt_ns)
            && (c.is_some() || at.elapsed() < Duration::from_secs(5))
        {
            return c.clone();
        }
        let want = format!("mnt:[{mnt_ns}]");
        let found = std::fs::read_dir(&self.proc_root).ok().and_then(|dir| {
            dir.flatten().find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let ns = std::fs::read_link(e.path().join("ns/mnt")).ok()?;
                (ns.to_str()? == want).then_some(())?;
                read_cgroup(&self.proc_root, pid).map(|t| parse_cgroup(&t))
            })
        });
        if self.by_mnt_ns.len() > 4096 {
            self.by_mnt_ns.clear();
        }
        self.by_mnt_ns
            .insert(mnt_ns, (found.clone(), Instant::now()));
        found
    }

    /// The parent of an exec, from the table (read from /proc once, then cached), so it
    /// is known even after it exits.
    pub fn parent_of(&mut self, ppid: u32) -> Option<t1609_detect::event::ParentProcess> {
        if ppid == 0 {
            return None;
        }
        let fresh = self
            .table
            .get(ppid)
            .is_none_or(|p| p.exited || p.executable.is_none());
        if fresh {
            self.table.refresh_from_proc(ppid);
        }
        let p = self.table.get(ppid)?;
        Some(t1609_detect::event::ParentProcess {
            pid: Some(p.pid),
            name: Some(p.name.clone()),
            executable: p.executable.as_deref().map(str::to_owned),
            command_line: p.args.as_ref().map(|a| a.join(" ")),
            args: p.args.as_deref().map(<[String]>::to_vec),
        })
    }

    /// The cgroups of an exec without reading /proc, when its css_set is the one the
    /// table read its parent's cgroups for (the kernel hands over the css_set identity).
    fn cgroup_from_parent(&self, exec: &CapturedExec) -> Option<Arc<str>> {
        if exec.css_set == 0 {
            return None;
        }
        let parent = self.table.get(exec.ppid)?;
        (parent.css_set == Some(exec.css_set))
            .then(|| parent.cgroup.clone())
            .flatten()
    }

    /// The exec's working directory: its parent's path when the kernel saw the same
    /// directory (vfsmount and dentry) as the one the table read that path for, else
    /// /proc. A directory renamed since then keeps its old path here until the parent's
    /// next exec, the price of not reading /proc for every exec.
    pub fn cwd_of(&mut self, exec: &CapturedExec) -> Option<Arc<str>> {
        let known = exec.pwd != (0, 0);
        if known
            && let Some((pwd, path)) = self.table.get(exec.ppid).and_then(|p| p.cwd.as_ref())
            && *pwd == exec.pwd
        {
            self.cwd_reads_saved += 1;
            return Some(path.clone());
        }
        let read = |pid: u32| {
            std::fs::read_link(self.proc_root.join(pid.to_string()).join("cwd"))
                .ok()
                .map(|p| Arc::<str>::from(p.to_string_lossy()))
        };
        // As for cgroups: the parent usually outlives a short-lived child.
        let path = if exec.same_cwd_as_parent {
            read(exec.ppid).or_else(|| read(exec.tgid))
        } else {
            read(exec.tgid)
        }?;
        if known && exec.same_cwd_as_parent {
            self.table.learn_cwd(exec.ppid, exec.pwd, path.clone());
        }
        Some(path)
    }

    /// Parses a cgroup file's text once per distinct text: a host runs a handful of
    /// cgroups, and the same text comes back for every exec in one.
    fn parsed_cgroup(&mut self, text: &Arc<str>) -> CgroupContext {
        if let Some(c) = self.parsed_cgroups.get(text) {
            return c.clone();
        }
        let c = parse_cgroup(text);
        if self.parsed_cgroups.len() >= 1024 {
            self.parsed_cgroups.clear();
        }
        self.parsed_cgroups.insert(text.clone(), c.clone());
        c
    }

    /// Updates the table with an exec and works out where it ran.
    /// `cwd` is what [`Context::cwd_of`] returned for this exec, kept with its table
    /// entry so the exec's own children can reuse it.
    pub fn on_exec(
        &mut self,
        exec: &CapturedExec,
        event: &ProcessEvent,
        cwd: Option<Arc<str>>,
    ) -> ExecContext {
        let cgroup_text: Option<Arc<str>> = match self.cgroup_from_parent(exec) {
            Some(known) => {
                self.cgroup_reads_saved += 1;
                Some(known)
            }
            None => {
                // Kept whole (not compacted) so a reuse parses exactly what a read would;
                // the table shares identical texts. When the kernel says the parent
                // shares the css_set, its file is read: the parent usually outlives a
                // short-lived child, and what is learnt serves its next children.
                let read = if exec.same_cgroups_as_parent {
                    read_cgroup(&self.proc_root, exec.ppid)
                        .or_else(|| read_cgroup(&self.proc_root, exec.tgid))
                } else {
                    read_cgroup(&self.proc_root, exec.tgid)
                }
                .map(Arc::<str>::from);
                if let Some(text) = read.as_ref().filter(|_| exec.same_cgroups_as_parent) {
                    // The parent shares this css_set: its next children need no read.
                    self.table
                        .learn_cgroup(exec.ppid, exec.css_set, text.clone());
                }
                read
            }
        };
        self.table.on_exec(ProcInfo {
            pid: exec.tgid,
            ppid: exec.ppid,
            name: event.process.name.clone().unwrap_or_default(),
            executable: event.process.executable.as_deref().map(Arc::from),
            args: event.process.args.as_deref().map(Arc::from),
            start_ns: Some(exec.ktime_ns),
            uid: Some(exec.uid),
            session_leader: None,
            cgroup: cgroup_text.clone(),
            css_set: (exec.css_set != 0 && cgroup_text.is_some()).then_some(exec.css_set),
            cwd: cwd
                .filter(|_| exec.pwd != (0, 0))
                .map(|path| (exec.pwd, path)),
            exited: false,
        });
        let cgroup = match cgroup_text.as_ref().map(|t| self.parsed_cgroup(t)) {
            Some(c) => {
                if c.container_id.is_some() {
                    self.by_mnt_ns
                        .insert(exec.mnt_ns, (Some(c.clone()), Instant::now()));
                }
                c
            }
            None => self.cgroup_by_mnt_ns(exec.mnt_ns).unwrap_or_default(),
        };
        let in_container = match &self.host_ns {
            Some(host) => {
                t1609_context::in_container(host, u64::from(exec.pid_ns), u64::from(exec.mnt_ns))
            }
            None => cgroup.container_id.is_some(),
        };
        // The kernel's chain is authoritative (taken at the exec, so short-lived parents
        // are in it); the table and /proc add executables where they still know them.
        let mut ancestry: Vec<t1609_context::Ancestor> = exec
            .ancestors
            .iter()
            .map(|(tgid, comm)| {
                if self.table.get(*tgid).is_none() {
                    self.table.refresh_from_proc(*tgid);
                }
                t1609_context::Ancestor {
                    pid: *tgid,
                    name: String::from_utf8_lossy(comm).into_owned(),
                    executable: self
                        .table
                        .get(*tgid)
                        .and_then(|k| k.executable.as_deref().map(str::to_owned)),
                }
            })
            .collect();
        if ancestry.is_empty() {
            ancestry = self.table.refresh_ancestry(exec.tgid, 8);
        }
        ExecContext {
            cgroup,
            in_container,
            ancestry,
            session_leader: None,
        }
    }

    /// Records an exact repeat of an exec whose outcome was replayed (see
    /// [`crate::repeat`]): its cgroups and directory are its parent's, which
    /// [`crate::repeat::Repeats::identify`] checked.
    pub fn on_repeat_exec(&mut self, exec: &CapturedExec, outcome: &crate::repeat::Outcome) {
        let parent = self.table.get(exec.ppid);
        let cgroup = parent.and_then(|p| p.cgroup.clone());
        let cwd = parent.and_then(|p| p.cwd.clone());
        self.cgroup_reads_saved += 1;
        self.cwd_reads_saved += 1;
        self.table.on_exec(ProcInfo {
            pid: exec.tgid,
            ppid: exec.ppid,
            name: outcome.name.clone(),
            executable: outcome.executable.clone(),
            args: outcome.args.clone(),
            start_ns: Some(exec.ktime_ns),
            uid: Some(exec.uid),
            session_leader: None,
            css_set: cgroup.is_some().then_some(exec.css_set),
            cgroup,
            cwd,
            exited: false,
        });
    }

    /// Reads the session leader into `ctx` (once): only alerts and recorded events carry
    /// it, so most execs never pay for the /proc read.
    pub fn fill_session_leader(&self, ctx: &mut ExecContext, tgid: u32) {
        if ctx.session_leader.is_none() {
            ctx.session_leader = session_id(&self.proc_root, tgid);
        }
    }

    /// The parent as the table knows it, for when /proc no longer has it.
    pub fn parent_from_table(&self, ppid: u32) -> Option<&ProcInfo> {
        self.table.get(ppid)
    }

    pub fn on_fork(&mut self, parent: u32, child: u32, ktime_ns: u64) {
        self.table.on_fork(parent, child, ktime_ns);
    }

    pub fn on_exit(&mut self, tgid: u32) {
        self.table.on_exit(tgid, Instant::now());
    }

    /// Called every second: checks a thirty-second of the table (16 to 256 entries)
    /// against /proc and marks the vanished ones exited, so a full pass takes about half
    /// a minute whatever the table's size (an idle host pays a few stat calls a second,
    /// not 256), then evicts.
    pub fn housekeeping(&mut self) -> usize {
        let now = Instant::now();
        self.table.prune_dead(prune_checks(self.table.len()), now);
        self.table.evict(now)
    }

    /// Resolves a `docker exec` target (name or id prefix) to the container's details,
    /// cached for 30 s. `None` when the runtime cannot answer: the alert says so.
    pub async fn resolve_target(&mut self, target: &str) -> Option<Value> {
        let docker = self.docker.as_ref()?;
        if let Some((v, at)) = self.resolved.get(target)
            && at.elapsed() < Duration::from_secs(30)
        {
            return v.clone();
        }
        if self.lookup_budget.0.elapsed() >= Duration::from_secs(1) {
            self.lookup_budget = (Instant::now(), 0);
        }
        if self.lookup_budget.1 >= MAX_LOOKUPS_PER_SEC
            || self.runtime_down_until.is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        self.lookup_budget.1 += 1;
        let v = match docker.resolve(target).await {
            Ok(meta) => Some(json!({
                "id": meta.id, "name": meta.name, "image": {"name": meta.image},
                "pod": {"name": meta.pod_name, "namespace": meta.pod_namespace, "uid": meta.pod_uid},
            })),
            Err(e) => {
                tracing::debug!(target, error = %e, "docker target not resolved");
                if e.is_unavailable() {
                    self.runtime_down_until = Some(Instant::now() + RUNTIME_RETRY);
                }
                None
            }
        };
        if self.resolved.len() > 1024 {
            self.resolved.clear();
        }
        self.resolved
            .insert(target.to_owned(), (v.clone(), Instant::now()));
        v
    }

    /// What the exceptions say about an alert on `event`, decided from the event itself
    /// so a suppressed or repeated alert never has its document built.
    pub fn verdict(
        &self,
        rule_id: &str,
        event: &ProcessEvent,
        ctx: &ExecContext,
        now: time::OffsetDateTime,
    ) -> Verdict {
        let p = &event.process;
        let subject = Subject {
            rule_id,
            ancestors: &ctx.ancestry,
            user: event.user.name.as_deref(),
            group: event.group.name.as_deref(),
            parent_command_line: p.parent.as_ref().and_then(|x| x.command_line.as_deref()),
            command_line: p.command_line.as_deref(),
            container_id: alert_container_id(event, ctx),
            // Live events carry no image: the exec's target image is under t1609.target.
            image: None,
            systemd_unit: ctx.cgroup.systemd_unit.as_deref(),
        };
        self.tuning.verdict(&subject, now)
    }

    /// `true` for the first of identical alerts in the window; repeats are counted.
    pub fn first_of_key(&mut self, key: DedupKey) -> bool {
        self.tuning.first_of_key(key, Instant::now())
    }

    /// Dedup windows that closed, or all of them: (key, alerts in the window), repeated
    /// or not.
    pub fn closed_windows(&mut self, all: bool) -> Vec<(DedupKey, u64)> {
        if all {
            self.tuning.all_windows()
        } else {
            self.tuning.closed_windows(Instant::now())
        }
    }

    pub fn dedup_enabled(&self) -> bool {
        self.tuning.dedup_enabled()
    }
}

/// Entries checked against /proc per housekeeping pass.
fn prune_checks(table_len: usize) -> usize {
    (table_len / 32).clamp(16, 256)
}

/// Exceptions and deduplication: the part of the context stage that needs no kernel and
/// no /proc, shared by live mode and `replay`.
pub struct Tuning {
    pub exceptions: Exceptions,
    dedup: Option<Deduper>,
}

impl Tuning {
    pub fn new(
        exceptions: Vec<ExceptionConfig>,
        dedup_window_ms: u64,
    ) -> Result<Self, ContextError> {
        Ok(Self {
            exceptions: Exceptions::new(exceptions)?,
            dedup: (dedup_window_ms > 0)
                .then(|| Deduper::new(Duration::from_millis(dedup_window_ms))),
        })
    }

    /// The exceptions' verdict on one alert at time `now`.
    pub fn verdict(&self, subject: &Subject, now: time::OffsetDateTime) -> Verdict {
        let decisions = self.exceptions.evaluate(subject, now);
        let (suppress, lower, tags) = t1609_context::summarize(&decisions);
        Verdict {
            suppress,
            lower,
            tags,
        }
    }

    /// Applies the exceptions at time `now` (the event's time in replay): returns `false`
    /// when the alert is suppressed; lowers its severity or tags it otherwise.
    pub fn tune(
        &self,
        doc: &mut Value,
        ancestry: &[t1609_context::Ancestor],
        systemd_unit: Option<&str>,
        now: time::OffsetDateTime,
    ) -> bool {
        let rule_id = doc["rule"]["id"].as_str().unwrap_or_default().to_owned();
        let s = |v: &Value| v.as_str().map(str::to_owned);
        let (user, group) = (s(&doc["user"]["name"]), s(&doc["group"]["name"]));
        let (parent_cl, cl) = (
            s(&doc["process"]["parent"]["command_line"]),
            s(&doc["process"]["command_line"]),
        );
        let (cid, image) = (
            s(&doc["container"]["id"]),
            s(&doc["container"]["image"]["name"]),
        );
        let subject = Subject {
            rule_id: &rule_id,
            ancestors: ancestry,
            user: user.as_deref(),
            group: group.as_deref(),
            parent_command_line: parent_cl.as_deref(),
            command_line: cl.as_deref(),
            container_id: cid.as_deref(),
            image: image.as_deref(),
            systemd_unit,
        };
        let verdict = self.verdict(&subject, now);
        verdict.apply(doc)
    }

    pub fn first_of_kind(&mut self, doc: &Value, at: Instant) -> bool {
        self.first_of_key(dedup_key(doc), at)
    }

    /// Counts one more of each of `keys` if every one is a repeat in its open window;
    /// `false` (nothing counted) otherwise. No keys: `true`.
    pub fn count_if_all_repeats(&mut self, keys: &[DedupKey], at: Instant) -> bool {
        match self.dedup.as_mut() {
            Some(dedup) => dedup.count_if_all_repeats(keys, at),
            None => keys.is_empty(),
        }
    }

    pub fn first_of_key(&mut self, key: DedupKey, at: Instant) -> bool {
        let Some(dedup) = self.dedup.as_mut() else {
            return true;
        };
        matches!(dedup.check(key, at), DedupOutcome::First)
    }

    /// Windows closed by `at`: (key, alerts in the window), count 1 included so that
    /// what was kept for a window's follow-up can go.
    pub fn closed_windows(&mut self, at: Instant) -> Vec<(DedupKey, u64)> {
        self.dedup
            .as_mut()
            .map(|d| d.flush_expired(at))
            .unwrap_or_default()
    }

    /// Every window, closed or still open: (key, alerts in the window).
    pub fn all_windows(&mut self) -> Vec<(DedupKey, u64)> {
        self.dedup
            .as_mut()
            .map(Deduper::flush_all)
            .unwrap_or_default()
    }

    pub fn dedup_enabled(&self) -> bool {
        self.dedup.is_some()
    }
}

/// The exceptions' decision on one alert.
#[derive(Debug, Default)]
pub struct Verdict {
    pub suppress: bool,
    pub lower: Option<t1609_context::Severity>,
    pub tags: Vec<String>,
}

impl Verdict {
    /// Writes the lowered severity and tags into the alert; `false` when suppressed.
    pub fn apply(&self, doc: &mut Value) -> bool {
        if self.suppress {
            return false;
        }
        if let Some(sev) = self.lower {
            let n = match sev.as_str() {
                "low" => 21,
                "medium" => 47,
                "high" => 73,
                _ => 99,
            };
            doc["event"]["severity"] = json!(n);
            doc["t1609"]["severity"] = json!(sev.as_str());
            doc["t1609"]["severity_lowered_by_exception"] = json!(true);
        }
        if !self.tags.is_empty() {
            doc["tags"] = json!(self.tags);
        }
        true
    }
}

/// The container an alert names: the cgroup's answer wins over the event's (as in
/// [`augment`]).
pub fn alert_container_id<'a>(event: &'a ProcessEvent, ctx: &'a ExecContext) -> Option<&'a str> {
    ctx.cgroup
        .container_id
        .as_deref()
        .or(event.container_id.as_deref())
}

/// The dedup key of an alert on `event`, equal to [`dedup_key`] of its document.
pub fn event_dedup_key(rule_id: &str, event: &ProcessEvent, ctx: &ExecContext) -> DedupKey {
    let p = &event.process;
    DedupKey::new(
        rule_id,
        p.command_line.as_deref().unwrap_or_default(),
        p.parent.as_ref().and_then(|x| x.executable.as_deref()),
        alert_container_id(event, ctx),
    )
}

pub fn dedup_key(doc: &Value) -> DedupKey {
    DedupKey::new(
        doc["rule"]["id"].as_str().unwrap_or_default(),
        doc["process"]["command_line"].as_str().unwrap_or_default(),
        doc["process"]["parent"]["executable"].as_str(),
        doc["container"]["id"].as_str(),
    )
}

/// The ancestry an alert document carries (`t1609.ancestry`), for tuning in replay.
pub fn ancestry_from_doc(doc: &Value) -> Vec<t1609_context::Ancestor> {
    doc["t1609"]["ancestry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| t1609_context::Ancestor {
                    pid: x["pid"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok())
                        .unwrap_or(0),
                    name: x["name"].as_str().unwrap_or_default().to_owned(),
                    executable: x["executable"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Adds what the context stage knows to an ECS document (event or alert).
pub fn augment(doc: &mut Value, ctx: &ExecContext) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    let container = obj.entry("container").or_insert_with(|| json!({}));
    if let Some(c) = container.as_object_mut() {
        if let Some(id) = &ctx.cgroup.container_id {
            c.insert("id".into(), json!(id));
        }
        if ctx.cgroup.runtime.is_container() {
            c.insert("runtime".into(), json!(ctx.cgroup.runtime.as_str()));
        }
    }
    if let Some(uid) = &ctx.cgroup.pod_uid {
        // No pod-name source is wired on this host yet: say so rather than leave a blank.
        obj.insert(
            "orchestrator".into(),
            json!({"type": "kubernetes", "resource": {"type": "pod", "uid": uid}, "metadata_pending": true}),
        );
    }
    let t = obj.entry("t1609").or_insert_with(|| json!({}));
    if let Some(t) = t.as_object_mut() {
        t.insert("in_container".into(), json!(ctx.in_container));
        t.insert(
            "ancestry".into(),
            json!(
                ctx.ancestry
                    .iter()
                    .map(|a| json!({"pid": a.pid, "name": a.name, "executable": a.executable}))
                    .collect::<Vec<_>>()
            ),
        );
        if let Some(unit) = &ctx.cgroup.systemd_unit {
            t.insert("systemd_unit".into(), json!(unit));
        }
        if let Some(leader) = ctx.session_leader {
            t.insert("session_leader_pid".into(), json!(leader));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_prune_pass_takes_about_half_a_minute_at_any_size() {
        assert_eq!(prune_checks(0), 16);
        assert_eq!(
            prune_checks(300),
            16,
            "idle host: a few stat calls a second"
        );
        assert_eq!(prune_checks(4096), 128);
        assert_eq!(prune_checks(8192), 256);
        assert_eq!(prune_checks(1 << 20), 256, "bounded");
        for len in [512, 2048, 8192] {
            assert!((len / prune_checks(len)) <= 32, "{len}");
        }
    }

    const HOST: &str = "0::/system.slice/cron.service\n";
    const CONTAINER: &str = "0::/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n";

    fn proc_cgroup(root: &Path, pid: u32, text: &str) {
        std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
        std::fs::write(root.join(pid.to_string()).join("cgroup"), text).unwrap();
    }

    fn exec(tgid: u32, ppid: u32, css_set: u64, same_as_parent: bool) -> CapturedExec {
        CapturedExec {
            tgid,
            pid: tgid,
            ppid,
            css_set,
            same_cgroups_as_parent: same_as_parent,
            ..Default::default()
        }
    }

    /// A fake /proc holds only what each step may read: a step that reuses the parent's
    /// cgroups finds no file of its own, and would get no container or unit if it read.
    #[test]
    fn exec_in_parents_css_set_reuses_its_cgroups_and_a_moved_one_reads_proc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cfg = ContextConfig {
            docker_socket: PathBuf::new(),
            ..Default::default()
        };
        let mut ctx = Context::new(&cfg, root, vec![]).unwrap();
        let ev = ProcessEvent::default();

        proc_cgroup(root, 100, HOST);
        let parent = ctx.on_exec(&exec(100, 1, 0xA0, false), &ev, None);
        assert_eq!(parent.cgroup.systemd_unit.as_deref(), Some("cron.service"));
        assert_eq!(ctx.cgroup_reads_saved, 0);

        // Same css_set as the parent, already exited (no /proc entry): the parent's cgroups.
        let child = ctx.on_exec(&exec(101, 100, 0xA0, true), &ev, None);
        assert_eq!(child.cgroup.systemd_unit.as_deref(), Some("cron.service"));
        assert_eq!(ctx.cgroup_reads_saved, 1);

        // Moved into a container's cgroup before its exec (as runc init is): /proc is read.
        proc_cgroup(root, 102, CONTAINER);
        let moved = ctx.on_exec(&exec(102, 100, 0xB0, false), &ev, None);
        assert_eq!(
            moved.cgroup.container_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        assert_eq!(ctx.cgroup_reads_saved, 1);

        // A parent the table knows without a css_set (seeded from /proc) learns it from
        // its first child that the kernel says shares it; the next child reuses it.
        ctx.table.on_exec(ProcInfo {
            pid: 200,
            ppid: 1,
            name: "sh".into(),
            ..Default::default()
        });
        proc_cgroup(root, 201, CONTAINER);
        ctx.on_exec(&exec(201, 200, 0xC0, true), &ev, None);
        assert_eq!(ctx.table.get(200).and_then(|p| p.css_set), Some(0xC0));
        let sibling = ctx.on_exec(&exec(202, 200, 0xC0, true), &ev, None);
        assert!(sibling.cgroup.container_id.is_some());
        assert_eq!(ctx.cgroup_reads_saved, 2);

        // A short-lived child (no /proc entry) of a parent the table has not learnt
        // yet: the parent's own file answers, and is learnt.
        ctx.table.on_exec(ProcInfo {
            pid: 300,
            ppid: 1,
            name: "bash".into(),
            ..Default::default()
        });
        proc_cgroup(root, 300, HOST);
        let gone = ctx.on_exec(&exec(301, 300, 0xD0, true), &ev, None);
        assert_eq!(gone.cgroup.systemd_unit.as_deref(), Some("cron.service"));
        assert_eq!(ctx.table.get(300).and_then(|p| p.css_set), Some(0xD0));

        // The working directory: learnt from the parent's /proc entry once, then reused
        // for children in the same (vfsmount, dentry); another directory is read.
        ctx.table.on_exec(ProcInfo {
            pid: 400,
            ppid: 1,
            name: "bash".into(),
            ..Default::default()
        });
        let link = |pid: u32, to: &str| {
            std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
            std::os::unix::fs::symlink(to, root.join(pid.to_string()).join("cwd")).unwrap();
        };
        link(400, "/srv/work");
        let in_dir = |tgid: u32, pwd: (u64, u64), same: bool| CapturedExec {
            pwd,
            same_cwd_as_parent: same,
            ..exec(tgid, 400, 0, false)
        };
        assert_eq!(
            ctx.cwd_of(&in_dir(401, (7, 8), true)).as_deref(),
            Some("/srv/work")
        );
        assert_eq!(ctx.cwd_reads_saved, 0);
        assert_eq!(
            ctx.cwd_of(&in_dir(402, (7, 8), true)).as_deref(),
            Some("/srv/work")
        );
        assert_eq!(ctx.cwd_reads_saved, 1);
        link(403, "/tmp/elsewhere");
        assert_eq!(
            ctx.cwd_of(&in_dir(403, (7, 9), false)).as_deref(),
            Some("/tmp/elsewhere")
        );
        assert_eq!(ctx.cwd_reads_saved, 1);

        // Without the kernel's css_set (0) nothing is reused.
        let unknown = ctx.on_exec(&exec(203, 200, 0, false), &ev, None);
        assert!(unknown.cgroup.container_id.is_none());
        assert_eq!(ctx.cgroup_reads_saved, 2);
    }
}
