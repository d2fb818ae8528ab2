//! Spool faults through the whole agent (issue #8, "Faults"): the real agent binary,
//! real execs seen by the eBPF probe, and a spool that must survive `kill -9` of the
//! agent or fill its disk. Each test ends with every alert delivered, or counted as
//! lost, and duplicates only as re-deliveries of the same `event.id` (delivery is at
//! least once), checked against the `stdout` reference (`common::faults`).
//!
//! Sink outages (journald stopped, a collector killed) are in `faults_sink.rs`.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{faults::*, *};

/// Runs the watched tool once per marker and waits until the agent's stdout holds an
/// alert for each; returns the stdout lines read so far.
fn exec_all_until_printed(
    agent: &Agent,
    tool: &Path,
    markers: &[String],
    secs: u64,
) -> Vec<String> {
    for m in markers {
        exec_marked(tool, m);
    }
    let mut out = Vec::new();
    wait_until("stdout has an alert for every exec", secs, || {
        agent.take_stdout(&mut out);
        let docs = parse_alerts(&out);
        markers
            .iter()
            .all(|m| docs.iter().any(|a| has_marker(a, m)))
    });
    out
}

// ---------------------------------------------------------------------------------------
// kill -9

#[test]
fn agent_killed_with_sigkill_delivers_its_spool_after_restart() {
    if !privileged_or_skip("agent_killed_with_sigkill_delivers_its_spool_after_restart") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let docker = fake_tool(dir.path(), "docker");
    let path = dir.path().join("collector.sock");
    let sink = format!("socket-client:{}", path.display());
    let args = ["--output", sink.as_str(), "--output", "stdout"];
    let series = SinkSeries::of(&sink);

    // No collector yet: every alert goes to the spool.
    let first = Agent::start_with_spool(&spool, DELIVER_FAST, &args);
    let prefix = format!("k9a{}", std::process::id());
    let before = markers(&prefix, 30);
    let mut out = exec_all_until_printed(&first, &docker, &before, 20);
    // Spooled (written with write(2)) is what survives the kill.
    let n_before = u64::try_from(parse_alerts(&out).len()).unwrap();
    first.wait_metric(&series.spooled, 15, |v| v >= n_before);
    out.extend(first.kill9());
    let reference_before = parse_alerts(&out);
    assert_reference_complete(&reference_before, &before);

    let collector = Collector::listen(&path);
    let second = Agent::start_with_spool(&spool, DELIVER_FAST, &args);
    let after = markers(&format!("k9b{}", std::process::id()), 10);
    for m in &after {
        exec_marked(&docker, m);
    }
    second.wait_metric(&series.healthy, 15, |v| v == 1);
    let dropped = second.metric(&series.dropped).unwrap();
    let (out_after, log) = second.stop();
    let mut collector = collector;
    collector.finish();
    let reference_after = parse_alerts(&out_after);
    assert_reference_complete(&reference_after, &after);

    let received = collector.docs();
    let mut reference = reference_before.clone();
    reference.extend(reference_after.iter().cloned());
    let outcome = compare(&reference, &received);
    eprintln!(
        "kill -9: {} alerts spooled by the killed agent, {} raised after the restart; {} delivered, {} re-delivered, {} dropped",
        reference_before.len(),
        reference_after.len(),
        outcome.delivered,
        outcome.duplicates,
        dropped
    );
    assert!(
        outcome.missing.is_empty(),
        "{} of {} alerts lost across kill -9: {:?}\n{}",
        outcome.missing.len(),
        reference.len(),
        outcome.missing,
        log.join("\n")
    );
    assert_eq!(dropped, 0);
    assert!(outcome.loss_alerts.is_empty(), "{:?}", outcome.loss_alerts);
    // The spool comes first: every alert of the killed agent arrives before the first
    // alert raised after the restart.
    let old: BTreeSet<String> = reference_before.iter().map(event_id).collect();
    let first_new = received
        .iter()
        .position(|a| !old.contains(&event_id(a)))
        .expect("alerts after the restart");
    let last_old = received
        .iter()
        .rposition(|a| old.contains(&event_id(a)))
        .unwrap();
    assert!(
        last_old < first_new,
        "spooled alerts must be delivered before newer ones"
    );
}

// ---------------------------------------------------------------------------------------
// disk spool full

/// A small tmpfs mounted for one test and unmounted when it ends, even on a panic.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs on {}", at.display());
        Self(at.to_path_buf())
    }

    fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs fills the struct we pass.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &raw mut s) }, 0);
        s.f_bavail * s.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the agent may still hold files open if the test failed early.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_spool_counts_the_loss_and_delivers_the_rest() {
    if !privileged_or_skip("full_disk_spool_counts_the_loss_and_delivers_the_rest") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let path = dir.path().join("collector.sock");
    let sink = format!("socket-client:{}", path.display());
    // Room for a few dozen alerts; the spool cap (64 MiB) is far above it, so the disk
    // fills before the cap applies.
    let fs = Tmpfs::mount(&dir.path().join("spool"), "192k");
    let mut agent = Agent::start_with_spool(
        &fs.0,
        DELIVER_FAST,
        &["--output", &sink, "--output", "stdout"],
    );
    let prefix = format!("df{}", std::process::id());
    let before = markers(&prefix, 100);
    let mut out = exec_all_until_printed(&agent, &docker, &before, 30);
    let series = SinkSeries::of(&sink);
    let dropped_full = agent.wait_metric(&series.dropped, 15, |v| v > 0);
    agent.wait_metric(&series.depth, 15, |v| v == 0);
    assert!(fs.free_bytes() < 16 * 1024, "the spool filled the disk");
    // Still running and answering while the disk is full.
    assert!(agent.child.try_wait().unwrap().is_none(), "agent died");
    assert!(http_get_body(&agent.metrics_addr(), "/healthz").is_some());

    // The collector comes back: what was spooled arrives.
    let mut collector = Collector::listen(&path);
    agent.wait_metric(&series.healthy, 15, |v| v == 1);
    let dropped = wait_drained(&mut agent, &collector, &mut out, &series.dropped);
    // The disk has room again: new alerts are not lost.
    let after = markers(&format!("dfb{}", std::process::id()), 10);
    for m in &after {
        exec_marked(&docker, m);
    }
    let dropped = wait_loss_alert(&mut agent, &collector, &after, &series.dropped, dropped);
    let (rest, log) = agent.stop();
    collector.finish();
    out.extend(rest);
    let reference = parse_alerts(&out);
    assert_reference_complete(&reference, &before);
    assert_reference_complete(&reference, &after);
    let outcome = compare(&reference, &collector.docs());
    let lost_after: Vec<&String> = outcome
        .missing
        .iter()
        .filter(|id| {
            reference
                .iter()
                .any(|a| event_id(a) == **id && after.iter().any(|m| has_marker(a, m)))
        })
        .collect();
    let loss_counts: u64 = outcome
        .loss_alerts
        .iter()
        .map(|a| get(a, "t1609.loss.count").as_u64().unwrap())
        .sum();
    eprintln!(
        "full disk: {} alerts; {} dropped when the disk filled, {} in total; {} delivered, {} missing, {} re-delivered; {} loss alerts received reporting {}",
        reference.len(),
        dropped_full,
        dropped,
        outcome.delivered,
        outcome.missing.len(),
        outcome.duplicates,
        outcome.loss_alerts.len(),
        loss_counts
    );
    assert!(
        log.iter().any(|l| l.contains("cannot spool alert")),
        "the spool failure is logged"
    );
    assert!(lost_after.is_empty(), "lost after recovery: {lost_after:?}");
    assert_eq!(
        u64::try_from(outcome.missing.len()).unwrap(),
        dropped,
        "every alert that did not arrive is counted as dropped, and only those"
    );
    assert_eq!(
        loss_counts, dropped,
        "the loss alerts report exactly the dropped alerts"
    );
}

/// Waits until the spool has drained: every alert stdout printed is either received by
/// the collector or counted in `dropped_series` (other processes on the host may raise
/// alerts meanwhile, hence the fresh reference). Returns the dropped count.
fn wait_drained(
    agent: &mut Agent,
    collector: &Collector,
    out: &mut Vec<String>,
    dropped_series: &str,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let docs = collector.docs();
        // The stdout sink may print an alert a moment after the socket sink delivered it
        // (another process on the host can raise one now): let stdout catch up first.
        let settle = Instant::now() + Duration::from_secs(2);
        loop {
            agent.take_stdout(out);
            let printed: BTreeSet<String> = parse_alerts(out).iter().map(event_id).collect();
            let caught_up = docs
                .iter()
                .filter(|a| get(a, "rule.id") != LOSS_RULE)
                .all(|a| printed.contains(&event_id(a)));
            if caught_up || Instant::now() >= settle {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dropped = agent.metric(dropped_series).unwrap();
        let o = compare(&parse_alerts(out), &docs);
        if u64::try_from(o.missing.len()).unwrap() <= dropped {
            return dropped;
        }
        assert!(
            Instant::now() < deadline,
            "spool not drained: {} missing, {dropped} dropped\n{}",
            o.missing.len(),
            agent.drain_log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the collector has a loss alert reporting the final dropped count and an
/// alert for every marker in `after`. A loss alert is stored once it can be, queued
/// behind everything before it: when one with the final total arrived, the rest has
/// too. Returns the final dropped count.
fn wait_loss_alert(
    agent: &mut Agent,
    collector: &Collector,
    after: &[String],
    dropped_series: &str,
    mut dropped: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !collector.docs().iter().any(|a| {
        get(a, "rule.id") == LOSS_RULE && get(a, "t1609.loss.total").as_u64() == Some(dropped)
    }) || !after
        .iter()
        .all(|m| collector.docs().iter().any(|a| has_marker(a, m)))
    {
        dropped = agent.metric(dropped_series).unwrap();
        if Instant::now() > deadline {
            let losses: Vec<String> = collector
                .docs()
                .iter()
                .filter(|a| get(a, "rule.id") == LOSS_RULE)
                .map(|a| get(a, "t1609.loss").to_string())
                .collect();
            panic!(
                "no loss alert reporting the {dropped} dropped, or alerts after recovery missing; received {} lines, loss alerts {losses:?}\n{}",
                collector.docs().len(),
                agent.drain_log().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    dropped
}
