//! Identity stage: knows a container tool by what its executed file is, not by what it is
//! called (t1609-identity does the classifying). A renamed, copied, hard-linked,
//! upper-cased, trailing-space or non-UTF-8-named docker is still docker.
//!
//! - **Start-up and reload** ([`IdentityControl`]): the installed tools are scanned and
//!   their (device, inode) pairs go into the probe's `INODES` map.
//! - **The probe** reports an exec whose name nobody watches when `VERDICTS` or `INODES`
//!   say its file is a tool, and the first exec of any file they do not know
//!   (`decode::ExeSeen`).
//! - **Hot path** ([`Identity`], pipeline steps 0, 5 and 7): [`Identity::admit`] opens the
//!   exec's `/proc/<pid>/exe` and hands it to the bounded classification queue when no
//!   verdict is known here. The first exec of a file reported only for what it is waits
//!   for its verdict, at most `hold_ms` (see [`held`]): its one alert then says which tool
//!   it is, instead of a shape-only guess now and a second alert later. Every other exec
//!   goes on at once. [`Identity::evaluate`] runs the rules as that tool when the name
//!   lies (`argv::parse_identified`); [`Identity::annotate`] adds `t1609.tool` and
//!   `process.hash.sha256` to the alert.
//! - **The classification worker** writes each verdict into `VERDICTS` ([`kernel`]) under
//!   the key the probe reported, unless the file changed meanwhile; the probe then reports
//!   a tool's execs and skips everything else. A job the queue skips leaves the file
//!   pending; the probe reports it again once the pending entry is 10 s old
//!   (`t1609_common::EXE_PENDING_RETRY_NS`), which also covers a report lost to a full
//!   ring buffer.

mod config;
mod files;
mod held;
mod kernel;

use std::{
    collections::BTreeMap,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc,
    },
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
pub use config::{IdentityConfig, Rejected};
use files::Mounts;
use held::{Held, Released};
pub use kernel::VerdictMap;
use lru::LruCache;
use serde_json::Value;
use t1609_common::{ExeKey, ExeVerdict, InodeKey};
use t1609_detect::{Alert, AlertFields, Engine, Members, event::ProcessEvent};
use t1609_identity::{
    Classifier, ClassifyQueue, HashList, HashListError, Inventory, Job, Limits, NameCheck, Outcome,
    QueueError, QueueStats, Source, Submitted, Verdict, Worker, check_name,
};
use tracing::{debug, info, warn};

use crate::{
    decode::CapturedExec,
    stats::{Counter, Counters},
};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity.hash_lists: {0}")]
    HashList(#[source] HashListError),
    #[error("identity: {0}")]
    Queue(#[source] QueueError),
}

/// The installed tools for the probe's `INODES` map: (device, inode) → tool id.
pub type InodeEntries = BTreeMap<InodeKey, u32>;

/// What the daemon keeps of the stage: the start-up scan again on reload.
pub struct IdentityControl {
    classifier: Arc<Classifier>,
    verdicts: Arc<Mutex<VerdictMap>>,
    /// Bumped on reload: the hot path then forgets its verdicts.
    generation: Arc<AtomicU64>,
}

/// The hot path's side of the stage.
pub struct Identity {
    live: Option<Live>,
    /// The verdict on the exec being handled, for [`Identity::evaluate`],
    /// [`Identity::annotate_event`] and [`Identity::alert_fields`].
    current: Option<Arc<Verdict>>,
}

struct Live {
    queue: ClassifyQueue,
    /// Not joined at the stop: the worker may have a queue of files to hash, and the
    /// agent is going. Its thread ends with the process.
    _worker: Worker,
    outcomes: mpsc::Receiver<Outcome>,
    verdicts: Arc<Mutex<VerdictMap>>,
    /// The tools' verdicts by the probe's key (not-a-tool files are not reported again).
    known: LruCache<ExeKey, Arc<Verdict>>,
    held: Held,
    proc_root: PathBuf,
    counters: Arc<Counters>,
    generation: Arc<AtomicU64>,
    seen_generation: u64,
    stats_at: Instant,
}

/// Starts the stage: reads the hash lists, scans the installed tools, starts the
/// classification worker. `verdicts` is the probe's map (`None`: identity is off in the
/// kernel, and the stage with it). Returns the hot path's side, the daemon's, and the
/// installed tools for `INODES`.
pub fn start(
    cfg: &IdentityConfig,
    verdicts: Option<BpfHashMap<MapData, ExeKey, ExeVerdict>>,
    proc_root: &Path,
    counters: Arc<Counters>,
) -> Result<(Identity, Option<IdentityControl>, InodeEntries), IdentityError> {
    let off = Identity {
        live: None,
        current: None,
    };
    let Some(verdicts) = verdicts.filter(|_| cfg.enabled) else {
        return Ok((off, None, InodeEntries::new()));
    };
    let list = HashList::load(&cfg.hash_lists).map_err(IdentityError::HashList)?;
    let classifier = Arc::new(Classifier::new(
        list,
        Limits {
            max_hash_bytes: cfg.max_hash_bytes,
            cache_entries: cfg.cache_entries,
        },
    ));
    let control = IdentityControl {
        classifier: Arc::clone(&classifier),
        verdicts: Arc::new(Mutex::new(VerdictMap::new(verdicts))),
        generation: Arc::new(AtomicU64::new(0)),
    };
    let entries = control.scan(&cfg.dirs, &counters);
    let (tx, outcomes) = mpsc::channel();
    let (queue, worker) = ClassifyQueue::start(classifier, cfg.queue_capacity, {
        let verdicts = Arc::clone(&control.verdicts);
        let counters = Arc::clone(&counters);
        move |o: Outcome| {
            write_verdict(&verdicts, &o, &counters);
            let _ = tx.send(o);
        }
    })
    .map_err(IdentityError::Queue)?;
    let live = Live {
        queue,
        _worker: worker,
        outcomes,
        verdicts: Arc::clone(&control.verdicts),
        known: LruCache::new(NonZeroUsize::new(1024).expect("non-zero")),
        held: Held::new(Duration::from_millis(cfg.hold_ms)),
        proc_root: proc_root.to_owned(),
        counters,
        generation: Arc::clone(&control.generation),
        seen_generation: 0,
        stats_at: Instant::now(),
    };
    Ok((
        Identity {
            live: Some(live),
            current: None,
        },
        Some(control),
        entries,
    ))
}

/// On the worker thread: the verdict into `VERDICTS`, under the reported key, unless the
/// file read is not the one reported (changed meanwhile).
fn write_verdict(verdicts: &Mutex<VerdictMap>, o: &Outcome, counters: &Counters) {
    let v = match &o.result {
        Ok(v) if files::same_file(&o.reported, &v.key) => v,
        Ok(_) => return counters.inc(Counter::IdentityVerdictsChanged),
        Err(_) => return counters.inc(Counter::IdentityVerdictsFailed),
    };
    let Some(key) = files::exe_key(&o.reported) else {
        return;
    };
    let tool = tool_id(v);
    counters.inc(if tool == 0 {
        Counter::IdentityVerdictsNotTool
    } else {
        Counter::IdentityVerdictsTool
    });
    let written = verdicts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write(&key, tool);
    if written.is_err() {
        counters.inc(Counter::IdentityVerdictWriteErrors);
    }
}

/// The probe's tool id of a verdict (0: not a tool).
fn tool_id(v: &Verdict) -> u32 {
    v.tool
        .as_ref()
        .and_then(t1609_identity::Tool::spec)
        .map_or(0, |s| u32::from(s.id()))
}

impl IdentityControl {
    /// Scans the installed tools (start-up, reload): what `INODES` should hold.
    fn scan(&self, dirs: &[PathBuf], counters: &Counters) -> InodeEntries {
        let started = Instant::now();
        let inv = Inventory::scan(&self.classifier, dirs);
        for p in &inv.problems {
            warn!(error = %p, "identity: an installed tool could not be classified");
        }
        let mounts = Mounts::read();
        // The kernel's device of each st_dev, from the path it was found at.
        let kdev: BTreeMap<u64, u32> = inv
            .installed
            .iter()
            .filter_map(|i| Some((i.key.dev, mounts.kernel_dev(&i.path, i.key.dev)?)))
            .collect();
        let entries: InodeEntries = inv
            .watch_entries()
            .into_iter()
            .filter_map(|(dev, ino, tool)| {
                let key = InodeKey {
                    dev: *kdev.get(&dev)?,
                    pad: 0,
                    ino,
                };
                Some((key, u32::from(tool)))
            })
            .collect();
        counters.set(Counter::IdentityInstalledTools, entries.len() as u64);
        info!(
            tools = inv.installed.len(),
            watched = entries.len(),
            ms = started.elapsed().as_millis(),
            "identity: installed tools scanned"
        );
        entries
    }

    /// SIGHUP: the installed tools again (`identity.dirs` may have changed), every
    /// verdict forgotten (in the probe and on the hot path), since what the scan learnt
    /// may change them. The hash lists and sizes are read at start-up only.
    pub fn reload(&self, cfg: &IdentityConfig, counters: &Counters) -> InodeEntries {
        let entries = self.scan(&cfg.dirs, counters);
        let cleared = self
            .verdicts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.generation.fetch_add(1, Relaxed);
        info!(cleared, "identity: verdicts cleared for the reload");
        entries
    }
}

impl Identity {
    /// A stage that does nothing (identity off).
    pub fn off() -> Identity {
        Identity {
            live: None,
            current: None,
        }
    }

    /// Step 0, before the exec's pipeline: its file's verdict, from here or the
    /// classifier's cache; else its file goes to the queue. Returns true when the exec is
    /// held for its verdict (it comes back from [`Identity::release`]).
    pub fn admit(&mut self, exec: &CapturedExec, now: Instant) -> bool {
        self.current = None;
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        live.sync();
        let Some(seen) = exec.exe else {
            return false;
        };
        // Neither known as a tool nor new: nothing to learn about it.
        if !seen.first && seen.tool == 0 {
            return false;
        }
        if let Some(v) = live.known.get(&seen.key) {
            self.current = Some(Arc::clone(v));
            return false;
        }
        let reported = files::file_key(&seen.key);
        let opened = files::open_reported(&live.proc_root, exec.tgid, &exec.filename, &reported);
        let (file, label) = match opened {
            Ok(f) => f,
            Err(e) => {
                debug!(error = %e, reported = ?seen.key, "identity: the exec's file is not available");
                live.counters.inc(Counter::IdentityExeUnavailable);
                return false;
            }
        };
        let job = Job {
            reported,
            source: Source::File { file, label },
        };
        match live.queue.submit(job) {
            Submitted::Known(v) => {
                // Classified before (the probe's entry was evicted, or a reload cleared
                // it): the probe gets the verdict again from here.
                let v: Arc<Verdict> = Arc::from(v);
                let tool = tool_id(&v);
                let _ = live
                    .verdicts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write(&seen.key, tool);
                if tool != 0 {
                    live.known.put(seen.key, Arc::clone(&v));
                }
                self.current = Some(v);
                false
            }
            Submitted::Queued | Submitted::Pending => {
                if !seen.by_identity {
                    return false;
                }
                if live.held.hold(exec, seen.key, now) {
                    live.counters.inc(Counter::IdentityHeld);
                    true
                } else {
                    live.counters.inc(Counter::IdentityHoldFull);
                    false
                }
            }
            Submitted::Full => false,
        }
    }

    /// The next held exec that may go, its verdict made current: answered, or waited
    /// `hold_ms` (any, with `all`: the stop). Also takes in the verdicts that arrived.
    pub fn release(&mut self, now: Instant, all: bool) -> Option<Box<CapturedExec>> {
        let live = self.live.as_mut()?;
        live.take_outcomes(now);
        let (exec, verdict, how) = live.held.next(now, all)?;
        if how == Released::TimedOut {
            live.counters.inc(Counter::IdentityHoldTimeouts);
        }
        self.current = verdict;
        Some(exec)
    }

    /// An exec the probe reported only so that its file be classified (no watched name,
    /// no session), now known not to be a tool: not a watched exec (`--record` skips it).
    /// Without a verdict (the hold ran out, the file was gone) it counts as watched.
    pub fn reported_for_nothing(&self, exec: &CapturedExec) -> bool {
        exec.exe.is_some_and(|s| s.by_identity)
            && self.current.as_ref().is_some_and(|v| v.tool.is_none())
    }

    /// Whether execs are waiting for verdicts (the hot path then wakes every few ms).
    pub fn holding(&self) -> bool {
        self.live.as_ref().is_some_and(|l| !l.held.is_empty())
    }

    /// Step 5: the rules, as the tool the file is when the exec's name is not one of
    /// that tool's names; else as usual.
    pub fn evaluate(
        &self,
        engine: &Engine,
        exec: &CapturedExec,
        event: &ProcessEvent,
    ) -> Vec<Alert> {
        let tool = self.current.as_ref().and_then(|v| v.tool.as_ref());
        match tool.and_then(|t| Some((t.name, t.spec()?))) {
            Some((name, spec)) if check_name(spec, exe_name(exec)) != NameCheck::Own => {
                engine.evaluate_identified(event, name)
            }
            _ => engine.evaluate(event),
        }
    }

    /// Step 2: the executed file's digest on the event (`process.hash.sha256`), when the
    /// file was classified.
    pub fn annotate_event(&self, event: &mut ProcessEvent) {
        if let Some(h) = self.current.as_ref().and_then(|v| v.sha256.as_ref()) {
            event.process.hash_sha256 = Some(h.clone());
        }
    }

    /// Step 7: what the file is, on the alert: `t1609.tool` (name, module, version, how,
    /// source).
    pub fn alert_fields(&self) -> ToolFields {
        ToolFields(
            self.current
                .as_ref()
                .and_then(|v| v.tool.as_ref())
                .and_then(|t| serde_json::to_value(t).ok()),
        )
    }
}

/// `t1609.tool` on an alert whose executed file is a known tool.
#[derive(Debug, Default)]
pub struct ToolFields(Option<Value>);

impl AlertFields for ToolFields {
    fn add_to_value(&self, doc: &mut Value) {
        if let Some(tool) = &self.0 {
            doc["t1609"]["tool"] = tool.clone();
        }
    }
    fn t1609(&self, t: &mut Members<'_>) {
        if let Some(tool) = &self.0 {
            t.value("tool", tool);
        }
    }
}

/// The exec's real name as bytes (the executed path's basename; may not be UTF-8).
fn exe_name(exec: &CapturedExec) -> &[u8] {
    if exec.filename.is_empty() {
        return &exec.comm;
    }
    exec.filename
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or(&exec.filename)
}

impl Live {
    /// A reload cleared every verdict: forget ours too.
    fn sync(&mut self) {
        let g = self.generation.load(Relaxed);
        if g != self.seen_generation {
            self.seen_generation = g;
            self.known.clear();
        }
    }

    /// Verdicts that arrived: tools remembered, held execs answered; counters refreshed
    /// once a second.
    fn take_outcomes(&mut self, now: Instant) {
        self.sync();
        while let Ok(o) = self.outcomes.try_recv() {
            let Some(key) = files::exe_key(&o.reported) else {
                continue;
            };
            let verdict = match o.result {
                Ok(v) if files::same_file(&o.reported, &v.key) => Some(Arc::new(v)),
                _ => None,
            };
            if let Some(v) = verdict.as_ref().filter(|v| v.tool.is_some()) {
                self.known.put(key, Arc::clone(v));
            }
            self.held.answer(&key, verdict.as_ref());
        }
        if now.duration_since(self.stats_at) >= Duration::from_secs(1) {
            self.stats_at = now;
            store_queue_stats(self.queue.stats(), &self.counters);
        }
    }
}

fn store_queue_stats(q: &QueueStats, c: &Counters) {
    c.set(Counter::IdentityQueued, q.queued.load(Relaxed));
    c.set(
        Counter::IdentityFromCache,
        q.answered_from_cache.load(Relaxed),
    );
    c.set(
        Counter::IdentityAlreadyQueued,
        q.skipped_pending.load(Relaxed),
    );
    c.set(Counter::IdentityQueueFull, q.skipped_full.load(Relaxed));
}
