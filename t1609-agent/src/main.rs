//! t1609-agent command line.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use t1609_agent::{
    config::{CaptureMode, Config},
    daemon::{self, RunArgs},
};

#[derive(Parser)]
#[command(
    name = "t1609-agent",
    version,
    about = "Detects MITRE ATT&CK T1609 (Container Administration Command) with eBPF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the eBPF probe and watch execs (needs root or `CAP_BPF` + `CAP_PERFMON`).
    Run {
        /// TOML config file (every key optional).
        #[arg(long)]
        config: Option<PathBuf>,
        /// `rules`: only executables the rules can match; `all`: every exec.
        #[arg(long, value_enum)]
        capture: Option<CaptureMode>,
        /// Append every captured event as one ECS JSON line to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE|-")]
        record: Option<PathBuf>,
        /// Extra rule file or directory (repeatable), loaded after the built-in pack.
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Alert sink (repeatable): stdout, journald, socket-server:PATH, socket-client:PATH, <file:PATH>.
        #[arg(long = "output", value_name = "SINK")]
        outputs: Vec<String>,
    },
    /// Run the rules over recorded ECS events (JSON lines, FILE or `-`), alerts to stdout.
    Replay {
        #[arg(value_name = "FILE|-")]
        input: PathBuf,
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Config file whose rules, exceptions and dedup window apply, as in `run`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Rule tools.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Config tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files or directories (the built-in pack when none are given).
    Check { paths: Vec<PathBuf> },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file without starting.
    Check { file: PathBuf },
}

fn init_logging() {
    use std::io::IsTerminal as _;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("T1609_LOG").unwrap_or_else(|_| "info".into());
    // No colour codes in journald or log files.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

fn replay(
    input: &PathBuf,
    rules: &[PathBuf],
    config: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let config = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut text = String::new();
    if input.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(input)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", input.display()))?;
    }
    let o = t1609_agent::replay::replay(
        &text,
        rules,
        &config,
        std::io::stdout().lock(),
        std::io::stderr().lock(),
    )?;
    eprintln!(
        "replay: {} lines, {} bad, {} alerts written ({} from Kubernetes audit events), {} suppressed by exceptions, {} deduplicated",
        o.lines, o.bad_lines, o.alerts, o.audit_alerts, o.suppressed, o.deduplicated
    );
    Ok(if o.bad_lines > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `rules check`: the count loaded, then the rules skipped, by kind and one per line
/// (Elastic's and Sigma's rule directories hold rules for other event kinds too).
fn print_rule_report(report: &t1609_detect::RuleReport) {
    println!(
        "ok: {} rules loaded, {} skipped",
        report.loaded,
        report.skipped.len()
    );
    for (kind, n) in report.skipped_by_kind() {
        println!("  {n:>5} skipped: {}", kind.describe());
    }
    for s in &report.skipped {
        println!("{s}");
    }
}

fn main() -> ExitCode {
    t1609_agent::memory::tune_allocator();
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run {
            config,
            capture,
            record,
            rules,
            outputs,
        } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(daemon::run(RunArgs {
                    config_path: config,
                    capture,
                    record,
                    rules,
                    outputs,
                }))
                .map_err(anyhow::Error::from)
            })
            .map(|()| ExitCode::SUCCESS),
        Command::Replay {
            input,
            rules,
            config,
        } => replay(&input, &rules, config.as_ref()),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => match t1609_detect::check_rules_report(&paths) {
            Ok(report) => {
                print_rule_report(&report);
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Config {
            command: ConfigCommand::Check { file },
        } => Config::load(&file)
            .map(|_| {
                println!("ok: {}", file.display());
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("t1609-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
