//! Delivery faults through the whole agent (issue #8, "Faults"): the real agent binary,
//! real execs seen by the eBPF probe, and a sink that fails underneath it. Each test ends
//! with every alert delivered, or counted as lost, and duplicates only as re-deliveries
//! of the same `event.id` (delivery is at least once).
//!
//! The reference for "every alert" is a second sink, `stdout`, which never fails: the
//! set of `event.id`s it printed is what the faulty sink must end up with.
//!
//! The fifth fault of the issue, a rules directory replaced by a broken file during
//! SIGHUP, is `operate.rs::broken_rules_file_during_sighup_keeps_old_rules`.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{ErrorKind, Read},
    os::{fd::AsRawFd, unix::net::UnixListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const LOSS_RULE: &str = "t1609.agent_alert_loss";

/// Fast retries, so an outage ends within a test's patience; no deduplication window,
/// so every exec raises its own alerts.
const DELIVER_FAST: &str =
    "backoff_initial_ms = 50\nbackoff_max_ms = 250\n[context]\ndedup_window_ms = 0\n";

fn required() -> bool {
    std::env::var("T1609_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `docker exec -it <prefix>-NNNN sh` `n` times from a thread, `pace` apart, so the
/// alerts keep coming while the test breaks a sink. Returns the markers.
fn produce(tool: &Path, prefix: &str, n: usize, pace: Duration) -> JoinHandle<Vec<String>> {
    let tool = tool.to_path_buf();
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        (0..n)
            .map(|i| {
                let m = format!("{prefix}-{i:04}");
                exec_marked(&tool, &m);
                std::thread::sleep(pace);
                m
            })
            .collect()
    })
}

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

fn markers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn has_marker(a: &Value, m: &str) -> bool {
    get(a, "process.command_line")
        .as_str()
        .is_some_and(|c| c.split(' ').any(|w| w == m))
}

/// What a faulty sink received, checked against the reference alerts.
#[derive(Debug)]
struct Outcome {
    /// Reference alerts that never arrived.
    missing: Vec<String>,
    /// Extra copies of an alert (same `event.id`, identical document).
    duplicates: usize,
    /// Loss alerts of the sink, in arrival order.
    loss_alerts: Vec<Value>,
    delivered: usize,
}

/// Dedupes `received` by `event.id` and compares it with `reference`. Panics on an alert
/// the reference does not have, and on two copies of one `event.id` that differ (a
/// duplicate must be a re-delivery, never a different alert under a reused id).
fn compare(reference: &[Value], received: &[Value]) -> Outcome {
    let want: BTreeMap<String, &Value> = reference.iter().map(|a| (event_id(a), a)).collect();
    assert_eq!(want.len(), reference.len(), "event.id repeated on stdout");
    let mut seen: BTreeMap<String, &Value> = BTreeMap::new();
    let mut duplicates = 0;
    let mut loss_alerts = Vec::new();
    for a in received {
        if get(a, "rule.id") == LOSS_RULE {
            loss_alerts.push(a.clone());
            continue;
        }
        let id = event_id(a);
        let Some(w) = want.get(&id) else {
            panic!("received an alert stdout never printed: {a}");
        };
        assert_eq!(*w, a, "same event.id, different document");
        if seen.insert(id, a).is_some() {
            duplicates += 1;
        }
    }
    Outcome {
        missing: want
            .keys()
            .filter(|id| !seen.contains_key(*id))
            .cloned()
            .collect(),
        duplicates,
        loss_alerts,
        delivered: seen.len(),
    }
}

/// Every marker must have raised at least one alert on the reference sink: otherwise the
/// reference itself is short and "nothing missing" would prove nothing.
fn assert_reference_complete(reference: &[Value], markers: &[String]) {
    let absent: Vec<&String> = markers
        .iter()
        .filter(|m| !reference.iter().any(|a| has_marker(a, m)))
        .collect();
    assert!(absent.is_empty(), "no stdout alert for {absent:?}");
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
                !required(),
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
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
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
    let healthy = format!("t1609_sink_healthy{{sink=\"{sink}\"}}");
    let spooled = format!("t1609_sink_spooled_total{{sink=\"{sink}\"}}");
    agent.wait_metric(&healthy, 15, |v| v == 0.0);
    let spooled_in_outage = agent.wait_metric(&spooled, 15, |v| v >= 4.0);
    journald.restart();
    let markers = producer.join().unwrap();
    agent.wait_metric(&healthy, 15, |v| v == 1.0);
    let dropped = agent
        .metric(&format!("t1609_sink_dropped_total{{sink=\"{sink}\"}}"))
        .unwrap();
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
    assert_eq!(dropped, 0.0, "nothing may be dropped: the spool had room");
    assert!(
        outcome.missing.is_empty(),
        "{} of {} alerts never reached journald: {:?}",
        outcome.missing.len(),
        reference.len(),
        outcome.missing
    );
    assert!(outcome.loss_alerts.is_empty(), "{:?}", outcome.loss_alerts);
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
// socket-client collector

/// A collector: a Unix stream listener in this process that keeps every complete JSON
/// line it read. `kill_with_unread` stops it the way a crash does: it stops reading, so
/// the agent's latest lines sit unread in the socket, then closes everything, which
/// discards them.
struct Collector {
    lines: Arc<Mutex<Vec<Vec<u8>>>>,
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    unread: Arc<AtomicUsize>,
    /// Connections accepted and not yet closed by the agent.
    active: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn listen(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let unread = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let (l, h, s, u, a) = (
            lines.clone(),
            hold.clone(),
            stop.clone(),
            unread.clone(),
            active.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_millis(20)))
                            .unwrap();
                        let mut partial = Vec::new();
                        let mut buf = vec![0u8; 64 * 1024];
                        while !s.load(Ordering::Relaxed) {
                            if h.load(Ordering::Relaxed) {
                                u.store(fionread(&conn), Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(5));
                                continue;
                            }
                            match conn.read(&mut buf) {
                                Ok(0) => break,
                                Ok(k) => push_lines(&mut partial, &buf[..k], &l),
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        ErrorKind::WouldBlock | ErrorKind::TimedOut
                                    ) => {}
                                Err(e) => panic!("collector read: {e}"),
                            }
                        }
                        // A partial line at a kill is lost with the collector.
                        a.fetch_sub(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("collector accept: {e}"),
                }
            }
        });
        Self {
            lines,
            hold,
            stop,
            unread,
            active,
            thread: Some(thread),
        }
    }

    /// Every complete line so far, parsed; each must be exactly one JSON document.
    fn docs(&self) -> Vec<Value> {
        json_lines(&self.lines.lock().unwrap(), "collector")
    }

    /// Stops reading until alerts wait unread in the socket, then dies. Returns how many
    /// bytes it left unread and the documents it had read.
    fn kill_with_unread(mut self) -> (usize, Vec<Value>) {
        self.hold.store(true, Ordering::Relaxed);
        wait_until("alerts queued unread in the collector's socket", 20, || {
            self.unread.load(Ordering::Relaxed) > 0
        });
        // Let a few more pile up.
        std::thread::sleep(Duration::from_millis(200));
        let unread = self.unread.load(Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (unread, self.docs())
    }

    /// After the agent stopped: reads what is left until the agent's connection ends.
    fn finish(&mut self) {
        wait_until("the agent closes its collector connection", 15, || {
            self.active.load(Ordering::Relaxed) == 0
        });
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fionread(s: &std::os::unix::net::UnixStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &raw mut n) } < 0 {
        return 0;
    }
    usize::try_from(n).unwrap_or(0)
}

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
    let healthy = format!("t1609_sink_healthy{{sink=\"{sink}\"}}");
    let spooled = format!("t1609_sink_spooled_total{{sink=\"{sink}\"}}");
    agent.wait_metric(&healthy, 15, |v| v == 0.0);
    let spooled_in_outage = agent.wait_metric(&spooled, 15, |v| v >= 4.0);
    let mut second = Collector::listen(&path);
    let markers = producer.join().unwrap();
    agent.wait_metric(&healthy, 15, |v| v == 1.0);
    let dropped = agent
        .metric(&format!("t1609_sink_dropped_total{{sink=\"{sink}\"}}"))
        .unwrap();
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
    assert_eq!(dropped, 0.0);
    assert!(
        outcome.missing.is_empty(),
        "{} of {} alerts never reached a collector: {:?}",
        outcome.missing.len(),
        reference.len(),
        outcome.missing
    );
    assert!(outcome.loss_alerts.is_empty(), "{:?}", outcome.loss_alerts);
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
    let spooled = format!("t1609_sink_spooled_total{{sink=\"{sink}\"}}");

    // No collector yet: every alert goes to the spool.
    let first = Agent::start_with_spool(&spool, DELIVER_FAST, &args);
    let prefix = format!("k9a{}", std::process::id());
    let before = markers(&prefix, 30);
    let mut out = exec_all_until_printed(&first, &docker, &before, 20);
    // Spooled (written with write(2)) is what survives the kill.
    let n_before = parse_alerts(&out).len();
    first.wait_metric(&spooled, 15, |v| v >= n_before as f64);
    out.extend(first.kill9());
    let reference_before = parse_alerts(&out);
    assert_reference_complete(&reference_before, &before);

    let collector = Collector::listen(&path);
    let second = Agent::start_with_spool(&spool, DELIVER_FAST, &args);
    let after = markers(&format!("k9b{}", std::process::id()), 10);
    for m in &after {
        exec_marked(&docker, m);
    }
    let healthy = format!("t1609_sink_healthy{{sink=\"{sink}\"}}");
    second.wait_metric(&healthy, 15, |v| v == 1.0);
    let dropped = second
        .metric(&format!("t1609_sink_dropped_total{{sink=\"{sink}\"}}"))
        .unwrap();
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
    assert_eq!(dropped, 0.0);
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
        assert!(st.success(), "mount -t tmpfs on {at:?}");
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
    let dropped_series = format!("t1609_sink_dropped_total{{sink=\"{sink}\"}}");
    let depth = format!("t1609_sink_queue_depth{{sink=\"{sink}\"}}");
    let dropped_full = agent.wait_metric(&dropped_series, 15, |v| v > 0.0);
    agent.wait_metric(&depth, 15, |v| v == 0.0);
    assert!(fs.free_bytes() < 16 * 1024, "the spool filled the disk");
    // Still running and answering while the disk is full.
    assert!(agent.child.try_wait().unwrap().is_none(), "agent died");
    assert!(http_get_body(&agent.metrics_addr(), "/healthz").is_some());

    // The collector comes back: what was spooled arrives.
    let mut collector = Collector::listen(&path);
    let healthy = format!("t1609_sink_healthy{{sink=\"{sink}\"}}");
    agent.wait_metric(&healthy, 15, |v| v == 1.0);
    // Drained when every alert is either received or counted as dropped (other
    // processes on the host may raise alerts meanwhile, hence the fresh reference).
    let mut dropped;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let docs = collector.docs();
        // The stdout sink may print an alert a moment after the socket sink delivered it
        // (another process on the host can raise one now): let stdout catch up first.
        let settle = Instant::now() + Duration::from_secs(2);
        loop {
            agent.take_stdout(&mut out);
            let printed: std::collections::BTreeSet<String> =
                parse_alerts(&out).iter().map(event_id).collect();
            let caught_up = docs
                .iter()
                .filter(|a| get(a, "rule.id") != LOSS_RULE)
                .all(|a| printed.contains(&event_id(a)));
            if caught_up || Instant::now() >= settle {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        dropped = agent.metric(&dropped_series).unwrap();
        let o = compare(&parse_alerts(&out), &docs);
        if o.missing.len() as f64 <= dropped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spool not drained: {} missing, {dropped} dropped\n{}",
            o.missing.len(),
            agent.drain_log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The disk has room again: new alerts are not lost.
    let after = markers(&format!("dfb{}", std::process::id()), 10);
    for m in &after {
        exec_marked(&docker, m);
    }
    // A loss alert reports the drops, once it can be stored; it is queued behind
    // everything before it, so when one with the final total arrived, the rest has too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !collector.docs().iter().any(|a| {
        get(a, "rule.id") == LOSS_RULE && get(a, "t1609.loss.total").as_f64() == Some(dropped)
    }) || !after
        .iter()
        .all(|m| collector.docs().iter().any(|a| has_marker(a, m)))
    {
        dropped = agent.metric(&dropped_series).unwrap();
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
        outcome.missing.len() as f64,
        dropped,
        "every alert that did not arrive is counted as dropped, and only those"
    );
    assert_eq!(
        loss_counts as f64, dropped,
        "the loss alerts report exactly the dropped alerts"
    );
}
