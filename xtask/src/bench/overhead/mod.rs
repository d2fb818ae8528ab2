//! `cargo xtask bench`: the overhead table. First the in-kernel cost of the eBPF-based
//! monitors from the kernel's own BPF statistics, then interleaved rounds of exec batches
//! (latency, CPU, memory) with every monitor, then the table.

mod report;

use std::{path::Path, time::Duration};

use anyhow::Context as _;

use self::report::{Report, Row};
use crate::bench::{
    args::BenchArgs,
    drive::{Pace, drive, marked_args},
    monitor::{
        Kind, Monitor,
        agent::{AgentEnv, Metrics},
    },
    procfs::{read_bpf_stats_enabled, set_bpf_stats},
    workload::{Workload, timed_batch},
};

pub fn run(args: &BenchArgs, env: &AgentEnv, setup_err: Option<&str>) -> anyhow::Result<()> {
    let w = Workload::prepare()?;
    let n = args.execs;
    let mut rows = vec![Row::new(Kind::Nothing)];
    for name in &args.monitors {
        let k = Kind::parse(name)?;
        if !rows.iter().any(|r| r.kind == k) {
            rows.push(Row::new(k));
        }
    }
    if let Some(e) = setup_err {
        for row in &mut rows {
            if matches!(row.kind, Kind::Auditd | Kind::Bpftrace) {
                row.failure = Some(format!("bench-setup.sh failed: {e}"));
            }
        }
    }

    // 1. In-kernel cost of the eBPF-based monitors, from the kernel's own BPF statistics.
    let prev_stats = read_bpf_stats_enabled();
    set_bpf_stats("1")?;
    for row in &mut rows {
        if matches!(row.kind, Kind::Agent | Kind::Bpftrace) && row.failure.is_none() {
            kernel_phase(env, &w, n, row);
        }
    }
    set_bpf_stats(prev_stats.as_deref().unwrap_or("0"))?;

    // 2. Exec-storm latency, CPU and memory: interleaved rounds, order rotated and alternated.
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.rotate_left(round % rows.len());
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let row = &mut rows[i];
            if row.failure.is_none() {
                round_of(args, env, &w, round, row)?;
            }
        }
        eprintln!("bench: round {}/{} done", round + 1, args.rounds);
    }

    // 3. The table.
    Report {
        execs: n,
        rounds: args.rounds,
        paced_rate: args.paced_rate,
        rows: &rows,
        config_append: &env.config_append,
    }
    .print();
    Ok(())
}

/// The kernel-stats phase of one monitor; a monitor that cannot start is marked failed.
fn kernel_phase(env: &AgentEnv, w: &Workload, n: usize, row: &mut Row) {
    let name = row.kind.name();
    let mut m = match Monitor::start(row.kind, env, None) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bench: {name}: kernel-stats phase: {e:#}");
            row.failure = Some(format!("{e:#}"));
            return;
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = m.metrics();
    let r = (|| -> anyhow::Result<()> {
        let (u, runs) = kernel_ns(&m, &w.unwatched, &w.small_args, n)?;
        row.ns_u = Some(u);
        row.runs_per_exec = Some(runs);
        row.ns_w = Some(kernel_ns(&m, &w.watched, &w.small_args, n)?.0);
        if row.kind == Kind::Agent {
            row.ns_w4k = Some(kernel_ns(&m, &w.watched, &w.big_args, n)?.0);
        }
        Ok(())
    })();
    // Per-program split from the agent's own metrics (names the fdinfo lacks); they are
    // refreshed once a second.
    std::thread::sleep(Duration::from_millis(1300));
    if let (Some(b), Some(a)) = (before, m.metrics()) {
        let phase_execs = if row.kind == Kind::Agent {
            3 * n
        } else {
            2 * n
        };
        if let Some(split) = program_split(&b, &a, phase_execs) {
            row.notes.push(split);
        }
    }
    m.alive();
    let exit = m.stop();
    row.lost += exit.lost_events();
    if let Err(e) = r {
        eprintln!("bench: {name}: kernel-stats phase: {e:#}");
        row.notes.push(format!("kernel ns not measured: {e:#}"));
    }
}

/// ns per run and runs of each of the agent's programs between two scrapes.
fn program_split(before: &Metrics, after: &Metrics, phase_execs: usize) -> Option<String> {
    let mut parts = vec![];
    for (k, v) in after.iter() {
        if let Some(prog) = k.strip_prefix("t1609_bpf_program_run_time_ns_total{program=\"") {
            let prog = prog.trim_end_matches("\"}");
            let cnt_key = format!("t1609_bpf_program_run_count_total{{program=\"{prog}\"}}");
            let dt = v - before.get(k);
            let dc = after.get(&cnt_key) - before.get(&cnt_key);
            if dc > 0.0 {
                parts.push(format!("{prog} {:.0} ns/run × {:.0} runs", dt / dc, dc));
            }
        }
    }
    (!parts.is_empty()).then(|| {
        format!(
            "kernel split over the {phase_execs}-exec phase: {}",
            parts.join(", ")
        )
    })
}

/// In-kernel ns per exec of the monitor's programs (all of them: a fork+exec+exit cycle
/// may run several) over `n` execs, and their runs per exec.
fn kernel_ns(m: &Monitor, exe: &Path, args: &[String], n: usize) -> anyhow::Result<(f64, f64)> {
    let before = m
        .procs
        .bpf_runs()
        .context("no eBPF program fd found in the monitor's fdinfo")?;
    timed_batch(exe, args, n)?;
    let after = m
        .procs
        .bpf_runs()
        .context("the monitor's eBPF programs vanished")?;
    Ok((
        (after.run_time_ns - before.run_time_ns) as f64 / n as f64,
        (after.run_cnt - before.run_cnt) as f64 / n as f64,
    ))
}

/// One round of one monitor: start it, measure, stop it. A monitor that cannot start is
/// marked failed; a failed measure ends the bench.
fn round_of(
    args: &BenchArgs,
    env: &AgentEnv,
    w: &Workload,
    round: usize,
    row: &mut Row,
) -> anyhow::Result<()> {
    let mut m = match Monitor::start(row.kind, env, None) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("bench: {}: {e:#}", row.kind.name());
            row.failure = Some(format!("{e:#}"));
            return Ok(());
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    let res = measure(args, w, &m, row);
    let alive = m.alive();
    let exit = m.stop();
    if row.kind == Kind::Agent {
        if !alive {
            row.notes.push(format!(
                "round {}: agent had exited ({:?})",
                round + 1,
                exit.status
            ));
        }
        if exit.stopped_line.is_some() {
            row.lost += exit.lost_events();
        } else {
            row.notes.push(format!(
                "round {}: no `t1609-agent stopped` line (exit {:?})",
                round + 1,
                exit.status
            ));
        }
    }
    res
}

/// The batches of one round under a running monitor: unwatched, watched (with the
/// monitor's CPU), the paced phase, then its memory.
fn measure(args: &BenchArgs, w: &Workload, m: &Monitor, row: &mut Row) -> anyhow::Result<()> {
    let n = args.execs;
    row.unwatched
        .push(timed_batch(&w.unwatched, &w.small_args, n)?);
    let cpu = m.procs.cpu_meter();
    row.watched.push(timed_batch(&w.watched, &w.small_args, n)?);
    std::thread::sleep(Duration::from_millis(300)); // let it finish the batch
    row.cpu_per_1000.push(cpu.per_1000(n));
    if args.paced_seconds > 0 {
        // The same watched argv at a steady rate from two threads: the monitor's share of
        // a core as measured, not extrapolated from a burst.
        let cpu = m.procs.cpu_meter();
        let pace = Pace {
            threads: 2,
            secs: args.paced_seconds,
            rate: Some(args.paced_rate),
        };
        let paced = drive(
            &w.storm_exe,
            &marked_args(&w.small_args, 0),
            pace,
            |_, _| {},
        );
        std::thread::sleep(Duration::from_millis(300));
        // Over the phase's own length: the drain's CPU is the phase's work.
        row.paced_pct.push(cpu.pct_of_core(paced.secs));
        row.paced_rate.push(paced.rate());
    }
    let (rss, hwm) = m.procs.rss_kib();
    row.rss_kib = row.rss_kib.max(rss);
    row.hwm_kib = row.hwm_kib.max(hwm);
    Ok(())
}
