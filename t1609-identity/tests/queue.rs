//! The classification queue under a storm of distinct new files: submissions never wait,
//! what does not fit is counted, and every queued file gets its verdict.

use std::{
    fs,
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use t1609_identity::{
    Classifier, ClassifyQueue, FileKey, HashList, Job, Limits, Source, Submitted,
};

fn key(i: u64) -> FileKey {
    FileKey {
        dev: 1,
        ino: i,
        size: 10,
        mtime_ns: 0,
        ctime_ns: 0,
    }
}

#[test]
fn a_storm_of_new_files_is_bounded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tool");
    fs::write(&file, b"#!/bin/sh\nexit 0\n").unwrap();
    let c = Arc::new(Classifier::new(HashList::default(), Limits::default()));
    // The worker holds its first job until the storm is over, so the bound is exact.
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate_rx));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let (q, worker) = ClassifyQueue::start(Arc::clone(&c), 8, {
        let outcomes = Arc::clone(&outcomes);
        move |o| {
            if let Some(rx) = gate.lock().unwrap().take() {
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
            outcomes.lock().unwrap().push(o);
        }
    })
    .unwrap();
    let started = Instant::now();
    let mut counts = [0u64; 4];
    for i in 0..5_000 {
        let s = q.submit(Job {
            reported: key(i),
            source: Source::Path(file.clone()),
        });
        counts[match s {
            Submitted::Queued => 0,
            Submitted::Known(_) => 1,
            Submitted::Pending => 2,
            Submitted::Full => 3,
        }] += 1;
    }
    let storm = started.elapsed();
    // Never blocked on the stuck worker: 5,000 submissions in well under a second.
    assert!(storm < Duration::from_secs(2), "{storm:?}");
    // At most the queue's 8 slots plus the job in the worker's hands.
    assert!((8..=9).contains(&counts[0]), "{counts:?}");
    assert_eq!(counts[3], 5_000 - counts[0]);
    let s = q.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load(&s.submitted), 5_000);
    assert_eq!(load(&s.skipped_full), counts[3]);
    gate_tx.send(()).unwrap();
    let queued = counts[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    while (outcomes.lock().unwrap().len() as u64) < queued && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = outcomes.lock().unwrap();
    assert_eq!(got.len() as u64, queued);
    assert!(got.iter().all(|o| o.result.is_ok()));
    assert_eq!(load(&s.classified), queued);
    drop(got);
    drop(q);
    worker.join();
}

#[test]
fn pending_and_cached_files_are_answered_without_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, b"plain").unwrap();
    let real = FileKey::of(&fs::metadata(&file).unwrap());
    let classifier = Arc::new(Classifier::new(HashList::default(), Limits::default()));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate_rx));
    let (done_tx, done_rx) = mpsc::channel();
    let (queue, worker) = ClassifyQueue::start(Arc::clone(&classifier), 4, move |o| {
        if let Some(rx) = gate.lock().unwrap().take() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
        let _ = done_tx.send(o);
    })
    .unwrap();
    let job = || Job {
        reported: real,
        source: Source::Path(PathBuf::from(&file)),
    };
    assert!(matches!(queue.submit(job()), Submitted::Queued));
    assert!(matches!(queue.submit(job()), Submitted::Pending));
    gate_tx.send(()).unwrap();
    let outcome = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let v = outcome.result.unwrap();
    assert_eq!(v.key, real);
    // Now cached: answered at once.
    match queue.submit(job()) {
        Submitted::Known(k) => assert_eq!(*k, v),
        other => panic!("{other:?}"),
    }
    // A file that vanished: the error names it, the worker goes on.
    let gone = dir.path().join("gone");
    assert!(matches!(
        queue.submit(Job {
            reported: FileKey { ino: 42, ..real },
            source: Source::Path(gone.clone()),
        }),
        Submitted::Queued
    ));
    let outcome = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let e = outcome.result.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot open", gone.display())),
        "{e}"
    );
    drop(queue);
    worker.join();
}
