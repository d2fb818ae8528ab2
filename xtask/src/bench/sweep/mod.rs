//! `cargo xtask bench --sweep`: what a watched exec costs the agent across rates, with
//! distinct command lines (each a new command: the full pipeline and a new alert) and
//! with one repeated command line (the repeat shortcut and quiet mode), against auditd
//! with an execve rule in the same run.
//!
//! One agent runs throughout, with its alerts going to a socket-server sink that a
//! subscriber reads for the exec → delivery latency. For each rate, three phases in an
//! order that alternates from rate to rate: the agent with distinct command lines, the
//! agent with a repeated one, and auditd (its rule added for the phase, removed after;
//! the agent keeps running but is not measured then). CPU is the scheduler's run time
//! of every thread (auditd: auditd and the kauditd kernel thread) from the phase's start
//! to 300 ms after its last exec, so the drain counts; per 1,000 execs and as % of one
//! core over that span. An idle phase first measures the agent with no execs.

mod paced;
mod report;
mod subscriber;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use self::{report::Row, subscriber::Arrivals};
use super::{
    args::BenchArgs,
    monitor::{
        Kind, Monitor,
        agent::{AgentEnv, LOST_EVENTS},
    },
    procfs::Processes,
    workload::Workload,
};

/// After a phase's last exec, how long its monitor's CPU is still counted (the drain).
const DRAIN: Duration = Duration::from_millis(300);

/// What a phase measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phase {
    pub execs: u64,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub p99_ms: Option<f64>,
    pub delivered: usize,
}

impl Phase {
    pub fn per_1000(&self) -> f64 {
        self.cpu_s * 1000.0 / self.execs.max(1) as f64
    }

    pub fn pct_core(&self) -> f64 {
        self.cpu_s / self.wall_s * 100.0
    }
}

/// The kinds of phase, in the order of the first rate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind3 {
    Distinct,
    Repeated,
    Auditd,
}

pub fn run(args: &BenchArgs, env: &AgentEnv) -> anyhow::Result<()> {
    let work = Workload::prepare()?;
    let exe = &work.storm_exe;
    let sock = env.tmp.join("alerts.sock");
    let env = AgentEnv {
        sinks: vec![format!("socket-server:{}", sock.display())],
        bin: env.bin.clone(),
        tmp: env.tmp.clone(),
        config_append: env.config_append.clone(),
    };
    let mut agent = Monitor::start(Kind::Agent, &env, None).context("starting the agent")?;
    let arrivals = Arrivals::subscribe(&sock)?;
    let before = agent.metrics();
    println!(
        "Rate sweep: watched `docker exec -it …` execs ({}), {} s a phase; agent alerts to a socket-server subscriber",
        work.storm_exe_note, args.sweep_seconds
    );
    let idle = measure_idle(&agent.procs, args.idle_seconds);
    let mut rows = Vec::new();
    let mut phase_no = 0usize;
    for (i, &rate) in args.sweep_rates.iter().enumerate() {
        let mut order = [Kind3::Distinct, Kind3::Repeated, Kind3::Auditd];
        order.rotate_left(i % 3);
        if i % 2 == 1 {
            order.reverse();
        }
        let mut row = Row {
            rate,
            ..Row::default()
        };
        for kind in order {
            phase_no += 1;
            let total = usize::try_from(u64::from(rate) * args.sweep_seconds)
                .unwrap_or(usize::MAX)
                .max(1);
            let threads = threads_for(rate);
            match kind {
                Kind3::Distinct => {
                    let args_of = |seq: usize| exec_args(Some(subscriber::marker(phase_no, seq)));
                    row.distinct = measure(
                        &agent.procs,
                        || paced::run(exe, rate, total, threads, &args_of),
                        |started| {
                            // Let the last alerts arrive before reading the latencies.
                            std::thread::sleep(Duration::from_millis(200));
                            arrivals.latencies_ms(phase_no, started)
                        },
                    );
                }
                Kind3::Repeated => {
                    let args_of = |_seq: usize| exec_args(None);
                    row.repeated = measure(
                        &agent.procs,
                        || paced::run(exe, rate, total, threads, &args_of),
                        |_| Vec::new(),
                    );
                }
                Kind3::Auditd => {
                    let mut auditd =
                        Monitor::start(Kind::Auditd, &env, None).context("starting auditd")?;
                    let args_of = |seq: usize| exec_args(Some(subscriber::marker(phase_no, seq)));
                    row.auditd = measure(
                        &auditd.procs,
                        || paced::run(exe, rate, total, threads, &args_of),
                        |_| Vec::new(),
                    );
                    if !auditd.alive() {
                        bail!("auditd died during the {rate}/s phase");
                    }
                    auditd.stop();
                }
            }
            if !agent.alive() {
                bail!("the agent died during the {rate}/s phase");
            }
        }
        eprintln!("sweep: {rate}/s done");
        rows.push(row);
    }
    let lost = match (before, agent.metrics()) {
        (Some(b), Some(a)) => a.since(&b, LOST_EVENTS),
        _ => f64::NAN,
    };
    let exit = agent.stop();
    report::print(&rows, idle, lost, exit.stopped_line.as_deref());
    Ok(())
}

/// The idle agent's CPU, ms per second.
fn measure_idle(procs: &Processes, secs: u64) -> f64 {
    let meter = procs.cpu_meter();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    meter.seconds() * 1000.0 / start.elapsed().as_secs_f64()
}

/// One phase: `drive` runs the execs; `latencies` gets their start times after the drain.
fn measure(
    procs: &Processes,
    drive: impl FnOnce() -> paced::Paced,
    latencies: impl FnOnce(&[u64]) -> Vec<f64>,
) -> Phase {
    let meter = procs.cpu_meter();
    let start = Instant::now();
    let done = drive();
    std::thread::sleep(DRAIN);
    let cpu_s = meter.seconds();
    let wall_s = start.elapsed().as_secs_f64();
    let mut lat = latencies(&done.started_ns);
    lat.sort_by(f64::total_cmp);
    if done.failures > 0 {
        eprintln!("sweep: {} execs failed", done.failures);
    }
    Phase {
        execs: done.issued,
        cpu_s,
        wall_s,
        p99_ms: (!lat.is_empty()).then(|| super::stats::quantile(&lat, 0.99)),
        delivered: lat.len(),
    }
}

/// Spawner threads for a rate: one is enough to pace up to a few hundred a second; the
/// tiny ELF's fork+exec+wait takes ~150 µs, so high rates need several.
fn threads_for(rate: u32) -> usize {
    match rate {
        0..=400 => 1,
        401..=2000 => 2,
        _ => 4,
    }
}

/// `exec -it <target> /bin/sh`: the target a marker (distinct) or the same name.
fn exec_args(target: Option<String>) -> Vec<String> {
    vec![
        "exec".into(),
        "-it".into(),
        target.unwrap_or_else(|| "web".into()),
        "/bin/sh".into(),
    ]
}
