//! The monitors compared: none, the agent, auditd and bpftrace. Each starts, reports the
//! processes its cost is read from, and stops leaving the machine as it found it.

pub mod agent;
pub mod auditd;
pub mod bpftrace;
mod child;

use std::path::Path;

use anyhow::bail;

use self::{
    agent::{Agent, AgentEnv, AgentExit, Metrics},
    auditd::Auditd,
    bpftrace::Bpftrace,
};
use crate::bench::procfs::Processes;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Nothing,
    Agent,
    Auditd,
    Bpftrace,
}

impl Kind {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nothing => "nothing",
            Kind::Agent => "t1609-agent",
            Kind::Auditd => "auditd (execve rule)",
            Kind::Bpftrace => "bpftrace (argv join)",
        }
    }

    /// A `--monitors` entry.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name.trim() {
            "agent" | "t1609-agent" => Kind::Agent,
            "auditd" => Kind::Auditd,
            "bpftrace" => Kind::Bpftrace,
            other => bail!("unknown monitor {other:?} (agent, auditd, bpftrace)"),
        })
    }
}

enum Peer {
    Nothing,
    Agent(Agent),
    Auditd(Auditd),
    Bpftrace(Bpftrace),
}

/// A running monitor.
pub struct Monitor {
    /// Where its CPU, memory and eBPF run time are read.
    pub procs: Processes,
    peer: Peer,
}

impl Monitor {
    /// Starts `kind`; `record` is the agent's `--record` file.
    pub fn start(kind: Kind, env: &AgentEnv, record: Option<&Path>) -> anyhow::Result<Self> {
        let (peer, procs) = match kind {
            Kind::Nothing => (Peer::Nothing, Processes::default()),
            Kind::Agent => {
                let (a, procs) = Agent::start(env, record)?;
                (Peer::Agent(a), procs)
            }
            Kind::Auditd => {
                let (a, procs) = Auditd::start()?;
                (Peer::Auditd(a), procs)
            }
            Kind::Bpftrace => {
                let (b, procs) = Bpftrace::start()?;
                (Peer::Bpftrace(b), procs)
            }
        };
        Ok(Self { procs, peer })
    }

    /// One scrape of the agent's metrics; `None` unless this is the agent, it serves
    /// metrics and they answered.
    pub fn metrics(&self) -> Option<Metrics> {
        match &self.peer {
            Peer::Agent(a) => a.metrics.as_deref().and_then(Metrics::scrape),
            _ => None,
        }
    }

    /// Whether the process we started is still running (true when we started none).
    pub fn alive(&mut self) -> bool {
        match &mut self.peer {
            Peer::Nothing => true,
            Peer::Agent(a) => child::running(&mut a.child),
            Peer::Auditd(a) => a.child.as_mut().is_none_or(child::running),
            Peer::Bpftrace(b) => child::running(&mut b.child),
        }
    }

    /// Stops what we started; for the agent, returns what it said on the way out.
    pub fn stop(self) -> AgentExit {
        match self.peer {
            Peer::Nothing => AgentExit::default(),
            Peer::Auditd(mut a) => {
                a.stop();
                AgentExit::default()
            }
            Peer::Bpftrace(b) => {
                b.stop();
                AgentExit::default()
            }
            Peer::Agent(a) => a.stop(),
        }
    }
}
