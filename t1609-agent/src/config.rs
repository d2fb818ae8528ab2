//! The agent's TOML configuration. Every key has a default, so the file is optional;
//! unknown keys are rejected, and `validate()` names the key, the value and what is allowed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use crate::capture::UnixConnectHook;
use crate::capture::{unix_path_key, watch_key};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}{}: invalid value for `{key}`: {value} ({allowed})", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// Where the key is set, when the file says.
        line: Option<usize>,
        key: &'static str,
        value: String,
        allowed: String,
    },
    #[error("{path}: [deliver] {source}")]
    Deliver {
        path: PathBuf,
        source: t1609_deliver::ConfigError,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// Only executables the loaded rules can match (the kernel filters the rest).
    #[default]
    Rules,
    /// Every exec, for recording.
    All,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    pub mode: CaptureMode,
    /// Executable names watched in addition to those the rules derive.
    pub extra_watch: BTreeSet<String>,
    /// Where to read the kernel's BTF.
    pub btf_path: PathBuf,
    /// Ring-buffer size in bytes: a power of two, multiple of the page size.
    pub ring_buffer_bytes: u32,
    /// Least time between two reader wake-ups the probe forces, in microseconds. Each
    /// wake-up costs the exec ~10 µs; after one, the reader polls every half interval
    /// (at most 2 ms; 4 ms while the polls find only exact repeats) for three intervals,
    /// and stamps the probe's clock while its polls find records, so records in between
    /// wait at most one poll. 0 wakes the reader for every record.
    pub wakeup_interval_us: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            mode: CaptureMode::Rules,
            extra_watch: BTreeSet::new(),
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            ring_buffer_bytes: 4 * 1024 * 1024,
            wakeup_interval_us: 5000,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or directories loaded after the built-in pack.
    pub paths: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Where the host's root file system is (for /etc/passwd and /etc/group) when the
    /// agent runs in a container.
    pub root: PathBuf,
    /// Where the host's /proc is mounted.
    pub proc: PathBuf,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            proc: PathBuf::from("/proc"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// TCP destination ports whose connects are reported (kubelet, Docker API).
    pub ports: BTreeSet<u16>,
    /// Unix socket paths of container runtime APIs. Empty: connects to them are not
    /// reported, and no Unix connect probe is attached.
    pub runtime_sockets: BTreeSet<PathBuf>,
    /// How Unix connects to `runtime_sockets` are caught.
    pub unix_connect_hook: UnixConnectHook,
    /// Executable names (globs) expected to use the runtime sockets.
    pub expected_clients: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            ports: [10250, 10255, 2375, 2376].into(),
            unix_connect_hook: UnixConnectHook::Auto,
            runtime_sockets: [
                "/var/run/docker.sock",
                "/run/docker.sock",
                "/run/containerd/containerd.sock",
                "/var/run/containerd/containerd.sock",
                "/var/run/crio/crio.sock",
                "/run/crio/crio.sock",
                "/run/podman/podman.sock",
                "/var/run/podman/podman.sock",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            expected_clients: [
                "docker",
                "dockerd",
                "containerd",
                "containerd-shim*",
                "kubelet",
                "crictl",
                "ctr",
                "podman",
                "conmon",
                "runc",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Executables whose exec starts an injected session (tracked in the kernel).
    pub seeds: BTreeSet<String>,
    /// How long after an exec alert the commands run in its session are collected.
    pub window_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            seeds: ["runc", "crun", "nsenter"]
                .into_iter()
                .map(String::from)
                .collect(),
            window_ms: 3000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub rules: RulesConfig,
    pub host: HostConfig,
    /// Alert sinks, queues and spool (see t1609-deliver). No sinks means stdout.
    pub deliver: t1609_deliver::DeliverConfig,
    pub network: NetworkConfig,
    pub session: SessionConfig,
    /// Process table, runtime lookups and deduplication.
    pub context: crate::context::ContextConfig,
    /// Tuning: each entry matches a rule id plus conditions and suppresses, lowers the
    /// severity of, or tags the alert (format: t1609-context/README.md).
    #[serde(alias = "exception")]
    pub exceptions: Vec<t1609_context::ExceptionConfig>,
    /// Kubernetes API server audit events (file and/or webhook); off unless configured.
    pub audit: t1609_k8saudit::AuditConfig,
    /// Prometheus metrics and health endpoints.
    pub metrics: crate::metrics::MetricsConfig,
    /// Container tools known by what their file is (installed tools, hash lists, the
    /// classification queue).
    pub identity: crate::identity::IdentityConfig,
    /// Container runtimes that name containers and pods (containerd, CRI-O, Docker,
    /// podman): detected at their usual sockets, or configured.
    pub runtimes: t1609_context::RuntimesConfig,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        config.validate(path).map_err(|e| match e {
            ConfigError::Invalid {
                path,
                key,
                value,
                allowed,
                ..
            } => ConfigError::Invalid {
                line: key_line(text, key),
                path,
                key,
                value,
                allowed,
            },
            other => other,
        })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// The delivery settings with the default sink (stdout) filled in.
    pub fn deliver_config(&self) -> t1609_deliver::DeliverConfig {
        let mut d = self.deliver.clone();
        if d.sinks.is_empty() {
            d.sinks.push(t1609_deliver::SinkSpec::Stdout);
        }
        d
    }

    /// Checks every value the types allow but the agent does not; the error names the
    /// key, the value and what is allowed.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if let Err(source) = self.deliver_config().validate() {
            return Err(ConfigError::Deliver {
                path: path.to_owned(),
                source,
            });
        }
        self.check_capture()
            .and_then(|()| self.check_network_and_sessions())
            .and_then(|()| self.check_context())
            .and_then(|()| self.check_sources())
            .and_then(|()| self.identity.check())
            .map_err(|(key, value, allowed)| ConfigError::Invalid {
                path: path.to_owned(),
                line: None,
                key,
                value,
                allowed: allowed.to_owned(),
            })
    }

    fn check_capture(&self) -> Result<(), Rejected> {
        let c = &self.capture;
        let rb = c.ring_buffer_bytes;
        check(
            rb.is_power_of_two() && (4096 * 16..=1 << 30).contains(&rb),
            "capture.ring_buffer_bytes",
            rb,
            "a power of two from 65536 to 1073741824",
        )?;
        check(
            c.wakeup_interval_us <= 100_000,
            "capture.wakeup_interval_us",
            c.wakeup_interval_us,
            "0 to 100000 microseconds",
        )?;
        for name in &c.extra_watch {
            check(
                watch_key(name).is_ok(),
                "capture.extra_watch",
                format!("{name:?}"),
                NAMES,
            )?;
        }
        Ok(())
    }

    fn check_network_and_sessions(&self) -> Result<(), Rejected> {
        for p in &self.network.runtime_sockets {
            check(
                unix_path_key(p).is_ok(),
                "network.runtime_sockets",
                p.display(),
                "non-empty paths shorter than 108 bytes",
            )?;
        }
        for name in &self.session.seeds {
            check(
                watch_key(name).is_ok(),
                "session.seeds",
                format!("{name:?}"),
                NAMES,
            )?;
        }
        let w = self.session.window_ms;
        check(
            (1..=600_000).contains(&w),
            "session.window_ms",
            w,
            "1 to 600000 milliseconds",
        )
    }

    fn check_context(&self) -> Result<(), Rejected> {
        let c = &self.context;
        if let Some(p) = &c.docker_socket {
            return Err((
                "context.docker_socket",
                format!("{:?}", p.display().to_string()),
                "retired: runtimes are found at their usual sockets, or set under [runtimes] (docker = [\"/path\"], auto_detect, enabled)",
            ));
        }
        if let Some(ms) = c.runtime_timeout_ms {
            return Err((
                "context.runtime_timeout_ms",
                ms.to_string(),
                "retired: [runtimes] timeout_ms (the capture thread no longer waits on a runtime)",
            ));
        }
        if let Err(e) = self.runtimes.validate() {
            return Err((
                "runtimes",
                e.to_string(),
                "see deploy/README.md, Container runtimes",
            ));
        }
        check(
            (8..=65_536).contains(&c.dedup_kept_alerts),
            "context.dedup_kept_alerts",
            c.dedup_kept_alerts,
            "8 to 65536 alerts",
        )?;
        for (key, p) in [
            ("host.root", &self.host.root),
            ("host.proc", &self.host.proc),
        ] {
            check(p.is_absolute(), key, p.display(), "an absolute path")?;
        }
        Ok(())
    }

    fn check_sources(&self) -> Result<(), Rejected> {
        if let Err(e) = t1609_context::Exceptions::new(self.exceptions.clone()) {
            return Err(("exceptions", e.to_string(), "see t1609-context/README.md"));
        }
        if let Err(e) = self.audit.validate() {
            return Err(("audit", e.to_string(), "see t1609-k8saudit/README.md"));
        }
        let listen = &self.metrics.listen;
        check(
            listen.is_empty() || listen.parse::<std::net::SocketAddr>().is_ok(),
            "metrics.listen",
            format!("{listen:?}"),
            "an IP:port such as 127.0.0.1:9609, or \"\" to disable",
        )
    }
}

const NAMES: &str = "non-empty executable names without '/' or NUL";

/// A value the agent does not accept: its key, the value, what is allowed.
type Rejected = (&'static str, String, &'static str);

fn check(
    ok: bool,
    key: &'static str,
    value: impl std::fmt::Display,
    allowed: &'static str,
) -> Result<(), Rejected> {
    if ok {
        Ok(())
    } else {
        Err((key, value.to_string(), allowed))
    }
}

/// The 1-based line where `key` (`section.leaf`, or a whole section) is set in `text`.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let (section, leaf) = key.split_once('.').unwrap_or((key, ""));
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header.trim_matches(|c| c == '[' || c == ']').trim();
            if leaf.is_empty()
                && (current == section || current == "exception" && section == "exceptions")
            {
                return Some(i + 1);
            }
            continue;
        }
        if current == section
            && !leaf.is_empty()
            && let Some(rest) = line.strip_prefix(leaf)
            && rest.trim_start().starts_with('=')
        {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.capture, CaptureConfig::default());
        assert_eq!(
            c.deliver_config().sinks,
            vec![t1609_deliver::SinkSpec::Stdout]
        );
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            [capture]
            mode = "all"
            extra_watch = ["skopeo"]
            ring_buffer_bytes = 16777216
            [rules]
            paths = ["/etc/t1609-agent/rules.d"]
            [host]
            root = "/host"
            proc = "/host/proc"
            [deliver]
            sinks = ["journald", "socket-server:/run/t1609-agent/alerts.sock"]
            spool_dir = "/var/lib/t1609-agent/spool"
            "#,
        )
        .unwrap();
        assert_eq!(c.capture.mode, CaptureMode::All);
        assert_eq!(c.host.proc, PathBuf::from("/host/proc"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[capture]\nmode = \"rules\"\nwatchh = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:3:1:"), "{err}");
        assert!(err.contains("watchh"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = parse("[capture]\nmode = \"some\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml:2:") && err.contains("some"),
            "{err}"
        );
    }

    #[test]
    fn validate_names_key_value_and_allowed() {
        let err = parse("[capture]\nring_buffer_bytes = 1000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("capture.ring_buffer_bytes")
                && err.contains("1000")
                && err.contains("power of two"),
            "{err}"
        );
        let err = parse("[deliver]\nsinks = [\"kafka\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka"), "{err}");
        let err = parse("[host]\nroot = \"host\"\n").unwrap_err().to_string();
        assert!(err.contains("host.root"), "{err}");
        let err = parse("[context]\nruntime_timeout_ms = 5000\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("context.runtime_timeout_ms") && err.contains("[runtimes] timeout_ms"),
            "{err}"
        );
        let err = parse("[runtimes]\ntimeout_ms = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runtimes.timeout_ms") && err.contains("10 to 60000"),
            "{err}"
        );
        let err = parse("[context]\ndedup_kept_alerts = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:2: "), "names the line: {err}");
        assert!(
            err.contains("context.dedup_kept_alerts") && err.contains("8 to 65536"),
            "{err}"
        );
    }
}
