//! What /proc says about a monitor's processes: CPU time, memory and the run statistics
//! of the eBPF programs they hold. Every reader answers 0 (or `None`) for a process that
//! is gone, so a monitor that died mid-round shows up as a note, not a failed bench.

use anyhow::Context as _;

/// The `kernel.bpf_stats_enabled` sysctl, which makes the kernel count `run_time_ns` and
/// `run_cnt` for every eBPF program.
const BPF_STATS_ENABLED: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Clock ticks per second, the unit of utime and stime in `/proc/<pid>/stat`.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64
}

/// CPU time of a process (all its threads), seconds; 0 if it is gone. The scheduler's
/// nanosecond run time (`/proc/<pid>/task/*/schedstat`) when available: utime + stime
/// count whole clock ticks (10 ms), too coarse for a 1,000-exec batch.
pub fn proc_cpu(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let ns: Option<u64> = tasks.ok().and_then(|dir| {
        dir.flatten()
            .map(|t| {
                let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
                s.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    });
    if let Some(ns) = ns.filter(|n| *n > 0) {
        return ns as f64 / 1e9;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / clk_tck()
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), KiB; 0 if it is gone.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Every process whose `comm` is `comm`.
pub fn find_pids_by_comm(comm: &str) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        {
            out.push(pid);
        }
    }
    out
}

/// Run statistics summed over eBPF programs (with `kernel.bpf_stats_enabled=1`).
#[derive(Clone, Copy, Default, Debug)]
pub struct BpfRuns {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl std::ops::AddAssign for BpfRuns {
    fn add_assign(&mut self, other: Self) {
        self.run_time_ns += other.run_time_ns;
        self.run_cnt += other.run_cnt;
    }
}

/// Sum of `run_time_ns` and `run_cnt` over every eBPF program fd the process holds; `None`
/// when it holds none.
pub fn bpf_prog_stats(pid: u32) -> Option<BpfRuns> {
    let mut found = None::<BpfRuns>;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if !text.contains("prog_type:") {
            continue;
        }
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        *found.get_or_insert_default() += BpfRuns {
            run_time_ns: field("run_time_ns:").unwrap_or(0),
            run_cnt: field("run_cnt:").unwrap_or(0),
        };
    }
    found
}

/// The current `kernel.bpf_stats_enabled`, to put back afterwards.
pub fn read_bpf_stats_enabled() -> Option<String> {
    std::fs::read_to_string(BPF_STATS_ENABLED)
        .ok()
        .map(|s| s.trim().to_owned())
}

pub fn set_bpf_stats(v: &str) -> anyhow::Result<()> {
    std::fs::write(BPF_STATS_ENABLED, v)
        .context("writing /proc/sys/kernel/bpf_stats_enabled (needs root)")
}

/// The processes that make up a monitor, each list for what is charged to it.
#[derive(Default, Debug)]
pub struct Processes {
    /// Processes whose CPU is charged to the monitor.
    pub cpu: Vec<u32>,
    /// Processes whose memory is the monitor's.
    pub mem: Vec<u32>,
    /// Processes holding the monitor's eBPF programs.
    pub bpf: Vec<u32>,
}

impl Processes {
    /// One process that is the whole monitor.
    pub fn single(pid: u32) -> Self {
        Self {
            cpu: vec![pid],
            mem: vec![pid],
            bpf: vec![pid],
        }
    }

    /// CPU seconds so far, all processes.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu.iter().map(|&p| proc_cpu(p)).sum()
    }

    /// A meter that reads the CPU these processes use from now on.
    pub fn cpu_meter(&self) -> CpuMeter {
        CpuMeter {
            pids: self.cpu.clone(),
            start: self.cpu_seconds(),
        }
    }

    /// (`VmRSS`, `VmHWM`) summed, KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let rss = self.mem.iter().map(|&p| proc_status_kib(p, "VmRSS")).sum();
        let hwm = self.mem.iter().map(|&p| proc_status_kib(p, "VmHWM")).sum();
        (rss, hwm)
    }

    /// Run statistics of every eBPF program the processes hold; `None` if none holds one.
    pub fn bpf_runs(&self) -> Option<BpfRuns> {
        let mut acc = None::<BpfRuns>;
        for runs in self.bpf.iter().filter_map(|&p| bpf_prog_stats(p)) {
            *acc.get_or_insert_default() += runs;
        }
        acc
    }
}

/// The CPU some processes used since the meter was made (schedstat, ns resolution).
pub struct CpuMeter {
    pids: Vec<u32>,
    start: f64,
}

impl CpuMeter {
    /// CPU seconds used since the start.
    pub fn seconds(&self) -> f64 {
        self.pids.iter().map(|&p| proc_cpu(p)).sum::<f64>() - self.start
    }

    /// CPU seconds per 1,000 of the `execs` issued since the start.
    pub fn per_1000(&self, execs: usize) -> f64 {
        self.seconds() * 1000.0 / execs as f64
    }

    /// Share of one core over `secs` of wall time since the start, %.
    pub fn pct_of_core(&self, secs: f64) -> f64 {
        self.seconds() / secs * 100.0
    }
}
