//! Developer tasks: running things, not building them (the agent's build.rs builds the
//! eBPF object). `cargo xtask test` runs every test for real; `cargo xtask bench` prints
//! the overhead table.

mod bench;
mod fuzz;
mod latency;
mod lint;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lint (`xtask lint`), start journald and dockerd, then run the whole test suite
    /// with the kernel tests mandatory (`T1609_REQUIRE_PRIVILEGED=1`), the deployment
    /// checks and a short fuzz of each target. Needs root.
    Test {
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Overhead benchmark: in-kernel ns per exec and exec-storm slowdown, agent vs none,
    /// interleaved rounds. Needs root.
    Bench(bench::BenchArgs),
    /// Exec-to-delivery latency through the live agent to a socket subscriber. Needs root.
    Latency(latency::LatencyArgs),
    /// Formatting and clippy (every warning an error), as CI runs them.
    Lint,
    /// Run the cargo-fuzz targets (fuzz/) for a bounded time each; fails on any crash.
    Fuzz(fuzz::FuzzArgs),
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// The agent binary a benchmark runs: `explicit`, or a fresh `cargo build --release`.
pub fn release_agent(explicit: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let root = workspace_root();
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["build", "--release", "-p", "t1609-agent"]),
    )?;
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release/t1609-agent"))
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn test(cargo_args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root();
    run(Command::new("bash").arg(root.join("scripts/services.sh")))?;
    // Lint first: a clean tree is part of passing, but the tests still run after a lint
    // failure so one run shows everything.
    let mut failures = lint::run_all();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&root)
        .env("T1609_REQUIRE_PRIVILEGED", "1")
        .args([
            "test",
            "--workspace",
            "--exclude",
            "t1609-agent-ebpf",
            "--no-fail-fast",
        ])
        .args(cargo_args);
    if let Err(e) = run(&mut cargo) {
        failures.push(format!("cargo test: {e:#}"));
    }
    let deploy_check = root.join("deploy/tests/check.sh");
    if deploy_check.exists()
        && let Err(e) = run(Command::new("bash").arg(&deploy_check).current_dir(&root))
    {
        failures.push(format!("deploy checks: {e:#}"));
    }
    // Fuzzing: each target for a short bounded time (T1609_FUZZ_SECONDS, default 10; 0
    // skips it). `cargo xtask fuzz` runs longer on demand.
    let fuzz_secs = std::env::var("T1609_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10);
    if let Some(secs) = Some(fuzz_secs).filter(|s| *s > 0) {
        let args = fuzz::FuzzArgs {
            seconds_per_target: secs,
            target: None,
            sanitizer: Some("none".into()),
        };
        if let Err(e) = fuzz::run(&args) {
            failures.push(format!("fuzz: {e:#}"));
        }
    }
    if failures.is_empty() {
        eprintln!("xtask test: all suites passed");
        Ok(())
    } else {
        bail!("xtask test failed:\n  {}", failures.join("\n  "))
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Test { cargo_args } => test(&cargo_args),
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Latency(args) => latency::run(&args),
        Cmd::Fuzz(args) => fuzz::run(&args),
        Cmd::Lint => {
            let failures = lint::run_all();
            if failures.is_empty() {
                Ok(())
            } else {
                bail!("lint failed:\n  {}", failures.join("\n  "))
            }
        }
    }
}
