//! The storm's table (the max-rate phase, then each paced rate) and the lines under it.

use crate::bench::{
    drive::StepResult,
    monitor::agent::{AgentExit, CAPTURED, LOST_CHUNKS, LOST_EVENTS, Metrics},
    table::Table,
};

/// One row of the table: a phase of watched execs against the agent.
pub struct Phase {
    pub label: String,
    /// The rate asked for, execs per second; `None`: as fast as possible.
    pub rate: Option<u32>,
    pub res: StepResult,
    /// Execs the agent recorded with this phase's marker.
    pub captured: u64,
    pub lost_ev: f64,
    pub lost_chunks: f64,
    /// Agent CPU, % of one core over the phase.
    pub cpu_pct: f64,
    pub rss_kib: u64,
    pub alive: bool,
}

impl Phase {
    fn missing(&self) -> u64 {
        self.res.issued.saturating_sub(self.captured)
    }
}

/// The agent's RSS at one tick of the max-rate storm.
pub struct Sample {
    pub t: f64,
    pub rss_kib: u64,
    pub alive: bool,
}

/// Everything the storm report shows.
pub struct Storm {
    pub exe_note: &'static str,
    pub threads: usize,
    pub ncpu: usize,
    /// The machine without a monitor.
    pub ceiling: StepResult,
    /// The max-rate phase.
    pub max: Phase,
    pub sweep: Vec<Phase>,
    /// The sweep's rates as asked (some may not have run).
    pub rates: Vec<u32>,
    pub samples: Vec<Sample>,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub hwm_storm_kib: u64,
    pub hwm_end_kib: u64,
    /// Metrics before the storm and at the end.
    pub m_start: Metrics,
    pub m_end: Metrics,
    /// Recorded lines without a marker.
    pub unmarked: u64,
    pub alive_end: bool,
    pub exit: AgentExit,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Storm {
    pub fn print(&self) {
        println!();
        println!(
            "Exec storm: t1609-agent, watched `docker exec -it …` execs ({}), {} spawner threads, {} CPUs",
            self.exe_note, self.threads, self.ncpu
        );
        println!(
            "Machine ceiling without a monitor: {:.0} exec/s ({} execs in {:.1} s)",
            self.ceiling.rate(),
            self.ceiling.issued,
            self.ceiling.secs
        );
        println!();
        let table = Table::compact(&[
            "phase",
            "exec/s target",
            "exec/s achieved",
            "execs issued",
            "recorded (marker)",
            "missing",
            "ringbuf lost events",
            "lost argv chunks",
            "agent CPU % of a core",
            "agent RSS MiB",
            "alive",
        ]);
        println!("{}", table.header());
        for p in std::iter::once(&self.max).chain(&self.sweep) {
            println!(
                "{}",
                table.row(&[
                    p.label.clone(),
                    p.rate.map_or_else(|| "max".to_owned(), |r| r.to_string()),
                    format!("{:.0}", p.res.rate()),
                    p.res.issued.to_string(),
                    p.captured.to_string(),
                    p.missing().to_string(),
                    format!("{:.0}", p.lost_ev),
                    format!("{:.0}", p.lost_chunks),
                    format!("{:.1}%", p.cpu_pct),
                    format!("{:.1}", mib(p.rss_kib)),
                    (if p.alive { "yes" } else { "NO" }).to_owned(),
                ])
            );
        }
        println!();
        self.print_summary();
    }

    fn print_summary(&self) {
        let rss_series: Vec<String> = self
            .samples
            .iter()
            .enumerate()
            .filter(|(i, s)| i % 5 == 4 || !s.alive)
            .map(|(_, s)| format!("{:.0}s:{:.1}", s.t, mib(s.rss_kib)))
            .collect();
        println!(
            "Agent RSS over the max-rate storm (MiB, every 5 s): start {:.1}, {}; after sweep {:.1}; VmHWM {:.1} (storm) / {:.1} (end)",
            mib(self.rss_start_kib),
            rss_series.join(" "),
            mib(self.rss_end_kib),
            mib(self.hwm_storm_kib),
            mib(self.hwm_end_kib)
        );
        let (m0, m_end) = (&self.m_start, &self.m_end);
        println!(
            "Loss counters over the whole run (metrics): captured {:.0}, ringbuf lost events {:.0}, lost argv chunks {:.0}; recorded lines without a marker: {}",
            m_end.since(m0, CAPTURED),
            m_end.since(m0, LOST_EVENTS),
            m_end.since(m0, LOST_CHUNKS),
            self.unmarked
        );
        let fails: u64 = self.max.res.failures
            + self.sweep.iter().map(|s| s.res.failures).sum::<u64>()
            + self.ceiling.failures;
        if fails > 0 {
            println!("Spawn failures (not counted as issued): {fails}");
        }
        let exit = &self.exit;
        let status = exit.status.as_deref().unwrap_or("?");
        if exit.stopped_line.is_some() {
            let field = |k: &str| exit.stop_field(k).unwrap_or_default();
            println!(
                "Agent stop line: events={} alerts={} lost_events={} lost_argv_chunks={} kernel_read_errors={} decode_errors={} (exit {status})",
                field("events"),
                field("alerts"),
                field("lost_events"),
                field("lost_argv_chunks"),
                field("kernel_read_errors"),
                field("decode_errors"),
            );
        } else {
            println!("Agent stop line: MISSING (exit {status})");
        }
        println!(
            "Agent kept running through the storm and the sweep: {}",
            if self.max.alive && self.alive_end {
                "yes"
            } else {
                "NO"
            }
        );
        // The knee: the first paced rate where the agent missed or lost an exec.
        let knee = self
            .sweep
            .iter()
            .find(|s| s.missing() > 0 || s.lost_ev > 0.0)
            .and_then(|s| s.rate);
        match knee {
            Some(r) => println!(
                "Knee: loss starts at the {r}/s step (first paced rate with a missing or lost event)"
            ),
            None => println!(
                "Knee: no loss at any paced rate up to {}/s (as achieved above)",
                self.rates.iter().max().unwrap_or(&0)
            ),
        }
        if let Some(s) = self.sweep.iter().find(|s| s.rate == Some(5000)) {
            let achieved = s.res.rate();
            let zero = s.res.issued == s.captured && s.lost_ev == 0.0;
            println!(
                "Sustained 5,000/s: achieved {achieved:.0}/s{}; {}",
                if achieved < 4750.0 {
                    " (machine could not sustain the target: not a valid 5,000/s test)"
                } else {
                    ""
                },
                if zero { "zero loss" } else { "LOSS" }
            );
        }
        if !exit.warnings.is_empty() {
            println!("Agent warnings/errors (first {}):", exit.warnings.len());
            for w in &exit.warnings {
                println!("  {w}");
            }
        }
    }
}
