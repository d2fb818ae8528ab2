//! Prometheus metrics (`/metrics`, via prometheus-client) and health endpoints
//! (`/healthz`, `/readyz`) on a small HTTP/1.1 listener, 127.0.0.1:9609 by default.

use std::{
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

use crate::stats::{self, Kind};

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
    /// Every counter and gauge of [`crate::stats`].
    pub counters: stats::Snapshot,
    /// Tasks the probes track, from their counting filter (`None`: not mapped).
    pub tracked_tasks: Option<u64>,
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

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// The counters and gauges of [`stats::DEFS`], one metric each, or one family per metric
/// name where they carry a label.
fn register_stats(reg: &mut Registry, s: &stats::Snapshot) {
    let mut families: Vec<(&'static str, &'static str, Family<Labels, Counter>)> = Vec::new();
    for (def, v) in s.iter() {
        match (def.label, def.kind) {
            (Some((name, value)), _) => {
                let labels = vec![(name.to_owned(), value.to_owned())];
                if let Some(i) = families.iter().position(|(m, ..)| *m == def.metric) {
                    families[i].2.get_or_create(&labels).inc_by(v)
                } else {
                    let f = Family::<Labels, Counter>::default();
                    f.get_or_create(&labels).inc_by(v);
                    families.push((def.metric, def.help, f));
                    0
                };
            }
            (None, Kind::Counter) => {
                let c: Counter = Counter::default();
                c.inc_by(v);
                reg.register(def.metric, def.help, c);
            }
            (None, Kind::Gauge) => reg.register(def.metric, def.help, gauge(v)),
        }
    }
    for (metric, help, family) in families {
        reg.register(metric, help, family);
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::with_prefix("t1609");
    register_stats(&mut reg, &s.counters);
    if let Some(tracked) = s.tracked_tasks {
        reg.register(
            "tracked_tasks",
            "Tasks the probes follow (injected sessions and reported processes until they exit)",
            gauge(tracked),
        );
    }
    let alerts = Family::<Labels, Counter>::default();
    for (rule, n) in &s.counters.alerts_by_rule {
        alerts
            .get_or_create(&vec![("rule".into(), rule.clone())])
            .inc_by(*n);
    }
    reg.register("alerts", "Alerts raised, by rule", alerts);

    let run_time = Family::<Labels, Counter>::default();
    let run_count = Family::<Labels, Counter>::default();
    for (prog, ns, cnt) in &s.programs {
        let l = vec![("program".into(), prog.clone())];
        run_time.get_or_create(&l).inc_by(*ns);
        run_count.get_or_create(&l).inc_by(*cnt);
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

/// Binds the metrics listener (`listen` is validated as an IP:port by the config).
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TcpListener::bind(addr).await
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
        let c = stats::Counters::default();
        c.add(stats::Counter::EventsCaptured, 5);
        c.set(stats::Counter::ProcessTable, 7);
        c.set(stats::Counter::FirstAlertsKept, 9);
        c.add(stats::Counter::SummariesWhole, 4);
        c.add(stats::Counter::SummariesLean, 2);
        c.add(stats::Counter::SummariesKey, 1);
        for _ in 0..3 {
            c.alert("t1609.container_exec");
        }
        let mut s = Snapshot {
            counters: c.snapshot(),
            attached: true,
            reader_alive: true,
            ..Default::default()
        };
        s.programs.push(("sched_process_exec".into(), 1000, 10));
        s.sinks.push(("stdout".into(), 1, 0, 2, true));
        let text = render(&s);
        assert!(text.contains("t1609_events_captured_total 5"), "{text}");
        assert!(text.contains("t1609_alerts_raised_total 3"), "{text}");
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
        // Every defined value is rendered.
        for d in &stats::DEFS {
            assert!(
                text.contains(&format!("t1609_{}", d.metric)),
                "{} missing: {text}",
                d.metric
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
