//! Network-level T1609 rules (kubelet and runtime API connects), as data, and their
//! alerts.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use t1609_ecs::{AlertDoc, RuleRef, Severity, Threat, glob_match};

use crate::{
    context::basename,
    decode::{CapturedNet, Destination},
};

const BUILTIN: &str = include_str!("../../rules/network.toml");
const BUILTIN_NAME: &str = "t1609-agent/rules/network.toml";

#[derive(Debug, thiserror::Error)]
pub enum NetworkRuleError {
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: rule {id}: {message}")]
    Invalid {
        file: String,
        id: String,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    Tcp,
    Unix,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: NetKind,
    #[serde(default)]
    pub ports: Vec<u16>,
    pub severity: Severity,
    pub risk_score: u8,
    pub severity_in_container: Severity,
    pub risk_score_in_container: u8,
    pub techniques: Vec<String>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub false_positives: Vec<String>,
    /// Executable names (globs) expected to make this connect.
    #[serde(default)]
    pub expected_clients: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkRuleFile {
    rule: Vec<NetworkRule>,
}

pub struct NetworkRules {
    rules: Vec<NetworkRule>,
}

impl NetworkRules {
    pub fn parse(file: &str, text: &str) -> Result<Self, NetworkRuleError> {
        let parsed: NetworkRuleFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let before = &text[..offset.min(text.len())];
            NetworkRuleError::Parse {
                file: file.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().map_or(0, str::len) + 1,
                message: e.message().to_owned(),
            }
        })?;
        if let Some(r) = parsed
            .rule
            .iter()
            .find(|r| r.kind == NetKind::Tcp && r.ports.is_empty())
        {
            return Err(NetworkRuleError::Invalid {
                file: file.to_owned(),
                id: r.id.clone(),
                message: "a tcp rule needs ports".into(),
            });
        }
        Ok(Self { rules: parsed.rule })
    }

    pub fn builtin() -> Result<Self, NetworkRuleError> {
        Self::parse(BUILTIN_NAME, BUILTIN)
    }

    /// Replaces the expected-client list of the runtime-socket rule (config override).
    pub fn set_expected_clients(&mut self, rule_id: &str, clients: &[String]) {
        for r in self.rules.iter_mut().filter(|r| r.id == rule_id) {
            r.expected_clients = clients.to_vec();
        }
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.rules.iter().flat_map(|r| r.ports.iter().copied())
    }

    pub fn matching(&self, net: &CapturedNet, exe_name: &str) -> Vec<&NetworkRule> {
        self.rules
            .iter()
            .filter(|r| match (&net.destination, r.kind) {
                (Destination::Tcp(addr), NetKind::Tcp) => r.ports.contains(&addr.port()),
                (Destination::Unix(_), NetKind::Unix) => true,
                _ => false,
            })
            .filter(|r| !r.expected_clients.iter().any(|g| glob_match(g, exe_name)))
            .collect()
    }
}

/// Process details of the connecting task, read from /proc while it is connecting.
#[derive(Clone, Debug, Default)]
pub struct NetProcess {
    pub executable: Option<String>,
    pub args: Option<Vec<String>>,
    pub container_id: Option<String>,
    pub in_container: bool,
    pub user_name: Option<String>,
}

impl NetProcess {
    /// The process's name: its executable's, else the kernel's comm.
    pub fn name(&self, comm: &[u8]) -> String {
        self.executable.as_deref().map_or_else(
            || String::from_utf8_lossy(comm).into_owned(),
            |e| basename(e).to_owned(),
        )
    }
}

pub fn read_process(proc_root: &Path, pid: u32) -> NetProcess {
    let dir = proc_root.join(pid.to_string());
    let executable = std::fs::read_link(dir.join("exe")).ok().map(|p| {
        p.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_owned()
    });
    let args = std::fs::read(dir.join("cmdline")).ok().map(|raw| {
        let body = raw.strip_suffix(&[0]).unwrap_or(&raw);
        if body.is_empty() {
            vec![]
        } else {
            body.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        }
    });
    let container_id = std::fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|t| t1609_context::parse_cgroup(&t).container_id);
    let ns = |p: PathBuf| std::fs::read_link(p).ok();
    let in_container = match (ns(dir.join("ns/mnt")), ns(proc_root.join("1/ns/mnt"))) {
        (Some(a), Some(b)) => a != b,
        _ => container_id.is_some(),
    };
    NetProcess {
        executable,
        args,
        container_id,
        in_container,
        user_name: None,
    }
}

/// Where an alert came from and what it is linked to.
pub struct NetAlertLinks<'a> {
    pub timestamp: String,
    pub group_id: String,
    /// `event.id` of the same process's argv alert, when there was one.
    pub related: Option<&'a str>,
    pub host: Option<&'a str>,
}

pub fn alert_doc(
    rule: &NetworkRule,
    net: &CapturedNet,
    proc: &NetProcess,
    links: NetAlertLinks<'_>,
) -> Value {
    let (severity, risk) = if proc.in_container {
        (rule.severity_in_container, rule.risk_score_in_container)
    } else {
        (rule.severity, rule.risk_score)
    };
    let name = proc.name(&net.comm);
    let (destination, network) = match &net.destination {
        Destination::Tcp(addr) => (
            json!({"ip": addr.ip().to_string(), "port": addr.port(), "address": addr.ip().to_string()}),
            json!({"transport": "tcp", "type": if addr.is_ipv4() { "ipv4" } else { "ipv6" }, "direction": "egress"}),
        ),
        Destination::Unix(path) => (
            json!({"address": String::from_utf8_lossy(path)}),
            json!({"transport": "unix"}),
        ),
    };
    let techniques: Vec<&str> = rule.techniques.iter().map(String::as_str).collect();
    let rule_ref = RuleRef {
        id: &rule.id,
        name: &rule.name,
        description: Some(&rule.description),
        reference: rule.references.first().map(String::as_str),
    };
    AlertDoc::new(rule_ref, severity)
        .timestamp(links.timestamp)
        .risk_score(risk)
        .categorized(&["network"], &["connection", "start"], Some("connect"))
        .threat(&Threat::of(&["TA0002"], &techniques))
        .message(format!(
            "{}: {} (pid {}) connected to {}",
            rule.name,
            name,
            net.tgid,
            destination["address"].as_str().unwrap_or("")
        ))
        .set("destination", destination)
        .set("network", network)
        .set(
            "process",
            json!({"pid": net.tgid, "thread": {"id": net.pid}, "name": name, "executable": proc.executable,
                   "args": proc.args, "command_line": proc.args.as_ref().map(|a| a.join(" ")),
                   "parent": {"pid": net.ppid}}),
        )
        .set("user", json!({"id": net.uid.to_string(), "name": proc.user_name}))
        .set("container", json!({"id": proc.container_id}))
        .host(links.host)
        .group(links.group_id)
        .t1609("origin", json!(if proc.in_container { "container" } else { "host" }))
        .t1609("in_container", json!(proc.in_container))
        .t1609("cgroup_id", json!(net.cgroup_id))
        .t1609("related_event_id", json!(links.related))
        .t1609("false_positives", json!(rule.false_positives))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_parse() {
        let r = NetworkRules::builtin().unwrap();
        let ports: Vec<u16> = r.ports().collect();
        assert!(ports.contains(&10250) && ports.contains(&10255) && ports.contains(&2375));
    }

    #[test]
    fn bad_rule_file_names_line() {
        let err = NetworkRules::parse("x.toml", "[[rule]]\nid = \"a\"\nkind = \"udp\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("x.toml:3:"), "{err}");
        let text = BUILTIN.replacen("severity = \"medium\"", "severity = \"severe\"", 1);
        let err = NetworkRules::parse("x.toml", &text)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("severe"), "{err}");
    }

    fn unix(path: &str) -> CapturedNet {
        CapturedNet {
            ktime_ns: 1,
            tgid: 10,
            pid: 10,
            ppid: 1,
            uid: 0,
            cgroup_id: 1,
            session: 0,
            comm: b"x".to_vec(),
            destination: Destination::Unix(path.as_bytes().to_vec()),
        }
    }

    #[test]
    fn runtime_socket_rule_skips_expected_clients() {
        let r = NetworkRules::builtin().unwrap();
        let ids = |exe: &str| {
            r.matching(&unix("/var/run/docker.sock"), exe)
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("curl"), ["t1609.runtime_socket_access"]);
        assert!(ids("docker").is_empty());
        assert!(ids("containerd-shim-runc-v2").is_empty());
        assert_eq!(ids("dockerd-evil"), ["t1609.runtime_socket_access"]);
    }

    #[test]
    fn tcp_rules_match_by_port() {
        let r = NetworkRules::builtin().unwrap();
        let mut net = unix("");
        net.destination = Destination::Tcp("127.0.0.1:10250".parse().unwrap());
        assert_eq!(r.matching(&net, "x")[0].id, "t1609.kubelet_api_connect");
        net.destination = Destination::Tcp("127.0.0.1:8080".parse().unwrap());
        assert!(r.matching(&net, "x").is_empty());
    }

    #[test]
    fn alert_document_takes_the_container_severity_and_links() {
        let r = NetworkRules::builtin().unwrap();
        let net = unix("/var/run/docker.sock");
        let rule = r.matching(&net, "curl")[0];
        let proc = NetProcess {
            executable: Some("/usr/bin/curl".into()),
            args: Some(vec!["curl".into(), "--unix-socket".into()]),
            container_id: Some("c".repeat(64)),
            in_container: true,
            user_name: Some("root".into()),
        };
        let doc = alert_doc(
            rule,
            &net,
            &proc,
            NetAlertLinks {
                timestamp: "2026-12-07T00:00:00Z".into(),
                group_id: "g".into(),
                related: Some("e"),
                host: Some("node-1"),
            },
        );
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["action"], "connect");
        assert_eq!(
            doc["t1609"]["severity"],
            rule.severity_in_container.as_str()
        );
        assert_eq!(
            doc["event"]["severity"],
            rule.severity_in_container.ecs_number()
        );
        assert_eq!(doc["event"]["risk_score"], rule.risk_score_in_container);
        assert_eq!(doc["t1609"]["origin"], "container");
        assert_eq!(doc["t1609"]["group_id"], "g");
        assert_eq!(doc["t1609"]["related_event_id"], "e");
        assert_eq!(doc["process"]["name"], "curl");
        assert_eq!(doc["destination"]["address"], "/var/run/docker.sock");
        assert_eq!(doc["threat"]["technique"]["id"][0], "T1609");
        assert_eq!(doc["host"]["hostname"], "node-1");
        assert!(
            doc["message"]
                .as_str()
                .unwrap()
                .contains("connected to /var/run/docker.sock")
        );
    }
}
