//! auditd with an execve rule: the peer every Linux host already has. It is started only
//! when no auditd runs; its rule is removed and the kernel's audit switch put back after.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::child;
use crate::bench::procfs::{Processes, find_pids_by_comm};

/// The rule added for the bench (`auditctl -a …`) and removed after (`auditctl -d …`).
pub const AUDIT_RULE: [&str; 7] = [
    "always,exit",
    "-F",
    "arch=b64",
    "-S",
    "execve",
    "-k",
    "t1609bench",
];

/// An auditd with the bench's rule in the kernel.
pub struct Auditd {
    /// The auditd we started; `None` when one was running already.
    pub child: Option<Child>,
    /// The kernel's audit `enabled` before the bench, to put back.
    prev_enabled: Option<String>,
}

/// A line of `auditctl -s` (`enabled 1`, `pid 123`), without its key.
fn audit_status(what: &str) -> Option<String> {
    let out = Command::new("auditctl").arg("-s").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(what).map(|v| v.trim().to_owned()))
}

impl Auditd {
    pub fn start() -> anyhow::Result<(Self, Processes)> {
        if Command::new("auditctl").arg("-v").output().is_err() {
            bail!("auditctl not installed (scripts/bench-setup.sh failed?)");
        }
        let mut this = Self {
            child: None,
            prev_enabled: audit_status("enabled "),
        };
        let mut pids = find_pids_by_comm("auditd");
        if pids.is_empty() {
            let child = spawn_auditd()?;
            pids = vec![child.id()];
            this.child = Some(child);
        }
        let out = Command::new("auditctl")
            .arg("-a")
            .args(AUDIT_RULE)
            .output()?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            this.stop();
            bail!("auditctl -a failed: {msg}");
        }
        // kauditd (kernel thread) formats and sends the records: its CPU is auditd's cost.
        let mut cpu = pids.clone();
        cpu.extend(find_pids_by_comm("kauditd"));
        let procs = Processes {
            cpu,
            mem: pids,
            bpf: vec![],
        };
        Ok((this, procs))
    }

    /// Removes the rule, stops the auditd we started, and disables auditing again if it
    /// was disabled before.
    pub fn stop(&mut self) {
        let _ = Command::new("auditctl")
            .arg("-d")
            .args(AUDIT_RULE)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = child::sigterm_and_wait(&mut c, Duration::from_secs(5));
        }
        if self.prev_enabled.as_deref() == Some("0") {
            let _ = Command::new("auditctl")
                .args(["-e", "0"])
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Starts auditd in the foreground and waits until the kernel names it as its audit daemon.
fn spawn_auditd() -> anyhow::Result<Child> {
    let mut child = Command::new("auditd")
        .args(["-n", "-s", "enable"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting auditd")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            bail!(
                "auditd exited at start ({s}): {}",
                err.trim().replace('\n', " | ")
            );
        }
        if audit_status("pid ").as_deref() == Some(&pid.to_string()) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child::sigterm_and_wait(&mut child, Duration::from_secs(2));
            bail!("auditd did not register with the kernel within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Drain its stderr.
    if let Some(e) = child.stderr.take() {
        std::thread::spawn(move || for _ in BufReader::new(e).lines() {});
    }
    Ok(child)
}
