//! The options of `cargo xtask bench`, shared by the overhead table and the storm mode.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Execs per measurement batch.
    #[arg(long, default_value_t = 2000)]
    pub execs: usize,
    /// Interleaved rounds (each runs every monitor once, order rotated and alternated).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Agent binary (default: build target/release/t1609-agent).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// A TOML file appended to the agent's bench config, to measure a setting's cost
    /// (e.g. `[network]` `runtime_sockets = []`). Sections only: the bench's own
    /// `[deliver]`, `[context]` and `[metrics]` come first.
    #[arg(long)]
    pub agent_config_append: Option<PathBuf>,
    /// Monitors compared against no monitor (comma list of agent, auditd, bpftrace).
    #[arg(long, value_delimiter = ',', default_value = "agent,auditd,bpftrace")]
    pub monitors: Vec<String>,
    /// Watched execs per second of the paced phase each round, whose monitor CPU is the
    /// "% core" column (the target is stated at 1,600/s).
    #[arg(long, default_value_t = 1600)]
    pub paced_rate: u32,
    /// Seconds of the paced phase each round (0: skip it; the column then extrapolates
    /// from the burst's CPU per exec).
    #[arg(long, default_value_t = 3)]
    pub paced_seconds: u64,
    /// Do not run scripts/bench-setup.sh (auditd and bpftrace must then be installed).
    #[arg(long)]
    pub skip_setup: bool,
    /// Exec-storm mode: watched execs as fast as possible, then a paced rate sweep.
    #[arg(long)]
    pub storm: bool,
    /// Storm mode: length of the as-fast-as-possible storm, seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Storm mode: parallel spawner threads (default: 2 per CPU, at least 4).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Storm mode: paced rates of the sweep, watched execs per second.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,1600,2000,5000")]
    pub rates: Vec<u32>,
    /// Storm mode: seconds per sweep step.
    #[arg(long, default_value_t = 10)]
    pub rate_seconds: u64,
    /// Rate-sweep mode: paced watched execs at each `--sweep-rates` rate, with distinct
    /// and with repeated command lines; the agent's and auditd's CPU per 1,000 execs and
    /// % of a core, and the agent's exec → subscriber p99, in one table.
    #[arg(long, conflicts_with = "storm")]
    pub sweep: bool,
    /// Sweep mode: the rates, watched execs per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,100,200,1000,1600,5000"
    )]
    pub sweep_rates: Vec<u32>,
    /// Sweep mode: seconds per phase (each rate runs three: agent distinct, agent repeated,
    /// auditd).
    #[arg(long, default_value_t = 5)]
    pub sweep_seconds: u64,
    /// Sweep mode: seconds of the idle phase (no execs) that measures the idle agent.
    #[arg(long, default_value_t = 5)]
    pub idle_seconds: u64,
}

impl BenchArgs {
    /// Whether a peer monitor (auditd, bpftrace) is asked for, so the set-up script that
    /// installs them has to run.
    pub fn wants_peers(&self) -> bool {
        self.monitors
            .iter()
            .any(|m| m.trim() != "agent" && m.trim() != "t1609-agent")
    }
}
