//! The file follower against an imitated kube-apiserver audit log (`--audit-log-path`):
//! events built from the audit.k8s.io/v1 schema, written, rotated and truncated the way
//! the API server's log rotation (rename + new file) and logrotate's copytruncate do.

mod common;

use std::{
    collections::HashSet,
    io::Write,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use common::*;
use t1609_k8saudit::*;
use tokio::sync::{mpsc, watch};

struct Running {
    rx: mpsc::Receiver<AuditEvent>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), AuditError>>,
    stats: Arc<AuditStats>,
}

fn cfg(dir: &Path, start_at: StartAt) -> FileSourceConfig {
    FileSourceConfig {
        path: dir.join("audit.log"),
        state_file: dir.join("state/audit.state"),
        start_at,
        poll_interval_ms: 20,
        ..Default::default()
    }
}

fn start(cfg: FileSourceConfig) -> Running {
    let (tx, rx) = mpsc::channel(1024);
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(AuditStats::default());
    let task = tokio::spawn(follow_file(cfg, tx, stats.clone(), stop_rx));
    Running {
        rx,
        stop,
        task,
        stats,
    }
}

impl Running {
    async fn take(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await {
                Ok(Some(ev)) => out.push(ev.audit_id),
                Ok(None) => panic!("follower ended early after {out:?}"),
                Err(tokio::time::error::Elapsed { .. }) => {
                    panic!("timed out waiting for {n} events, got {out:?}")
                }
            }
        }
        out
    }
    async fn nothing_more(&mut self) {
        if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), self.rx.recv()).await
        {
            panic!("unexpected extra event {}", ev.audit_id);
        }
    }
    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn lines(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| atomic_test2(id).line() + "\n")
        .collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// Waits until the follower has saved an offset at least `n` (its progress on disk).
async fn wait_saved(state: &Path, n: u64) {
    for _ in 0..500 {
        if FileState::load(state).is_some_and(|s| s.offset >= n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("state never reached offset {n}");
}

#[tokio::test]
async fn reads_lines_counts_malformed_and_waits_for_partial_lines() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::Beginning);
    let log = c.path.clone();
    append(&log, &lines(&["e1", "e2"]));
    append(&log, &format!("{MALFORMED_LINE}\n\n"));
    append(&log, &lines(&["e3"]));
    let mut r = start(c);
    assert_eq!(r.take(3).await, ids(&["e1", "e2", "e3"]));
    // A partial last line is not read until its newline arrives.
    let full = atomic_test2("e4").line();
    let (a, b) = full.split_at(full.len() / 2);
    append(&log, a);
    r.nothing_more().await;
    append(&log, &format!("{b}\n"));
    assert_eq!(r.take(1).await, ids(&["e4"]));
    assert_eq!(r.stats.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(r.stats.events.load(Ordering::Relaxed), 4);
    r.shutdown().await;
}

#[tokio::test]
async fn start_at_end_skips_existing_lines_without_state() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::End);
    let log = c.path.clone();
    append(&log, &lines(&["old1", "old2"]));
    let state = c.state_file.clone();
    let mut r = start(c);
    wait_saved(&state, std::fs::metadata(&log).unwrap().len()).await;
    append(&log, &lines(&["new1"]));
    assert_eq!(r.take(1).await, ids(&["new1"]));
    r.nothing_more().await;
    r.shutdown().await;
}

#[tokio::test]
async fn rotation_by_rename_finishes_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::Beginning);
    let log = c.path.clone();
    append(&log, &lines(&["r1", "r2", "r3"]));
    let mut r = start(c);
    assert_eq!(r.take(3).await, ids(&["r1", "r2", "r3"]));

    // The writer keeps its descriptor: lines land in the old file before and after the
    // rename, then it opens a new file at the path (what kube-apiserver's rotation does).
    let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    old.write_all(lines(&["r4"]).as_bytes()).unwrap();
    std::fs::rename(&log, dir.path().join("audit-2026-11-28T17-05-00.000.log")).unwrap();
    old.write_all(lines(&["r5"]).as_bytes()).unwrap();
    // Last line of the old file without a trailing newline.
    old.write_all(atomic_test2("r6").line().as_bytes()).unwrap();
    drop(old);
    append(&log, &lines(&["n1", "n2"]));

    let got = r.take(5).await;
    assert_eq!(got, ids(&["r4", "r5", "r6", "n1", "n2"]));
    r.nothing_more().await;
    // A second rotation.
    std::fs::rename(&log, dir.path().join("audit.log.2")).unwrap();
    append(&log, &lines(&["m1"]));
    assert_eq!(r.take(1).await, ids(&["m1"]));
    r.nothing_more().await;
    r.shutdown().await;
}

#[tokio::test]
async fn copy_truncate_restarts_at_zero_without_loss_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::Beginning);
    let log = c.path.clone();
    append(&log, &lines(&["t1", "t2", "t3"]));
    let mut r = start(c);
    assert_eq!(r.take(3).await, ids(&["t1", "t2", "t3"]));
    append(&log, &lines(&["t4", "t5"]));
    assert_eq!(r.take(2).await, ids(&["t4", "t5"]));
    // logrotate copytruncate: copy, then truncate in place (same inode), writer goes on.
    std::fs::copy(&log, dir.path().join("audit.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &lines(&["u1", "u2"]));
    assert_eq!(r.take(2).await, ids(&["u1", "u2"]));
    r.nothing_more().await;
    let total = r.stats.events.load(Ordering::Relaxed);
    assert_eq!(total, 7, "every event once");
    r.shutdown().await;
}

#[tokio::test]
async fn restart_from_state_neither_replays_nor_skips() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::Beginning);
    let log = c.path.clone();
    let state = c.state_file.clone();
    append(&log, &lines(&["s1", "s2", "s3"]));
    let mut r = start(c.clone());
    assert_eq!(r.take(3).await, ids(&["s1", "s2", "s3"]));
    wait_saved(&state, std::fs::metadata(&log).unwrap().len()).await;
    r.shutdown().await;

    // Written while the agent is down; start_at=end must not apply (state wins).
    append(&log, &lines(&["s4", "s5"]));
    let mut c2 = c.clone();
    c2.start_at = StartAt::End;
    let mut r = start(c2.clone());
    assert_eq!(r.take(2).await, ids(&["s4", "s5"]));
    r.nothing_more().await;
    wait_saved(&state, std::fs::metadata(&log).unwrap().len()).await;
    r.shutdown().await;

    // Down again; meanwhile more lines, then a rotation by rename: the old file's tail and
    // the new file are both read, once.
    append(&log, &lines(&["s6"]));
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    append(&log, &lines(&["s7", "s8"]));
    let mut r = start(c2.clone());
    assert_eq!(r.take(3).await, ids(&["s6", "s7", "s8"]));
    r.nothing_more().await;
    r.shutdown().await;

    // And once more with nothing new: nothing is replayed.
    let mut r = start(c2);
    r.nothing_more().await;
    let all: HashSet<_> = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]
        .into_iter()
        .collect();
    assert_eq!(all.len(), 8);
    r.shutdown().await;
}

#[tokio::test]
async fn a_file_that_appears_after_start_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::End);
    let log = c.path.clone();
    let mut r = start(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, &lines(&["late1", "late2"]));
    assert_eq!(r.take(2).await, ids(&["late1", "late2"]));
    r.nothing_more().await;
    r.shutdown().await;
}

#[tokio::test]
async fn run_sources_turns_file_events_into_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::Beginning);
    let log = c.path.clone();
    append(&log, &lines(&["rs-1"]));
    append(&log, &(get_pods("rs-2").line() + "\n"));
    append(&log, &(kube_system_sa_exec("rs-3").line() + "\n"));
    let config = AuditConfig {
        file: Some(c),
        ..Default::default()
    };
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let stats = Arc::new(AuditStats::default());
    let rules = Arc::new(AuditRules::builtin().unwrap());
    let task = tokio::spawn(run_sources(config, rules, tx, stats.clone(), stop_rx));
    let a = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a["kubernetes"]["audit"]["auditID"], "rs-1");
    assert_eq!(b["kubernetes"]["audit"]["auditID"], "rs-3");
    assert_eq!(b["t1609"]["severity"], "critical");
    assert_eq!(stats.alerts.load(Ordering::Relaxed), 2);
    assert_eq!(stats.events.load(Ordering::Relaxed), 3);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // An invalid configuration names its field.
    let bad = AuditConfig {
        webhook: Some(WebhookConfig {
            max_body_bytes: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (tx, _rx) = mpsc::channel(1);
    let (_s, stop_rx) = watch::channel(false);
    let e = run_sources(
        bad,
        Arc::new(AuditRules::builtin().unwrap()),
        tx,
        stats,
        stop_rx,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("webhook.max_body_bytes"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writer_with_rotations_loses_and_repeats_nothing() {
    const N: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), StartAt::Beginning);
    let log = c.path.clone();
    append(&log, "");
    let mut r = start(c);
    let d = dir.path().to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for i in 0..N {
            f.write_all((atomic_test2(&format!("c{i}")).line() + "\n").as_bytes())
                .unwrap();
            if i % 250 == 249 {
                // Rotate like the API server: rename, then write to a new file at the path.
                std::fs::rename(&log, d.join(format!("audit.log.{i}"))).unwrap();
                f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
            }
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    });
    let got = r.take(N).await;
    writer.await.unwrap();
    r.nothing_more().await;
    let want: Vec<String> = (0..N).map(|i| format!("c{i}")).collect();
    assert_eq!(got, want, "in order, each once");
    r.shutdown().await;
}
