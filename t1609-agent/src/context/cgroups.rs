//! Where an exec ran, from its cgroups, read from /proc only when the kernel says it must
//! be: the exec record carries the task's `css_set` identity and whether the parent shares
//! it, so an exec in its parent's cgroups reuses what the table learnt for the parent.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use t1609_context::{CgroupContext, ProcessTable, parse_cgroup};

use crate::decode::CapturedExec;

pub fn read_cgroup(proc_root: &Path, pid: u32) -> Option<String> {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()
}

pub struct Cgroups {
    proc_root: PathBuf,
    /// Parsed cgroup files by text: a host runs a handful of cgroups, and the same text
    /// comes back for every exec in one.
    parsed: HashMap<Arc<str>, CgroupContext>,
    /// mount namespace → cgroup context of a live process in it: a short-lived process
    /// whose /proc entry is gone still gets its container from a sibling (the container's
    /// init lives as long as the container).
    by_mnt_ns: HashMap<u32, (Option<CgroupContext>, Instant)>,
    /// Execs whose cgroups came from their parent's `css_set` instead of /proc.
    pub reads_saved: u64,
}

impl Cgroups {
    pub fn new(proc_root: &Path) -> Self {
        Self {
            proc_root: proc_root.to_owned(),
            parsed: HashMap::new(),
            by_mnt_ns: HashMap::new(),
            reads_saved: 0,
        }
    }

    /// The cgroup file text of `exec`, and learns it for its parent when they share it.
    /// Kept whole (not compacted) so a reuse parses exactly what a read would; the table
    /// shares identical texts.
    pub fn text_of(&mut self, exec: &CapturedExec, table: &mut ProcessTable) -> Option<Arc<str>> {
        if let Some(known) = from_parent(exec, table) {
            self.reads_saved += 1;
            return Some(known);
        }
        // When the kernel says the parent shares the css_set, its file is read: the parent
        // usually outlives a short-lived child, and what is learnt serves its next children.
        let read = if exec.same_cgroups_as_parent {
            read_cgroup(&self.proc_root, exec.ppid)
                .or_else(|| read_cgroup(&self.proc_root, exec.tgid))
        } else {
            read_cgroup(&self.proc_root, exec.tgid)
        }
        .map(Arc::<str>::from);
        if let Some(text) = read.as_ref().filter(|_| exec.same_cgroups_as_parent) {
            table.learn_cgroup(exec.ppid, exec.css_set, text.clone());
        }
        read
    }

    /// What the cgroup text says (container, pod, unit), else what a live process in the
    /// same mount namespace's says.
    pub fn context_of(&mut self, text: Option<&Arc<str>>, mnt_ns: u32) -> CgroupContext {
        match text.map(|t| self.parse(t)) {
            Some(c) => {
                if c.container_id.is_some() {
                    self.by_mnt_ns
                        .insert(mnt_ns, (Some(c.clone()), Instant::now()));
                }
                c
            }
            None => self.by_mnt_ns(mnt_ns).unwrap_or_default(),
        }
    }

    fn parse(&mut self, text: &Arc<str>) -> CgroupContext {
        if let Some(c) = self.parsed.get(text) {
            return c.clone();
        }
        let c = parse_cgroup(text);
        if self.parsed.len() >= 1024 {
            self.parsed.clear();
        }
        self.parsed.insert(text.clone(), c.clone());
        c
    }

    fn by_mnt_ns(&mut self, mnt_ns: u32) -> Option<CgroupContext> {
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
}

/// The cgroups of an exec without reading /proc, when its `css_set` is the one the table
/// read its parent's cgroups for (the kernel hands over the `css_set` identity).
fn from_parent(exec: &CapturedExec, table: &ProcessTable) -> Option<Arc<str>> {
    if exec.css_set == 0 {
        return None;
    }
    let parent = table.get(exec.ppid)?;
    (parent.css_set == Some(exec.css_set))
        .then(|| parent.cgroup.clone())
        .flatten()
}
