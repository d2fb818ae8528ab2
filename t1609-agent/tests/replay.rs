//! `t1609-agent replay`: recorded process events and Kubernetes audit events, offline,
//! through the same engines as live mode. No privilege needed.

use std::process::Command;

use serde_json::{Value, json};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_t1609-agent"))
}

#[test]
fn replay_mixes_process_and_audit_events_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let process = json!({
        "@timestamp": "2026-11-28T10:00:00Z",
        "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "exec", "id": "e1"},
        "process": {"pid": 42, "name": "kubectl", "executable": "/usr/bin/kubectl",
                    "args": ["kubectl", "exec", "-it", "atomic-exec-test", "--", "/bin/sh"], "args_count": 6,
                    "command_line": "kubectl exec -it atomic-exec-test -- /bin/sh"},
        "user": {"id": "1000", "name": "dev"},
    });
    // The audit entry Atomic Red Team T1609 test 2 expects (API server imitated: built
    // from the documented audit.k8s.io/v1 Event schema).
    let audit = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": "0f2c7d7e-1",
        "stage": "ResponseStarted", "verb": "create",
        "requestURI": "/api/v1/namespaces/default/pods/atomic-exec-test/exec?command=%2Fbin%2Fsh&container=atomic&stdin=true&tty=true",
        "user": {"username": "dev", "groups": ["system:authenticated"]}, "sourceIPs": ["10.0.0.5"],
        "userAgent": "kubectl/v1.31.0 (linux/amd64) kubernetes/abc",
        "objectRef": {"resource": "pods", "namespace": "default", "name": "atomic-exec-test", "apiVersion": "v1", "subresource": "exec"},
        "responseStatus": {"code": 101},
        "requestReceivedTimestamp": "2026-11-28T10:00:00.100000Z", "stageTimestamp": "2026-11-28T10:00:00.200000Z",
    });
    let text = format!("{process}\n{{not json\n{audit}\n");
    std::fs::write(&input, text).unwrap();
    let out = agent()
        .args(["replay", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a bad line makes the exit status non-zero"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains('2'), "the bad line is named by number: {err}");
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rules: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["rule"]["id"].as_str())
        .collect();
    assert!(rules.contains(&"t1609.container_exec"), "{rules:?}");
    assert!(rules.contains(&"t1609.k8s_pod_exec"), "{rules:?}");
    let k8s = alerts
        .iter()
        .find(|a| a["rule"]["id"] == "t1609.k8s_pod_exec")
        .unwrap();
    assert_eq!(k8s["orchestrator"]["resource"]["name"], "atomic-exec-test");
}

#[test]
fn rules_check_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"x.bad\"\nname = \"bad\"\ndescription = \"d\"\nseverity = \"high\"\nconfidence = \"low\"\nrisk_score = 50\ntechniques = [\"T1609\"]\nquery = '''process where process.nmae == \"docker\"'''\n",
    )
    .unwrap();
    let out = agent()
        .args(["rules", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("process.nmae"),
        "{err}"
    );
    let out = agent().args(["rules", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "the built-in pack is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exec_event(ts: &str, id: &str, args: &[&str]) -> Value {
    json!({
        "@timestamp": ts,
        "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "exec", "id": id},
        "process": {"pid": 7, "name": args[0], "executable": format!("/usr/bin/{}", args[0]), "args": args,
                    "args_count": args.len(), "command_line": args.join(" "),
                    "parent": {"pid": 6, "name": "bash", "executable": "/usr/bin/bash"}},
        "user": {"id": "1000", "name": "alice"}, "group": {"id": "1000", "name": "devops"},
        "t1609": {"ancestry": [{"pid": 6, "name": "bash", "executable": "/usr/bin/bash"}]},
    })
}

#[test]
fn replay_applies_business_hours_exception_at_event_time_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"
[context]
dedup_window_ms = 60000
[[exceptions]]
name = "devops-business-hours"
rule_id = "t1609.container_exec"
group = "devops"
time_window = { days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "18:00", tz = "Europe/Paris" }
action = "suppress"
"#,
    )
    .unwrap();
    let input = dir.path().join("events.jsonl");
    // Wednesday 2026-11-25: 10:00 Paris (09:00Z) is inside the window, 03:00 Paris is not.
    let mut lines = vec![
        exec_event(
            "2026-11-25T09:00:00Z",
            "day",
            &["kubectl", "exec", "-it", "pod-day", "--", "sh"],
        )
        .to_string(),
        exec_event(
            "2026-11-25T02:00:00Z",
            "night",
            &["kubectl", "exec", "-it", "pod-night", "--", "sh"],
        )
        .to_string(),
    ];
    for i in 0..5 {
        lines.push(
            exec_event(
                &format!("2026-11-25T02:00:0{i}Z"),
                &format!("burst{i}"),
                &["kubectl", "exec", "-it", "pod-burst", "--", "sh"],
            )
            .to_string(),
        );
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = agent()
        .args([
            "replay",
            input.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exec: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "t1609.container_exec")
        .collect();
    let pods: Vec<&str> = exec
        .iter()
        .filter_map(|a| a["process"]["command_line"].as_str())
        .collect();
    assert!(
        !pods.iter().any(|c| c.contains("pod-day")),
        "10:00 on a weekday is suppressed: {pods:?}"
    );
    assert!(
        pods.iter().any(|c| c.contains("pod-night")),
        "03:00 is not: {pods:?}"
    );
    let burst: Vec<&&Value> = exec
        .iter()
        .filter(|a| {
            a["process"]["command_line"]
                .as_str()
                .is_some_and(|c| c.contains("pod-burst"))
        })
        .collect();
    assert_eq!(
        burst.len(),
        2,
        "one alert plus one repeat summary: {burst:#?}"
    );
    assert_eq!(burst[1]["t1609"]["repeat_count"], 5);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("suppressed by exceptions") && !err.contains(" 0 suppressed"),
        "{err}"
    );
}
