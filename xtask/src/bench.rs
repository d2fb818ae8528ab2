//! `cargo xtask bench`: what the agent costs each exec on this machine.
//!
//! Absolute numbers on shared machines are noisy, so every figure that matters is a ratio
//! against a baseline measured in the same run, with the agent-on and agent-off rounds
//! interleaved (and their order alternated) so drift hits both sides alike.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{run as run_cmd, workspace_root};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Execs per measurement batch.
    #[arg(long, default_value_t = 2000)]
    execs: usize,
    /// Interleaved rounds (each runs the baseline and the agent once).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Agent binary (default: build target/release/t1609-agent).
    #[arg(long)]
    agent: Option<PathBuf>,
}

struct Agent {
    child: Child,
}

impl Agent {
    fn start(bin: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .arg("run")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the agent")?;
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("t1609-agent ready") => break,
                Some(Ok(_)) => {}
                _ => bail!("agent exited before it was ready"),
            }
        }
        // Keep draining stderr so the agent never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime of the agent in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after_comm = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / hz
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// `run_time_ns` and `run_cnt` of the agent's eBPF program, from its fd's fdinfo.
    fn prog_stats(&self) -> Option<(u64, u64)> {
        let dir = format!("/proc/{}/fdinfo", self.pid());
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if !text.contains("prog_type:") {
                continue;
            }
            let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
            if let (Some(t), Some(c)) = (field("run_time_ns:"), field("run_cnt:")) {
                return Some((t, c));
            }
        }
        None
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("agent exited with {status}");
        }
        Ok(())
    }
}

struct Workload {
    unwatched: PathBuf,
    watched: PathBuf,
    small_args: Vec<String>,
    big_args: Vec<String>,
}

impl Workload {
    /// Copies of static busybox run as `true`: one under an unwatched name, one named
    /// `docker` (watched: the kernel matches the task's comm, the file's basename).
    fn prepare() -> anyhow::Result<Self> {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("busybox-static is needed (scripts/setup.sh installs it)")?;
        let dir = std::env::temp_dir().join("t1609-bench");
        std::fs::create_dir_all(&dir)?;
        let unwatched = dir.join("t1609-bench-true");
        let watched = dir.join("docker");
        for p in [&unwatched, &watched] {
            std::fs::copy(&busybox, p)?;
        }
        let small_args = ["exec", "-it", "atomic-test-container", "/bin/sh"].map(String::from).to_vec();
        let mut big_args = small_args.clone();
        big_args.push("P".repeat(4096 - 64));
        Ok(Self { unwatched, watched, small_args, big_args })
    }

    /// Sequential fork+exec+wait; returns mean µs per exec.
    fn storm(&self, exe: &Path, args: &[String], n: usize) -> anyhow::Result<f64> {
        let start = Instant::now();
        for _ in 0..n {
            let status = Command::new(exe).arg0("true").args(args).status()?;
            if !status.success() {
                bail!("{} failed", exe.display());
            }
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
    }
}

fn set_bpf_stats(on: bool) -> anyhow::Result<()> {
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", if on { "1" } else { "0" })
        .context("writing /proc/sys/kernel/bpf_stats_enabled (needs root)")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// In-kernel ns per exec of the agent's program over `n` execs of `exe`.
fn kernel_ns(agent: &Agent, w: &Workload, exe: &Path, args: &[String], n: usize) -> anyhow::Result<f64> {
    let (t0, c0) = agent.prog_stats().context("agent's eBPF program not found in its fdinfo")?;
    w.storm(exe, args, n)?;
    let (t1, c1) = agent.prog_stats().context("agent's eBPF program vanished")?;
    Ok((t1 - t0) as f64 / (c1 - c0).max(1) as f64)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let agent_bin = match &args.agent {
        Some(p) => p.clone(),
        None => {
            run_cmd(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&root)
                .args(["build", "--release", "-p", "t1609-agent"]))?;
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("release/t1609-agent")
        }
    };
    let w = Workload::prepare()?;
    let n = args.execs;

    // 1. In-kernel cost, from the kernel's own BPF statistics.
    let agent = Agent::start(&agent_bin)?;
    set_bpf_stats(true)?;
    let ns_unwatched = kernel_ns(&agent, &w, &w.unwatched, &w.small_args, n);
    let ns_watched_small = kernel_ns(&agent, &w, &w.watched, &w.small_args, n);
    let ns_watched_4k = kernel_ns(&agent, &w, &w.watched, &w.big_args, n);
    set_bpf_stats(false)?;
    agent.stop()?;
    let (ns_unwatched, ns_watched_small, ns_watched_4k) = (ns_unwatched?, ns_watched_small?, ns_watched_4k?);

    // 2. Exec-storm latency, agent vs none, interleaved rounds with alternating order.
    let (mut base_u, mut base_w, mut agent_u, mut agent_w) = (vec![], vec![], vec![], vec![]);
    let mut cpu_per_1000 = vec![];
    let mut rss_kib = 0;
    for round in 0..args.rounds {
        for with_agent in if round % 2 == 0 { [false, true] } else { [true, false] } {
            if with_agent {
                let agent = Agent::start(&agent_bin)?;
                std::thread::sleep(Duration::from_millis(200));
                agent_u.push(w.storm(&w.unwatched, &w.small_args, n)?);
                let cpu0 = agent.cpu_seconds();
                agent_w.push(w.storm(&w.watched, &w.small_args, n)?);
                std::thread::sleep(Duration::from_millis(300)); // let it finish the batch
                cpu_per_1000.push((agent.cpu_seconds() - cpu0) * 1000.0 / n as f64);
                rss_kib = rss_kib.max(agent.peak_rss_kib());
                agent.stop()?;
            } else {
                base_u.push(w.storm(&w.unwatched, &w.small_args, n)?);
                base_w.push(w.storm(&w.watched, &w.small_args, n)?);
            }
        }
        eprintln!("bench: round {}/{} done", round + 1, args.rounds);
    }
    let (bu, bw, au, aw) = (median(&mut base_u), median(&mut base_w), median(&mut agent_u), median(&mut agent_w));
    let cpu = median(&mut cpu_per_1000);

    println!();
    println!("t1609-agent overhead ({} execs per batch, {} interleaved rounds, medians)", n, args.rounds);
    println!("| measure                                   | baseline | t1609-agent | ratio  | target  |");
    println!("|-------------------------------------------|----------|-------------|--------|---------|");
    println!("| fork+exec+wait, unwatched binary (µs)     | {bu:8.1} | {au:11.1} | {:6.3} | ≤ 1.010 |", au / bu);
    println!("| fork+exec+wait, watched `docker exec` (µs)| {bw:8.1} | {aw:11.1} | {:6.3} | ≤ 1.030 |", aw / bw);
    println!("| in-kernel ns/exec, unwatched              |        - | {ns_unwatched:11.0} |      - | ≤ 250   |");
    println!("| in-kernel ns/exec, watched, small argv    |        - | {ns_watched_small:11.0} |      - |       - |");
    println!("| in-kernel ns/exec, watched, 4 KiB argv    |        - | {ns_watched_4k:11.0} |      - | ≤ 4000  |");
    println!("| agent CPU s per 1,000 watched execs       |        - | {cpu:11.4} |      - |       - |");
    println!("| agent peak RSS (MiB)                      |        - | {:11.1} |      - | ≤ 25    |", rss_kib as f64 / 1024.0);
    Ok(())
}
