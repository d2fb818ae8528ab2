//! The line sinks: file rotation and stdout, one whole JSON document per line whatever
//! the alert holds.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use serde_json::{Value, json};
use t1609_deliver::{DeliverConfig, Dispatcher};

/// Entry point of the child processes this binary starts (see `common::spawn_child`).
#[test]
fn child_main() {
    common::child_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotates_and_hostile_json_stays_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.json");
    let mut c: DeliverConfig = cfg(
        &dir.path().join("spool"),
        &[&format!("file:{}", path.display())],
    );
    c.file_max_bytes = 16 * 1024;
    c.file_keep = 3;
    let d = Dispatcher::start(c).await.unwrap();
    let run = run_id("file");
    let mut sent = Vec::new();
    for i in 0..120u64 {
        let mut v = doc(&run, i, &format!("{}{}", hostile_cmd(), "z".repeat(200)));
        v["user"]["name"] = json!("\u{0}\n{\"event\":{\"id\":\"forged\"}}\n");
        d.submit(Arc::new(v.clone()));
        sent.push(v);
    }
    d.shutdown(Duration::from_secs(3)).await;
    let mut files = vec![path.clone()];
    for k in 1..=4 {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{k}"));
        files.push(p.into());
    }
    assert!(files[3].exists(), "rotated files kept");
    assert!(!files[4].exists(), "only file_keep rotated files kept");
    let mut got = Vec::new();
    for f in files[..4].iter().rev() {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() as u64 <= 16 * 1024);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            got.push(serde_json::from_str::<Value>(line).expect("each line is one whole alert"));
        }
    }
    // The newest alerts, in order, exactly as submitted.
    let k = got.len();
    assert!(k > 20);
    assert_eq!(got, sent[sent.len() - k..]);
}

#[test]
fn stdout_sink_writes_one_json_line_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("stdout");
    let out = child_command(&format!("stdout|{}|{run}", dir.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a whole alert per line"))
        .collect();
    let seqs: Vec<u64> = docs.iter().map(|v| seq_of(v).unwrap()).collect();
    assert_in_order(&seqs, 0..50, "stdout");
    assert_eq!(docs[0]["process"]["command_line"], hostile_cmd());
}
