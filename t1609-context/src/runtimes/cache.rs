//! The metadata cache the hot path reads: container id (or an exec target) → what the
//! runtimes said. Fed by the runtimes' event streams and lists on their own tasks; read
//! under a short read lock that never waits on a socket. A miss says why (`Pending`) and
//! asks the background for the answer without waiting for it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Bound,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::info::{ContainerInfo, RuntimeKind};
pub use super::meta::{Meta, PendingReason, Wanted};

/// Counters (relaxed atomics) and what they count; `Runtimes::stats` snapshots them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub pending: AtomicU64,
    pub lookups_queued: AtomicU64,
    pub queue_full: AtomicU64,
    pub late_answers: AtomicU64,
    pub not_found: AtomicU64,
    pub runtime_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub events: AtomicU64,
    pub stream_restarts: AtomicU64,
    pub lists: AtomicU64,
}

struct Entry {
    info: Arc<ContainerInfo>,
    /// Which endpoint said it (its index), so a relist can retire what it no longer has.
    endpoint: usize,
    removed_at: Option<Instant>,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    by_id: BTreeMap<Arc<str>, Entry>,
    /// `kind \0 namespace \0 name` → id.
    names: HashMap<String, Arc<str>>,
    /// `namespace \0 pod` → the ids of the pod's workload containers.
    pods: HashMap<String, Vec<Arc<str>>>,
    misses: HashMap<Wanted, (PendingReason, Instant)>,
    seq: u64,
}

/// Health of one endpoint, for the reasons of misses.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    pub kind: RuntimeKind,
    pub label: Arc<str>,
    /// Configured, or found at its well-known path.
    pub present: bool,
    pub up: bool,
    /// `events`, `polling`, `list`, `storage` once up; `connecting` before.
    pub mode: &'static str,
    pub last_error: Option<Arc<str>>,
}

impl Health {
    pub fn new(kind: RuntimeKind, label: &str, present: bool) -> Self {
        Self {
            kind,
            label: Arc::from(label),
            present,
            up: false,
            mode: "connecting",
            last_error: None,
        }
    }
}

pub struct MetaCache {
    inner: RwLock<Inner>,
    /// Wanted values whose lookup is queued or running.
    asked: Mutex<HashSet<Wanted>>,
    answered: Mutex<Vec<Arc<ContainerInfo>>>,
    pub(crate) health: RwLock<Vec<Health>>,
    tx: Mutex<Option<mpsc::Sender<Wanted>>>,
    pub(crate) counters: Counters,
    removed_grace: Duration,
    miss_ttl: Duration,
    max_entries: usize,
}

fn name_key(kind: RuntimeKind, ns: Option<&str>, name: &str) -> String {
    let mut k = String::with_capacity(kind.as_str().len() + name.len() + 16);
    k.push_str(kind.as_str());
    k.push('\0');
    k.push_str(ns.unwrap_or(""));
    k.push('\0');
    k.push_str(name);
    k
}

fn pod_key(namespace: &str, pod: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + pod.len() + 1);
    k.push_str(namespace);
    k.push('\0');
    k.push_str(pod);
    k
}

/// Drops from the indexes the ids no longer cached.
fn prune(
    by_id: &BTreeMap<Arc<str>, Entry>,
    names: &mut HashMap<String, Arc<str>>,
    pods: &mut HashMap<String, Vec<Arc<str>>>,
) {
    names.retain(|_, id| by_id.contains_key(id));
    pods.retain(|_, ids| {
        ids.retain(|id| by_id.contains_key(id));
        !ids.is_empty()
    });
}

/// The containerd namespace a tool works in when none is given.
fn default_ns(tool: &str) -> &'static str {
    match tool {
        "crictl" => "k8s.io",
        _ => "default",
    }
}

impl MetaCache {
    pub fn new(max_entries: usize, removed_grace: Duration, miss_ttl: Duration) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            asked: Mutex::new(HashSet::new()),
            answered: Mutex::new(Vec::new()),
            health: RwLock::new(Vec::new()),
            tx: Mutex::new(None),
            counters: Counters::default(),
            removed_grace,
            miss_ttl,
            max_entries: max_entries.max(1),
        }
    }

    pub(crate) fn set_requests(&self, tx: mpsc::Sender<Wanted>) {
        *self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
    }

    /// Hot path: what is known of container `id`. Never waits on a socket.
    pub fn container(&self, id: &str) -> Meta {
        let found = {
            let inner = self.read();
            inner.by_id.get(id).map(|e| e.info.clone())
        };
        match found {
            Some(info) => self.hit(info),
            None => self.miss(Wanted::Id(id.into())),
        }
    }

    /// Hot path: the container an exec names (`tool exec … reference`).
    pub fn target(&self, tool: &str, namespace: Option<&str>, reference: &str) -> Meta {
        let wanted = Wanted::Target {
            tool: tool.into(),
            namespace: namespace.map(Into::into),
            reference: reference.into(),
        };
        match self.find(&wanted) {
            Ok(info) => self.hit(info),
            Err(PendingReason::Ambiguous) => self.pending(PendingReason::Ambiguous),
            Err(_) => self.miss(wanted),
        }
    }

    /// Hot path: the container a `kubectl exec` enters: the named container of the pod,
    /// else the only (or first-named) workload container of it.
    pub fn pod(&self, namespace: &str, pod: &str, container: Option<&str>) -> Meta {
        let wanted = Wanted::Pod {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.map(Into::into),
        };
        match self.find(&wanted) {
            Ok(info) => self.hit(info),
            Err(_) => self.miss(wanted),
        }
    }

    fn hit(&self, info: Arc<ContainerInfo>) -> Meta {
        self.counters.hits.fetch_add(1, Relaxed);
        Meta::Known(info)
    }

    fn pending(&self, reason: PendingReason) -> Meta {
        self.counters.pending.fetch_add(1, Relaxed);
        Meta::Pending(reason)
    }

    /// Looks `wanted` up in the cache alone.
    pub(crate) fn find(&self, wanted: &Wanted) -> Result<Arc<ContainerInfo>, PendingReason> {
        let inner = self.read();
        match wanted {
            Wanted::Id(id) => inner
                .by_id
                .get(&**id)
                .map(|e| e.info.clone())
                .ok_or(PendingReason::NotFound),
            Wanted::Target {
                tool,
                namespace,
                reference,
            } => {
                let kinds = wanted.kinds();
                let ns = namespace.as_deref().unwrap_or(default_ns(tool));
                let ns_of = |k: RuntimeKind| (k == RuntimeKind::Containerd).then_some(ns);
                // A name first (docker, podman and nerdctl names; crictl and ctr use ids).
                for &k in kinds {
                    if let Some(id) = inner.names.get(&name_key(k, ns_of(k), reference))
                        && let Some(e) = inner.by_id.get(id)
                    {
                        return Ok(e.info.clone());
                    }
                }
                let fits = |i: &ContainerInfo| {
                    kinds.contains(&i.runtime)
                        && (i.runtime != RuntimeKind::Containerd
                            || i.namespace.as_deref() == Some(ns))
                        && !(&**tool == "crictl" && i.sandbox)
                };
                if let Some(e) = inner.by_id.get(&**reference)
                    && fits(&e.info)
                {
                    return Ok(e.info.clone());
                }
                // `ctr` takes whole ids only; the others a unique prefix.
                if &**tool == "ctr" || reference.is_empty() {
                    return Err(PendingReason::NotFound);
                }
                let mut hits = inner
                    .by_id
                    .range::<str, _>((Bound::Included(&**reference), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(&**reference))
                    .filter(|(_, e)| fits(&e.info) && e.removed_at.is_none());
                match (hits.next(), hits.next()) {
                    (Some((_, e)), None) => Ok(e.info.clone()),
                    (Some(_), Some(_)) => Err(PendingReason::Ambiguous),
                    _ => Err(PendingReason::NotFound),
                }
            }
            Wanted::Pod {
                namespace,
                pod,
                container,
            } => {
                let mut best: Option<&Entry> = None;
                let ids = inner.pods.get(&pod_key(namespace, pod));
                for e in ids
                    .into_iter()
                    .flatten()
                    .filter_map(|id| inner.by_id.get(id))
                {
                    let Some(p) = &e.info.pod else { continue };
                    if e.removed_at.is_some() {
                        continue;
                    }
                    match container {
                        Some(c) if p.container_name.as_deref() == Some(&**c) => {
                            return Ok(e.info.clone());
                        }
                        Some(_) => {}
                        // No -c: kubectl picks the default container, which the runtime
                        // does not know; the oldest container of the pod is the best guess.
                        None => {
                            if best.is_none_or(|b| e.seq < b.seq) {
                                best = Some(e);
                            }
                        }
                    }
                }
                best.map(|e| e.info.clone()).ok_or(PendingReason::NotFound)
            }
        }
    }

    /// A miss: the recorded reason, else a queued lookup (or why none can be made).
    fn miss(&self, wanted: Wanted) -> Meta {
        if let Some((reason, at)) = self.read().misses.get(&wanted)
            && at.elapsed() < self.miss_ttl
        {
            return self.pending(reason.clone());
        }
        if let Some(reason) = self.unavailable(wanted.kinds()) {
            return self.pending(reason);
        }
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if asked.contains(&wanted) {
            return self.pending(PendingReason::LookupQueued);
        }
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(tx) = tx else {
            return self.pending(PendingReason::NoRuntime);
        };
        if tx.try_send(wanted.clone()).is_ok() {
            asked.insert(wanted);
            self.counters.lookups_queued.fetch_add(1, Relaxed);
            self.pending(PendingReason::LookupQueued)
        } else {
            self.counters.queue_full.fetch_add(1, Relaxed);
            self.pending(PendingReason::QueueFull)
        }
    }

    /// `Some(reason)` when no endpoint of `kinds` (all when empty) can answer now.
    fn unavailable(&self, kinds: &[RuntimeKind]) -> Option<PendingReason> {
        let health = self
            .health
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let relevant: Vec<&Health> = health
            .iter()
            .filter(|h| h.present && (kinds.is_empty() || kinds.contains(&h.kind)))
            .collect();
        if relevant.is_empty() {
            return Some(PendingReason::NoRuntime);
        }
        // Up, or still connecting for the first time: worth asking.
        if relevant.iter().any(|h| h.up || h.last_error.is_none()) {
            return None;
        }
        let why: Vec<String> = relevant
            .iter()
            .filter_map(|h| h.last_error.as_deref().map(str::to_owned))
            .collect();
        Some(PendingReason::RuntimeDown(Arc::from(why.join("; "))))
    }

    /// A lookup of `wanted` finished; `reason` when it found nothing.
    pub(crate) fn lookup_done(&self, wanted: &Wanted, reason: Option<PendingReason>) {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(wanted);
        let mut inner = self.write();
        if let Some(r) = reason {
            if r == PendingReason::NotFound {
                self.counters.not_found.fetch_add(1, Relaxed);
            }
            inner.misses.insert(wanted.clone(), (r, Instant::now()));
            if inner.misses.len() > self.max_entries {
                let ttl = self.miss_ttl;
                inner.misses.retain(|_, (_, at)| at.elapsed() < ttl);
            }
        } else {
            inner.misses.remove(wanted);
            drop(inner);
            if let Ok(info) = self.find(wanted) {
                self.counters.late_answers.fetch_add(1, Relaxed);
                self.answered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(info);
            }
        }
    }

    /// The containers that were pending on a read and are known now (each once), for a
    /// follow-up alert sharing the first one's group id.
    pub fn take_answered(&self) -> Vec<Arc<ContainerInfo>> {
        std::mem::take(
            &mut *self
                .answered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Adds what a runtime said, outside any watched endpoint (benches, replays, tests).
    pub fn insert(&self, info: ContainerInfo) {
        self.upsert(usize::MAX, info);
    }

    /// Adds or refreshes what `endpoint` said, merged with what was known of the same id.
    pub(crate) fn upsert(&self, endpoint: usize, info: ContainerInfo) {
        let mut inner = self.write();
        let Inner {
            by_id,
            names,
            pods,
            misses,
            seq,
        } = &mut *inner;
        *seq += 1;
        let (info, keep_seq, removed_at) = match by_id.get(&*info.id) {
            Some(old) if old.info.runtime == info.runtime => {
                (info.merged_with(&old.info), old.seq, old.removed_at)
            }
            // Docker's containers are also containerd's (namespace moby): Docker's answer
            // has the name and wins.
            Some(old) if old.info.runtime == RuntimeKind::Docker => return,
            Some(old) => (info, old.seq, old.removed_at),
            None => (info, *seq, None),
        };
        // Names that are handles (docker, podman, nerdctl names; ctr ids); a Kubernetes
        // container name is not unique on a node and is found through its pod instead.
        if let Some(n) = info.name.as_ref().filter(|_| info.pod.is_none()) {
            names.insert(
                name_key(info.runtime, info.namespace.as_deref(), n),
                info.id.clone(),
            );
        }
        if let Some(p) = info.pod.as_ref().filter(|_| !info.sandbox) {
            let ids = pods.entry(pod_key(&p.namespace, &p.name)).or_default();
            if !ids.contains(&info.id) {
                ids.push(info.id.clone());
            }
        }
        misses.retain(|w, _| !matches!(w, Wanted::Id(id) if **id == *info.id));
        let id = info.id.clone();
        by_id.insert(
            id,
            Entry {
                info: Arc::new(info),
                endpoint,
                removed_at,
                seq: keep_seq,
            },
        );
        if by_id.len() > self.max_entries {
            Self::evict(by_id, self.max_entries);
            prune(by_id, names, pods);
        }
        // Misses of targets may be answered now; they are cheap to ask again.
        misses.retain(|w, _| matches!(w, Wanted::Id(_)));
    }

    /// The runtime removed `id`: it stays named for the grace period (a late alert of a
    /// short-lived container still names it), then goes.
    pub(crate) fn removed(&self, id: &str) {
        if let Some(e) = self.write().by_id.get_mut(id) {
            e.removed_at.get_or_insert_with(Instant::now);
        }
    }

    /// After a full list from `endpoint`: what it had and no longer lists is removed.
    pub(crate) fn retire_missing(&self, endpoint: usize, listed: &HashSet<Arc<str>>) {
        let now = Instant::now();
        let mut inner = self.write();
        for (id, e) in &mut inner.by_id {
            if e.endpoint == endpoint && e.removed_at.is_none() && !listed.contains(id) {
                e.removed_at = Some(now);
            }
        }
    }

    /// Drops removed containers past their grace. Called by the background every second.
    pub fn expire(&self) {
        let grace = self.removed_grace;
        let mut inner = self.write();
        let Inner {
            by_id, names, pods, ..
        } = &mut *inner;
        let before = by_id.len();
        by_id.retain(|_, e| e.removed_at.is_none_or(|t| t.elapsed() < grace));
        if by_id.len() != before {
            prune(by_id, names, pods);
        }
    }

    /// Past the bound: removed entries first (oldest removal first), then the oldest. A
    /// sixteenth more goes at once, so the sort (under the write lock) is rare.
    fn evict(by_id: &mut BTreeMap<Arc<str>, Entry>, max: usize) {
        let excess = by_id.len().saturating_sub(max) + max / 16;
        let mut order: Vec<(bool, Instant, u64, Arc<str>)> = by_id
            .iter()
            .map(|(k, e)| {
                let now = Instant::now();
                (
                    e.removed_at.is_none(),
                    e.removed_at.unwrap_or(now),
                    e.seq,
                    k.clone(),
                )
            })
            .collect();
        order.sort_by_key(|a| (a.0, a.1, a.2));
        for (_, _, _, k) in order.into_iter().take(excess) {
            by_id.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
