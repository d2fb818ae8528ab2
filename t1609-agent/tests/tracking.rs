//! Processes followed through their exits, with the real eBPF programs: the probes
//! report the exit of what they reported, so the agent's process table and the probes'
//! tracked-task map let go of processes as they end. They need root; see
//! `common::privileged_or_skip`.

mod common;

use std::process::Command;

use common::*;

/// Reads the process-table gauge once it has caught up (it is refreshed every second from
/// a table housekept every second: 2.5 s), then waits up to 3 s more for it to fall below
/// `below`; stops the agent and fails with its stop line if it does not.
fn table_settles(agent: Agent, below: u64, after_what: &str) -> (Agent, u64) {
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let v = agent
            .metric("t1609_process_table_entries")
            .expect("table gauge");
        if v < below {
            return (agent, v);
        }
        if std::time::Instant::now() >= deadline {
            let (_, log) = agent.stop();
            panic!(
                "{v} table entries after {after_what}, expected below {below}: {}",
                stop_line(&log)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The probe reports the exit of every process whose exec it reported, so the agent's
/// table lets those entries go after their grace instead of keeping them until /proc
/// pruning (a few dozen checks a second) finds them gone.
#[test]
fn exits_of_reported_execs_release_their_table_entries() {
    if !privileged_or_skip("exits_of_reported_execs_release_their_table_entries") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start_with_config("[context]\nexit_grace_ms = 200\n", &[]);
    let before = agent.wait_metric("t1609_process_table_entries", 10, |v| v > 0);
    // Parallel tests' execs reach this agent too: counts are relative.
    let captured = agent.metric("t1609_events_captured_total").unwrap_or(0);
    for i in 0..400 {
        run_ok(Command::new(&docker).args(["exec", "-it", &format!("gone-{i}"), "true"]));
    }
    agent.wait_metric("t1609_events_captured_total", 10, |v| v >= captured + 400);
    // Marked exited as they end, evicted 200 ms later by the next housekeeping. Pruning
    // alone would still hold over 300 of them after 5 s.
    let (agent, after) = table_settles(agent, before + 150, "400 execs");
    eprintln!("table: {before} entries before 400 execs, {after} after");
    // The real docker CLI is a multi-threaded Go program: the thread that ends the
    // process is often not its leader, and the exit must still be seen.
    if !services("docker") {
        agent.stop();
        return;
    }
    let captured = agent.metric("t1609_events_captured_total").unwrap();
    for _ in 0..100 {
        run_ok(
            Command::new("docker")
                .arg("--version")
                .stdout(std::process::Stdio::null()),
        );
    }
    agent.wait_metric("t1609_events_captured_total", 20, |v| v >= captured + 100);
    let (agent, go) = table_settles(agent, after + 40, "100 docker CLI runs");
    eprintln!("table: {after} entries before 100 docker CLI runs, {go} after");
    agent.stop();
}

/// Forks and exits on the host skip the tracked-task map when the probes' counting
/// filter says their slot is empty, so a count below the map's keys would hide a
/// tracked task. After reported processes exit, injected sessions end with their
/// processes, and sessions the agent ends itself (a runtime command that injects
/// nothing) while their processes still run, the counts must equal the map exactly.
#[test]
fn tracked_task_counts_stay_exact_through_exits_and_ended_sessions() {
    if !privileged_or_skip("tracked_task_counts_stay_exact_through_exits_and_ended_sessions") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    // A shell named runc: the probe starts a session at its exec, and the agent ends it
    // unless the argv says `exec`.
    let runc = dir.path().join("runc");
    std::fs::copy("/bin/sh", &runc).unwrap();
    let agent = Agent::start(&[]);
    let captured = agent.metric("t1609_events_captured_total").unwrap_or(0);
    for i in 0..100 {
        run_ok(Command::new(&docker).args(["exec", "-it", &format!("c{i}"), "true"]));
    }
    // Each run forks children that are tracked from the start; `state` runs outlive
    // the agent's end of their session by ~300 ms, so the agent removes live entries.
    let script = "sleep 0.3 & sleep 0.3 & wait";
    let mut children = Vec::new();
    for verb in ["state", "exec"] {
        for _ in 0..30 {
            children.push(spawn_retrying(
                Command::new(&runc).args(["-c", script, verb]),
            ));
        }
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // Still running when the agent stops, so the comparison covers live entries: an
    // injected session's root and child (a process reported by name outside a session,
    // also running, is noted in REPORTED instead).
    let kubectl = dir.path().join("kubectl");
    std::fs::copy("/bin/sleep", &kubectl).unwrap();
    let mut running = vec![
        spawn_retrying(Command::new(&kubectl).arg("30")),
        spawn_retrying(Command::new(&runc).args(["-c", "sleep 30 & wait", "exec"])),
    ];
    // 100 docker execs, 60 runc execs and the 60 sleeps of the `exec` sessions (those
    // of `state` sessions are reported only if they exec before the agent ends it),
    // and the 3 execs still running.
    agent.wait_metric("t1609_events_captured_total", 20, |v| v >= captured + 223);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (_, log) = agent.stop();
    for c in &mut running {
        let _ = c.kill();
        let _ = c.wait();
    }
    let stopped = stop_line(&log);
    eprintln!("{stopped}");
    assert!(stop_count(stopped, "sessions") >= 31, "{stopped}");
    assert!(stop_count(stopped, "tracked_entries") >= 2, "{stopped}");
    assert_eq!(stop_count(stopped, "tracked_short_slots"), 0, "{stopped}");
    assert_eq!(
        stop_count(stopped, "tracked_counted"),
        stop_count(stopped, "tracked_entries"),
        "the counts must match the map once detached: {stopped}"
    );
}
