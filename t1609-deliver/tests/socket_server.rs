//! The socket-server sink: subscribers that keep up, one that stops reading, and the spool
//! replayed to the first subscriber.

mod common;

use std::{os::unix::fs::PermissionsExt, sync::Arc, time::Duration};

use common::*;
use serde_json::Value;
use t1609_deliver::Dispatcher;
use tokio::{io::AsyncBufReadExt, net::UnixStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_server_slow_subscriber_is_cut_others_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.sock");
    let mut c = cfg(
        &dir.path().join("spool"),
        &[&format!("socket-server:{}", path.display())],
    );
    c.subscriber_queue_len = 1024;
    c.queue_len = 8192;
    c.socket_group = Some("daemon".into());
    let d = Dispatcher::start(c).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let daemon_gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("daemon:x:")
                .and_then(|r| r.split(':').next()?.parse::<u32>().ok())
        })
        .expect("group daemon exists");
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), daemon_gid);

    let fast = UnixStream::connect(&path).await.unwrap();
    let slow = UnixStream::connect(&path).await.unwrap();
    assert!(wait_for(T, || d.stats().sinks[0].subscribers == 2).await);
    let fast_task = tokio::spawn(async move {
        // Only collect here (cheap); parse afterwards.
        let mut lines = tokio::io::BufReader::new(fast).lines();
        let mut raw = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            raw.push(l);
            if raw.len() == 6000 {
                break;
            }
        }
        raw.iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("fast subscriber was cut mid-line");
                seq_of(&v).unwrap()
            })
            .collect::<Vec<u64>>()
    });
    // The slow subscriber reads 10 lines, then stops reading.
    let mut slow = tokio::io::BufReader::new(slow);
    let mut slow_seqs = Vec::new();
    let run = run_id("srv");
    let pad = "x".repeat(1000);
    for i in 0..6000u64 {
        d.submit(Arc::new(doc(&run, i, &pad)));
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i == 20 {
            for _ in 0..10 {
                let mut l = String::new();
                slow.read_line(&mut l).await.unwrap();
                slow_seqs.push(seq_of(&serde_json::from_str(&l).unwrap()).unwrap());
            }
        }
    }
    let fast_seqs = tokio::time::timeout(T, fast_task)
        .await
        .expect("fast subscriber got everything")
        .unwrap();
    assert_in_order(&fast_seqs, 0..6000, "fast subscriber");
    let s = d.stats();
    assert_eq!(s.sinks[0].subscribers_disconnected, 1, "{s:?}");
    assert_eq!(s.sinks[0].subscribers, 1);
    assert_eq!(s.sinks[0].dropped, 0);
    // What the slow one got before being cut is an in-order prefix.
    let mut rest = Vec::new();
    tokio::time::timeout(
        T,
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut rest),
    )
    .await
    .expect("slow subscriber was disconnected")
    .ok();
    for l in rest.split(|&b| b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<Value>(l) {
            slow_seqs.push(seq_of(&v).unwrap());
        }
    }
    assert!(slow_seqs.len() < 6000, "slow subscriber was not cut");
    assert_in_order(&slow_seqs, 0..slow_seqs.len() as u64, "slow subscriber");
    d.shutdown(Duration::from_secs(2)).await;
    assert!(!path.exists(), "socket removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_server_replays_spool_to_first_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.sock");
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("socket-server:{}", path.display())],
    ))
    .await
    .unwrap();
    let run = run_id("replay");
    for i in 0..100 {
        d.submit(Arc::new(doc(&run, i, "crictl exec -it x sh")));
    }
    assert!(
        wait_for(T, || d.stats().sinks[0].spooled == 100).await,
        "{:?}",
        d.stats()
    );
    let s = UnixStream::connect(&path).await.unwrap();
    let mut lines = tokio::io::BufReader::new(s).lines();
    for i in 100..150 {
        d.submit(Arc::new(doc(&run, i, "crictl exec -it x sh")));
    }
    for want in 0..150 {
        let l = tokio::time::timeout(T, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(seq_of(&serde_json::from_str(&l).unwrap()), Some(want));
    }
    d.shutdown(Duration::from_secs(2)).await;
}
