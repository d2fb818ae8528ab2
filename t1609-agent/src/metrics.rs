//! Prometheus metrics (`/metrics`, via prometheus-client) and health endpoints
//! (`/healthz`, `/readyz`) on a small HTTP/1.1 listener, 127.0.0.1:9609 by default.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics and health listener; empty disables it.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9609".into(),
        }
    }
}

/// What the endpoints report, refreshed by the agent's main loop every second.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub events_captured: u64,
    pub net_events: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
    pub suppressed: u64,
    pub deduplicated: u64,
    pub ringbuf_lost: u64,
    pub argv_chunks_lost: u64,
    pub kernel_read_errors: u64,
    pub decode_errors: u64,
    pub reader_ring_wakeups: u64,
    pub reader_poll_ticks: u64,
    pub reader_quiet_drains: u64,
    pub reader_quiet_late_alerts: u64,
    pub process_table: u64,
    /// Tasks the probes track, from their counting filter (`None`: not mapped).
    pub tracked_tasks: Option<u64>,
    pub repeats_replayed: u64,
    pub cgroup_reads_saved: u64,
    pub cwd_reads_saved: u64,
    pub first_alerts_kept: u64,
    /// Follow-ups by detail (`summary::Detail::NAMES`).
    pub repeat_summaries: [u64; 3],
    /// (program, run time ns, run count)
    pub programs: Vec<(String, u64, u64)>,
    /// (sink, queue depth, spooled, dropped, healthy)
    pub sinks: Vec<(String, u64, u64, u64, bool)>,
    pub attached: bool,
    pub reader_alive: bool,
}

#[derive(Default)]
pub struct Health {
    pub ready: AtomicBool,
    pub snapshot: Mutex<Snapshot>,
}

impl Health {
    pub fn healthy(&self) -> Result<(), String> {
        let s = self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !s.attached {
            return Err("eBPF programs not attached".into());
        }
        if !s.reader_alive {
            return Err("ring-buffer reader stopped".into());
        }
        if let Some((name, ..)) = s.sinks.iter().find(|(.., healthy)| !healthy) {
            return Err(format!("sink {name} is down (alerts are spooled)"));
        }
        Ok(())
    }
}

type Labels = Vec<(String, String)>;

pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::with_prefix("t1609");
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    counter(
        &mut reg,
        "events_captured",
        "Exec events captured by the kernel probe",
        s.events_captured,
    );
    counter(
        &mut reg,
        "network_events_captured",
        "Watched connects captured",
        s.net_events,
    );
    counter(
        &mut reg,
        "alerts_suppressed",
        "Alerts suppressed by exceptions",
        s.suppressed,
    );
    counter(
        &mut reg,
        "alerts_deduplicated",
        "Alerts folded into an earlier identical one",
        s.deduplicated,
    );
    counter(
        &mut reg,
        "exec_repeats_replayed",
        "Execs identical to a recent one whose outcome was replayed without re-evaluating the rules",
        s.repeats_replayed,
    );
    counter(
        &mut reg,
        "cgroup_reads_saved",
        "Execs whose cgroups came from the parent's css_set instead of /proc",
        s.cgroup_reads_saved,
    );
    counter(
        &mut reg,
        "cwd_reads_saved",
        "Execs whose working directory came from the parent instead of /proc",
        s.cwd_reads_saved,
    );
    counter(
        &mut reg,
        "ringbuf_lost_events",
        "Exec events the kernel could not queue (ring buffer full)",
        s.ringbuf_lost,
    );
    counter(
        &mut reg,
        "ringbuf_lost_argv_chunks",
        "argv continuation records lost",
        s.argv_chunks_lost,
    );
    counter(
        &mut reg,
        "kernel_read_errors",
        "Failed kernel reads in the probes",
        s.kernel_read_errors,
    );
    counter(
        &mut reg,
        "decode_errors",
        "Ring-buffer records that could not be decoded",
        s.decode_errors,
    );
    counter(
        &mut reg,
        "reader_ring_wakeups",
        "Times the ring-buffer reader woke on its fd outside a burst",
        s.reader_ring_wakeups,
    );
    counter(
        &mut reg,
        "reader_poll_ticks",
        "Drains of the ring buffer on the reader's tick while events flow",
        s.reader_poll_ticks,
    );
    counter(
        &mut reg,
        "reader_quiet_drains",
        "Drains on the quiet mode's timer while a stream of exact repeats lasts",
        s.reader_quiet_drains,
    );
    counter(
        &mut reg,
        "reader_quiet_late_alerts",
        "Alerts from execs the quiet mode's timer found more than 5 ms after they ran (delayed up to 50 ms)",
        s.reader_quiet_late_alerts,
    );
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(s.process_table).unwrap_or(i64::MAX));
    reg.register("process_table_entries", "Processes in the process table", g);
    if let Some(tracked) = s.tracked_tasks {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(tracked).unwrap_or(i64::MAX));
        reg.register(
            "tracked_tasks",
            "Tasks the probes follow (injected sessions and reported processes until they exit)",
            g,
        );
    }

    let g: Gauge = Gauge::default();
    g.set(i64::try_from(s.first_alerts_kept).unwrap_or(i64::MAX));
    reg.register(
        "dedup_first_alerts_kept",
        "Open dedup windows whose first alert is kept for its repeat follow-up",
        g,
    );
    let summaries = Family::<Labels, Counter>::default();
    for (detail, n) in crate::summary::Detail::NAMES.iter().zip(s.repeat_summaries) {
        summaries
            .get_or_create(&vec![("detail".into(), (*detail).to_owned())])
            .inc_by(n);
    }
    reg.register(
        "repeat_summaries",
        "Repeat follow-ups by how much of the first alert they carry (lean and key past the memory bound)",
        summaries,
    );

    let alerts = Family::<Labels, Counter>::default();
    for (rule, n) in &s.alerts_by_rule {
        alerts
            .get_or_create(&vec![("rule".into(), rule.clone())])
            .inc_by(*n);
    }
    reg.register("alerts", "Alerts raised, by rule", alerts);

    let run_time = Family::<Labels, Counter>::default();
    let run_count = Family::<Labels, Counter>::default();
    for (prog, ns, cnt) in &s.programs {
        run_time
            .get_or_create(&vec![("program".into(), prog.clone())])
            .inc_by(*ns);
        run_count
            .get_or_create(&vec![("program".into(), prog.clone())])
            .inc_by(*cnt);
    }
    reg.register(
        "bpf_program_run_time_ns",
        "In-kernel run time of each eBPF program (needs kernel.bpf_stats_enabled=1)",
        run_time,
    );
    reg.register(
        "bpf_program_run_count",
        "Runs of each eBPF program (needs kernel.bpf_stats_enabled=1)",
        run_count,
    );

    let depth = Family::<Labels, Gauge>::default();
    let spooled = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let healthy = Family::<Labels, Gauge>::default();
    for (sink, d, sp, dr, h) in &s.sinks {
        let l = vec![("sink".to_owned(), sink.clone())];
        depth
            .get_or_create(&l)
            .set(i64::try_from(*d).unwrap_or(i64::MAX));
        spooled.get_or_create(&l).inc_by(*sp);
        dropped.get_or_create(&l).inc_by(*dr);
        healthy.get_or_create(&l).set(i64::from(*h));
    }
    reg.register(
        "sink_queue_depth",
        "Alerts queued in memory per sink",
        depth,
    );
    reg.register(
        "sink_spooled",
        "Alerts written to the on-disk spool per sink",
        spooled,
    );
    reg.register(
        "sink_dropped",
        "Alerts dropped per sink (queue or spool cap)",
        dropped,
    );
    reg.register("sink_healthy", "1 when the sink accepts alerts", healthy);

    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        .into_bytes()
}

async fn handle(mut sock: tokio::net::TcpStream, health: Arc<Health>) {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    // Read the request head, bounded in size and time.
    let read = tokio::time::timeout(Duration::from_secs(2), async {
        while n < buf.len() {
            match sock.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let reply = match (method, path) {
        ("GET", "/metrics") => {
            let text = render(
                &health
                    .snapshot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            );
            response(
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &text,
            )
        }
        ("GET", "/healthz") => match health.healthy() {
            Ok(()) => response("200 OK", "text/plain", "ok\n"),
            Err(e) => response("503 Service Unavailable", "text/plain", &format!("{e}\n")),
        },
        ("GET", "/readyz") => {
            if health.ready.load(Ordering::Relaxed) {
                response("200 OK", "text/plain", "ready\n")
            } else {
                response("503 Service Unavailable", "text/plain", "starting\n")
            }
        }
        ("GET", _) => response("404 Not Found", "text/plain", "not found\n"),
        _ => response("405 Method Not Allowed", "text/plain", "GET only\n"),
    };
    let _ = sock.write_all(&reply).await;
}

pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("metrics.listen = {listen:?}: {e}"))?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("metrics.listen = {listen:?}: cannot bind: {e}"))
}

pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(handle(sock, health.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut s = Snapshot {
            events_captured: 5,
            process_table: 7,
            first_alerts_kept: 9,
            repeat_summaries: [4, 2, 1],
            attached: true,
            reader_alive: true,
            ..Default::default()
        };
        s.alerts_by_rule.insert("t1609.container_exec".into(), 3);
        s.programs.push(("sched_process_exec".into(), 1000, 10));
        s.sinks.push(("stdout".into(), 1, 0, 2, true));
        let text = render(&s);
        assert!(text.contains("t1609_events_captured_total 5"), "{text}");
        assert!(
            text.contains("t1609_alerts_total{rule=\"t1609.container_exec\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "t1609_bpf_program_run_time_ns_total{program=\"sched_process_exec\"} 1000"
            ),
            "{text}"
        );
        assert!(
            text.contains("t1609_sink_dropped_total{sink=\"stdout\"} 2"),
            "{text}"
        );
        assert!(text.contains("t1609_process_table_entries 7"), "{text}");
        assert!(text.contains("t1609_dedup_first_alerts_kept 9"), "{text}");
        for (detail, n) in [("whole", 4), ("lean", 2), ("key", 1)] {
            assert!(
                text.contains(&format!(
                    "t1609_repeat_summaries_total{{detail=\"{detail}\"}} {n}"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn health_names_the_failing_part() {
        let h = Health::default();
        assert!(h.healthy().unwrap_err().contains("not attached"));
        h.snapshot.lock().unwrap().attached = true;
        h.snapshot.lock().unwrap().reader_alive = true;
        h.snapshot
            .lock()
            .unwrap()
            .sinks
            .push(("journald".into(), 0, 5, 0, false));
        assert!(h.healthy().unwrap_err().contains("journald"));
    }
}
