//! bpftrace running an execsnoop-style argv join: the ad-hoc eBPF peer.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::child;
use crate::bench::procfs::{Processes, bpf_prog_stats};

pub const BPFTRACE_PROG: &str =
    r#"tracepoint:syscalls:sys_enter_execve { printf("%-6d ", pid); join(args->argv); }"#;

pub struct Bpftrace {
    pub child: Child,
}

impl Bpftrace {
    /// Starts bpftrace and waits until its probe is attached.
    pub fn start() -> anyhow::Result<(Self, Processes)> {
        let mut child = Command::new("bpftrace")
            .args(["-e", BPFTRACE_PROG])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bpftrace (scripts/bench-setup.sh failed?)")?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut said = vec![];
        loop {
            while let Ok(l) = rx.try_recv() {
                said.push(l);
            }
            if let Ok(Some(s)) = child.try_wait() {
                bail!("bpftrace exited ({s}): {}", said.join(" | "));
            }
            // Attached once it holds a program fd and a perf-event (tracepoint) fd. (Its
            // "Attaching N probes" goes to stdout, which is /dev/null here.)
            if holds_perf_event(pid) && bpf_prog_stats(pid).is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child::sigterm_and_wait(&mut child, Duration::from_secs(2));
                bail!("bpftrace not attached within 30 s: {}", said.join(" | "));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
        std::thread::spawn(move || for _ in rx {});
        Ok((Self { child }, Processes::single(pid)))
    }

    pub fn stop(mut self) {
        // bpftrace prints its maps on SIGINT and exits.
        child::signal(&self.child, libc::SIGINT);
        let _ = child::sigterm_and_wait(&mut self.child, Duration::from_secs(5));
    }
}

/// Whether the process holds a perf-event fd (how a tracepoint is attached).
fn holds_perf_event(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("perf_event"))
        })
}
