//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (issue 8, "Hostile
//! input"), each for a bounded time, and fails if any of them finds a crash, a leak, a
//! timeout or an out-of-memory input.
//!
//! CI runs it with the default 20 s per target; run it longer on demand with
//! `--seconds-per-target`. cargo-fuzz is installed (pinned, `--locked`) when missing, so a
//! fresh machine only needs the nightly toolchain that `scripts/setup.sh` installs for
//! the eBPF build anyway.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The targets in `fuzz/fuzz_targets/`, with the largest input libFuzzer may generate for
/// each (`-max_len`).
pub const TARGETS: &[(&str, usize)] = &[
    // A 4,640-byte exec record plus continuation records of 4,136 bytes each.
    ("decode_record", 16_384),
    ("eql_parse", 4_096),
    ("config_parse", 8_192),
    ("replay_line", 8_192),
];

/// The cargo-fuzz release installed when `cargo fuzz` is missing. 0.13.2 builds with the
/// workspace's stable toolchain (1.95) and drives nightly 1.97 (`cargo +nightly fuzz`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The toolchain the fuzz targets build with (sanitizers and `-Z` flags need nightly).
const TOOLCHAIN: &str = "+nightly";

/// Slack on top of `-max_total_time` before a target is killed: libFuzzer finishes the
/// current input, then writes its final stats, and the address sanitizer's leak check
/// runs at exit.
const GRACE: Duration = Duration::from_mins(2);

#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Fuzzing time per target in seconds (libFuzzer `-max_total_time`), not counting
    /// the build.
    #[arg(long, default_value_t = 20)]
    pub seconds_per_target: u64,
    /// Run only this target (`decode_record`, `eql_parse`, `config_parse`, `replay_line`).
    #[arg(long)]
    pub target: Option<String>,
    /// cargo-fuzz sanitizer (address by default; `none` builds in a fraction of the time,
    /// which is what the short CI run uses: panics and hangs are still caught).
    #[arg(long)]
    pub sanitizer: Option<String>,
}

/// One target's outcome.
struct Outcome {
    target: &'static str,
    /// libFuzzer's last status line (`#runs ... cov: ... ft: ... exec/s: ...`).
    last_status: Option<String>,
    /// Artifacts (crash-*, leak-*, timeout-*, oom-*, slow-unit-*) written during the run.
    artifacts: Vec<PathBuf>,
    failure: Option<String>,
}

pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let targets: Vec<(&'static str, usize)> = match &args.target {
        None => TARGETS.to_vec(),
        Some(name) => match TARGETS.iter().find(|(t, _)| t == name) {
            Some(t) => vec![*t],
            None => bail!(
                "unknown fuzz target {name:?}; targets: {}",
                TARGETS
                    .iter()
                    .map(|(t, _)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    if args.seconds_per_target == 0 {
        bail!("--seconds-per-target must be at least 1");
    }

    ensure_cargo_fuzz(&root)?;

    // Build every selected target once, up front, so a build failure is reported as one
    // and the per-target time limits only measure fuzzing.
    let mut build = cargo_fuzz(&root);
    build.args(["build", "--fuzz-dir"]).arg(&fuzz_dir);
    if let Some(san) = &args.sanitizer {
        build.args(["--sanitizer", san]);
    }
    // `cargo fuzz build` takes one target, or none for all of them.
    if let [(t, _)] = targets.as_slice() {
        build.arg(t);
    }
    crate::run(&mut build).context("building the fuzz targets")?;

    let mut outcomes = Vec::new();
    for (target, max_len) in targets {
        outcomes.push(run_target(
            &root,
            &fuzz_dir,
            target,
            max_len,
            args.seconds_per_target,
            args.sanitizer.as_deref(),
        )?);
    }

    eprintln!("\nxtask fuzz: {} s per target", args.seconds_per_target);
    for o in &outcomes {
        let verdict = if o.failure.is_some() { "FAILED" } else { "ok" };
        eprintln!(
            "  {:<14} {verdict:<6} {}",
            o.target,
            o.last_status
                .as_deref()
                .unwrap_or("(no libFuzzer status line)")
        );
        for a in &o.artifacts {
            eprintln!("    artifact: {}", a.display());
            eprintln!(
                "    reproduce: cargo {TOOLCHAIN} fuzz run --fuzz-dir {} {} {}",
                fuzz_dir.display(),
                o.target,
                a.display()
            );
        }
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.target)))
        .collect();
    if failed.is_empty() {
        eprintln!("xtask fuzz: no crashes");
        Ok(())
    } else {
        bail!("xtask fuzz failed:\n  {}", failed.join("\n  "))
    }
}

/// `cargo +nightly fuzz` with the outer (stable) cargo's environment removed, so the
/// nightly toolchain is the one that builds.
fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(TOOLCHAIN).arg("fuzz").current_dir(root);
    for key in ["RUSTUP_TOOLCHAIN", "RUSTC", "CARGO", "RUSTDOC"] {
        cmd.env_remove(key);
    }
    cmd
}

/// Installs cargo-fuzz when `cargo fuzz --version` fails. Idempotent.
fn ensure_cargo_fuzz(root: &Path) -> anyhow::Result<()> {
    let probe = |toolchain: Option<&str>| {
        let mut cmd = Command::new("cargo");
        if let Some(t) = toolchain {
            cmd.arg(t);
        }
        cmd.args(["fuzz", "--version"])
            .current_dir(root)
            .env_remove("RUSTUP_TOOLCHAIN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(v) = probe(Some(TOOLCHAIN)) {
        eprintln!("xtask fuzz: {v}");
        return Ok(());
    }
    let nightly = Command::new("cargo")
        .args([TOOLCHAIN, "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(nightly, Ok(s) if s.success()) {
        bail!(
            "`cargo {TOOLCHAIN}` is not available: run scripts/setup.sh (it installs the nightly toolchain)"
        );
    }
    eprintln!("xtask fuzz: cargo-fuzz missing, installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    crate::run(
        Command::new("cargo")
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .current_dir(root)
            .env_remove("RUSTUP_TOOLCHAIN")
            // Our CARGO_TARGET_DIR (if any) is for the workspace, not for tools.
            .env_remove("CARGO_TARGET_DIR"),
    )
    .context("installing cargo-fuzz")?;
    match probe(Some(TOOLCHAIN)) {
        Some(v) => {
            eprintln!("xtask fuzz: installed {v}");
            Ok(())
        }
        None => bail!(
            "cargo-fuzz was installed but `cargo {TOOLCHAIN} fuzz --version` still fails (is ~/.cargo/bin on PATH?)"
        ),
    }
}

/// Every file under `fuzz/artifacts/<target>/`.
fn artifacts(fuzz_dir: &Path, target: &str) -> BTreeSet<PathBuf> {
    let dir = fuzz_dir.join("artifacts").join(target);
    std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_group(child: &Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: plain syscall; the child leads its own process group (process_group(0)), so
    // this reaches cargo-fuzz and the fuzzer binary it spawned, and nothing else.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn run_target(
    root: &Path,
    fuzz_dir: &Path,
    target: &'static str,
    max_len: usize,
    seconds: u64,
    sanitizer: Option<&str>,
) -> anyhow::Result<Outcome> {
    let before = artifacts(fuzz_dir, target);
    let mut cmd = cargo_fuzz(root);
    cmd.args(["run", "--fuzz-dir"]).arg(fuzz_dir);
    if let Some(san) = sanitizer {
        cmd.args(["--sanitizer", san]);
    }
    cmd.arg(target)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-rss_limit_mb=2048")
        .arg(format!("-max_len={max_len}"))
        // One input running this long is a hang, which counts as a failure.
        .arg("-timeout=30")
        .arg("-print_final_stats=1")
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .process_group(0);
    eprintln!("xtask: {cmd:?}");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning cargo fuzz run {target}"))?;

    // libFuzzer reports on stderr: pass it through and keep the last status line.
    let last_status = Arc::new(Mutex::new(None::<String>));
    let stderr = child.stderr.take().context("child stderr")?;
    let reader = {
        let last_status = Arc::clone(&last_status);
        std::thread::spawn(move || {
            let mut out = std::io::stderr();
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let _ = out.write_all(&line);
                let _ = out.write_all(b"\n");
                let text = String::from_utf8_lossy(&line);
                if text.starts_with('#') && text.contains(" cov: ") {
                    *last_status.lock().expect("status lock") = Some(text.trim().to_owned());
                }
            }
        })
    };

    // Bounded: the build is done already, so the whole run gets the fuzzing time plus
    // a grace period.
    let deadline = Duration::from_secs(seconds) + GRACE;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for cargo fuzz")? {
            break Some(status);
        }
        if started.elapsed() > deadline {
            eprintln!("xtask fuzz: {target} still running after {deadline:?}, killing it");
            kill_group(&child);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = reader.join();

    let new: Vec<PathBuf> = artifacts(fuzz_dir, target)
        .difference(&before)
        .cloned()
        .collect();
    let failure = match status {
        None => Some(format!("did not finish within {deadline:?}")),
        Some(s) if !s.success() => Some(match new.first() {
            Some(a) => format!("libFuzzer failed ({s}); artifact {}", a.display()),
            None => format!(
                "cargo fuzz run exited with {s} (no new artifact under fuzz/artifacts/{target}/)"
            ),
        }),
        Some(_) if !new.is_empty() => Some(format!("new artifact {}", new[0].display())),
        Some(_) => None,
    };
    let last_status = last_status.lock().expect("status lock").clone();
    Ok(Outcome {
        target,
        last_status,
        artifacts: new,
        failure,
    })
}
