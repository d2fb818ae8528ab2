//! What the delivery-fault tests (`faults_sink.rs`, `faults_spool.rs`) share: the
//! reference they check a faulty sink against, and a collector they can kill.
//!
//! The reference for "every alert" is a second sink, `stdout`, which never fails: the
//! set of `event.id`s it printed is what the faulty sink must end up with.

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read},
    os::{
        fd::AsRawFd,
        unix::net::{UnixListener, UnixStream},
    },
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;

use super::{event_id, get, json_lines, push_lines, wait_until};

pub const LOSS_RULE: &str = "t1609.agent_alert_loss";

/// Fast retries, so an outage ends within a test's patience; no deduplication window,
/// so every exec raises its own alerts.
pub const DELIVER_FAST: &str =
    "backoff_initial_ms = 50\nbackoff_max_ms = 250\n[context]\ndedup_window_ms = 0\n";

/// `n` markers `<prefix>-NNNN`, one per exec a test runs.
pub fn markers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Whether the alert is about the exec that carried `marker` as a whole argument.
pub fn has_marker(alert: &Value, marker: &str) -> bool {
    get(alert, "process.command_line")
        .as_str()
        .is_some_and(|c| c.split(' ').any(|w| w == marker))
}

/// What a faulty sink received, checked against the reference alerts.
#[derive(Debug)]
pub struct Outcome {
    /// Reference alerts that never arrived.
    pub missing: Vec<String>,
    /// Extra copies of an alert (same `event.id`, identical document).
    pub duplicates: usize,
    /// Loss alerts of the sink, in arrival order.
    pub loss_alerts: Vec<Value>,
    pub delivered: usize,
}

impl Outcome {
    /// Every one of the `total` reference alerts reached `sink`, which raised no loss
    /// alert.
    pub fn assert_all_arrived(&self, total: usize, sink: &str) {
        assert!(
            self.missing.is_empty(),
            "{} of {total} alerts never reached {sink}: {:?}",
            self.missing.len(),
            self.missing
        );
        assert!(self.loss_alerts.is_empty(), "{:?}", self.loss_alerts);
    }
}

/// Dedupes `received` by `event.id` and compares it with `reference`. Panics on an alert
/// the reference does not have, and on two copies of one `event.id` that differ (a
/// duplicate must be a re-delivery, never a different alert under a reused id).
pub fn compare(reference: &[Value], received: &[Value]) -> Outcome {
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

/// The `/metrics` series of one sink, named by its `--output` spec.
pub struct SinkSeries {
    /// 1 while the sink accepts alerts.
    pub healthy: String,
    pub spooled: String,
    pub dropped: String,
    pub depth: String,
}

impl SinkSeries {
    pub fn of(sink: &str) -> Self {
        let series = |name: &str| format!("t1609_sink_{name}{{sink=\"{sink}\"}}");
        Self {
            healthy: series("healthy"),
            spooled: series("spooled_total"),
            dropped: series("dropped_total"),
            depth: series("queue_depth"),
        }
    }
}

/// Every marker must have raised at least one alert on the reference sink: otherwise the
/// reference itself is short and "nothing missing" would prove nothing.
pub fn assert_reference_complete(reference: &[Value], markers: &[String]) {
    let absent: Vec<&String> = markers
        .iter()
        .filter(|m| !reference.iter().any(|a| has_marker(a, m)))
        .collect();
    assert!(absent.is_empty(), "no stdout alert for {absent:?}");
}

/// A collector: a Unix stream listener in this process that keeps every complete JSON
/// line it read. `kill_with_unread` stops it the way a crash does: it stops reading, so
/// the agent's latest lines sit unread in the socket, then closes everything, which
/// discards them.
pub struct Collector {
    state: Arc<CollectorState>,
    thread: Option<JoinHandle<()>>,
}

/// Shared by the test and the collector's thread.
#[derive(Default)]
struct CollectorState {
    lines: Mutex<Vec<Vec<u8>>>,
    /// Stop reading (the connection stays open).
    hold: AtomicBool,
    stop: AtomicBool,
    /// Bytes waiting in the socket while held.
    unread: AtomicUsize,
    /// Connections accepted and not yet closed by the agent.
    active: AtomicUsize,
}

impl Collector {
    pub fn listen(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(CollectorState::default());
        let thread = {
            let state = state.clone();
            std::thread::spawn(move || state.accept_loop(&listener))
        };
        Self {
            state,
            thread: Some(thread),
        }
    }

    /// Every complete line so far, parsed; each must be exactly one JSON document.
    pub fn docs(&self) -> Vec<Value> {
        json_lines(&self.state.lines.lock().unwrap(), "collector")
    }

    /// Stops reading until alerts wait unread in the socket, then dies. Returns how many
    /// bytes it left unread and the documents it had read.
    pub fn kill_with_unread(mut self) -> (usize, Vec<Value>) {
        self.state.hold.store(true, Ordering::Relaxed);
        wait_until("alerts queued unread in the collector's socket", 20, || {
            self.state.unread.load(Ordering::Relaxed) > 0
        });
        // Let a few more pile up.
        std::thread::sleep(Duration::from_millis(200));
        let unread = self.state.unread.load(Ordering::Relaxed);
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (unread, self.docs())
    }

    /// After the agent stopped: reads what is left until the agent's connection ends.
    pub fn finish(&mut self) {
        wait_until("the agent closes its collector connection", 15, || {
            self.state.active.load(Ordering::Relaxed) == 0
        });
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl CollectorState {
    fn accept_loop(&self, listener: &UnixListener) {
        while !self.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    self.active.fetch_add(1, Ordering::Relaxed);
                    self.read_until_closed(conn);
                    // A partial line at a kill is lost with the collector.
                    self.active.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("collector accept: {e}"),
            }
        }
    }

    /// Reads one connection until the agent closes it or the collector stops.
    fn read_until_closed(&self, mut conn: UnixStream) {
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut partial = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !self.stop.load(Ordering::Relaxed) {
            if self.hold.load(Ordering::Relaxed) {
                self.unread.store(fionread(&conn), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(read) => push_lines(&mut partial, &buf[..read], &self.lines),
                // A signal delivered to this thread can interrupt the read: read again.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("collector read: {e}"),
            }
        }
    }
}

/// Bytes waiting to be read in the socket.
fn fionread(s: &UnixStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &raw mut n) } < 0 {
        return 0;
    }
    usize::try_from(n).unwrap_or(0)
}
