//! Network-level T1609 rules (kubelet and runtime API connects), as data.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::decode::{CapturedNet, Destination};

const BUILTIN: &str = include_str!("../rules/network.toml");
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
    pub severity: String,
    pub risk_score: u8,
    pub severity_in_container: String,
    pub risk_score_in_container: u8,
    pub techniques: Vec<String>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub false_positives: Vec<String>,
    #[serde(default)]
    pub expected_clients: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkRuleFile {
    rule: Vec<NetworkRule>,
}

fn severity_number(s: &str) -> Option<u8> {
    match s {
        "low" => Some(21),
        "medium" => Some(47),
        "high" => Some(73),
        "critical" => Some(99),
        _ => None,
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
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
        for r in &parsed.rule {
            for s in [&r.severity, &r.severity_in_container] {
                if severity_number(s).is_none() {
                    return Err(NetworkRuleError::Invalid {
                        file: file.to_owned(),
                        id: r.id.clone(),
                        message: format!(
                            "severity {s:?} is not one of low, medium, high, critical"
                        ),
                    });
                }
            }
            if r.kind == NetKind::Tcp && r.ports.is_empty() {
                return Err(NetworkRuleError::Invalid {
                    file: file.to_owned(),
                    id: r.id.clone(),
                    message: "a tcp rule needs ports".into(),
                });
            }
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
        .and_then(|t| crate::enrich::container_id_from_cgroup(&t));
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

/// Remembers recent argv alerts per process, so a socket-level alert from the same
/// process shares their group id.
#[derive(Default)]
pub struct AlertLinks {
    /// (group id, event id, when); ids shared with the repeat memo, so a replayed exec
    /// links without copying them. Keyed by kernel-assigned pids: a fast hasher is safe.
    by_tgid: HashMap<u32, (Arc<str>, Arc<str>, Instant), foldhash::fast::RandomState>,
    /// Insertion order, so expiry pops from the front instead of scanning the map.
    order: std::collections::VecDeque<(u32, Instant)>,
}

const LINK_WINDOW: Duration = Duration::from_secs(60);
/// Bound on remembered processes whatever the alert rate.
const LINK_MAX: usize = 8192;

impl AlertLinks {
    pub fn remember(
        &mut self,
        tgid: u32,
        group_id: impl Into<Arc<str>>,
        event_id: impl Into<Arc<str>>,
        now: Instant,
    ) {
        self.by_tgid
            .insert(tgid, (group_id.into(), event_id.into(), now));
        self.order.push_back((tgid, now));
        while let Some(&(old, at)) = self.order.front() {
            if now.duration_since(at) < LINK_WINDOW && self.order.len() <= LINK_MAX {
                break;
            }
            self.order.pop_front();
            // Only forget the entry if it was not refreshed since.
            if self.by_tgid.get(&old).is_some_and(|(_, _, t)| *t == at) {
                self.by_tgid.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_tgid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tgid.is_empty()
    }

    pub fn lookup(&self, tgid: u32, now: Instant) -> Option<(&str, &str)> {
        self.by_tgid
            .get(&tgid)
            .filter(|(_, _, t)| now.duration_since(*t) < LINK_WINDOW)
            .map(|(g, e, _)| (&**g, &**e))
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename these"
)]
pub fn alert_doc(
    rule: &NetworkRule,
    net: &CapturedNet,
    proc: &NetProcess,
    timestamp: String,
    event_id: String,
    group_id: String,
    related: Option<&str>,
    host: Option<&str>,
) -> Value {
    let (severity, risk) = if proc.in_container {
        (
            rule.severity_in_container.as_str(),
            rule.risk_score_in_container,
        )
    } else {
        (rule.severity.as_str(), rule.risk_score)
    };
    let comm = String::from_utf8_lossy(&net.comm).into_owned();
    let name = proc
        .executable
        .as_deref()
        .map(crate::enrich::basename)
        .unwrap_or(&comm)
        .to_owned();
    let mut destination = json!({});
    let mut network = json!({});
    match &net.destination {
        Destination::Tcp(addr) => {
            destination = json!({"ip": addr.ip().to_string(), "port": addr.port(), "address": addr.ip().to_string()});
            network = json!({"transport": "tcp", "type": if addr.is_ipv4() { "ipv4" } else { "ipv6" }, "direction": "egress"});
        }
        Destination::Unix(path) => {
            destination = json!({"address": String::from_utf8_lossy(path)});
            network = json!({"transport": "unix"});
        }
    }
    let command_line = proc.args.as_ref().map(|a| a.join(" "));
    let techniques: Vec<Value> = rule
        .techniques
        .iter()
        .map(|t| {
            let name = match t.as_str() {
                "T1609" => "Container Administration Command",
                "T1610" => "Deploy Container",
                "T1611" => "Escape to Host",
                _ => "",
            };
            json!({"id": t, "name": name, "reference": format!("https://attack.mitre.org/techniques/{t}/")})
        })
        .collect();
    json!({
        "@timestamp": timestamp,
        "message": format!("{}: {} (pid {}) connected to {}", rule.name, name, net.tgid, destination["address"].as_str().unwrap_or("")),
        "event": {"kind": "alert", "id": event_id, "category": ["network"], "type": ["connection", "start"],
                  "action": "connect", "severity": severity_number(severity), "risk_score": risk},
        "rule": {"id": rule.id, "name": rule.name, "description": rule.description, "reference": rule.references.first()},
        "threat": {"framework": "MITRE ATT&CK", "tactic": {"id": ["TA0002"], "name": ["Execution"]},
                   "technique": {"id": techniques.iter().map(|t| t["id"].clone()).collect::<Vec<_>>(),
                                 "name": techniques.iter().map(|t| t["name"].clone()).collect::<Vec<_>>(),
                                 "reference": techniques.iter().map(|t| t["reference"].clone()).collect::<Vec<_>>()}},
        "destination": destination,
        "network": network,
        "process": {"pid": net.tgid, "thread": {"id": net.pid}, "name": name, "executable": proc.executable,
                    "args": proc.args, "command_line": command_line, "parent": {"pid": net.ppid}},
        "user": {"id": net.uid.to_string(), "name": proc.user_name},
        "container": {"id": proc.container_id},
        "host": {"hostname": host},
        "t1609": {"severity": severity, "group_id": group_id, "origin": if proc.in_container { "container" } else { "host" },
                  "in_container": proc.in_container, "cgroup_id": net.cgroup_id, "related_event_id": related,
                  "false_positives": rule.false_positives},
    })
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

    #[test]
    fn alert_links_stay_bounded_and_expire_in_order() {
        let mut l = AlertLinks::default();
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            l.remember(i, "g", "e", t0);
        }
        assert!(l.len() <= LINK_MAX, "{}", l.len());
        assert!(l.lookup(19_999, t0).is_some());
        l.remember(1, "g2", "e2", t0 + LINK_WINDOW + Duration::from_secs(1));
        assert_eq!(l.len(), 1, "everything older than the window is gone");
        assert_eq!(
            l.lookup(1, t0 + LINK_WINDOW + Duration::from_secs(1)),
            Some(("g2", "e2"))
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("containerd-shim*", "containerd-shim-runc-v2"));
        assert!(glob_match("docker", "docker"));
        assert!(!glob_match("docker", "dockerd"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXc"));
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
}
