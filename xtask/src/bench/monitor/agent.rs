//! The agent as a monitor under test: its bench config, its start (ready line, metrics
//! address), what it says on the way out, and its metrics endpoint.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::child;
use crate::bench::procfs::Processes;

/// How the bench runs the agent.
pub struct AgentEnv {
    pub bin: PathBuf,
    /// The bench's scratch directory: config, spool, record FIFO.
    pub tmp: PathBuf,
    /// TOML appended to the bench's agent config (`--agent-config-append`).
    pub config_append: String,
    /// The agent's sinks (`[deliver] sinks`): stdout (its stdout is /dev/null) unless a
    /// mode needs to read the alerts.
    pub sinks: Vec<String>,
}

impl AgentEnv {
    fn write_config(&self) -> anyhow::Result<PathBuf> {
        let spool = self.tmp.join("spool");
        std::fs::create_dir_all(&spool)?;
        let path = self.tmp.join("agent.toml");
        // The sinks (stdout goes to /dev/null, the child's stdout); no runtime watched so dockerd is
        // not part of the measure; metrics on an ephemeral port for loss counters.
        std::fs::write(
            &path,
            format!(
                "[deliver]\nsinks = {:?}\nspool_dir = \"{}\"\n\n[runtimes]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n{}",
                self.sinks,
                spool.display(),
                self.config_append
            ),
        )?;
        Ok(path)
    }
}

/// What the agent wrote on its way out.
#[derive(Default, Clone, Debug)]
pub struct AgentExit {
    pub stopped_line: Option<String>,
    pub status: Option<String>,
    pub warnings: Vec<String>,
}

impl AgentExit {
    /// A `key=value` field of the `t1609-agent stopped` line.
    pub fn stop_field(&self, key: &str) -> Option<String> {
        self.stopped_line.as_deref().and_then(|l| kv(l, key))
    }

    /// Ring-buffer events the agent counted as lost (0 without a stop line).
    pub fn lost_events(&self) -> u64 {
        self.stop_field("lost_events")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A running agent.
pub struct Agent {
    pub child: Child,
    /// Address of its metrics endpoint, if it serves one.
    pub metrics: Option<String>,
    stderr_thread: Option<JoinHandle<AgentExit>>,
}

impl Agent {
    /// Starts the agent and waits for its ready line; `record`: its `--record` file.
    pub fn start(env: &AgentEnv, record: Option<&Path>) -> anyhow::Result<(Self, Processes)> {
        let config = env.write_config()?;
        let mut cmd = Command::new(&env.bin);
        cmd.arg("run").arg("--config").arg(&config);
        if let Some(r) = record {
            cmd.arg("--record").arg(r);
        }
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the agent")?;
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut early = vec![];
        let ready = loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("t1609-agent ready") => break l,
                Some(Ok(l)) => early.push(l),
                _ => {
                    let _ = child.wait();
                    bail!("agent exited before it was ready: {}", early.join(" | "));
                }
            }
        };
        let metrics = kv(&ready, "metrics").filter(|a| a != "off" && !a.is_empty());
        // Keep draining stderr so the agent never blocks on a full pipe; keep what matters.
        let stderr_thread = std::thread::spawn(move || {
            let mut exit = AgentExit::default();
            for l in lines.map_while(Result::ok) {
                if l.contains("t1609-agent stopped") {
                    exit.stopped_line = Some(l);
                } else if (l.contains("WARN") || l.contains("ERROR")) && exit.warnings.len() < 20 {
                    exit.warnings.push(l);
                }
            }
            exit
        });
        let procs = Processes::single(child.id());
        let agent = Self {
            child,
            metrics,
            stderr_thread: Some(stderr_thread),
        };
        Ok((agent, procs))
    }

    /// SIGTERM, then what it said on the way out.
    pub fn stop(mut self) -> AgentExit {
        let status = child::sigterm_and_wait(&mut self.child, Duration::from_secs(20));
        let mut exit = self
            .stderr_thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        exit.status = status.map(|s| s.to_string());
        exit
    }
}

/// Parses `key=value` tokens of a log line.
pub fn kv(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(|v| v.trim_matches('"').to_owned())
}

/// Ring-buffer events the kernel side could not hand over.
pub const LOST_EVENTS: &str = "t1609_ringbuf_lost_events_total";
/// argv continuation chunks lost the same way.
pub const LOST_CHUNKS: &str = "t1609_ringbuf_lost_argv_chunks_total";
/// Exec events the agent read.
pub const CAPTURED: &str = "t1609_events_captured_total";

/// One scrape of the agent's Prometheus endpoint: `name{labels}` -> value.
#[derive(Default, Debug)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    /// GET /metrics over plain HTTP; `None` if the endpoint does not answer.
    pub fn scrape(addr: &str) -> Option<Self> {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let body = body.split("\r\n\r\n").nth(1)?;
        Some(Self(
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect(),
        ))
    }

    /// The value of `name` (with its labels), 0 when absent.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// How much `name` grew since `earlier`.
    pub fn since(&self, earlier: &Self, name: &str) -> f64 {
        self.get(name) - earlier.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}
