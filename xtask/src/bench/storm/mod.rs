//! `cargo xtask bench --storm`: watched execs as fast as the machine can issue them
//! against the agent, then a sweep of paced rates, counting every exec the agent missed.

mod record;
mod report;

use std::time::Duration;

use anyhow::bail;

use self::{
    record::{MAX_STEPS, RecordCounter},
    report::{Phase, Sample, Storm},
};
use crate::bench::{
    args::BenchArgs,
    drive::{Pace, drive, marked_args},
    monitor::{
        Kind, Monitor,
        agent::{AgentEnv, LOST_CHUNKS, LOST_EVENTS, Metrics},
    },
    procfs::proc_status_kib,
    workload::Workload,
};

pub fn run(args: &BenchArgs, env: &AgentEnv) -> anyhow::Result<()> {
    let w = Workload::prepare()?;
    let ncpu = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let threads = args.threads.unwrap_or((2 * ncpu).max(4));
    if args.rates.len() + 2 > MAX_STEPS {
        bail!("at most {} rates", MAX_STEPS - 2);
    }

    // Step 0: the machine's own ceiling, no monitor (5 s).
    eprintln!("bench: storm: machine ceiling without a monitor (5 s, {threads} threads)");
    let pace = Pace {
        threads,
        secs: 5,
        rate: None,
    };
    let ceiling = drive(
        &w.storm_exe,
        &marked_args(&w.small_args, 0),
        pace,
        |_, _| {},
    );

    let fifo = env.tmp.join("record.fifo");
    let mut rig = Rig {
        counter: RecordCounter::start(&fifo)?,
        agent: Monitor::start(Kind::Agent, env, Some(&fifo))?,
        w: &w,
        threads,
    };
    std::thread::sleep(Duration::from_millis(1200)); // metrics refresh once a second
    let m_start = rig.scrape();
    let (rss_start_kib, _) = rig.agent.procs.rss_kib();

    // Step 1: as fast as possible.
    eprintln!(
        "bench: storm: {} s of watched execs as fast as possible, {threads} threads",
        args.seconds
    );
    let (max, samples, hwm_storm_kib) = rig.max_phase(args.seconds, &m_start);

    // The sweep: each rate for `rate_seconds`, until the agent dies.
    let mut sweep = vec![];
    for (i, &rate) in args.rates.iter().enumerate() {
        if !rig.agent.alive() {
            break;
        }
        eprintln!("bench: sweep {rate}/s for {} s", args.rate_seconds);
        sweep.push(rig.paced_phase(i + 2, rate, args.rate_seconds));
    }
    let alive_end = rig.agent.alive();
    let (rss_end_kib, hwm_end_kib) = rig.agent.procs.rss_kib();
    let m_end = rig.scrape();
    let exit = rig.agent.stop();
    let unmarked = rig.counter.finish();
    let _ = std::fs::remove_file(&fifo);

    Storm {
        exe_note: w.storm_exe_note,
        threads,
        ncpu,
        ceiling,
        max,
        sweep,
        rates: args.rates.clone(),
        samples,
        rss_start_kib,
        rss_end_kib,
        hwm_storm_kib,
        hwm_end_kib,
        m_start,
        m_end,
        unmarked,
        alive_end,
        exit,
    }
    .print();
    Ok(())
}

/// The agent under the storm, with what drives it and what counts its records.
struct Rig<'a> {
    w: &'a Workload,
    threads: usize,
    agent: Monitor,
    counter: RecordCounter,
}

impl Rig<'_> {
    /// The agent's metrics now (empty if they do not answer).
    fn scrape(&self) -> Metrics {
        self.agent.metrics().unwrap_or_default()
    }

    /// Step 1: watched execs as fast as possible for `secs`, sampling the agent's memory
    /// each second; the phase, the samples and the agent's `VmHWM` after it.
    fn max_phase(&mut self, secs: u64, m_start: &Metrics) -> (Phase, Vec<Sample>, u64) {
        let cpu = self.agent.procs.cpu_meter();
        let mut samples = vec![];
        let agent_pid = self.agent.procs.cpu[0];
        let mut last_print = 0.0;
        let pace = Pace {
            threads: self.threads,
            secs,
            rate: None,
        };
        let args = marked_args(&self.w.small_args, 1);
        let res = drive(&self.w.storm_exe, &args, pace, |t, issued| {
            let m = self.scrape();
            let rss_kib = proc_status_kib(agent_pid, "VmRSS");
            let alive = std::path::Path::new(&format!("/proc/{agent_pid}/stat")).exists();
            samples.push(Sample { t, rss_kib, alive });
            if t - last_print >= 10.0 {
                eprintln!(
                    "bench: storm t={t:.0}s issued={issued} rss={:.1} MiB lost={}",
                    rss_kib as f64 / 1024.0,
                    m.get(LOST_EVENTS)
                );
                last_print = t;
            }
        });
        let captured = self.counter.settle(
            1,
            res.issued,
            Duration::from_secs(3),
            Duration::from_secs(30),
        );
        std::thread::sleep(Duration::from_millis(1200));
        let cpu_pct = cpu.pct_of_core(res.secs);
        let m = self.scrape();
        let alive = self.agent.alive();
        let (rss_kib, hwm_kib) = self.agent.procs.rss_kib();
        let phase = Phase {
            label: format!("max {secs} s"),
            rate: None,
            captured,
            lost_ev: m.since(m_start, LOST_EVENTS),
            lost_chunks: m.since(m_start, LOST_CHUNKS),
            cpu_pct,
            rss_kib,
            alive,
            res,
        };
        (phase, samples, hwm_kib)
    }

    /// One step of the sweep: `rate` watched execs a second for `secs`.
    fn paced_phase(&mut self, step: usize, rate: u32, secs: u64) -> Phase {
        let before = self.scrape();
        let cpu = self.agent.procs.cpu_meter();
        let pace = Pace {
            threads: self.threads,
            secs,
            rate: Some(rate),
        };
        let args = marked_args(&self.w.small_args, step);
        let res = drive(&self.w.storm_exe, &args, pace, |_, _| {});
        let cpu_pct = cpu.pct_of_core(res.secs);
        let captured = self.counter.settle(
            step,
            res.issued,
            Duration::from_secs(2),
            Duration::from_secs(15),
        );
        std::thread::sleep(Duration::from_millis(1200));
        let after = self.scrape();
        Phase {
            label: format!("paced {secs} s"),
            rate: Some(rate),
            captured,
            lost_ev: after.since(&before, LOST_EVENTS),
            lost_chunks: after.since(&before, LOST_CHUNKS),
            cpu_pct,
            rss_kib: self.agent.procs.rss_kib().0,
            // Reported as alive: a dead agent ends the sweep before the next step.
            alive: true,
            res,
        }
    }
}
