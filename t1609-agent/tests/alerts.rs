//! End to end through the live kernel path: exec → rules → context → sinks.
//! Needs root; journald and dockerd are started by `scripts/services.sh`.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// journalctl prints a field that is not plain text (newlines, escapes) as an array of
/// byte values; turn those back into strings.
fn text_fields(mut e: Value) -> Value {
    if let Some(obj) = e.as_object_mut() {
        for v in obj.values_mut() {
            if let Some(bytes) = v.as_array().filter(|a| a.iter().all(Value::is_u64)) {
                let raw: Vec<u8> = bytes
                    .iter()
                    .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect();
                *v = Value::String(String::from_utf8_lossy(&raw).into_owned());
            }
        }
    }
    e
}

fn journal_entries(filter: &str, marker: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("journalctl")
            .args(["-o", "json", "--all", "--no-pager", filter])
            .output()
            .unwrap();
        let found: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(text_fields)
            .filter(|e| {
                e["T1609_COMMAND_LINE"]
                    .as_str()
                    .is_some_and(|c| c.contains(marker))
            })
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn docker_exec_alert_reaches_journald_with_every_field() {
    if !privileged_or_skip("docker_exec_alert_reaches_journald_with_every_field")
        || !services("journald")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&["--output", "journald", "--output", "stdout"]);
    let marker = format!("c1-{}", std::process::id());
    run_ok(Command::new(&docker).args(["exec", "-it", &marker, "/bin/sh"]));
    let (out, _) = agent.stop();
    let alerts = parse_alerts(&out);
    assert!(
        !alerts_of(&alerts, "t1609.container_admin_command").is_empty(),
        "{out:#?}"
    );

    let entries = journal_entries("T1609_RULE_ID=t1609.container_admin_command", &marker);
    assert_eq!(entries.len(), 1, "exactly one journal entry for the exec");
    let e = &entries[0];
    for field in [
        "MESSAGE",
        "PRIORITY",
        "SYSLOG_IDENTIFIER",
        "MESSAGE_ID",
        "T1609_RULE_ID",
        "T1609_SEVERITY",
        "T1609_RISK_SCORE",
        "T1609_PROCESS_PID",
        "T1609_PROCESS_EXECUTABLE",
        "T1609_COMMAND_LINE",
        "T1609_USER",
        "T1609_EVENT_ID",
        "T1609_ECS",
    ] {
        assert!(e.get(field).is_some(), "journal entry lacks {field}: {e:#}");
    }
    assert_eq!(e["SYSLOG_IDENTIFIER"], "t1609-agent");
    assert_eq!(e["T1609_SEVERITY"], "high");
    assert_eq!(
        e["PRIORITY"], "3",
        "high maps to err (t1609-deliver/README.md)"
    );
    assert_eq!(e["T1609_PROCESS_EXECUTABLE"], docker.to_str().unwrap());
    let ecs: Value = serde_json::from_str(e["T1609_ECS"].as_str().unwrap()).unwrap();
    assert_eq!(get(&ecs, "rule.id"), "t1609.container_admin_command");
    assert_eq!(get(&ecs, "event.kind"), "alert");
    assert_eq!(get(&ecs, "threat.technique.id")[0], "T1609");
}

#[test]
fn hostile_argv_cannot_forge_journal_fields_or_split_json() {
    if !privileged_or_skip("hostile_argv_cannot_forge_journal_fields_or_split_json")
        || !services("journald")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&["--output", "journald", "--output", "stdout"]);
    let marker = format!("hostile-{}", std::process::id());
    run_ok(Command::new(&docker).args([
        "exec",
        "-it",
        &marker,
        "sh\nPRIORITY=0\nT1609_RULE_ID=forged\nSYSLOG_IDENTIFIER=sshd",
        "\x1b[2J\x1b[31mred",
        &"P".repeat(20_000),
    ]));
    let (out, _) = agent.stop();
    // Every stdout line parsed as one JSON document (parse_alerts panics otherwise).
    let alerts = parse_alerts(&out);
    let mine: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            get(a, "process.command_line")
                .as_str()
                .is_some_and(|c| c.contains(&marker))
        })
        .collect();
    assert!(!mine.is_empty());
    assert!(
        get(mine[0], "process.command_line")
            .as_str()
            .unwrap()
            .contains("\nPRIORITY=0\n"),
        "newlines kept in JSON"
    );

    let entries = journal_entries("SYSLOG_IDENTIFIER=t1609-agent", &marker);
    assert!(!entries.is_empty());
    for e in &entries {
        assert_ne!(e["PRIORITY"], "0", "PRIORITY forged");
        assert_ne!(e["T1609_RULE_ID"], "forged", "rule id forged");
        assert_eq!(e["SYSLOG_IDENTIFIER"], "t1609-agent");
        assert!(
            !e["MESSAGE"].as_str().unwrap_or("\n").contains('\n'),
            "MESSAGE is one line"
        );
        assert!(
            !e["MESSAGE"].as_str().unwrap_or("\x1b").contains('\x1b'),
            "no raw escape in MESSAGE"
        );
        let ecs: Value = serde_json::from_str(e["T1609_ECS"].as_str().unwrap()).unwrap();
        assert!(
            get(&ecs, "process.command_line")
                .as_str()
                .unwrap()
                .contains("\x1b[2J"),
            "exact bytes kept in T1609_ECS"
        );
    }
    assert!(entries.iter().all(|e| e["T1609_RULE_ID"] != "forged"));
}

#[test]
fn real_docker_exec_carries_ancestry_target_and_session_commands() {
    if !privileged_or_skip("real_docker_exec_carries_ancestry_target_and_session_commands")
        || !services("docker")
    {
        return;
    }
    let name = format!("t1609-c1-{}", std::process::id());
    let id = docker_container(&name);
    let agent = Agent::start(&[]);
    // `/bin/id` with a path: busybox's shell would otherwise run `id` in-process (no exec).
    run_ok(Command::new("docker").args([
        "exec",
        "-i",
        &name,
        "/bin/sh",
        "-c",
        "/bin/id; cat /etc/hostname",
    ]));
    // A command inside the container, not through an exec: carries the container's id.
    std::thread::sleep(Duration::from_millis(500));
    let (out, _) = agent.stop();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    let alerts = parse_alerts(&out);
    // Parallel tests' execs reach this agent too: keep this container's.
    let mine = |a: &&Value| {
        get(a, "process.command_line")
            .as_str()
            .is_some_and(|c| c.contains(&name))
    };

    let exec: Vec<_> = alerts_of(&alerts, "t1609.container_exec")
        .into_iter()
        .filter(mine)
        .collect();
    assert_eq!(exec.len(), 1, "one exec alert: {alerts:#?}");
    let exec = exec[0];
    assert_eq!(
        get(exec, "t1609.target.container.id"),
        id.as_str(),
        "target resolved to the full id"
    );
    assert_eq!(get(exec, "t1609.target.resolved"), true);
    assert_eq!(
        get(exec, "process.parent.pid"),
        std::process::id(),
        "docker client's parent is this test"
    );
    let ancestry = get(exec, "t1609.ancestry").as_array().unwrap();
    assert!(
        !ancestry.is_empty() && ancestry[0]["pid"] == std::process::id(),
        "{ancestry:?}"
    );
    assert_eq!(get(exec, "t1609.in_container"), false);

    let sessions: Vec<_> = alerts_of(&alerts, "t1609.injected_session")
        .into_iter()
        .filter(|a| get(a, "t1609.group_id") == get(exec, "t1609.group_id"))
        .collect();
    assert_eq!(sessions.len(), 1, "{alerts:#?}");
    let s = sessions[0];
    assert_eq!(
        get(s, "t1609.group_id"),
        get(exec, "t1609.group_id"),
        "session alert shares the exec alert's group"
    );
    let cmds: Vec<&str> = get(s, "t1609.session.commands")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(cmds.iter().any(|c| c.starts_with("/bin/id")), "{cmds:?}");
    assert!(cmds.iter().any(|c| c.starts_with("cat ")), "{cmds:?}");
    let injected = get(s, "t1609.session.injected");
    assert_eq!(
        injected["container_id"],
        id.as_str(),
        "the injected process runs in the target container"
    );
    // The runc exec that containerd-shim ran for it is folded, not a second alert.
    assert!(
        alerts.iter().all(|a| get(a, "process.name") != "runc"
            || !get(a, "process.command_line")
                .as_str()
                .is_some_and(|c| c.contains(&id))),
        "runc exec must be folded into the session: {alerts:#?}"
    );
}

#[test]
fn command_inside_container_carries_its_id_and_in_container_flag() {
    if !privileged_or_skip("command_inside_container_carries_its_id_and_in_container_flag")
        || !services("docker")
    {
        return;
    }
    let name = format!("t1609-c2-{}", std::process::id());
    let id = docker_container(&name);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let agent = Agent::start(&["--capture", "all", "--record", record.to_str().unwrap()]);
    run_ok(Command::new("docker").args([
        "exec",
        &name,
        "/bin/sh",
        "-c",
        "/bin/echo inside-marker",
    ]));
    agent.stop();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    let recs = read_records(&record);
    let echo = recs
        .iter()
        .find(|r| {
            str_args(r).iter().any(|a| a == "inside-marker") && get(r, "process.name") == "echo"
        })
        .expect("the echo inside the container is captured");
    assert_eq!(get(echo, "container.id"), id.as_str());
    assert_eq!(get(echo, "t1609.in_container"), true);
    assert_eq!(get(echo, "container.runtime"), "docker");
}

#[test]
fn gitlab_runner_exception_suppresses_and_counts() {
    if !privileged_or_skip("gitlab_runner_exception_suppresses_and_counts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let runner = dir.path().join("gitlab-runner");
    std::fs::write(
        &runner,
        format!(
            "#!/bin/sh\n{} exec -it build-container sh\n",
            docker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&runner, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exceptions = r#"
[[exceptions]]
name = "CI: GitLab Runner jobs"
rule_id = "*"
ancestor_name = "gitlab-runner"
action = "suppress"
"#;
    let agent = Agent::start_with_config(
        &format!("{exceptions}\n[context]\ndedup_window_ms = 0\n"),
        &[],
    );
    run_ok(&mut Command::new(&runner));
    run_ok(Command::new(&docker).args(["exec", "-it", "not-ci", "sh"]));
    let (out, log) = agent.stop();
    let alerts = parse_alerts(&out);
    let lines: Vec<&str> = alerts
        .iter()
        .filter_map(|a| get(a, "process.command_line").as_str())
        .collect();
    assert!(
        lines.iter().all(|c| !c.contains("build-container")),
        "suppressed: {lines:?}"
    );
    assert!(
        lines.iter().any(|c| c.contains("not-ci")),
        "others still alert: {lines:?}"
    );
    let stopped = stop_line(&log);
    assert!(
        !stopped.contains("suppressed=0"),
        "suppressed hits are counted: {stopped}"
    );
}

#[test]
fn repeat_burst_collapses_with_count() {
    if !privileged_or_skip("repeat_burst_collapses_with_count") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubectl = fake_tool(dir.path(), "kubectl");
    let agent = Agent::start_with_config("[context]\ndedup_window_ms = 1500\n", &[]);
    for _ in 0..20 {
        run_ok(Command::new(&kubectl).args(["exec", "-it", "burst-pod", "--", "sh"]));
    }
    // One argument differs: not a repeat, however close to the burst.
    run_ok(Command::new(&kubectl).args(["exec", "-it", "burst-pod2", "--", "sh"]));
    std::thread::sleep(Duration::from_millis(2500));
    let (out, log) = agent.stop();
    let stopped = stop_line(&log);
    let count = |key: &str| stop_count(stopped, key);
    // The first exec teaches the table its parent's cgroups and directory (from the
    // kernel's css_set and pwd identities), the second records its outcome, the other
    // 18 replay it: no event built, no rules evaluated, the count still exact.
    assert!(count("repeats_replayed") >= 15, "{stopped}");
    assert!(count("cgroup_reads_saved") >= 18, "{stopped}");
    assert!(count("cwd_reads_saved") >= 18, "{stopped}");
    let alerts = parse_alerts(&out);
    let with_pod = |pod: &str| -> Vec<&Value> {
        let needle = format!("exec -it {pod} --");
        alerts_of(&alerts, "t1609.container_exec")
            .into_iter()
            .filter(|a| {
                get(a, "process.command_line")
                    .as_str()
                    .is_some_and(|c| c.contains(&needle))
            })
            .collect()
    };
    let mine = with_pod("burst-pod");
    let firsts: Vec<_> = mine
        .iter()
        .filter(|a| get(a, "t1609.repeat_count").is_null())
        .collect();
    let repeats: Vec<_> = mine
        .iter()
        .filter(|a| !get(a, "t1609.repeat_count").is_null())
        .collect();
    assert_eq!(firsts.len(), 1, "{mine:#?}");
    assert_eq!(repeats.len(), 1, "{mine:#?}");
    assert_eq!(get(repeats[0], "t1609.repeat_count"), 20);
    let other = with_pod("burst-pod2");
    assert_eq!(
        other.len(),
        1,
        "the changed command is its own alert: {other:#?}"
    );
    assert!(get(other[0], "t1609.repeat_count").is_null());
}

/// A flood of distinct alerts must not cost a burst inside it its follow-up. The first
/// alerts kept for follow-ups are bounded (`dedup_kept_alerts`, here 512: 64 whole);
/// past the bound a follow-up is built from a lean copy, then from the dedup key, never
/// dropped. Windows still open when the agent stops get their follow-up then (this one
/// is ten minutes).
#[test]
fn repeat_follow_ups_survive_a_flood_of_distinct_alerts() {
    const DISTINCT: usize = 800;
    if !privileged_or_skip("repeat_follow_ups_survive_a_flood_of_distinct_alerts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubectl = fake_tool(dir.path(), "kubectl");
    let agent = Agent::start_with_config(
        "[context]\ndedup_window_ms = 600000\ndedup_kept_alerts = 512\n",
        &[],
    );
    let run = |target: &str| {
        run_ok(Command::new(&kubectl).args(["exec", "-it", target, "--", "sh"]));
    };
    // Distinct after normalization: the digits touch a letter.
    let distinct = |range: std::ops::Range<usize>| {
        for i in range {
            run(&format!("flood-{i}x"));
        }
    };
    run("flood-early");
    distinct(0..200);
    // Past the 64 whole documents (these 200 took them), within the 512. Other tests'
    // alerts, which every agent sees, have 311 places to spare.
    run("flood-mid");
    distinct(200..DISTINCT);
    // Past the 512.
    run("flood-late");
    for target in ["flood-early", "flood-mid", "flood-late"] {
        run(target);
        run(target);
    }
    // Every window is still open, and what is kept stops at the bound.
    agent.wait_metric("t1609_dedup_first_alerts_kept", 10, |v| v == 512);
    let (out, log) = agent.stop();
    let stopped = stop_line(&log);
    let alerts = parse_alerts(&out);
    let exec = alerts_of(&alerts, "t1609.container_exec");
    let of = |target: &str| -> Vec<&Value> {
        let needle = format!("exec -it {target} --");
        exec.iter()
            .copied()
            .filter(|a| {
                get(a, "process.command_line")
                    .as_str()
                    .is_some_and(|c| c.contains(&needle))
            })
            .collect()
    };
    let missing: Vec<usize> = (0..DISTINCT)
        .filter(|i| of(&format!("flood-{i}x")).len() != 1)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of the distinct commands without exactly one alert, {:?}…: {stopped}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let burst = |target: &str, detail: &str| -> (Value, Value) {
        let got = of(target);
        let (firsts, ups): (Vec<&Value>, Vec<&Value>) = got
            .iter()
            .partition(|a| get(a, "t1609.repeat_count").is_null());
        assert_eq!((firsts.len(), ups.len()), (1, 1), "{target}: {got:#?}");
        let up = ups[0];
        assert_eq!(get(up, "t1609.repeat_count"), 3, "{target}: {up:#}");
        assert_eq!(get(up, "t1609.repeat_detail"), detail, "{target}: {up:#}");
        assert_eq!(get(up, "rule.id"), "t1609.container_exec");
        assert!(
            get(up, "message")
                .as_str()
                .is_some_and(|m| m.ends_with("(repeated 3 times)")),
            "{up:#}"
        );
        assert_ne!(get(up, "event.id"), get(firsts[0], "event.id"));
        (firsts[0].clone(), up.clone())
    };
    let (first, up) = burst("flood-early", "whole");
    assert_eq!(get(&up, "t1609.repeat_of"), get(&first, "event.id"));
    // The whole document: the ancestry and user come along.
    assert_eq!(get(&up, "t1609.ancestry"), get(&first, "t1609.ancestry"));
    assert!(!get(&up, "t1609.ancestry").is_null(), "{up:#}");
    assert_eq!(get(&up, "user.name"), get(&first, "user.name"));
    let (first, up) = burst("flood-mid", "lean");
    assert_eq!(get(&up, "t1609.repeat_of"), get(&first, "event.id"));
    assert_eq!(get(&up, "rule.name"), get(&first, "rule.name"));
    assert_eq!(
        get(&up, "process.parent.executable"),
        get(&first, "process.parent.executable")
    );
    assert!(get(&up, "t1609.ancestry").is_null(), "lean: {up:#}");
    assert!(get(&up, "user.name").is_null(), "lean: {up:#}");
    let (_, up) = burst("flood-late", "key");
    assert!(get(&up, "t1609.repeat_of").is_null(), "{up:#}");
    assert!(!get(&up, "host.hostname").is_null(), "{up:#}");
    for (key, at_least) in [
        ("repeat_summaries_whole", 1),
        ("repeat_summaries_lean", 1),
        ("repeat_summaries_key", 1),
    ] {
        assert!(stop_count(stopped, key) >= at_least, "{key}: {stopped}");
    }
}

/// A runtime socket that takes connections and never answers (a hung dockerd) must not
/// stall capture: lookups run on the capture thread, so after one times out none is tried
/// for a second. 100 alerts on unique container names would otherwise cost 100 timeouts
/// (10 s); the alerts still go out, marked unresolved.
#[test]
fn hung_runtime_socket_does_not_stall_capture() {
    if !privileged_or_skip("hung_runtime_socket_does_not_stall_capture") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    // Listening but never accepting: connect and the request succeed, the answer never
    // comes.
    let socket = dir.path().join("hung.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let agent = Agent::start_with_config(
        &format!(
            "[runtimes]\nauto_detect = false\ndocker = [{:?}]\ntimeout_ms = 100\n",
            socket.to_str().unwrap()
        ),
        &["--output", "stdout"],
    );
    let captured = agent.metric("t1609_events_captured_total").unwrap_or(0);
    let marker = format!("hung{}", std::process::id());
    for i in 0..100 {
        run_ok(Command::new(&docker).args(["exec", "-it", &format!("{marker}-{i}"), "sh"]));
    }
    let last_exec = Instant::now();
    agent.wait_metric("t1609_events_captured_total", 30, |v| v >= captured + 100);
    let caught_up = last_exec.elapsed();
    let (out, _) = agent.stop();
    let unresolved = parse_alerts(&out)
        .iter()
        .filter(|a| {
            a["t1609"]["target"]["resolved"] == false
                && a["t1609"]["target"]["container"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&marker))
        })
        .count();
    eprintln!("caught up {caught_up:?} after the last exec; {unresolved} unresolved alerts");
    assert!(
        caught_up < Duration::from_secs(4),
        "capture stalled {caught_up:?} behind a hung runtime socket"
    );
    assert!(
        unresolved >= 100,
        "{unresolved} unresolved alerts for 100 execs"
    );
}
