//! The spool across a `kill -9` of the agent, a drop without shutdown and a graceful
//! shutdown, and its cap with the loss alert.

mod common;

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;
use t1609_deliver::Dispatcher;

/// Entry point of the child processes this binary starts (see `common::spawn_child`).
#[test]
fn child_main() {
    common::child_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_kill9_of_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sock = dir.path().join("collector.sock");
    let run = run_id("kill9");
    let n = 500;
    let child = spawn_child(
        &format!("agent|{}|{}|{n}|{run}", spool.display(), sock.display()),
        Stdio::piped(),
    );
    let mut child = ChildGuard(child);
    wait_ready(&mut child.0);
    kill9(&mut child.0);

    let col = Collector::bind(&sock);
    let d = Dispatcher::start(cfg(&spool, &[&format!("socket-client:{}", sock.display())]))
        .await
        .unwrap();
    assert!(
        wait_for(T, || col.len() >= n).await,
        "got {} of {n}",
        col.len()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seqs: Vec<u64> = col.docs().iter().map(|v| seq_of(v).unwrap()).collect();
    assert_in_order(&seqs, 0..n as u64, "after kill -9 and restart");
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_drop_without_shutdown_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sock = dir.path().join("c.sock");
    let spec = format!("socket-client:{}", sock.display());
    let run = run_id("drop");
    {
        let d = Dispatcher::start(cfg(&spool, &[&spec])).await.unwrap();
        for i in 0..100 {
            d.submit(Arc::new(doc(&run, i, "x")));
        }
        assert!(wait_for(T, || d.stats().sinks[0].spooled == 100).await);
        drop(d); // crash: no shutdown
    }
    {
        let d = Dispatcher::start(cfg(&spool, &[&spec])).await.unwrap();
        for i in 100..200 {
            d.submit(Arc::new(doc(&run, i, "x")));
        }
        let t = Instant::now();
        d.shutdown(Duration::from_secs(1)).await; // sink down: persists at once
        assert!(t.elapsed() < Duration::from_millis(1500));
    }
    let col = Collector::bind(&sock);
    let d = Dispatcher::start(cfg(&spool, &[&spec])).await.unwrap();
    assert!(wait_for(T, || col.len() >= 200).await, "got {}", col.len());
    let seqs: Vec<u64> = col.docs().iter().map(|v| seq_of(v).unwrap()).collect();
    assert_in_order(&seqs, 0..200, "after drop and restart");
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_cap_drops_oldest_counts_and_emits_loss_alert() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let mut c = cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:{}", sock.display())],
    );
    c.spool_max_bytes = 64 * 1024;
    let d = Dispatcher::start(c).await.unwrap();
    let run = run_id("cap");
    let n = 400u64;
    let pad = "p".repeat(1000);
    for i in 0..n {
        d.submit(Arc::new(doc(&run, i, &pad)));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(wait_for(T, || d.stats().sinks[0].spooled == n).await);
    let s = d.stats();
    let dropped = s.sinks[0].dropped;
    assert!(dropped > 0, "{s:?}");
    assert!(s.sinks[0].spool_bytes <= 64 * 1024);
    let col = Collector::bind(&sock);
    assert!(
        wait_for(T, || col
            .docs()
            .iter()
            .any(|v| v["rule"]["id"] == "t1609.agent_alert_loss"))
        .await,
        "no loss alert"
    );
    let docs = col.docs();
    let (loss, alerts): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|v| v["rule"]["id"] == "t1609.agent_alert_loss");
    let seqs: Vec<u64> = alerts.iter().map(|v| seq_of(v).unwrap()).collect();
    // The newest survive, in order; the oldest were dropped.
    assert_in_order(&seqs, dropped..n, "spool cap: newest survive");
    let lost: u64 = loss
        .iter()
        .map(|v| v["t1609"]["loss"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(lost, dropped);
    assert_eq!(loss[0]["event"]["kind"], "alert");
    d.shutdown(Duration::from_secs(2)).await;
}
