//! The overhead table and its notes, from what the rounds measured.

use crate::bench::{
    monitor::{Kind, auditd::AUDIT_RULE, bpftrace::BPFTRACE_PROG},
    procfs::clk_tck,
    stats::{mean, median, min_max, paired_median, paired_range, quantile},
    table::Table,
};

/// One kind of exec (unwatched or watched) over every round.
#[derive(Default)]
pub struct Batches {
    /// Every exec's µs, all rounds.
    pub lat: Vec<f64>,
    /// Each batch's mean µs.
    pub mean: Vec<f64>,
    /// Each batch's median µs, by round (paired with the baseline's same round).
    pub med: Vec<f64>,
    /// Each batch's 10th percentile µs, by round.
    pub p10: Vec<f64>,
}

impl Batches {
    /// Adds one round's batch: every exec's µs.
    pub fn push(&mut self, batch: Vec<f64>) {
        self.mean.push(mean(&batch));
        self.med.push(median(&batch));
        self.p10.push(quantile(&batch, 0.1));
        self.lat.extend(batch);
    }
}

/// What one monitor measured over the whole bench.
pub struct Row {
    pub kind: Kind,
    pub unwatched: Batches,
    pub watched: Batches,
    pub cpu_per_1000: Vec<f64>,
    /// Monitor CPU, % of one core, during each round's paced phase, and the rate achieved.
    pub paced_pct: Vec<f64>,
    pub paced_rate: Vec<f64>,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub ns_u: Option<f64>,
    pub ns_w: Option<f64>,
    pub ns_w4k: Option<f64>,
    pub runs_per_exec: Option<f64>,
    pub failure: Option<String>,
    pub lost: u64,
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            unwatched: Batches::default(),
            watched: Batches::default(),
            cpu_per_1000: vec![],
            paced_pct: vec![],
            paced_rate: vec![],
            rss_kib: 0,
            hwm_kib: 0,
            ns_u: None,
            ns_w: None,
            ns_w4k: None,
            runs_per_exec: None,
            failure: None,
            lost: 0,
            notes: vec![],
        }
    }
}

/// Everything the table shows.
pub struct Report<'a> {
    pub execs: usize,
    pub rounds: usize,
    pub paced_rate: u32,
    /// One per monitor, the baseline (`nothing`) first.
    pub rows: &'a [Row],
    /// `--agent-config-append`, as read.
    pub config_append: &'a str,
}

/// `1,600` for 1600.
fn thousands(rate: u32) -> String {
    if rate >= 1000 {
        format!("{},{:03}", rate / 1000, rate % 1000)
    } else {
        rate.to_string()
    }
}

fn table(paced_rate: u32) -> Table {
    let core_label = format!("% core @{}/s", thousands(paced_rate));
    Table::aligned(&[
        ("monitor", 20),
        ("unwatched µs", 12),
        ("ratio", 6),
        ("watched µs", 10),
        ("ratio", 6),
        ("batch-mean ratio u/w", 20),
        ("p10 ratio u/w", 13),
        ("CPU s/1k watched", 16),
        (core_label.as_str(), 15),
        ("RSS MiB", 7),
        ("HWM MiB", 7),
        ("kernel ns/exec unw.", 19),
        ("kernel ns/exec watched", 22),
        ("kernel ns/exec 4 KiB", 20),
    ])
}

/// The targets the agent is held to, under their columns.
const TARGET_ROW: [&str; 14] = [
    "target (t1609-agent)",
    "",
    "≤1.010",
    "",
    "≤1.030",
    "",
    "",
    "≤ 0.0125",
    "≤ 2.00%",
    "≤ 25",
    "",
    "",
    "",
    "",
];

impl Report<'_> {
    pub fn print(&self) {
        let n = self.execs;
        println!();
        println!(
            "Overhead per monitor ({n} execs per batch, {} interleaved rounds; µs = median of every exec; ratio = vs `nothing` in the same run)",
            self.rounds
        );
        let table = table(self.paced_rate);
        println!("{}", table.header());
        let mut notes = vec![];
        for r in self.rows {
            if let (Some(f), true) = (&r.failure, r.unwatched.lat.is_empty()) {
                let why = format!("not run: {}", f.replace('|', "/").replace('\n', " "));
                println!("{}", table.spanning_row(r.kind.name(), &why));
                continue;
            }
            println!("{}", table.row(&self.cells(r)));
            if r.kind != Kind::Nothing {
                self.notes(r, &mut notes);
            }
        }
        println!("{}", table.row(&TARGET_ROW));
        println!();
        self.print_notes(&notes);
    }

    fn baseline(&self) -> &Row {
        &self.rows[0]
    }

    /// The table's cells for one monitor.
    fn cells(&self, r: &Row) -> Vec<String> {
        let base = self.baseline();
        let (u, wt) = (median(&r.unwatched.lat), median(&r.watched.lat));
        let name = r.kind.name().to_owned();
        if r.kind == Kind::Nothing {
            let mut cells = vec![
                name,
                format!("{u:.1}"),
                format!("{:.3}", 1.0),
                format!("{wt:.1}"),
                format!("{:.3}", 1.0),
                "1.000 / 1.000".to_owned(),
                "1.000 / 1.000".to_owned(),
            ];
            cells.resize(14, "-".to_owned());
            return cells;
        }
        let (bu, bw) = (median(&base.unwatched.lat), median(&base.watched.lat));
        let (bmu, bmw) = (median(&base.unwatched.mean), median(&base.watched.mean));
        let cpu = median(&r.cpu_per_1000);
        let core_pct = if r.paced_pct.is_empty() {
            cpu * f64::from(self.paced_rate) / 10.0
        } else {
            median(&r.paced_pct)
        };
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        vec![
            name,
            format!("{u:.1}"),
            format!("{:.3}", u / bu),
            format!("{wt:.1}"),
            format!("{:.3}", wt / bw),
            format!(
                "{:.3} / {:.3}",
                median(&r.unwatched.mean) / bmu,
                median(&r.watched.mean) / bmw
            ),
            format!(
                "{:.3} / {:.3}",
                paired_median(&r.unwatched.p10, &base.unwatched.p10),
                paired_median(&r.watched.p10, &base.watched.p10)
            ),
            format!("{cpu:.4}"),
            format!("{core_pct:.2}%"),
            format!("{:.1}", r.rss_kib as f64 / 1024.0),
            format!("{:.1}", r.hwm_kib as f64 / 1024.0),
            opt(r.ns_u),
            opt(r.ns_w),
            opt(r.ns_w4k),
        ]
    }

    /// The notes under the table for one monitor (not the baseline).
    fn notes(&self, r: &Row, notes: &mut Vec<String>) {
        let base = self.baseline();
        let name = r.kind.name();
        if let Some(f) = &r.failure {
            notes.push(format!("{name}: partly failed: {f}"));
        }
        if let Some(runs) = r.runs_per_exec {
            notes.push(format!(
                "{name}: {runs:.2} eBPF program runs per unwatched fork+exec+exit"
            ));
        }
        // How much the ratio moves from round to round on this machine: each round's
        // batch median against the baseline's batch median of the same round.
        if r.unwatched.med.len() == base.unwatched.med.len() && !r.unwatched.med.is_empty() {
            let (lo, hi) = min_max(r.cpu_per_1000.iter().copied());
            if !r.paced_pct.is_empty() {
                let (plo, phi) = min_max(r.paced_pct.iter().copied());
                let (rlo, rhi) = min_max(r.paced_rate.iter().copied());
                notes.push(format!(
                    "{name}: paced phase: {plo:.2}–{phi:.2} % of a core per round at {rlo:.0}–{rhi:.0} watched exec/s achieved"
                ));
            }
            notes.push(format!(
                "{name}: per-round ratios (batch median vs the baseline's in the same round): unwatched {}, watched {}; CPU s/1k per round {lo:.4}–{hi:.4}",
                paired_range(&r.unwatched.med, &base.unwatched.med),
                paired_range(&r.watched.med, &base.watched.med),
            ));
        }
        if r.unwatched.p10.len() == base.unwatched.p10.len() && !r.unwatched.p10.is_empty() {
            notes.push(format!(
                "{name}: p10 ratios per round (batch 10th percentile vs the baseline's in the same round): unwatched {}, watched {}",
                paired_range(&r.unwatched.p10, &base.unwatched.p10),
                paired_range(&r.watched.p10, &base.watched.p10),
            ));
        }
        if r.kind == Kind::Agent {
            notes.push(format!(
                "{name}: ring-buffer events lost over the whole bench: {}",
                r.lost
            ));
        }
        notes.extend(r.notes.iter().map(|n| format!("{name}: {n}")));
    }

    /// How each column was measured, then the per-monitor notes.
    fn print_notes(&self, notes: &[String]) {
        let hz_note = 1000.0 / clk_tck();
        println!("Notes:");
        println!(
            "- µs = median over every exec of all rounds (robust to bursts from other load); batch-mean ratio = median of per-batch means, unwatched / watched; p10 ratio = median over rounds of the batch's 10th percentile vs the baseline's batch in the same round: the fast end, where other load on the machine adds least, but it misses a monitor's occasional long stalls, which the median and mean show."
        );
        println!(
            "- exec = fork+exec+wait of static busybox as `true`; unwatched = file named t1609-bench-true, watched = file named `docker`, argv `exec -it atomic-test-container /bin/sh`."
        );
        println!(
            "- CPU = run time of all threads from /proc/<pid>/task/*/schedstat, ns resolution (utime+stime, tick = {hz_note:.0} ms, where unavailable; auditd: auditd + kauditd kernel thread) over the watched batch + 300 ms drain. % core = the monitor's CPU from the start of each round's paced phase (the watched argv from two threads at the stated rate, exec'ing a 129-byte static ELF named `docker`) to 300 ms after its end / the phase's length, median of rounds; with --paced-seconds 0, CPU s per exec × the rate."
        );
        println!(
            "- RSS/HWM = VmRSS/VmHWM at the end of a round, max over rounds. kernel ns/exec = Σ run_time_ns of all the monitor's programs / execs issued (kernel.bpf_stats_enabled=1, separate phase)."
        );
        println!(
            "- agent config: stdout sink to /dev/null, [runtimes] enabled = false (no runtime watched), defaults otherwise; bpftrace: {BPFTRACE_PROG} > /dev/null; auditd: auditctl -a {}.",
            AUDIT_RULE.join(" ")
        );
        if !self.config_append.trim().is_empty() {
            println!(
                "- agent config appended (--agent-config-append): {}",
                self.config_append.trim().replace('\n', "; ")
            );
        }
        for n in notes {
            println!("- {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TARGET_ROW, table};

    /// The lines the table printed before it was rendered from column widths (the target
    /// row's "≤ 2.00%" then stood one space past its column).
    #[test]
    fn header_and_target_row_line_up() {
        let t = table(1600);
        assert_eq!(
            t.header(),
            "| monitor              | unwatched µs | ratio  | watched µs | ratio  | batch-mean ratio u/w | p10 ratio u/w | CPU s/1k watched | % core @1,600/s | RSS MiB | HWM MiB | kernel ns/exec unw. | kernel ns/exec watched | kernel ns/exec 4 KiB |\n\
             |----------------------|--------------|--------|------------|--------|----------------------|---------------|------------------|-----------------|---------|---------|---------------------|------------------------|----------------------|"
        );
        assert_eq!(
            t.row(&TARGET_ROW),
            "| target (t1609-agent) |              | ≤1.010 |            | ≤1.030 |                      |               |         ≤ 0.0125 |         ≤ 2.00% |    ≤ 25 |         |                     |                        |                      |"
        );
        assert!(table(500).header().starts_with(
            "| monitor              | unwatched µs | ratio  | watched µs | ratio  | batch-mean ratio u/w | p10 ratio u/w | CPU s/1k watched | % core @500/s   |"
        ));
    }
}
