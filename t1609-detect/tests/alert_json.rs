//! Alert JSON: `Alert::write_json` (the fast path), `Alert::to_ecs` and the `Serialize`
//! impl (the definition) produce the same document for every corpus event, and the
//! documents match the golden output recorded before the serialization fast path was
//! reworked (tests/corpus/alerts.golden.jsonl).
//!
//! Volatile values (each alert's own `event.id` and the detection time `event.created`,
//! which is also `@timestamp` when the exec's time is unknown) are replaced by `<ID>` and
//! `<CREATED>` in the golden file. Set `T1609_WRITE_GOLDEN=1` to rewrite it.

mod common;

use serde_json::Value;
use t1609_detect::{Engine, event::ProcessEvent};

/// Corpus events, with variants spread over the lines so every serialised field shape
/// (capture info, container id, missing timestamp/parent/name, hostile bytes) appears.
fn events() -> Vec<ProcessEvent> {
    let text = include_str!("corpus/commands.jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).expect("corpus line");
        let mut ev = common::corpus_event(&v);
        match i % 7 {
            1 => {
                let c = &mut ev.capture;
                c.cgroup_id = Some(1_234_567_890_123);
                c.pid_ns = Some(4_026_531_836);
                c.mnt_ns = Some(4_026_531_841);
                c.tgid = Some(4242);
                c.euid = Some(0);
                c.egid = Some(0);
                c.loginuid = Some(1000);
                c.tty = Some("pts3".into());
                c.argv_total_len = Some(4096);
                c.argv_incomplete = true;
                c.args_b64 = Some(vec!["ZG9ja2Vy".into(), "/w==".into()]);
                c.executable_b64 = Some("L3Vzci9iaW4vZG9ja2Vy".into());
                ev.container_id = Some("4f2a9c".into());
            }
            2 => {
                ev.timestamp = None;
                ev.event_id = None;
            }
            3 => {
                ev.process.parent = None;
                ev.host_hostname = None;
                ev.user = t1609_detect::event::Identity::default();
            }
            4 => {
                ev.process.command_line = ev
                    .process
                    .command_line
                    .map(|c| format!("{c} \"q\"\\\u{1}\té"));
                ev.process.working_directory = Some("/tmp/\u{7f}\u{2028}\"x\"".into());
            }
            _ => {}
        }
        out.push(ev);
    }
    // Hostile bytes inside argv (they reach the parsed argv fields too).
    for argv in [
        &["docker", "exec", "-it", "we\nb\u{0}", "sh\u{1b}"][..],
        &[
            "kubectl",
            "exec",
            "-n",
            "ns\"x",
            "p\\od",
            "--",
            "/bin/sh",
            "-c",
            "id;\u{2028}",
        ],
        &[
            "nsenter",
            "-t",
            "1",
            "-m",
            "-p",
            "--",
            "sh",
            "-c",
            "é\u{10ffff}",
        ],
    ] {
        out.push(common::event(argv));
    }
    out
}

fn normalise(doc: &str, id: &str, created: &str) -> String {
    doc.replace(id, "<ID>").replace(created, "<CREATED>")
}

#[test]
fn write_json_and_to_ecs_agree_and_match_golden() {
    let e = Engine::builtin().expect("builtin");
    let mut dump = String::new();
    let mut n = 0usize;
    for ev in events() {
        for a in e.evaluate(&ev) {
            let mut buf = Vec::new();
            a.write_json(&mut buf).expect("write_json");
            let fast: Value = serde_json::from_slice(&buf).expect("write_json output is JSON");
            let serde = serde_json::to_value(&a).expect("Serialize");
            assert_eq!(
                fast, serde,
                "write_json and Serialize differ for {:?}",
                ev.process.args
            );
            assert_eq!(
                a.to_ecs(),
                serde,
                "to_ecs and Serialize differ for {:?}",
                ev.process.args
            );
            // The compact serde_json text too, byte for byte.
            assert_eq!(
                buf,
                serde_json::to_vec(&a).expect("Serialize"),
                "write_json and serde_json::to_vec differ for {:?}",
                ev.process.args
            );
            let text = String::from_utf8(buf).expect("utf-8");
            dump.push_str(&normalise(&text, &a.event_id, &a.created));
            dump.push('\n');
            n += 1;
        }
    }
    assert!(n > 300, "only {n} alerts");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/alerts.golden.jsonl"
    );
    if std::env::var_os("T1609_WRITE_GOLDEN").is_some() {
        std::fs::write(path, &dump).expect("write golden");
        return;
    }
    let golden = std::fs::read_to_string(path).expect("golden file");
    if golden != dump {
        let got = std::env::temp_dir().join("t1609-alerts.got.jsonl");
        let _ = std::fs::write(&got, &dump);
        let first = golden
            .lines()
            .zip(dump.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(golden.lines().count().min(dump.lines().count()));
        panic!(
            "alert JSON changed (first differing line {}; output in {})",
            first + 1,
            got.display()
        );
    }
}
