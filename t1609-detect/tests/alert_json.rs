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

/// An event with every field of Elastic Defend's process events, some of them hostile,
/// in every shape (present, absent, negative exit code, leaders without some fields).
fn full_events() -> Vec<ProcessEvent> {
    use t1609_detect::event::{Creds, EventType, HostOs, Identity, RelatedProcess, Tty};
    let id = |i: &str, n: Option<&str>| Identity {
        id: Some(i.into()),
        name: n.map(Into::into),
    };
    let related = |name: &str, meta: Option<&str>| RelatedProcess {
        pid: Some(77),
        name: Some(name.into()),
        executable: Some(format!("/usr/sbin/{name}")),
        args: Some(vec![name.into(), "-D\"\n".into()]),
        command_line: Some(format!("{name} -D")),
        args_count: Some(2),
        working_directory: Some("/".into()),
        interactive: Some(false),
        creds: Creds {
            user: id("0", Some("root")),
            real_user: id("1000", None),
            group: id("0", None),
            real_group: Identity::default(),
        },
        same_as_process: Some(false),
        entry_meta_type: meta.map(Into::into),
    };
    let mut base = common::event(&["docker", "exec", "-it", "web", "sh"]);
    base.host_os = HostOs {
        kind: Some("linux".into()),
        name: Some("Debian GNU/Linux \u{1}".into()),
        kernel: Some("6.1.0-18-amd64".into()),
    };
    base.container_id = Some("4f2a".into());
    base.container_privileged = Some(true);
    let p = &mut base.process;
    p.interactive = Some(true);
    p.tty = Tty {
        char_device_major: Some(136),
        char_device_minor: Some(4),
    };
    p.creds = related("x", None).creds;
    p.env_vars = Some(vec!["LD_PRELOAD=/tmp/\"x\".so".into(), "HISTFILE=".into()]);
    p.entry_leader = Some(Box::new(related("sshd", Some("sshd"))));
    p.session_leader = Some(Box::new(related("bash", None)));
    p.group_leader = Some(Box::new(RelatedProcess {
        pid: Some(5),
        ..Default::default()
    }));
    if let Some(pp) = p.parent.as_deref_mut() {
        pp.args_count = Some(1);
        pp.interactive = Some(true);
        pp.creds.user = id("1000", Some("alice"));
    }
    let mut exit = base.clone();
    exit.event_type = EventType::End;
    exit.process.exit_code = Some(-9);
    let mut other = base.clone();
    other.event_action = Some("executed".into());
    other.container_privileged = Some(false);
    other.container_id = None;
    other.host_hostname = None;
    vec![base, exit, other]
}

/// Both writers agree byte for byte on the fields of Defend's process events, and a
/// recorded event reads back as it was written.
#[test]
fn every_event_field_is_written_alike_and_reads_back() {
    let e = Engine::builtin().expect("builtin");
    let mut n = 0;
    for ev in full_events() {
        let back = ProcessEvent::from_ecs(&ev.to_ecs()).expect("reads back");
        assert_eq!(back, ev);
        for a in e.evaluate(&ev) {
            let mut buf = Vec::new();
            a.write_json(&mut buf).expect("write_json");
            assert_eq!(
                String::from_utf8(buf).expect("utf-8"),
                String::from_utf8(serde_json::to_vec(&a).expect("Serialize")).expect("utf-8")
            );
            let doc = a.to_ecs();
            assert_eq!(doc["event"]["type"][0], ev.event_type.as_str());
            assert_eq!(doc["process"]["entry_leader"]["entry_meta"]["type"], "sshd");
            n += 1;
        }
    }
    assert!(n >= 3, "{n}");
}
