//! A bounded process table (pid → [`ProcInfo`]) seeded from `/proc` and kept current from
//! exec / fork / exit events, so alerts can name the parent and ancestry even after the
//! parent has exited.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;

// The `/proc` readers, under the paths they had when they lived here.
pub use crate::procfs::{
    Creds, ProcInfo, Stat, parse_cmdline, parse_ns_pid, parse_stat, parse_status_creds, read_creds,
    read_ns_pid, read_proc_info,
};
use crate::procfs::{clk_tck, read_proc_info_tck};

/// Hard upper bound on [`ProcessTable::ancestry`] depth.
pub const MAX_ANCESTRY: usize = 8;

/// Bytes of argv the table keeps per process: it names parents, it does not archive
/// argv, and a storm of 32 KiB command lines must not grow the agent by gigabytes.
pub const MAX_TABLE_ARGV_BYTES: usize = 4096;

/// Distinct cgroup texts kept for sharing between entries.
const MAX_INTERNED_CGROUPS: usize = 4096;

/// One level of an ancestry chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub name: String,
    pub executable: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    info: ProcInfo,
    exited_at: Option<Instant>,
    /// When the entry was last (re)indexed: its item in `live` or `exited` carries it.
    stamp: u64,
}

type Entries = HashMap<u32, Entry, foldhash::fast::RandomState>;

/// Pids in the order they were indexed, oldest first. Items are never removed from the
/// middle: an item whose entry was removed or re-indexed since (a different stamp) is
/// stale, skipped at the front and dropped by [`IndexQueue::compact`]. Each index
/// operation is then a push or a pop, where an ordered map paid a tree insert and remove
/// per update and per exit, a tenth of the agent's CPU in a watched exec storm.
#[derive(Debug, Default)]
struct IndexQueue {
    items: VecDeque<(u64, u32)>,
}

impl IndexQueue {
    fn is_current(entries: &Entries, (stamp, pid): (u64, u32)) -> bool {
        entries.get(&pid).is_some_and(|e| e.stamp == stamp)
    }

    /// The oldest current item; stale items in front of it are dropped.
    fn front(&mut self, entries: &Entries) -> Option<(u64, u32)> {
        while let Some(&item) = self.items.front() {
            if Self::is_current(entries, item) {
                return Some(item);
            }
            self.items.pop_front();
        }
        None
    }

    /// Drops stale items once they outnumber the `current` ones: amortized O(1) per push,
    /// and the queue stays within about twice its entries.
    fn compact(&mut self, entries: &Entries, current: usize) {
        if self.items.len() > 2 * current + 64 {
            self.items.retain(|&item| Self::is_current(entries, item));
        }
    }
}

/// Bounded pid → [`ProcInfo`] map.
///
/// Bound: whenever an insertion makes `len() > max_entries`, entries are evicted down to
/// `max_entries` (exited entries first, oldest exit first; then live entries least recently
/// updated first), so `len() <= max_entries` always holds. Every operation is amortized
/// O(1): two queues in eviction order replace any scan.
#[derive(Debug)]
pub struct ProcessTable {
    proc_root: PathBuf,
    max_entries: usize,
    exit_grace: Duration,
    /// Keyed by pid: kernel-assigned numbers, so a fast hasher is safe here.
    entries: Entries,
    /// Live entries, least recently updated first.
    live: IndexQueue,
    /// Exited entries, oldest exit first.
    exited_order: IndexQueue,
    /// Exited entries are kept for their grace period but at most this many: under an
    /// exec storm the oldest exits go first, so memory does not scale with the exec rate.
    max_exited: usize,
    exited: usize,
    /// The stamp where [`ProcessTable::prune_dead`] resumes in `live`.
    prune_cursor: u64,
    cgroups: HashSet<Arc<str>>,
    /// The text interned last: children of one parent hand back the same Arc, which is
    /// recognised without hashing the text.
    last_cgroup: Option<Arc<str>>,
    clock: u64,
    clk_tck: u64,
}

impl ProcessTable {
    pub fn new(proc_root: &Path, max_entries: usize, exit_grace: Duration) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            max_entries: max_entries.max(1),
            exit_grace,
            entries: HashMap::default(),
            live: IndexQueue::default(),
            exited_order: IndexQueue::default(),
            max_exited: (max_entries / 8).max(1),
            exited: 0,
            prune_cursor: 0,
            cgroups: HashSet::new(),
            last_cgroup: None,
            clock: 0,
            clk_tck: clk_tck(),
        }
    }

    /// Caps the exited entries kept for their grace period (default: `max_entries / 8`).
    #[must_use]
    pub fn with_max_exited(mut self, max_exited: usize) -> Self {
        self.max_exited = max_exited.max(1);
        self
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// Reads every `/proc/<pid>` (thread-group leaders only) into the table. Returns how many
    /// processes were read (the table may keep fewer if `max_entries` is smaller).
    pub fn seed_from_proc(&mut self) -> usize {
        let Ok(dir) = fs::read_dir(&self.proc_root) else {
            return 0;
        };
        let mut n = 0;
        for ent in dir.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(info) = read_proc_info_tck(&self.proc_root, pid, self.clk_tck) {
                self.insert(info, None);
                n += 1;
            }
        }
        n
    }

    /// An exec replaced the image of `info.pid`. Name, executable and args are replaced;
    /// fields the event leaves `None` (start time, uid, session, cgroup) and a `ppid` of 0
    /// keep the cached values, since exec does not change them.
    pub fn on_exec(&mut self, mut info: ProcInfo) {
        if let Some(old) = self.entries.get(&info.pid).filter(|e| !e.info.exited) {
            let old = &old.info;
            if info.ppid == 0 {
                info.ppid = old.ppid;
            }
            info.start_ns = info.start_ns.or(old.start_ns);
            info.uid = info.uid.or(old.uid);
            info.session_leader = info.session_leader.or(old.session_leader);
            if info.cgroup.is_none() {
                info.cgroup.clone_from(&old.cgroup);
                info.css_set = info.css_set.or(old.css_set);
            }
        }
        info.exited = false;
        self.insert(info, None);
    }

    /// A new process: it inherits the parent's name, executable, args, uid, session and
    /// cgroup until its own exec. An unknown parent is read from `/proc` first; if that
    /// fails, the child itself is read from `/proc`, else a minimal entry is kept.
    pub fn on_fork(&mut self, parent_tgid: u32, child_tgid: u32, ktime_ns: u64) {
        if parent_tgid == child_tgid {
            return; // a thread, not a new process
        }
        if !self.entries.contains_key(&parent_tgid) {
            self.refresh_from_proc(parent_tgid);
        }
        let child = match self.entries.get(&parent_tgid) {
            Some(p) => ProcInfo {
                pid: child_tgid,
                ppid: parent_tgid,
                start_ns: Some(ktime_ns),
                exited: false,
                ..p.info.clone()
            },
            None => match read_proc_info_tck(&self.proc_root, child_tgid, self.clk_tck) {
                Ok(mut i) => {
                    i.start_ns = Some(ktime_ns);
                    i
                }
                Err(_) => ProcInfo {
                    pid: child_tgid,
                    ppid: parent_tgid,
                    start_ns: Some(ktime_ns),
                    ..Default::default()
                },
            },
        };
        self.insert(child, None);
    }

    /// Marks the process exited; it stays resolvable until `now + exit_grace` is passed to
    /// [`evict`](Self::evict). Unknown pids are ignored.
    pub fn on_exit(&mut self, tgid: u32, now: Instant) {
        self.clock += 1;
        let stamp = self.clock;
        let Some(e) = self.entries.get_mut(&tgid) else {
            return;
        };
        e.info.exited = true;
        if e.exited_at.is_some() {
            return;
        }
        e.exited_at = Some(now);
        e.stamp = stamp; // its item in `live` is stale from now on
        self.exited_order.items.push_back((stamp, tgid));
        self.exited += 1;
        while self.exited > self.max_exited {
            match self.exited_order.front(&self.entries) {
                Some((_, pid)) => {
                    self.remove(pid);
                }
                None => break,
            }
        }
        let live = self.entries.len() - self.exited;
        self.live.compact(&self.entries, live);
    }

    pub fn get(&self, pid: u32) -> Option<&ProcInfo> {
        self.entries.get(&pid).map(|e| &e.info)
    }

    /// Records `pid`'s working directory for the (vfsmount, dentry) identity `pwd`.
    pub fn learn_cwd(&mut self, pid: u32, pwd: (u64, u64), path: Arc<str>) {
        if let Some(e) = self.entries.get_mut(&pid).filter(|e| !e.info.exited) {
            e.info.cwd = Some((pwd, path));
        }
    }

    /// Records that `pid` is in the kernel's cgroup set at address `css_set`, whose
    /// cgroups are `cgroup` (learnt from a child that shares it), without touching the
    /// eviction order.
    pub fn learn_cgroup(&mut self, pid: u32, css_set: u64, cgroup: Arc<str>) {
        let cgroup = self.intern_cgroup(cgroup);
        if let Some(e) = self.entries.get_mut(&pid).filter(|e| !e.info.exited) {
            e.info.css_set = Some(css_set);
            e.info.cgroup = Some(cgroup);
        }
    }

    /// Re-reads `/proc/<pid>` if the process is alive and replaces the entry; otherwise the
    /// cached entry (if any) is returned unchanged.
    pub fn refresh_from_proc(&mut self, pid: u32) -> Option<&ProcInfo> {
        if let Ok(info) = read_proc_info_tck(&self.proc_root, pid, self.clk_tck) {
            self.insert(info, None);
        }
        self.get(pid)
    }

    /// Like [`ancestry`](Self::ancestry) but first reads `pid` and each missing ancestor from
    /// `/proc` (for events about processes the table has not seen).
    pub fn refresh_ancestry(&mut self, pid: u32, max: usize) -> Vec<Ancestor> {
        let max = max.min(MAX_ANCESTRY);
        if !self.entries.contains_key(&pid) {
            self.refresh_from_proc(pid);
        }
        let mut cur = pid;
        let mut seen = HashSet::new();
        for _ in 0..max {
            let Some(ppid) = self.get(cur).map(|i| i.ppid) else {
                break;
            };
            if ppid == 0 || !seen.insert(ppid) {
                break;
            }
            if !self.entries.contains_key(&ppid) {
                self.refresh_from_proc(ppid);
            }
            cur = ppid;
        }
        self.ancestry(pid, max)
    }

    /// Parent first, at most `min(max, 8)` levels. Stops at pid 0, at an unknown pid or on a
    /// loop. Exited ancestors still within their grace period are included.
    pub fn ancestry(&self, pid: u32, max: usize) -> Vec<Ancestor> {
        let max = max.min(MAX_ANCESTRY);
        let mut out = Vec::new();
        let mut seen = HashSet::from([pid]);
        let Some(mut cur) = self.get(pid) else {
            return out;
        };
        while out.len() < max {
            let ppid = cur.ppid;
            if ppid == 0 || !seen.insert(ppid) {
                break;
            }
            let Some(p) = self.get(ppid) else { break };
            out.push(Ancestor {
                pid: p.pid,
                name: p.name.clone(),
                executable: p.executable.as_deref().map(str::to_owned),
            });
            cur = p;
        }
        out
    }

    /// True when `ancestor` is on `pid`'s parent chain (at most 64 levels): the
    /// "in the container's init tree" test (pass the container's init pid). A process
    /// injected by `docker exec`/`kubectl exec` is *not* in its container's init tree.
    pub fn is_descendant_of(&self, pid: u32, ancestor: u32) -> bool {
        let mut cur = pid;
        let mut seen = HashSet::from([pid]);
        for _ in 0..64 {
            let Some(p) = self.get(cur) else { return false };
            if p.ppid == ancestor {
                return true;
            }
            if p.ppid == 0 || !seen.insert(p.ppid) {
                return false;
            }
            cur = p.ppid;
        }
        false
    }

    /// Checks up to `max_checks` live entries, continuing where the previous call stopped,
    /// and marks those whose `/proc/<pid>` is gone as exited. The kernel reports the exits
    /// of reported execs and tracked sessions only; without this, processes seeded from
    /// /proc or learnt as parents would stay "live" until the table's bound pushed them
    /// out. Returns how many were marked.
    pub fn prune_dead(&mut self, max_checks: usize, now: Instant) -> usize {
        // Stamps grow along the queue: resume at the first item past the cursor, then wrap
        // around to the oldest live entries.
        let items = &self.live.items;
        let start = items.partition_point(|&(stamp, _)| stamp < self.prune_cursor);
        let batch: Vec<(u64, u32)> = items
            .range(start..)
            .chain(items.range(..start))
            .copied()
            .filter(|&item| IndexQueue::is_current(&self.entries, item))
            .take(max_checks)
            .collect();
        self.prune_cursor = batch.last().map_or(0, |(stamp, _)| stamp + 1);
        let mut marked = 0;
        for (_, pid) in batch {
            if !self.proc_root.join(pid.to_string()).exists() {
                self.on_exit(pid, now);
                marked += 1;
            }
        }
        marked
    }

    /// Drops exited entries whose grace has passed, then enforces `max_entries`. Returns the
    /// number of entries removed.
    pub fn evict(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        // Oldest exit first: stop at the first one still in its grace period.
        while let Some((_, pid)) = self.exited_order.front(&self.entries) {
            let expired = self
                .entries
                .get(&pid)
                .and_then(|e| e.exited_at)
                .is_none_or(|t| now.saturating_duration_since(t) >= self.exit_grace);
            if !expired {
                break;
            }
            self.remove(pid);
        }
        self.enforce_bound();
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Removes one entry (its queue item goes stale) and keeps the exited count.
    fn remove(&mut self, pid: u32) -> Option<Entry> {
        let e = self.entries.remove(&pid)?;
        if e.exited_at.is_some() {
            self.exited -= 1;
        }
        Some(e)
    }

    fn insert(&mut self, mut info: ProcInfo, exited_at: Option<Instant>) {
        cap_argv(&mut info.args);
        if let Some(c) = info.cgroup.take() {
            info.cgroup = Some(self.intern_cgroup(c));
        }
        self.clock += 1;
        let stamp = self.clock;
        // A zombie read from /proc has exited already; its grace starts now.
        let exited_at = exited_at.or_else(|| info.exited.then(Instant::now));
        let pid = info.pid;
        self.remove(pid);
        if exited_at.is_some() {
            self.exited += 1;
            self.exited_order.items.push_back((stamp, pid));
        } else {
            self.live.items.push_back((stamp, pid));
        }
        self.entries.insert(
            pid,
            Entry {
                info,
                exited_at,
                stamp,
            },
        );
        if self.entries.len() > self.max_entries {
            self.enforce_bound();
        }
        let live = self.entries.len() - self.exited;
        self.live.compact(&self.entries, live);
        self.exited_order.compact(&self.entries, self.exited);
    }

    fn enforce_bound(&mut self) {
        while self.entries.len() > self.max_entries {
            let oldest = match self.exited_order.front(&self.entries) {
                Some(item) => Some(item),
                None => self.live.front(&self.entries),
            };
            let Some((_, pid)) = oldest else {
                break;
            };
            self.remove(pid);
        }
    }

    fn intern_cgroup(&mut self, text: Arc<str>) -> Arc<str> {
        if self
            .last_cgroup
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, &text))
        {
            return text;
        }
        let interned = if let Some(known) = self.cgroups.get(&*text) {
            known.clone()
        } else {
            if self.cgroups.len() >= MAX_INTERNED_CGROUPS {
                self.cgroups.clear();
            }
            self.cgroups.insert(text.clone());
            text
        };
        self.last_cgroup = Some(interned.clone());
        interned
    }
}

/// Keeps the leading arguments that fit in [`MAX_TABLE_ARGV_BYTES`] (a copy only when
/// they do not all fit).
fn cap_argv(args: &mut Option<Arc<[String]>>) {
    let Some(a) = args.as_ref() else { return };
    let mut total = 0;
    let Some(keep) = a.iter().position(|x| {
        total += x.len() + 1;
        total > MAX_TABLE_ARGV_BYTES
    }) else {
        return;
    };
    let mut kept: Vec<String> = a[..keep.max(1)].to_vec();
    if let Some(first) = kept.first_mut().filter(|f| f.len() > MAX_TABLE_ARGV_BYTES) {
        let mut cut = MAX_TABLE_ARGV_BYTES;
        while !first.is_char_boundary(cut) {
            cut -= 1;
        }
        first.truncate(cut);
    }
    *args = Some(kept.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_stays_consistent_under_random_ops() {
        let dir = std::env::temp_dir().join(format!("t1609-ctx-empty-proc-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let mut t = ProcessTable::new(&dir, 50, Duration::from_millis(100));
        let t0 = Instant::now();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pid = (x % 120) as u32 + 2;
            let now = t0 + Duration::from_millis(step / 10);
            match x % 5 {
                0 => t.on_exec(ProcInfo {
                    pid,
                    ppid: 1,
                    name: "p".into(),
                    ..Default::default()
                }),
                1 => t.on_fork(pid, pid + 1, step),
                2 => t.on_exit(pid, now),
                // The proc root is empty: every entry checked is found dead.
                3 => {
                    t.prune_dead(3, now);
                }
                _ => {
                    t.evict(now);
                }
            }
            assert!(t.len() <= 50);
            // Every entry has exactly one current item, in the queue of its state, and
            // stamps grow along each queue (prune_dead and eviction rely on it).
            let current = |q: &IndexQueue| -> Vec<u32> {
                let stamps: Vec<u64> = q.items.iter().map(|i| i.0).collect();
                assert!(stamps.is_sorted(), "step {step}: stamps out of order");
                q.items
                    .iter()
                    .filter(|&&i| IndexQueue::is_current(&t.entries, i))
                    .map(|i| i.1)
                    .collect()
            };
            let (live, exited) = (current(&t.live), current(&t.exited_order));
            assert_eq!(live.len() + exited.len(), t.entries.len(), "step {step}");
            assert_eq!(exited.len(), t.exited, "step {step}");
            assert!(live.iter().all(|p| t.entries[p].exited_at.is_none()));
            assert!(exited.iter().all(|p| t.entries[p].exited_at.is_some()));
            assert!(
                t.live.items.len() <= 2 * live.len() + 64 + 1,
                "step {step}: live queue not compacted"
            );
            assert!(t.exited_order.items.len() <= 2 * exited.len() + 64 + 1);
        }
        let _ = fs::remove_dir(&dir);
    }
}
