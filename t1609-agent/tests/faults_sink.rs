//! Sink outages through the whole agent (issue #8, "Faults"): the real agent binary,
//! real execs seen by the eBPF probe, and a sink that goes away while alerts flow and
//! comes back. Each test ends with every alert delivered, and duplicates only as
//! re-deliveries of the same `event.id` (delivery is at least once), checked against the
//! `stdout` reference (`common::faults`).
//!
//! The spool's own faults, kill -9 and a full disk, are in `faults_spool.rs`. The fifth
//! fault of the issue, a rules directory replaced by a broken file during SIGHUP, is
//! `operate.rs::broken_rules_file_during_sighup_keeps_old_rules`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{faults::*, *};
use serde_json::Value;

/// Runs `docker exec -it <prefix>-NNNN sh` `n` times from a thread, `pace` apart, so the
/// alerts keep coming while the test breaks a sink. Returns the markers.
fn produce(tool: &Path, prefix: &str, n: usize, pace: Duration) -> JoinHandle<Vec<String>> {
    let tool = tool.to_path_buf();
    let markers = markers(prefix, n);
    std::thread::spawn(move || {
        for m in &markers {
            exec_marked(&tool, m);
            std::thread::sleep(pace);
        }
        markers
    })
}

// ---------------------------------------------------------------------------------------
// journald

/// A private journald: a journal *namespace* (`systemd-journald NAME`, as
/// `systemd-journald@NAME.service` runs it) with its own socket
/// `/run/systemd/journal.NAME/socket` and its own files, read with
/// `journalctl --namespace=NAME`. Stopping the shared journald that
/// `scripts/services.sh` starts would break the other tests running at the same time;
/// the namespace exercises the same daemon and protocol (the agent's `journald:PATH`
/// sink) and can be stopped and restarted freely. Removed on drop.
///
/// Like the shared one, it binds its own socket (PID 1 is not systemd, so there is no
/// socket activation): stopping it discards the datagrams it had not read yet. That is
/// the harder case; with systemd the socket, and its queue, outlive journald.
struct PrivateJournald {
    ns: String,
    bin: PathBuf,
    child: Option<Child>,
}

impl PrivateJournald {
    fn start(test: &str) -> Option<Self> {
        let bin = [
            "/lib/systemd/systemd-journald",
            "/usr/lib/systemd/systemd-journald",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
        let Some(bin) = bin else {
            assert!(
                !privileged_required(),
                "{test}: systemd-journald is not installed (scripts/setup.sh), and T1609_REQUIRE_PRIVILEGED=1"
            );
            eprintln!("skipping {test}: systemd-journald is not installed");
            return None;
        };
        let mut j = Self {
            ns: format!("t1609f{}", std::process::id()),
            bin,
            child: None,
        };
        j.cleanup_files();
        j.restart();
        Some(j)
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/run/systemd/journal.{}/socket", self.ns))
    }

    /// Starts the daemon and waits until its socket is bound.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        // A stale socket from the previous instance would look ready.
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(&self.bin)
            .arg(&self.ns)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn systemd-journald");
        self.child = Some(child);
        wait_until("the private journald binds its socket", 10, || {
            self.socket().exists()
        });
    }

    /// `systemctl stop`: SIGTERM, then wait for the daemon to exit.
    fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        signal(&c, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "journald ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's entries (by its pid), each with its `T1609_ECS` document parsed.
    fn alerts(&self, agent_pid: u32) -> Vec<Value> {
        journal_json(&[
            &format!("--namespace={}", self.ns),
            &format!("_PID={agent_pid}"),
            "SYSLOG_IDENTIFIER=t1609-agent",
        ])
        .iter()
        .map(journal_ecs)
        .collect()
    }

    fn cleanup_files(&self) {
        let mid = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let mid = mid.trim();
        let _ = std::fs::remove_dir_all(format!("/run/systemd/journal.{}", self.ns));
        if !mid.is_empty() {
            for root in ["/var/log/journal", "/run/log/journal"] {
                let _ = std::fs::remove_dir_all(format!("{root}/{mid}.{}", self.ns));
            }
        }
    }
}

impl Drop for PrivateJournald {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup_files();
    }
}

#[test]
fn journald_stopped_and_restarted_while_alerts_flow() {
    let test = "journald_stopped_and_restarted_while_alerts_flow";
    if !privileged_or_skip(test) {
        return;
    }
    let Some(mut journald) = PrivateJournald::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let sink = format!("journald:{}", journald.socket().display());
    let agent = Agent::start_with_config(
        &format!("{DELIVER_FAST}[metrics]\nlisten = \"127.0.0.1:0\"\n"),
        &["--output", &sink, "--output", "stdout"],
    );
    let pid = agent.child.id();
    let prefix = format!("jd{}", std::process::id());
    let n = 90;
    let producer = produce(&docker, &prefix, n, Duration::from_millis(30));

    // Break journald mid-stream: once some alerts are in the journal...
    wait_until("first alerts in the journal", 20, || {
        journald.alerts(pid).len() >= 10
    });
    journald.stop();
    // ...the sink must notice and spool (otherwise this test proves nothing).
    let series = SinkSeries::of(&sink);
    agent.wait_metric(&series.healthy, 15, |v| v == 0);
    let spooled_in_outage = agent.wait_metric(&series.spooled, 15, |v| v >= 4);
    journald.restart();
    let markers = producer.join().unwrap();
    agent.wait_metric(&series.healthy, 15, |v| v == 1);
    let dropped = agent.metric(&series.dropped).unwrap();
    let (out, _) = agent.stop();
    let reference: Vec<Value> = parse_alerts(&out);
    assert_reference_complete(&reference, &markers);

    let mut outcome = compare(&reference, &journald.alerts(pid));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !outcome.missing.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        outcome = compare(&reference, &journald.alerts(pid));
    }
    eprintln!(
        "journald fault: {} alerts, {} spooled during the outage, {} delivered, {} duplicates, {} dropped",
        reference.len(),
        spooled_in_outage,
        outcome.delivered,
        outcome.duplicates,
        dropped
    );
    assert_eq!(dropped, 0, "nothing may be dropped: the spool had room");
    outcome.assert_all_arrived(reference.len(), "journald");
    // Re-deliveries only of what the stopped journald may have left unread: its socket
    // accepts a datagram only while it holds at most max_dgram_qlen of them.
    let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        outcome.duplicates <= qlen + 1,
        "{} duplicates for one journald restart (max_dgram_qlen {qlen})",
        outcome.duplicates
    );
}

// ---------------------------------------------------------------------------------------
// socket-client collector (`common::faults::Collector`)

#[test]
fn socket_collector_killed_and_restarted_mid_stream() {
    if !privileged_or_skip("socket_collector_killed_and_restarted_mid_stream") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docker = fake_tool(dir.path(), "docker");
    let path = dir.path().join("collector.sock");
    let sink = format!("socket-client:{}", path.display());
    let first = Collector::listen(&path);
    let agent = Agent::start_with_config(
        &format!("{DELIVER_FAST}[metrics]\nlisten = \"127.0.0.1:0\"\n"),
        &["--output", &sink, "--output", "stdout"],
    );
    let prefix = format!("sc{}", std::process::id());
    let producer = produce(&docker, &prefix, 120, Duration::from_millis(25));
    wait_until("the collector reads alerts", 20, || {
        first.docs().len() >= 20
    });
    let (unread_at_kill, before) = first.kill_with_unread();
    let series = SinkSeries::of(&sink);
    agent.wait_metric(&series.healthy, 15, |v| v == 0);
    let spooled_in_outage = agent.wait_metric(&series.spooled, 15, |v| v >= 4);
    let mut second = Collector::listen(&path);
    let markers = producer.join().unwrap();
    agent.wait_metric(&series.healthy, 15, |v| v == 1);
    let dropped = agent.metric(&series.dropped).unwrap();
    let (out, _) = agent.stop();
    second.finish();
    let reference = parse_alerts(&out);
    assert_reference_complete(&reference, &markers);

    let mut received = before.clone();
    received.extend(second.docs());
    let outcome = compare(&reference, &received);
    eprintln!(
        "collector fault: {} alerts; first collector read {} and left {} bytes unread; {} spooled in the outage; {} delivered, {} re-delivered, {} dropped",
        reference.len(),
        before.len(),
        unread_at_kill,
        spooled_in_outage,
        outcome.delivered,
        outcome.duplicates,
        dropped
    );
    assert_eq!(dropped, 0);
    outcome.assert_all_arrived(reference.len(), "a collector");
}
