//! Context stage: builds an exec's ECS event and where it ran in one trip — who ran it
//! (process table, parent, ancestry, user), from where (cgroups, namespaces, working
//! directory) — names its container and pod from the runtimes' cache, and resolves the
//! container an exec targets ([`target`]). The heavy lifting is in t1609-context; this
//! module applies it to the kernel's records, reading /proc only when the kernel says the
//! parent's answer does not hold, and never waiting on a runtime.

mod cgroups;
mod document;
mod event;
pub mod extras;
mod fields;
pub mod target;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub use document::{ancestry_from_doc, augment};
pub use event::{HostFacts, basename};
pub use extras::EnvVarsCapture;
pub use fields::ExecFields;
use t1609_context::{Ancestor, CgroupContext, Namespaces, ProcInfo, ProcessTable, Runtimes, Users};
use t1609_detect::{
    AlertFields,
    event::{ParentProcess, ProcessEvent},
};
pub use target::{Target, Targets};

use crate::decode::CapturedExec;

/// Settings of the context stage (`[context]` in the config file).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Process-table bound.
    pub max_processes: usize,
    /// How long an exited process stays in the table, so its children's alerts name it.
    pub exit_grace_ms: u64,
    /// Retired: the runtimes are configured under `[runtimes]` (`validate` says so).
    pub docker_socket: Option<PathBuf>,
    /// Retired: `[runtimes] timeout_ms`.
    pub runtime_timeout_ms: Option<u64>,
    /// Identical alerts within this window collapse into one with a repeat count; 0 disables.
    pub dedup_window_ms: u64,
    /// Open dedup windows whose first alert is kept for the follow-up (the first eighth
    /// whole, the rest lean); past it a follow-up is built from the dedup key.
    pub dedup_kept_alerts: usize,
    /// When `process.env_vars` is read from /proc: `auto` (a loaded rule tests it),
    /// `always` (so `--record` keeps it for replay), `never`.
    pub env_vars: EnvVarsCapture,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            max_processes: 8_192,
            exit_grace_ms: 60_000,
            docker_socket: None,
            runtime_timeout_ms: None,
            dedup_window_ms: 10_000,
            dedup_kept_alerts: 4_096,
            env_vars: EnvVarsCapture::Auto,
        }
    }
}

/// Where an exec ran and who is behind it.
#[derive(Clone, Debug, Default)]
pub struct ExecContext {
    pub cgroup: CgroupContext,
    pub in_container: bool,
    pub ancestry: Vec<Ancestor>,
    /// Leaders or environment variables were read from /proc for the rules: the
    /// outcome may depend on what a repeat's identity does not compare.
    pub extras_read: bool,
}

impl ExecContext {
    /// The container an alert names: the cgroup's answer wins over the event's.
    pub fn container_id<'a>(&'a self, event: &'a ProcessEvent) -> Option<&'a str> {
        self.cgroup
            .container_id
            .as_deref()
            .or(event.container_id.as_deref())
    }
}

pub struct Context {
    pub table: ProcessTable,
    pub host: HostFacts,
    host_ns: Option<Namespaces>,
    proc_root: PathBuf,
    users: Users,
    cgroups: cgroups::Cgroups,
    runtimes: Runtimes,
    env_vars: EnvVarsCapture,
    /// Execs whose working directory came from their parent instead of /proc.
    pub cwd_reads_saved: u64,
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

/// Entries checked against /proc per housekeeping pass.
fn prune_checks(table_len: usize) -> usize {
    (table_len / 32).clamp(16, 256)
}

impl Context {
    /// `host_root` holds the host's /etc (user and group names), `proc_root` its /proc;
    /// `runtimes` names containers and pods.
    pub fn new(
        cfg: &ContextConfig,
        host_root: &Path,
        proc_root: &Path,
        runtimes: Runtimes,
    ) -> Self {
        let mut table = ProcessTable::new(
            proc_root,
            cfg.max_processes,
            Duration::from_millis(cfg.exit_grace_ms),
        );
        table.seed_from_proc();
        Self {
            table,
            host: HostFacts::read(host_root, proc_root),
            host_ns: t1609_context::host_namespaces(proc_root).ok(),
            proc_root: proc_root.to_owned(),
            users: Users::new(host_root),
            cgroups: cgroups::Cgroups::new(proc_root),
            runtimes,
            env_vars: cfg.env_vars,
            cwd_reads_saved: 0,
        }
    }

    /// Resolves exec targets from the same runtimes' cache.
    pub fn targets(&self) -> Targets {
        Targets::new(self.runtimes.clone())
    }

    /// The container runtimes' cache.
    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// Adds what the context stage knows to an ECS document (event or alert): where the
    /// exec ran (see [`augment`]) and its container and pod as the runtimes name them.
    pub fn augment(
        &self,
        doc: &mut serde_json::Value,
        ctx: &ExecContext,
        session_leader: Option<u32>,
    ) {
        self.fields(ctx, session_leader).add_to_value(doc);
    }

    /// What the context stage adds to an alert written as text: [`Context::augment`]'s
    /// fields, typed ([`ExecFields`]).
    pub fn fields<'a>(&self, ctx: &'a ExecContext, session_leader: Option<u32>) -> ExecFields<'a> {
        let meta = ctx
            .cgroup
            .container_id
            .as_deref()
            .map(|id| self.runtimes.container(id));
        ExecFields::new(ctx, session_leader, meta)
    }

    /// Execs whose cgroups came from their parent's `css_set` instead of /proc.
    pub fn cgroup_reads_saved(&self) -> u64 {
        self.cgroups.reads_saved
    }

    /// The exec's ECS event and where it ran, in one trip; the table learns the exec.
    /// The fields that cost a /proc read are read when `engine`'s rules that may match
    /// the exec test them (then `ExecContext::extras_read`).
    pub fn build(
        &mut self,
        exec: &CapturedExec,
        engine: &t1609_detect::Engine,
    ) -> (ProcessEvent, ExecContext) {
        let parent = self.parent_of(exec.ppid);
        let cwd = self.cwd_of(exec);
        let mut event =
            event::process_event(exec, &self.host, &mut self.users, parent, cwd.as_deref());
        if event.process.parent.is_none()
            && let Some((ppid, comm)) = exec.ancestors.first()
        {
            // Gone before we looked: the kernel's chain still names it.
            event.process.parent = Some(Box::new(ParentProcess {
                pid: Some(*ppid),
                name: Some(String::from_utf8_lossy(comm).into_owned()),
                ..Default::default()
            }));
        }
        let extras = self.env_vars.apply(engine.extras_needed(&event));
        if extras.any() {
            extras::fill(
                &mut event,
                extras,
                &self.proc_root,
                &mut self.table,
                exec.tgid,
            );
        }
        let mut ctx = self.on_exec(exec, &event, cwd);
        ctx.extras_read = extras.any();
        if event.container_id.is_none() {
            event.container_id.clone_from(&ctx.cgroup.container_id);
        }
        (event, ctx)
    }

    /// The user name of `uid` on the host.
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        self.users.user_name(uid)
    }

    /// The parent of an exec, from the table (read from /proc once, then cached), so it
    /// is known even after it exits.
    fn parent_of(&mut self, ppid: u32) -> Option<ParentProcess> {
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
        Some(ParentProcess {
            pid: Some(p.pid),
            name: Some(p.name.clone()),
            executable: p.executable.as_deref().map(str::to_owned),
            command_line: p.args.as_ref().map(|a| a.join(" ")),
            args: p.args.as_deref().map(<[String]>::to_vec),
            ..Default::default()
        })
    }

    /// The exec's working directory: its parent's path when the kernel saw the same
    /// directory (vfsmount and dentry) as the one the table read that path for, else
    /// /proc. A directory renamed since then keeps its old path here until the parent's
    /// next exec, the price of not reading /proc for every exec.
    fn cwd_of(&mut self, exec: &CapturedExec) -> Option<Arc<str>> {
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

    /// Updates the table with an exec and works out where it ran. `cwd` is what
    /// [`Context::cwd_of`] returned for it, kept with its table entry so the exec's own
    /// children can reuse it.
    fn on_exec(
        &mut self,
        exec: &CapturedExec,
        event: &ProcessEvent,
        cwd: Option<Arc<str>>,
    ) -> ExecContext {
        let cgroup_text = self.cgroups.text_of(exec, &mut self.table);
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
        let cgroup = self.cgroups.context_of(cgroup_text.as_ref(), exec.mnt_ns);
        let in_container = match &self.host_ns {
            Some(host) => {
                t1609_context::in_container(host, u64::from(exec.pid_ns), u64::from(exec.mnt_ns))
            }
            None => cgroup.container_id.is_some(),
        };
        ExecContext {
            cgroup,
            in_container,
            ancestry: self.ancestry(exec),
            extras_read: false,
        }
    }

    /// The kernel's chain is authoritative (taken at the exec, so short-lived parents are
    /// in it); the table and /proc add executables where they still know them.
    fn ancestry(&mut self, exec: &CapturedExec) -> Vec<Ancestor> {
        if exec.ancestors.is_empty() {
            return self.table.refresh_ancestry(exec.tgid, 8);
        }
        exec.ancestors
            .iter()
            .map(|(tgid, comm)| {
                if self.table.get(*tgid).is_none() {
                    self.table.refresh_from_proc(*tgid);
                }
                Ancestor {
                    pid: *tgid,
                    name: String::from_utf8_lossy(comm).into_owned(),
                    executable: self
                        .table
                        .get(*tgid)
                        .and_then(|k| k.executable.as_deref().map(str::to_owned)),
                }
            })
            .collect()
    }

    /// Records an exact repeat whose outcome was replayed (see `pipeline::repeat`): its
    /// cgroups and directory are its parent's, which the repeat's identity checked, and
    /// `name`, `executable`, `args` those of the exec it repeats.
    pub fn on_repeat_exec(
        &mut self,
        exec: &CapturedExec,
        name: &str,
        executable: Option<Arc<str>>,
        args: Option<Arc<[String]>>,
    ) {
        let parent = self.table.get(exec.ppid);
        let cgroup = parent.and_then(|p| p.cgroup.clone());
        let cwd = parent.and_then(|p| p.cwd.clone());
        self.cgroups.reads_saved += 1;
        self.cwd_reads_saved += 1;
        self.table.on_exec(ProcInfo {
            pid: exec.tgid,
            ppid: exec.ppid,
            name: name.to_owned(),
            executable,
            args,
            start_ns: Some(exec.ktime_ns),
            uid: Some(exec.uid),
            session_leader: None,
            css_set: cgroup.is_some().then_some(exec.css_set),
            cgroup,
            cwd,
            exited: false,
        });
    }

    /// The session leader of `tgid`, read from /proc: only alerts and recorded events
    /// carry it, so most execs never pay for the read.
    pub fn session_leader(&self, tgid: u32) -> Option<u32> {
        session_id(&self.proc_root, tgid)
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
        let cfg = ContextConfig::default();
        let mut ctx = Context::new(&cfg, Path::new("/nonexistent"), root, Runtimes::disabled());
        let ev = ProcessEvent::default();

        proc_cgroup(root, 100, HOST);
        let parent = ctx.on_exec(&exec(100, 1, 0xA0, false), &ev, None);
        assert_eq!(parent.cgroup.systemd_unit.as_deref(), Some("cron.service"));
        assert_eq!(ctx.cgroup_reads_saved(), 0);

        // Same css_set as the parent, already exited (no /proc entry): the parent's cgroups.
        let child = ctx.on_exec(&exec(101, 100, 0xA0, true), &ev, None);
        assert_eq!(child.cgroup.systemd_unit.as_deref(), Some("cron.service"));
        assert_eq!(ctx.cgroup_reads_saved(), 1);

        // Moved into a container's cgroup before its exec (as runc init is): /proc is read.
        proc_cgroup(root, 102, CONTAINER);
        let moved = ctx.on_exec(&exec(102, 100, 0xB0, false), &ev, None);
        assert_eq!(
            moved.cgroup.container_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        assert_eq!(ctx.cgroup_reads_saved(), 1);

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
        assert_eq!(ctx.cgroup_reads_saved(), 2);

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
        assert_eq!(ctx.cgroup_reads_saved(), 2);
    }
}
