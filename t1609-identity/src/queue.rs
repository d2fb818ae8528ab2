//! The classification queue: the exec path hands over files to classify and never waits.
//! One worker thread classifies them, off the hot path, and hands each verdict to a
//! callback (the agent writes it into the kernel's verdict map).
//!
//! The queue is bounded. A storm of execs of distinct new files fills it; what does not
//! fit is skipped and counted (`skipped_full`), never waited for. A file already queued
//! is not queued twice (`skipped_pending`); a file with a cached verdict is answered at
//! once (`answered_from_cache`).

use std::{
    collections::HashSet,
    fs::File,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
};

use crate::{
    classify::{Classifier, ClassifyError, Target, Verdict},
    key::FileKey,
};

/// The worker thread could not be started.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot start the classification thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Where the file to classify is.
#[derive(Debug)]
pub enum Source {
    Path(PathBuf),
    /// An open file (`/proc/<pid>/exe` opened while the process lived); `label` names
    /// it in errors.
    File {
        file: File,
        label: PathBuf,
    },
}

/// One file to classify, with the key the kernel reported it under.
#[derive(Debug)]
pub struct Job {
    pub reported: FileKey,
    pub source: Source,
}

/// What became of a submission.
#[derive(Debug)]
pub enum Submitted {
    Queued,
    /// Already known: the cached verdict.
    Known(Box<Verdict>),
    /// Already waiting in the queue.
    Pending,
    /// The queue was full: skipped.
    Full,
}

/// A classification's result, handed to the callback. `verdict.key` may differ from
/// `reported` when the file changed in between: the verdict is for what was read.
#[derive(Debug)]
pub struct Outcome {
    pub reported: FileKey,
    pub result: Result<Verdict, ClassifyError>,
}

/// Counters, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub submitted: AtomicU64,
    pub queued: AtomicU64,
    pub answered_from_cache: AtomicU64,
    pub skipped_pending: AtomicU64,
    pub skipped_full: AtomicU64,
    pub classified: AtomicU64,
    pub tools_found: AtomicU64,
    pub failed: AtomicU64,
}

/// The submitting side; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ClassifyQueue {
    tx: SyncSender<Job>,
    pending: Arc<Mutex<HashSet<FileKey>>>,
    classifier: Arc<Classifier>,
    stats: Arc<QueueStats>,
}

/// The worker thread; it ends once the queue is dropped and drained.
#[derive(Debug)]
pub struct Worker {
    handle: JoinHandle<()>,
}

impl Worker {
    /// Waits for the worker to finish (after the queue was dropped).
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

impl ClassifyQueue {
    /// Starts the worker. `capacity` bounds the files waiting; `on_outcome` runs on the
    /// worker thread for each classified file.
    pub fn start(
        classifier: Arc<Classifier>,
        capacity: usize,
        on_outcome: impl FnMut(Outcome) + Send + 'static,
    ) -> Result<(ClassifyQueue, Worker), QueueError> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let pending = Arc::new(Mutex::new(HashSet::new()));
        let stats = Arc::new(QueueStats::default());
        let handle = std::thread::Builder::new()
            .name("t1609-classify".into())
            .spawn({
                let classifier = Arc::clone(&classifier);
                let pending = Arc::clone(&pending);
                let stats = Arc::clone(&stats);
                move || work(&rx, &classifier, &pending, &stats, on_outcome)
            })
            .map_err(QueueError::Spawn)?;
        Ok((
            ClassifyQueue {
                tx,
                pending,
                classifier,
                stats,
            },
            Worker { handle },
        ))
    }

    /// Hands over a file; never blocks.
    pub fn submit(&self, job: Job) -> Submitted {
        self.stats.submitted.fetch_add(1, Relaxed);
        if let Some(v) = self.classifier.cached(&job.reported) {
            self.stats.answered_from_cache.fetch_add(1, Relaxed);
            return Submitted::Known(Box::new(v));
        }
        let key = job.reported;
        if !self.pending().insert(key) {
            self.stats.skipped_pending.fetch_add(1, Relaxed);
            return Submitted::Pending;
        }
        match self.tx.try_send(job) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Relaxed);
                Submitted::Queued
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending().remove(&key);
                self.stats.skipped_full.fetch_add(1, Relaxed);
                Submitted::Full
            }
        }
    }

    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<FileKey>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn work(
    rx: &Receiver<Job>,
    classifier: &Classifier,
    pending: &Mutex<HashSet<FileKey>>,
    stats: &QueueStats,
    mut on_outcome: impl FnMut(Outcome),
) {
    while let Ok(job) = rx.recv() {
        let result = match &job.source {
            Source::Path(p) => classifier.verdict(Target::Path(p)),
            Source::File { file, label } => classifier.verdict(Target::File { file, label }),
        };
        match &result {
            Ok(v) => {
                stats.classified.fetch_add(1, Relaxed);
                if v.tool.is_some() {
                    stats.tools_found.fetch_add(1, Relaxed);
                }
            }
            Err(_) => {
                stats.failed.fetch_add(1, Relaxed);
            }
        }
        pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job.reported);
        on_outcome(Outcome {
            reported: job.reported,
            result,
        });
    }
}
