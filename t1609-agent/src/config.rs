//! The agent's TOML configuration. Every key has a default, so the file is optional;
//! unknown keys are rejected, and `validate()` names the key, the value and what is allowed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: invalid value for `{key}`: {value} ({allowed})")]
    Invalid { path: PathBuf, key: &'static str, value: String, allowed: String },
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
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            mode: CaptureMode::Rules,
            extra_watch: BTreeSet::new(),
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            ring_buffer_bytes: 8 * 1024 * 1024,
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
        Self { root: PathBuf::from("/"), proc: PathBuf::from("/proc") }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Sinks for alerts: stdout, journald, socket-server:PATH, socket-client:PATH, file:PATH.
    pub sinks: Vec<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { sinks: vec!["stdout".into()] }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub rules: RulesConfig,
    pub host: HostConfig,
    pub output: OutputConfig,
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
            ConfigError::Parse { path: path.to_owned(), line, column, message: e.message().to_owned() }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(path, &text)
    }

    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, value: String, allowed: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            value,
            allowed: allowed.to_owned(),
        };
        let rb = self.capture.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 * 16 || rb > 1 << 30 {
            return Err(invalid("capture.ring_buffer_bytes", rb.to_string(), "a power of two from 65536 to 1073741824"));
        }
        for name in &self.capture.extra_watch {
            if crate::capture::watch_key(name).is_err() {
                return Err(invalid("capture.extra_watch", format!("{name:?}"), "non-empty executable names without '/' or NUL"));
            }
        }
        for sink in &self.output.sinks {
            let ok = sink == "stdout"
                || sink == "journald"
                || ["socket-server:", "socket-client:", "file:"].iter().any(|p| sink.strip_prefix(p).is_some_and(|r| !r.is_empty()));
            if !ok {
                return Err(invalid(
                    "output.sinks",
                    format!("{sink:?}"),
                    "stdout, journald, socket-server:PATH, socket-client:PATH, file:PATH",
                ));
            }
        }
        for (key, p) in [("host.root", &self.host.root), ("host.proc", &self.host.proc)] {
            if !p.is_absolute() {
                return Err(invalid(key, p.display().to_string(), "an absolute path"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("test.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
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
            [output]
            sinks = ["journald", "socket-server:/run/t1609-agent/alerts.sock"]
            "#,
        )
        .unwrap();
        assert_eq!(c.capture.mode, CaptureMode::All);
        assert_eq!(c.host.proc, PathBuf::from("/host/proc"));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[capture]\nmode = \"rules\"\nwatchh = []\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:3:1:"), "{err}");
        assert!(err.contains("watchh"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = parse("[capture]\nmode = \"some\"\n").unwrap_err().to_string();
        assert!(err.contains("test.toml:2:") && err.contains("some"), "{err}");
    }

    #[test]
    fn validate_names_key_value_and_allowed() {
        let err = parse("[capture]\nring_buffer_bytes = 1000\n").unwrap_err().to_string();
        assert!(err.contains("capture.ring_buffer_bytes") && err.contains("1000") && err.contains("power of two"), "{err}");
        let err = parse("[output]\nsinks = [\"kafka\"]\n").unwrap_err().to_string();
        assert!(err.contains("output.sinks") && err.contains("kafka"), "{err}");
        let err = parse("[host]\nroot = \"host\"\n").unwrap_err().to_string();
        assert!(err.contains("host.root"), "{err}");
    }
}
