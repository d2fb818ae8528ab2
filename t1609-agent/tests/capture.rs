//! End-to-end capture tests: the real eBPF program in the running kernel, real execs.
//! They need root; see `common::privileged_or_skip`. What happens at exits (the process
//! table, tracked tasks) is in `tracking.rs`.

mod common;

use std::{
    os::unix::{ffi::OsStrExt, process::CommandExt},
    process::Command,
};

use base64::Engine as _;
use common::*;

#[test]
fn docker_exec_is_captured_exactly() {
    if !privileged_or_skip("docker_exec_is_captured_exactly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    let pid =
        run_ok(Command::new(&docker).args(["exec", "-it", "atomic-test-container", "/bin/sh"]));
    agent.stop();

    let records = read_records(&record);
    let mine = records_for(&records, &docker);
    assert_eq!(mine.len(), 1, "exactly one event: {mine:#?}");
    let ev = mine[0];
    assert_eq!(get(ev, "process.name"), "docker");
    assert_eq!(
        str_args(ev),
        [
            docker.to_str().unwrap(),
            "exec",
            "-it",
            "atomic-test-container",
            "/bin/sh"
        ]
    );
    assert_eq!(get(ev, "process.args_count"), 5);
    assert_eq!(
        get(ev, "process.command_line").as_str().unwrap(),
        format!(
            "{} exec -it atomic-test-container /bin/sh",
            docker.display()
        )
    );
    assert_eq!(get(ev, "process.pid"), pid);
    assert_eq!(get(ev, "process.parent.pid"), std::process::id());
    assert_eq!(get(ev, "user.id"), "0");
    assert_eq!(get(ev, "group.id"), "0");
    assert_eq!(get(ev, "event.kind"), "event");
    assert_eq!(get(ev, "event.action"), "exec");
    assert_eq!(get(ev, "event.category")[0], "process");
    assert_eq!(get(ev, "event.type")[0], "start");
    assert!(get(ev, "@timestamp").as_str().unwrap().starts_with("20"));
    assert!(get(ev, "host.hostname").is_string());
    assert!(get(ev, "t1609.mnt_ns").as_u64().unwrap() > 0);
    assert!(get(ev, "t1609.pid_ns").as_u64().unwrap() > 0);
    assert_eq!(get(ev, "t1609.argv_truncated"), false);
}

#[test]
fn unwatched_binary_only_with_capture_all() {
    if !privileged_or_skip("unwatched_binary_only_with_capture_all") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tool = fake_tool(dir.path(), "t1609-unwatched-tool");

    let rules_rec = dir.path().join("rules.json");
    let agent = Agent::start(&["--record", rules_rec.to_str().unwrap()]);
    run_ok(Command::new(&tool).arg("marker-rules"));
    agent.stop();
    assert!(
        records_for(&read_records(&rules_rec), &tool).is_empty(),
        "unwatched exec must not be reported"
    );

    let all_rec = dir.path().join("all.json");
    let agent = Agent::start(&["--capture", "all", "--record", all_rec.to_str().unwrap()]);
    run_ok(Command::new(&tool).arg("marker-all"));
    agent.stop();
    let recs = read_records(&all_rec);
    let mine = records_for(&recs, &tool);
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(str_args(mine[0])[1], "marker-all");
}

#[test]
fn exec_a_cannot_spoof_process_name() {
    if !privileged_or_skip("exec_a_cannot_spoof_process_name") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let kubectl = fake_tool(dir.path(), "kubectl");
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    run_ok(
        Command::new(&kubectl)
            .arg0("fakename")
            .args(["exec", "pod", "--", "sh"]),
    );
    agent.stop();
    let records = read_records(&record);
    let mine = records_for(&records, &kubectl);
    assert_eq!(mine.len(), 1);
    assert_eq!(get(mine[0], "process.name"), "kubectl");
    assert_eq!(str_args(mine[0])[0], "fakename");
}

#[test]
fn long_argv_arrives_whole_up_to_32k_then_truncated() {
    if !privileged_or_skip("long_argv_arrives_whole_up_to_32k_then_truncated") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    // 10,000 bytes: beyond one 4 KiB record, within the 32 KiB cap: arrives whole.
    let pad10k = "A".repeat(10_000);
    run_ok(Command::new(&docker).args(["exec", "-it", "c1", &pad10k, "sh", "tail-10k"]));
    // 40,000 bytes: beyond the cap; the head arrives and the event says it is truncated.
    let pad40k = "B".repeat(40_000);
    run_ok(Command::new(&docker).args(["run", "--privileged", &pad40k, "tail-40k"]));
    agent.stop();

    let records = read_records(&record);
    let mine = records_for(&records, &docker);
    assert_eq!(mine.len(), 2, "{}", mine.len());
    let ten = mine.iter().find(|r| str_args(r)[1] == "exec").unwrap();
    let args = str_args(ten);
    assert_eq!(args[4], pad10k, "the middle of a 10 KB argv is intact");
    assert_eq!(
        args.last().unwrap(),
        "tail-10k",
        "the tail of a 10 KB argv arrives"
    );
    assert_eq!(get(ten, "t1609.argv_truncated"), false);
    assert_eq!(
        usize::try_from(get(ten, "t1609.argv_total_len").as_u64().unwrap()).unwrap(),
        args.iter().map(|a| a.len() + 1).sum::<usize>()
    );

    let forty = mine.iter().find(|r| str_args(r)[1] == "run").unwrap();
    let args = str_args(forty);
    assert_eq!(get(forty, "t1609.argv_truncated"), true);
    assert_eq!(&args[..2], &[docker.to_str().unwrap(), "run"]);
    assert_eq!(args[2], "--privileged", "head intact");
    assert!(args[3].len() > 30_000 && args[3].bytes().all(|b| b == b'B'));
    assert_eq!(
        get(forty, "process.args_count"),
        5,
        "argc is exact even when argv is cut"
    );
    assert!(get(forty, "t1609.argv_total_len").as_u64().unwrap() > 40_000);
}

#[test]
fn awkward_arguments_survive() {
    if !privileged_or_skip("awkward_arguments_survive") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    let invalid = std::ffi::OsStr::from_bytes(b"bad\xff\xfeutf8");
    run_ok(
        Command::new(&docker)
            .arg("exec")
            .arg("line1\nPRIORITY=0")
            .arg("tab\there")
            .arg("quote\"'`")
            .arg("")
            .arg(invalid)
            .arg("\x1b[31mred"),
    );
    agent.stop();
    let records = read_records(&record);
    let mine = records_for(&records, &docker);
    assert_eq!(mine.len(), 1);
    let args = str_args(mine[0]);
    assert_eq!(
        args[1..5],
        ["exec", "line1\nPRIORITY=0", "tab\there", "quote\"'`"]
    );
    assert_eq!(args[5], "", "empty argument kept");
    assert_eq!(
        args[6], "bad\u{fffd}\u{fffd}utf8",
        "invalid UTF-8 replaced by U+FFFD"
    );
    assert_eq!(args[7], "\x1b[31mred");
    assert_eq!(get(mine[0], "process.args_count"), 8);
    // The exact bytes stay recoverable.
    let b64 = get(mine[0], "t1609.args_b64")
        .as_array()
        .expect("args_b64 present when an arg is not UTF-8");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64[6].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, b"bad\xff\xfeutf8");
}

#[test]
fn symlink_named_kubectl_reports_the_link() {
    if !privileged_or_skip("symlink_named_kubectl_reports_the_link") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let real = fake_tool(dir.path(), "k3s-multicall");
    let link = dir.path().join("kubectl");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    run_ok(Command::new(&link).args(["exec", "-it", "pod", "--", "sh"]));
    agent.stop();
    let records = read_records(&record);
    // Documented behaviour: executable is the path the exec asked for (the link) and
    // name its basename, as the kernel names the task; the link target is not reported.
    let mine = records_for(&records, &link);
    assert_eq!(mine.len(), 1, "{records:#?}");
    assert_eq!(get(mine[0], "process.name"), "kubectl");
    assert!(records_for(&records, &real).is_empty());
}

/// While new commands keep coming, the reader polls on its timer and stamps the probe's
/// wake-up clock (a shared mapping of `LAST_WAKEUP`), so the probe forces almost no
/// wake-ups. Without the stamp it would force one every `wakeup_interval_us` (5 ms).
/// (A stream of exact repeats goes quiet instead: see the next test.)
#[test]
fn steady_stream_is_polled_without_forced_wakeups() {
    if !privileged_or_skip("steady_stream_is_polled_without_forced_wakeups") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&[]);
    let start = std::time::Instant::now();
    let mut execs = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        let pod = format!("steady-pod-{execs}");
        run_ok(Command::new(&docker).args(["exec", "-it", &pod, "true"]));
        execs += 1;
    }
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap();
    let (_, log) = agent.stop();
    let stopped = stop_line(&log);
    let wakeups = stop_count(stopped, "reader_ring_wakeups");
    let ticks = stop_count(stopped, "reader_poll_ticks");
    let unstamped = elapsed_ms / 5;
    eprintln!("{execs} execs in {elapsed_ms} ms: {wakeups} forced wake-ups, {ticks} polls");
    assert!(
        execs >= 300,
        "the stream was too slow to say anything: {execs} execs"
    );
    // Polls every 2 ms while the stream lasts (some ticks are lost to a busy machine).
    assert!(
        ticks >= elapsed_ms / 10,
        "{ticks} polls in {elapsed_ms} ms: {stopped}"
    );
    assert!(
        wakeups * 4 <= unstamped,
        "{wakeups} forced wake-ups in {elapsed_ms} ms; about {unstamped} without the stamp: {stopped}"
    );
}

#[test]
fn burst_of_200_execs_all_delivered_without_loss() {
    if !privileged_or_skip("burst_of_200_execs_all_delivered_without_loss") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let crictl = fake_tool(dir.path(), "crictl");
    let agent = Agent::start(&["--record", record.to_str().unwrap()]);
    let mut children: Vec<_> = (0..200)
        .map(|i| {
            Command::new(&crictl)
                .args(["exec", "-it", &format!("c{i}"), "sh"])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let (_, log) = agent.stop();
    let records = read_records(&record);
    let mine = records_for(&records, &crictl);
    let mut seen: Vec<String> = mine.iter().map(|r| str_args(r)[3].clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200, "every exec delivered once");
    assert_eq!(mine.len(), 200, "no duplicates");
    let stopped = stop_line(&log);
    assert!(
        stopped.contains("lost_events=0"),
        "loss counter must read 0: {stopped}"
    );
    assert!(stopped.contains("lost_argv_chunks=0"), "{stopped}");
}

#[test]
fn missing_btf_stops_with_a_clear_error() {
    if !privileged_or_skip("missing_btf_stops_with_a_clear_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[capture]\nbtf_path = \"/nonexistent/vmlinux\"\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BTF") && err.contains("/nonexistent/vmlinux"),
        "{err}"
    );
}

#[test]
fn without_privilege_the_error_names_it() {
    if !privileged_or_skip("without_privilege_the_error_names_it") {
        return;
    }
    // Drop to an unprivileged uid (nobody) before exec: the agent must name the capability.
    let out = unsafe {
        Command::new(agent_bin())
            .arg("run")
            .pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .output()
            .unwrap()
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
}

/// The reader's counters, read after two metric refreshes so that the drains of the
/// phase before are all counted: [drains (ticks, wake-ups and quiet drains), wake-ups,
/// quiet drains, late alerts].
fn reader_counters(agent: &Agent) -> [u64; 4] {
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let m = |name: &str| agent.metric(name).unwrap_or(0);
    [
        m("t1609_reader_poll_ticks_total")
            + m("t1609_reader_ring_wakeups_total")
            + m("t1609_reader_quiet_drains_total"),
        m("t1609_reader_ring_wakeups_total"),
        m("t1609_reader_quiet_drains_total"),
        m("t1609_reader_quiet_late_alerts_total"),
    ]
}

/// Runs exact repeats from this process (the same parent) for `millis`; returns how many.
fn repeat_stream(docker: &std::path::Path, millis: u64) -> u64 {
    let start = std::time::Instant::now();
    let mut execs = 0u64;
    while start.elapsed() < std::time::Duration::from_millis(millis) {
        run_ok(Command::new(docker).args(["exec", "-it", "steady-pod", "true"]));
        execs += 1;
    }
    execs
}

/// How long after its exec the alert of each `quiet-new-*` command was built, in ms,
/// sorted.
fn quiet_new_delays_ms(alerts: &[serde_json::Value]) -> Vec<f64> {
    let at = |a: &serde_json::Value, field: &str| {
        let text = get(a, field).as_str().unwrap_or_default().to_owned();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{field} {text:?}: {e}"))
    };
    let mut delays_ms: Vec<f64> = alerts
        .iter()
        .filter(|a| str_args(a).iter().any(|arg| arg.starts_with("quiet-new-")))
        .map(|a| (at(a, "event.created") - at(a, "@timestamp")).as_seconds_f64() * 1e3)
        .collect();
    delays_ms.sort_by(f64::total_cmp);
    delays_ms
}

/// A stream of exact repeats puts the reader in quiet mode: the probe lets the listed
/// repeats and their exits wait, and the reader drains them every 50 ms instead of on a
/// 2 ms tick. A new command inside the stream still forces a wake-up at once, so its
/// alerts are not delayed. Counted by the reader's own counters.
#[test]
fn repeat_stream_goes_quiet_and_new_commands_still_wake_the_reader() {
    const NEW: u64 = 12;
    if !privileged_or_skip("repeat_stream_goes_quiet_and_new_commands_still_wake_the_reader") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let agent = Agent::start(&[]);
    let before = reader_counters(&agent);
    let repeats = repeat_stream(&docker, 2000);
    let quiet = reader_counters(&agent);
    // Phase 2: new commands, 150 ms apart, from another thread inside the stream.
    let novel = {
        let docker = docker.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            for i in 0..NEW {
                let pod = format!("quiet-new-{i}");
                run_ok(Command::new(&docker).args(["exec", "-it", &pod, "true"]));
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
        })
    };
    let mixed = repeat_stream(&docker, 2600);
    novel.join().unwrap();
    let after = reader_counters(&agent);
    let (out, log) = agent.stop();
    let stopped = stop_line(&log);
    let alerts = parse_alerts(&out);
    let new_alerted = (0..NEW)
        .filter(|i| {
            let pod = format!("quiet-new-{i}");
            alerts.iter().any(|a| str_args(a).contains(&pod))
        })
        .count();
    let delays_ms = quiet_new_delays_ms(&alerts);
    // Counters only grow; saturating keeps a failed read (0) from underflowing.
    let d = |a: &[u64; 4], b: &[u64; 4], k: usize| b[k].saturating_sub(a[k]);
    let (drains, wakeups1, quiet_drains) = (
        d(&before, &quiet, 0),
        d(&before, &quiet, 1),
        d(&before, &quiet, 2),
    );
    let (wakeups2, late) = (d(&quiet, &after, 1), after[3]);
    eprintln!(
        "{repeats} repeats in 2 s: {drains} drains, {quiet_drains} on the quiet timer, \
         {wakeups1} wake-ups; then {mixed} repeats and {NEW} new commands: {wakeups2} \
         wake-ups, {late} late alerts; new commands' alerts built {delays_ms:.1?} ms after their execs"
    );
    assert!(
        repeats >= 300 && mixed >= 300,
        "too few execs to say anything: {stopped}"
    );
    assert!(
        stop_count(stopped, "repeats_replayed") >= (repeats + mixed) * 8 / 10,
        "the repeats should be replayed: {stopped}"
    );
    // Quiet: 20–40 timer drains a second, and a few ticks and wake-ups when an outcome is
    // decided again (every second) or another test's new command wakes the reader (every
    // agent sees every exec): 67–170 drains here. On the 2 ms tick it would be ~1,000,
    // on the old 4 ms tick ~500; repeats that woke the reader would wake it about once
    // each.
    assert!(
        quiet_drains >= 20 && drains <= 400,
        "a stream of repeats should be drained quietly: {drains} drains, {quiet_drains} quiet, in 2 s: {stopped}"
    );
    assert!(
        wakeups1 <= repeats / 4,
        "listed repeats should not wake the reader: {wakeups1} wake-ups for {repeats}: {stopped}"
    );
    assert_eq!(
        u64::try_from(new_alerted).unwrap(),
        NEW,
        "every new command alerts: {stopped}"
    );
    // Each new command that found the reader quiet forced a wake-up; none waited for the
    // timer.
    assert!(
        wakeups2 >= NEW / 2,
        "new commands should wake the quiet reader: {wakeups2} wake-ups for {NEW}: {stopped}"
    );
    // Waiting for the quiet timer would put them 0–50 ms late, 25 ms at the median. The
    // agent's own count is looser: other tests' execs reach this agent too, and a repeat
    // whose dedup window has closed alerts again from a listed signature.
    let median = delays_ms[delays_ms.len() / 2];
    assert!(
        median < 10.0,
        "new commands' alerts should not wait for the quiet timer: {delays_ms:.1?} ms: {stopped}"
    );
    assert!(
        late < NEW,
        "alerts delayed by the quiet mode: {late}: {stopped}"
    );
}
