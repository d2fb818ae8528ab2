//! `cargo xtask bench`: what the agent costs each exec on this machine, side by side with
//! peer monitors (auditd with an execve rule, bpftrace running an execsnoop-style argv
//! join); `cargo xtask bench --storm`: exec storms against the agent, counting loss; and
//! `cargo xtask bench --sweep`: the agent's and auditd's CPU per exec across rates, with
//! distinct and with repeated command lines.
//!
//! Absolute numbers on shared machines are noisy, so every latency figure is a ratio
//! against the no-monitor baseline measured in the same run, with the monitors' rounds
//! interleaved (their order rotated and alternated) so drift hits every side alike.
//! A peer that cannot run here is reported as a row with the reason, not a failure.
//!
//! Layout: this module checks and sets up, then hands over to `overhead` or `storm`,
//! or `sweep`, which run the rounds. Those use the parts below them and nothing uses them:
//! `monitor` (start/stop each monitor), `workload` and `drive` (the execs, timed or
//! paced), `procfs` (CPU, memory and eBPF run time of a monitor's processes), `stats`
//! and `table` (what is printed).

mod args;
mod drive;
mod monitor;
mod overhead;
mod procfs;
mod stats;
mod storm;
mod sweep;
mod table;
mod workload;

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

pub use self::args::BenchArgs;
use self::monitor::agent::AgentEnv;
use crate::workspace_root;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench needs root (eBPF, auditctl, kernel.bpf_stats_enabled)");
    }
    let bin = crate::release_agent(args.agent.as_deref())?;
    let tmp = std::env::temp_dir().join(format!("t1609-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let config_append = match &args.agent_config_append {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --agent-config-append {}", path.display()))?,
        None => String::new(),
    };
    let env = AgentEnv {
        bin,
        tmp: tmp.clone(),
        config_append,
        sinks: vec!["stdout".into()],
    };
    let result = if args.storm {
        storm::run(args, &env)
    } else if args.sweep {
        if !args.skip_setup
            && let Some(e) = bench_setup()
        {
            bail!(
                "the sweep compares with auditd, which scripts/bench-setup.sh could not install: {e}"
            );
        }
        sweep::run(args, &env)
    } else {
        let setup_err = if !args.skip_setup && args.wants_peers() {
            bench_setup()
        } else {
            None
        };
        overhead::run(args, &env, setup_err.as_deref())
    };
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Runs scripts/bench-setup.sh (installs auditd and bpftrace); the last line it said on
/// failure. Its failure only marks the peers as not run.
fn bench_setup() -> Option<String> {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/bench-setup.sh"))
        .stdout(Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            Some(err.lines().last().unwrap_or("failed").to_owned())
        }
        Err(e) => Some(e.to_string()),
    }
}
