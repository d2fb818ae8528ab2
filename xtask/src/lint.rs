//! `cargo xtask lint`: the checks that keep the code clean, as CI runs them.
//!
//! - formatting, with the nightly rustfmt (the import grouping in `rustfmt.toml` is a
//!   nightly option);
//! - clippy with every warning an error (the workspace's pedantic set), on every target
//!   of the workspace;
//! - clippy on the eBPF crate, the way aya's template lints its probes: nightly, with
//!   `panic=abort` so its `no_std` crate builds for the host.

use std::process::Command;

use crate::{run, workspace_root};

fn cargo(toolchain: Option<&str>) -> Command {
    let mut c = match toolchain {
        // `cargo +nightly` goes through rustup's proxy; CARGO would pin the caller's.
        Some(t) => {
            let mut c = Command::new("cargo");
            c.arg(format!("+{t}"));
            c
        }
        None => Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    };
    c.current_dir(workspace_root());
    c
}

/// Runs every check; returns the ones that failed.
pub fn run_all() -> Vec<String> {
    let mut failures = Vec::new();
    let mut steps: Vec<(&str, Command)> = Vec::new();
    let mut fmt = cargo(Some("nightly"));
    fmt.args(["fmt", "--all", "--", "--check"]);
    steps.push(("cargo +nightly fmt --check", fmt));
    let mut clippy = cargo(None);
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--exclude",
        "t1609-agent-ebpf",
        "--",
        "-D",
        "warnings",
    ]);
    steps.push(("cargo clippy", clippy));
    let mut ebpf = cargo(Some("nightly"));
    ebpf.args([
        "clippy",
        "-p",
        "t1609-agent-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
        "-C",
        "panic=abort",
        "-Zpanic_abort_tests",
    ]);
    steps.push(("cargo +nightly clippy (eBPF crate)", ebpf));
    for (name, mut cmd) in steps {
        if let Err(e) = run(&mut cmd) {
            failures.push(format!("{name}: {e:#}"));
        }
    }
    failures
}
