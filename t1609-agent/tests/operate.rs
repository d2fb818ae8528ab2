//! Operating the agent: metrics and health endpoints, SIGHUP reload without a capture
//! gap, config check.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use common::*;

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn metrics_and_health_endpoints() {
    if !privileged_or_skip("metrics_and_health_endpoints") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&[]);
    let addr = agent.metrics_addr();
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    let (code, body) = http_get(&addr, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(
        Command::new(&docker)
            .args(["exec", "-it", "metrics-c", "sh"])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(1500)); // the snapshot refreshes every second
    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing from:\n{text}"))
    };
    assert!(value("t1609_events_captured_total") >= 1);
    assert!(value("t1609_alerts_total{rule=\"t1609.container_exec\"}") >= 1);
    assert_eq!(value("t1609_ringbuf_lost_events_total"), 0);
    assert!(
        text.contains("t1609_bpf_program_run_count_total{program=\"sched_process_exec\"}"),
        "{text}"
    );
    assert!(text.contains("t1609_sink_queue_depth{sink="), "{text}");
    assert!(value("t1609_process_table_entries") > 0);
    assert_eq!(http_get(&addr, "/nope").0, 404);
    agent.stop();
}

#[test]
fn sighup_reloads_watch_set_in_place_without_gap_and_rejects_bad_config() {
    if !privileged_or_skip("sighup_reloads_watch_set_in_place_without_gap_and_rejects_bad_config") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let docker = fake_tool(dir.path(), "docker");
    let newtool = fake_tool(dir.path(), "t1609-newtool");
    let mut agent = Agent::start(&["--record", record.to_str().unwrap()]);
    let config = agent.dir.path().join("config.toml");
    let base = std::fs::read_to_string(&config).unwrap();

    // Before: not watched.
    assert!(
        Command::new(&newtool)
            .arg("before")
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        &config,
        format!("{base}\n[capture]\nextra_watch = [\"t1609-newtool\"]\n"),
    )
    .unwrap();
    // Execs of a watched binary straddle the reload: none may be missed.
    let mut pids = Vec::new();
    for i in 0..300 {
        if i == 100 {
            agent.signal(libc::SIGHUP);
        }
        let mut c = Command::new(&docker)
            .args(["exec", "-it", &format!("reload-{i}"), "sh"])
            .spawn()
            .unwrap();
        pids.push(c.id());
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Command::new(&newtool)
            .arg("after")
            .status()
            .unwrap()
            .success()
    );

    // A broken config is rejected; the agent keeps running with the previous one.
    std::fs::write(
        &config,
        format!("{base}\n[capture]\nextra_watch = [\"t1609-newtool\"]\nbogus_key = 1\n"),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Command::new(&newtool)
            .arg("after-bad")
            .status()
            .unwrap()
            .success()
    );
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "agent must survive a bad reload"
    );
    let (_, log) = agent.stop();
    assert!(
        log.iter().any(|l| l.contains("reloaded config and rules")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("reload rejected") && l.contains("bogus_key")),
        "{log:#?}"
    );

    let recs = read_records(&record);
    let newtool_args: Vec<String> = records_for(&recs, &newtool)
        .iter()
        .map(|r| str_args(r)[1].clone())
        .collect();
    assert_eq!(
        newtool_args,
        ["after", "after-bad"],
        "watched only after the reload, and still after the bad one"
    );
    let seen: std::collections::BTreeSet<u64> = records_for(&recs, &docker)
        .iter()
        .filter_map(|r| get(r, "process.pid").as_u64())
        .collect();
    let missing: Vec<_> = pids
        .iter()
        .filter(|p| !seen.contains(&u64::from(**p)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} execs missed around the reload",
        missing.len()
    );
}

#[test]
fn config_check_accepts_good_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[capture]\nmode = \"rules\"\n[deliver]\nsinks = [\"stdout\"]\n[metrics]\nlisten = \"127.0.0.1:9609\"\n").unwrap();
    output_ok(Command::new(agent_bin()).args(["config", "check", good.to_str().unwrap()]));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[capture]\nmode = \"rules\"\n\n[network]\nports = [10250, 99999]\n",
    )
    .unwrap();
    let out = Command::new(agent_bin())
        .args(["config", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5:"), "{err}");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config.example.toml");
    let out = Command::new(agent_bin())
        .args(["config", "check", example.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the shipped example must validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn capabilities_are_dropped_after_attach_and_capture_goes_on() {
    const SYS_ADMIN: u64 = 1 << 21;
    const PERFMON: u64 = 1 << 38;
    const BPF: u64 = 1 << 39;
    const SYS_PTRACE: u64 = 1 << 19;
    if !privileged_or_skip("capabilities_are_dropped_after_attach_and_capture_goes_on") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let docker = fake_tool(dir.path(), "docker");
    let newtool = fake_tool(dir.path(), "t1609-capstool");
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    let caps = |field: &str| -> u64 {
        let v = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap()
            .trim();
        u64::from_str_radix(v, 16).unwrap()
    };
    for set in ["CapEff:", "CapPrm:"] {
        let c = caps(set);
        assert_eq!(
            c & (SYS_ADMIN | PERFMON | BPF),
            0,
            "{set} {c:#x} still holds load-time capabilities"
        );
        assert_ne!(
            c & SYS_PTRACE,
            0,
            "{set} {c:#x} lost CAP_SYS_PTRACE, needed for /proc/<pid>/exe"
        );
    }
    assert_eq!(caps("CapAmb:"), 0);
    // Still capturing, and a reload (map update through the fd) still works unprivileged.
    assert!(
        Command::new(&docker)
            .args(["exec", "-it", "after-drop", "sh"])
            .status()
            .unwrap()
            .success()
    );
    let config = agent.dir.path().join("config.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{base}\n[capture]\nextra_watch = [\"t1609-capstool\"]\n"),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(800));
    assert!(Command::new(&newtool).arg("x").status().unwrap().success());
    let (_, log) = agent.stop();
    assert!(
        log.iter().any(|l| l.contains("reloaded config and rules")),
        "{log:#?}"
    );
    let recs = read_records(&record);
    assert_eq!(records_for(&recs, &docker).len(), 1);
    assert_eq!(
        records_for(&recs, &newtool).len(),
        1,
        "watch set updated after the drop"
    );
    // The parent's executable was still resolved (CAP_SYS_PTRACE kept).
    assert!(get(records_for(&recs, &docker)[0], "process.parent.executable").is_string());
}

#[test]
fn broken_rules_file_during_sighup_keeps_old_rules() {
    if !privileged_or_skip("broken_rules_file_during_sighup_keeps_old_rules") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.d");
    std::fs::create_dir(&rules).unwrap();
    let rule = |query: &str| {
        format!(
            "[[rule]]\nid = \"local.custom_tool\"\nname = \"custom tool\"\ndescription = \"d\"\nseverity = \"low\"\nconfidence = \"low\"\nrisk_score = 21\ntechniques = [\"T1609\"]\nquery = '''{query}'''\n"
        )
    };
    std::fs::write(
        rules.join("local.toml"),
        rule("process where process.name == \"t1609-custom\""),
    )
    .unwrap();
    let tool = fake_tool(dir.path(), "t1609-custom");
    let agent = Agent::start(&["--rules", rules.to_str().unwrap()]);
    assert!(Command::new(&tool).arg("one").status().unwrap().success());
    // Replace the rules with a broken file, then SIGHUP: rejected, old rules stay.
    std::fs::write(
        rules.join("local.toml"),
        rule("process where process.nmae =="),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(800));
    assert!(Command::new(&tool).arg("two").status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    let (out, log) = agent.stop();
    assert!(
        log.iter().any(|l| l.contains("reload rejected")),
        "{log:#?}"
    );
    let alerts = parse_alerts(&out);
    let hits: Vec<String> = alerts_of(&alerts, "local.custom_tool")
        .iter()
        .map(|a| str_args(a)[1].clone())
        .collect();
    assert_eq!(
        hits,
        ["one", "two"],
        "the custom rule and its watch entry survive a broken reload"
    );
}

#[test]
fn audit_file_source_alerts_and_correlates_with_kubectl_exec() {
    if !privileged_or_skip("audit_file_source_alerts_and_correlates_with_kubectl_exec") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    std::fs::write(&log_path, "").unwrap();
    let cfg = format!(
        "[audit]\ncorrelation_window_secs = 60\n[audit.file]\npath = {:?}\nstate_file = {:?}\nstart_at = \"beginning\"\n",
        log_path.to_str().unwrap(),
        dir.path().join("audit.state").to_str().unwrap()
    );
    let kubectl = fake_tool(dir.path(), "kubectl");
    let agent = Agent::start_with_config(&cfg, &[]);
    assert!(
        Command::new(&kubectl)
            .args(["exec", "-it", "atomic-exec-test", "--", "/bin/sh"])
            .status()
            .unwrap()
            .success()
    );
    // The API server's entry for it (imitated: built from the audit.k8s.io/v1 schema).
    let event = serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": format!("live-{}", std::process::id()),
        "stage": "ResponseStarted", "verb": "create",
        "requestURI": "/api/v1/namespaces/default/pods/atomic-exec-test/exec?command=%2Fbin%2Fsh&stdin=true&tty=true",
        "user": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.31.0 (linux/amd64) kubernetes/abc",
        "objectRef": {"resource": "pods", "namespace": "default", "name": "atomic-exec-test", "apiVersion": "v1", "subresource": "exec"},
        "responseStatus": {"code": 101},
        "requestReceivedTimestamp": "2026-11-28T10:00:00.100000Z", "stageTimestamp": "2026-11-28T10:00:00.200000Z",
    });
    std::fs::write(&log_path, format!("{event}\n")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (out, _) = agent.stop();
    let alerts = parse_alerts(&out);
    let k8s = alerts_of(&alerts, "t1609.k8s_pod_exec");
    assert_eq!(k8s.len(), 1, "{alerts:#?}");
    let proc_alert = alerts_of(&alerts, "t1609.container_exec")
        .into_iter()
        .find(|a| {
            get(a, "process.command_line")
                .as_str()
                .is_some_and(|c| c.contains("atomic-exec-test"))
        })
        .expect("kubectl exec process alert");
    assert_eq!(
        get(k8s[0], "t1609.group_id"),
        get(proc_alert, "t1609.group_id"),
        "process and audit alerts share a group"
    );
}
