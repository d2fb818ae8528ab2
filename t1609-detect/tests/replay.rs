//! replay: nested and dotted input, bad lines, summary; the record format round-trips.

mod common;

use serde_json::{Value, json};
use t1609_detect::{Engine, EventError, event::ProcessEvent, replay};

fn run(input: &str) -> (t1609_detect::ReplaySummary, String, String) {
    let e = Engine::builtin().expect("builtin");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = replay(&e, input.as_bytes(), &mut out, &mut err);
    (
        s,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[test]
fn record_format_round_trips() {
    let mut ev = common::event(&["kubectl", "exec", "-it", "web-0", "--", "sh"]);
    ev.container_id = Some("abc".into());
    ev.capture.cgroup_id = Some(77);
    ev.capture.tty = Some("pts1".into());
    ev.capture.args_b64 = Some(vec!["a3ViZWN0bA==".into()]);
    let doc = ev.to_ecs();
    assert_eq!(doc["event"]["kind"], "event");
    assert_eq!(doc["event"]["category"], json!(["process"]));
    assert_eq!(doc["event"]["action"], "exec");
    assert_eq!(doc["process"]["args_count"], 6);
    assert_eq!(doc["t1609"]["cgroup_id"], 77);
    assert!(doc["process"].get("missing").is_none());
    // None fields are omitted, never null.
    let empty = ProcessEvent::default().to_ecs();
    assert!(!empty.to_string().contains("null"), "{empty}");
    assert_eq!(ProcessEvent::from_ecs(&doc).expect("parse"), ev);
}

#[test]
fn dotted_and_nested_keys_mix() {
    let v = json!({
        "@timestamp": "2026-11-28T00:00:00Z",
        "process.name": "docker",
        "process": {"args": ["docker", "exec", "-it", "web", "sh"], "parent.name": "bash"},
        "user.id": 0,
        "host": {"hostname": "n1"}
    });
    let ev = ProcessEvent::from_ecs(&v).expect("parse");
    assert_eq!(ev.process.name.as_deref(), Some("docker"));
    assert_eq!(ev.process.args.as_ref().map(Vec::len), Some(5));
    assert_eq!(
        ev.process.parent.as_ref().and_then(|p| p.name.as_deref()),
        Some("bash")
    );
    assert_eq!(ev.user.id.as_deref(), Some("0"));
    assert_eq!(ev.host_hostname.as_deref(), Some("n1"));
    assert_eq!(
        ProcessEvent::from_ecs(&json!({"process": {"pid": "x"}})),
        Err(EventError::Field {
            field: "process.pid".into(),
            expected: "an unsigned integer"
        })
    );
    assert_eq!(
        ProcessEvent::from_ecs(&json!([1])),
        Err(EventError::NotObject)
    );
    let e = ProcessEvent::from_ecs(&json!({"process.args": [1, 2]})).expect_err("bad args");
    assert!(e.to_string().contains("process.args"), "{e}");
}

#[test]
fn replay_writes_alerts_and_reports_bad_lines() {
    let nested = json!({"process": {"name": "docker", "args": ["docker", "exec", "-it", "web", "sh"], "command_line": "docker exec -it web sh", "pid": 10}}).to_string();
    let dotted = json!({"process.name": "kubectl", "process.args": ["kubectl", "exec", "p", "--", "id"], "process.command_line": "kubectl exec p -- id"}).to_string();
    let benign = json!({"process.name": "ls", "process.args": ["ls"]}).to_string();
    let input =
        format!("{nested}\nnot json\n\n{dotted}\n{{\"process\": {{\"pid\": -1}}}}\n{benign}\n");
    let (s, out, err) = run(&input);
    assert_eq!(s.lines, 6);
    assert_eq!(s.bad_lines, 2);
    assert!(err.contains("line 2: invalid JSON"), "{err}");
    assert!(err.contains("line 5: field `process.pid`"), "{err}");
    let alerts: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert json"))
        .collect();
    assert_eq!(alerts.len() as u64, s.alerts);
    // docker exec: seed + container_exec; kubectl exec: seed + container_exec.
    assert_eq!(s.alerts, 4);
    assert!(alerts.iter().all(|a| a["event"]["kind"] == "alert"));
    assert!(alerts.iter().any(|a| a["rule"]["id"] == "t1609.container_exec" && a["process"]["name"] == "kubectl"));
}

#[test]
fn missing_fields_are_absent_not_matching() {
    // No process.name and no args: nothing can match.
    let (s, out, _) = run("{\"process\": {\"command_line\": \"docker exec -it web sh\"}}\n");
    assert_eq!((s.bad_lines, s.alerts), (0, 0));
    assert!(out.is_empty());
    // Name from argv[0] when process.name is absent.
    let (s, _, _) =
        run("{\"process\": {\"args\": [\"/usr/bin/docker\", \"exec\", \"web\", \"id\"]}}\n");
    assert!(s.alerts >= 1);
}

#[test]
fn hostile_input_never_panics() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"process.name\": \"docker\", \"process.args\": [\"docker\", \"exec\", \"-it\\n\\u0000\", \"w\\u001b[31m\", \"sh\"]}\n");
    input.extend_from_slice(
        b"{\"process.name\": \"do\xffcker\", \"process.args\": [\"\xfe\xff\", \"exec\"]}\n",
    );
    input.extend_from_slice(&b"[".repeat(5000));
    input.push(b'\n');
    let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    input.extend_from_slice(deep.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(b"\xff\xfe\n");
    let e = Engine::builtin().expect("builtin");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = replay(&e, &input[..], &mut out, &mut err);
    assert_eq!(s.lines, 5);
    assert!(s.bad_lines >= 2);
    assert!(s.alerts >= 1);
}
