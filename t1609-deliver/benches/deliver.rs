//! `cargo bench -p t1609-deliver`: sustained alerts/s per sink, and submit→receipt latency
//! on the socket server at 1,000 alerts/s.
//!
//! Environment: `T1609_BENCH_N` (alerts per throughput run, default 50,000),
//! `T1609_BENCH_LAT_SECS` (latency run length, default 5).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_deliver::{DeliverConfig, Dispatcher, SinkSpec};
use tokio::{
    io::AsyncBufReadExt,
    net::{UnixListener, UnixStream},
};

fn doc(run: &str, seq: u64, t_ns: u64) -> Value {
    json!({
        "@timestamp": "2026-11-28T12:00:00.000Z",
        "event": {"id": format!("{run}-{seq}"), "kind": "alert", "category": ["process"], "type": ["start"],
                  "severity": 73, "risk_score": 73, "module": "t1609", "dataset": "t1609.alerts"},
        "rule": {"id": "t1609.container_admin_command", "name": "Container administration command",
                 "reference": "https://attack.mitre.org/techniques/T1609/"},
        "threat": {"framework": "MITRE ATT&CK", "technique": {"id": ["T1609"], "name": ["Container Administration Command"]}},
        "t1609": {"severity": "high", "group_id": "g-1", "bench_t": t_ns},
        "process": {"pid": 4242, "executable": "/usr/bin/docker", "name": "docker",
                    "command_line": "docker exec -it c1 /bin/sh -c 'id; cat /etc/shadow'",
                    "args": ["docker", "exec", "-it", "c1", "/bin/sh"], "parent": {"pid": 4000, "name": "bash"}},
        "user": {"name": "alice", "id": "1000"},
        "host": {"name": "build-1"},
        "container": {"id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    })
}

fn cfg(spool: &Path, sink: &str) -> DeliverConfig {
    DeliverConfig {
        sinks: vec![sink.parse::<SinkSpec>().unwrap()],
        spool_dir: spool.to_path_buf(),
        file_max_bytes: 0,
        ..DeliverConfig::default()
    }
}

/// A reader that counts lines (and records latencies when asked).
fn spawn_reader(
    s: UnixStream,
    count: Arc<AtomicU64>,
    lat: Option<(Instant, Arc<std::sync::Mutex<Vec<u64>>>)>,
) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::with_capacity(1 << 20, s).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some((t0, v)) = &lat {
                let now = u64::try_from(t0.elapsed().as_nanos()).unwrap();
                let d: Value = serde_json::from_str(&l).unwrap();
                let t = d["t1609"]["bench_t"].as_u64().unwrap();
                v.lock().unwrap().push(now - t);
            }
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Submits `n` alerts as fast as the sink sustains them (keeping the in-memory queue
/// below half full, so nothing spills to the spool), and returns alerts/s.
async fn throughput(d: &Dispatcher, n: u64, received: impl Fn() -> u64) -> (f64, u64) {
    let run = format!("bench-{}", std::process::id());
    let t0 = Instant::now();
    for i in 0..n {
        while i % 64 == 0 && d.stats().sinks[0].queue_depth > 1024 {
            tokio::task::yield_now().await;
        }
        d.submit(Arc::new(doc(&run, i, 0)));
    }
    let end = Instant::now() + Duration::from_mins(2);
    while received() < n && Instant::now() < end {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let s = d.stats();
    (received() as f64 / secs, s.sinks[0].spooled)
}

/// One row of the throughput table: sink, alerts/s, alerts spooled, what was counted.
type Row = (String, f64, u64, &'static str);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("T1609_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let lat_secs: u64 = std::env::var("T1609_BENCH_LAT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let rows = throughput_per_sink(dir.path(), n).await;
    println!();
    println!(
        "{:<32} {:>12} {:>9}  counted when",
        "sink", "alerts/s", "spooled"
    );
    println!("{}", "-".repeat(80));
    for (name, rate, spooled, how) in &rows {
        println!("{name:<32} {rate:>12.0} {spooled:>9}  {how}");
    }
    latency(dir.path(), lat_secs).await;
}

/// Sustained alerts/s of each sink, `n` alerts each (journald at most 20,000).
async fn throughput_per_sink(dir: &Path, n: u64) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    // Warm-up (allocator, page cache), not reported.
    {
        let disp = Dispatcher::start(cfg(&dir.join("s0"), "file:/dev/null"))
            .await
            .unwrap();
        throughput(&disp, n / 5, || disp.stats().sinks[0].delivered).await;
        disp.shutdown(Duration::from_secs(5)).await;
    }
    // stdout-like: the file sink on /dev/null.
    {
        let disp = Dispatcher::start(cfg(&dir.join("s1"), "file:/dev/null"))
            .await
            .unwrap();
        let (rate, spooled) = throughput(&disp, n, || disp.stats().sinks[0].delivered).await;
        rows.push((
            "file:/dev/null (stdout-like)".into(),
            rate,
            spooled,
            "delivered",
        ));
        disp.shutdown(Duration::from_secs(5)).await;
    }
    // file
    {
        let path = dir.join("alerts.json");
        let mut config = cfg(&dir.join("s2"), &format!("file:{}", path.display()));
        config.file_max_bytes = 64 << 20;
        let disp = Dispatcher::start(config).await.unwrap();
        let (rate, spooled) = throughput(&disp, n, || disp.stats().sinks[0].delivered).await;
        rows.push(("file (64 MiB rotation)".into(), rate, spooled, "delivered"));
        disp.shutdown(Duration::from_secs(5)).await;
    }
    // socket-server, one reader
    {
        let path = dir.join("srv.sock");
        let mut config = cfg(
            &dir.join("s3"),
            &format!("socket-server:{}", path.display()),
        );
        config.subscriber_queue_len = 4096;
        let disp = Dispatcher::start(config).await.unwrap();
        let count = Arc::new(AtomicU64::new(0));
        spawn_reader(
            UnixStream::connect(&path).await.unwrap(),
            count.clone(),
            None,
        );
        while disp.stats().sinks[0].subscribers == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (rate, spooled) = throughput(&disp, n, || count.load(Ordering::Relaxed)).await;
        rows.push((
            "socket-server (1 reader)".into(),
            rate,
            spooled,
            "read by subscriber",
        ));
        disp.shutdown(Duration::from_secs(5)).await;
    }
    // socket-client to a collector
    {
        let path = dir.join("col.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                spawn_reader(stream, counted.clone(), None);
            }
        });
        let disp = Dispatcher::start(cfg(
            &dir.join("s4"),
            &format!("socket-client:{}", path.display()),
        ))
        .await
        .unwrap();
        let (rate, spooled) = throughput(&disp, n, || count.load(Ordering::Relaxed)).await;
        rows.push((
            "socket-client (stream)".into(),
            rate,
            spooled,
            "read by collector",
        ));
        disp.shutdown(Duration::from_secs(5)).await;
    }
    // journald, when running
    if Path::new("/run/systemd/journal/socket").exists() {
        let disp = Dispatcher::start(cfg(&dir.join("s5"), "journald"))
            .await
            .unwrap();
        let nj = n.min(20_000);
        let (rate, spooled) = throughput(&disp, nj, || disp.stats().sinks[0].delivered).await;
        rows.push((
            format!("journald ({nj} alerts)"),
            rate,
            spooled,
            "accepted by socket",
        ));
        disp.shutdown(Duration::from_secs(5)).await;
    } else {
        rows.push(("journald".into(), f64::NAN, 0, "skipped: not running"));
    }
    rows
}

/// Latency: `submit()` → line read by a socket-server subscriber, at 1,000 alerts/s for
/// `secs` seconds.
async fn latency(dir: &Path, secs: u64) {
    let path = dir.join("lat.sock");
    let disp = Dispatcher::start(cfg(
        &dir.join("s6"),
        &format!("socket-server:{}", path.display()),
    ))
    .await
    .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let lats = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t0 = Instant::now();
    spawn_reader(
        UnixStream::connect(&path).await.unwrap(),
        count.clone(),
        Some((t0, lats.clone())),
    );
    while disp.stats().sinks[0].subscribers == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = secs * 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut submit_ns = Vec::with_capacity(usize::try_from(total).unwrap());
    for i in 0..total {
        tick.tick().await;
        let t = u64::try_from(t0.elapsed().as_nanos()).unwrap();
        let alert = Arc::new(doc("lat", i, t));
        let before = Instant::now();
        disp.submit(alert);
        submit_ns.push(u64::try_from(before.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    submit_ns.sort_unstable();
    while count.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut v = lats.lock().unwrap().clone();
    v.sort_unstable();
    // The quantile `permille`/1000 of the latencies, in µs.
    let q = |permille: usize| v[(v.len() - 1) * permille / 1000] as f64 / 1000.0;
    println!();
    println!("latency submit() → socket-server subscriber, {total} alerts at 1,000/s:");
    println!(
        "  p50 {:.0} µs   p99 {:.0} µs   p99.9 {:.0} µs   max {:.0} µs   (target p99 ≤ 5000 µs: {})",
        q(500),
        q(990),
        q(999),
        q(1000),
        if q(990) <= 5000.0 { "met" } else { "NOT met" }
    );
    println!(
        "  submit() call itself: p50 {:.1} µs   p99 {:.1} µs   max {:.1} µs",
        submit_ns[submit_ns.len() / 2] as f64 / 1000.0,
        submit_ns[submit_ns.len() * 99 / 100] as f64 / 1000.0,
        submit_ns[submit_ns.len() - 1] as f64 / 1000.0,
    );
    disp.shutdown(Duration::from_secs(5)).await;
}
