//! `cargo xtask latency`: exec-to-delivery latency through the live agent to a
//! socket-server subscriber, at a paced rate of watched execs.

use std::{
    io::{BufRead, BufReader},
    os::unix::{net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct LatencyArgs {
    /// Watched execs per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Agent binary (default: build target/release/t1609-agent).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Make every command line distinct after the agent's normalization
    /// (`lat-<seq>d`, which keeps its digits), as an attacker's varied commands
    /// are; by default they all normalize to `lat-N`.
    #[arg(long)]
    distinct: bool,
    /// Run the agent with its default dedup window (10 s) instead of dedup off: each
    /// distinct command line opens a window and keeps its first alert for the follow-up.
    #[arg(long, requires = "distinct")]
    dedup: bool,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The value at fraction `p` of sorted values, nearest rank; NaN if empty.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rounded rank between 0 and the last index"
    )]
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

pub fn run(args: &LatencyArgs) -> anyhow::Result<()> {
    let agent_bin = crate::release_agent(args.agent.as_deref())?;
    let dir = std::env::temp_dir().join(format!("t1609-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("alerts.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[deliver]\nsinks = [\"socket-server:{}\"]\nspool_dir = {:?}\n[metrics]\nlisten = \"\"\n{}",
            sock.display(),
            dir.join("spool").display().to_string(),
            if args.dedup {
                ""
            } else {
                "[context]\ndedup_window_ms = 0\n"
            }
        ),
    )?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("busybox-static needed")?;
    let docker = dir.join("docker");
    std::fs::copy(&busybox, &docker)?;

    let mut agent = start_agent(&agent_bin, &config)?;
    let rx = subscribe(&sock)?;

    let total = usize::try_from(args.rate * args.seconds).context("--rate × --seconds")?;
    let suffix = if args.distinct { "d" } else { "" };
    let (sent, achieved) = fire(&docker, total, args.rate, suffix);
    let mut got = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < total && Instant::now() < deadline {
        if let Ok((seq, t)) = rx.recv_timeout(Duration::from_millis(200)) {
            got.entry(seq).or_insert(t);
        }
    }
    if let Ok(pid) = libc::pid_t::try_from(agent.id()) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let _ = agent.wait();
    let mut lat: Vec<f64> = got
        .iter()
        .filter_map(|(seq, t)| sent.get(*seq).map(|s| (*t as f64 - *s as f64) / 1e6))
        .collect();
    lat.sort_by(f64::total_cmp);
    println!();
    println!(
        "exec → socket-server subscriber latency ({} watched execs at {:.0}/s requested {}/s, {} command lines)",
        total,
        achieved,
        args.rate,
        match (args.distinct, args.dedup) {
            (false, _) => "alike, dedup off",
            (true, false) => "distinct, dedup off",
            (true, true) => "distinct, dedup on",
        }
    );
    println!("| delivered | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | target p99 |");
    println!("|-----------|----------|----------|----------|----------|------------|");
    println!(
        "| {:>4}/{:<4} | {:8.2} | {:8.2} | {:8.2} | {:8.2} | ≤ 5 ms     |",
        lat.len(),
        total,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts the agent and waits for its ready line; its stderr is drained after.
fn start_agent(bin: &Path, config: &Path) -> anyhow::Result<Child> {
    let mut agent = Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(agent.stderr.take().expect("piped")).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("t1609-agent ready") => break,
            Some(Ok(_)) => {}
            _ => bail!("agent exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(agent)
}

/// Connects to the agent's alert socket; each alert's marker sequence number and the
/// time it arrived, ns since the epoch.
fn subscribe(sock: &Path) -> anyhow::Result<mpsc::Receiver<(usize, u128)>> {
    let stream = UnixStream::connect(sock).context("connecting to the agent's socket")?;
    let (tx, rx) = mpsc::channel::<(usize, u128)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let t = now_ns();
            // The marker arg is "lat-<seq>", or "lat-<seq>d" with --distinct.
            if let Some(i) = line.find("lat-") {
                let seq: String = line[i + 4..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(seq) = seq.parse() {
                    let _ = tx.send((seq, t));
                }
            }
        }
    });
    Ok(rx)
}

/// Execs `docker exec -it lat-<seq><suffix> sh` `total` times at `rate` a second without
/// waiting for them; when each was sent (ns since the epoch) and the rate achieved.
fn fire(docker: &Path, total: usize, rate: u64, suffix: &str) -> (Vec<u128>, f64) {
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut sent = vec![0u128; total];
    let start = Instant::now();
    for (seq, sent_at) in sent.iter_mut().enumerate() {
        let due = start + period * u32::try_from(seq).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        *sent_at = now_ns();
        // Fire and forget: waiting for each would cap the rate at the exec latency.
        let _ = Command::new(docker)
            .arg0("true")
            .args(["exec", "-it", &format!("lat-{seq}{suffix}"), "sh"])
            .spawn()
            .map(|mut c| {
                std::thread::spawn(move || c.wait());
            });
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    (sent, achieved)
}
