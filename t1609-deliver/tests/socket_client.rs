//! The socket-client sink: a collector killed with SIGKILL and restarted, a datagram
//! collector, a slow collector.

mod common;

use std::{collections::HashSet, process::Stdio, sync::Arc, time::Duration};

use common::*;
use serde_json::Value;
use t1609_deliver::Dispatcher;
use tokio::io::AsyncBufReadExt;

/// Entry point of the child processes this binary starts (see `common::spawn_child`).
#[test]
fn child_main() {
    common::child_main();
}

fn read_gen(path: &std::path::Path) -> Vec<Value> {
    // Complete lines only: a collector killed mid-read may leave a partial last line.
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut it = data.split(|&b| b == b'\n').peekable();
    while let Some(l) = it.next() {
        if it.peek().is_none() {
            break; // after the last '\n'
        }
        if let Ok(v) = serde_json::from_slice(l) {
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_client_collector_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("collector.sock");
    let out1 = dir.path().join("gen1.jsonl");
    let out2 = dir.path().join("gen2.jsonl");
    let start_collector = |out: &std::path::Path| {
        let mut ch = spawn_child(
            &format!("collector|{}|{}", sock.display(), out.display()),
            Stdio::piped(),
        );
        wait_ready(&mut ch);
        ChildGuard(ch)
    };
    let mut c1 = start_collector(&out1);
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:{}", sock.display())],
    ))
    .await
    .unwrap();
    let run = run_id("client");
    let n = 3000u64;
    let mut c2 = None;
    for i in 0..n {
        d.submit(Arc::new(doc(&run, i, "kubectl exec -it pod -- /bin/sh")));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i == 1000 {
            kill9(&mut c1.0);
        }
        if i == 2000 {
            assert!(d.stats().sinks[0].spooled > 0, "outage alerts were spooled");
            c2 = Some(start_collector(&out2));
        }
    }
    let done = wait_for(Duration::from_secs(12), || {
        let ids: HashSet<String> = read_gen(&out1)
            .into_iter()
            .chain(read_gen(&out2))
            .map(|v| v["event"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.len() as u64 == n
    })
    .await;
    let all: Vec<Value> = read_gen(&out1).into_iter().chain(read_gen(&out2)).collect();
    let mut seen = HashSet::new();
    let dedup: Vec<u64> = all
        .iter()
        .filter(|v| seen.insert(v["event"]["id"].as_str().unwrap().to_owned()))
        .map(|v| seq_of(v).unwrap())
        .collect();
    let dups = all.len() - dedup.len();
    eprintln!(
        "socket-client: {} lines received, {dups} duplicates (resent after the kill)",
        all.len()
    );
    assert!(
        done,
        "not every alert arrived: {} of {n}; stats {:?}",
        dedup.len(),
        d.stats()
    );
    assert_in_order(
        &dedup,
        0..n,
        "socket-client: exactly once (after dedupe on event.id), in order",
    );
    let s = d.stats();
    assert_eq!(s.sinks[0].dropped, 0);
    assert!(s.sinks[0].spooled > 0);
    d.shutdown(Duration::from_secs(2)).await;
    drop(c2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_client_datagram_mode() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dgram.sock");
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:dgram:{}", sock.display())],
    ))
    .await
    .unwrap();
    let run = run_id("dgram");
    for i in 0..20 {
        d.submit(Arc::new(doc(&run, i, "nerdctl exec c sh")));
    }
    assert!(wait_for(T, || d.stats().sinks[0].spooled == 20).await);
    let r = tokio::net::UnixDatagram::bind(&sock).unwrap();
    // 1 MiB does not fit in a datagram: dropped and counted, the others flow.
    d.submit(Arc::new(doc(&run, 20, &"y".repeat(1 << 20))));
    for i in 21..40 {
        d.submit(Arc::new(doc(&run, i, "nerdctl exec c sh")));
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut seqs = Vec::new();
    let mut loss = 0;
    while seqs.len() < 39 || loss == 0 {
        let n = tokio::time::timeout(T, r.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf[n - 1], b'\n');
        let v: Value = serde_json::from_slice(&buf[..n - 1]).unwrap();
        if v["rule"]["id"] == "t1609.agent_alert_loss" {
            assert_eq!(v["t1609"]["loss"]["count"], 1);
            loss += 1;
        } else {
            seqs.push(seq_of(&v).unwrap());
        }
    }
    let want: Vec<u64> = (0..40).filter(|&i| i != 20).collect();
    assert_eq!(seqs, want);
    assert!(
        wait_for(T, || d.stats().sinks[0].dropped == 1).await,
        "{:?}",
        d.stats()
    );
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_socket_client_spools_while_healthy_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("slow.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let seqs = got.clone();
    let reader = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::with_capacity(4096, stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line).unwrap();
            let n = {
                let mut seqs = seqs.lock().unwrap();
                seqs.push(seq_of(&v).unwrap_or_else(|| panic!("unexpected alert: {v}")));
                seqs.len()
            };
            if n < 1000 {
                tokio::time::sleep(Duration::from_millis(1)).await; // slow at first
            }
        }
    });
    let mut config = cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:{}", sock.display())],
    );
    config.queue_len = 512;
    let d = Dispatcher::start(config).await.unwrap();
    let run = run_id("slow");
    let pad = "s".repeat(1000);
    let n = 3000u64;
    for i in 0..n {
        d.submit(Arc::new(doc(&run, i, &pad)));
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(
        wait_for(Duration::from_secs(15), || got.lock().unwrap().len() as u64
            >= n)
        .await,
        "{:?}",
        d.stats()
    );
    let s = d.stats();
    assert!(
        s.sinks[0].spooled > 0,
        "a slow sink spills to the spool: {s:?}"
    );
    assert_eq!(s.sinks[0].dropped, 0);
    assert_in_order(&got.lock().unwrap(), 0..n, "slow collector");
    d.shutdown(Duration::from_secs(2)).await;
    reader.abort();
}
