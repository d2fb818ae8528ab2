//! Delivery configuration: the sink list (`--output` values or the config file) and the
//! queue, spool and rotation limits.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Deserializer};

/// Default path of the journald native socket.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// Default path of the socket-server sink.
pub const DEFAULT_SERVER_SOCKET: &str = "/run/t1609-agent/alerts.sock";

/// Errors in the configuration. Each variant names the field (or the sink string), the
/// value that was given, and what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "invalid sink {value:?}: {reason}; expected one of stdout, journald, journald:PATH, socket-server, socket-server:PATH, socket-client:PATH, socket-client:dgram:PATH, file:PATH"
    )]
    BadSink { value: String, reason: &'static str },
    #[error("invalid value for `{field}`: {value}; allowed: {allowed}")]
    Invalid {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("sink {value:?} is listed twice in `sinks`")]
    DuplicateSink { value: String },
}

/// Transport used by the socket-client sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientMode {
    Stream,
    Datagram,
}

/// One output, parsed from `stdout`, `journald`, `socket-server:PATH` (bare
/// `socket-server` means [`DEFAULT_SERVER_SOCKET`]),
/// `socket-client:PATH`, `socket-client:dgram:PATH` or `file:PATH`.
///
/// `journald:PATH` (a different journal socket) is accepted too; the tests use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkSpec {
    Stdout,
    Journald { socket: PathBuf },
    SocketServer { path: PathBuf },
    SocketClient { path: PathBuf, mode: ClientMode },
    File { path: PathBuf },
}

impl SinkSpec {
    /// Short kind name: `stdout`, `journald`, `socket-server`, `socket-client`, `file`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Journald { .. } => "journald",
            Self::SocketServer { .. } => "socket-server",
            Self::SocketClient { .. } => "socket-client",
            Self::File { .. } => "file",
        }
    }
}

fn parse_path(value: &str, rest: &str) -> Result<PathBuf, ConfigError> {
    if rest.is_empty() {
        return Err(ConfigError::BadSink {
            value: value.to_owned(),
            reason: "the path is empty",
        });
    }
    if rest.contains('\0') {
        return Err(ConfigError::BadSink {
            value: value.to_owned(),
            reason: "the path contains a NUL byte",
        });
    }
    let p = Path::new(rest);
    if !p.is_absolute() {
        return Err(ConfigError::BadSink {
            value: value.to_owned(),
            reason: "the path must be absolute",
        });
    }
    Ok(p.to_path_buf())
}

impl FromStr for SinkSpec {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let s = value.trim();
        if s == "stdout" {
            return Ok(Self::Stdout);
        }
        if s == "journald" {
            return Ok(Self::Journald {
                socket: PathBuf::from(JOURNALD_SOCKET),
            });
        }
        if s == "socket-server" {
            return Ok(Self::SocketServer {
                path: PathBuf::from(DEFAULT_SERVER_SOCKET),
            });
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(ConfigError::BadSink {
                value: value.to_owned(),
                reason: if s.is_empty() {
                    "it is empty"
                } else {
                    "unknown sink"
                },
            });
        };
        match kind {
            "journald" => Ok(Self::Journald {
                socket: parse_path(value, rest)?,
            }),
            "socket-server" => Ok(Self::SocketServer {
                path: parse_path(value, rest)?,
            }),
            "socket-client" => {
                let (mode, path) = if let Some(p) = rest.strip_prefix("dgram:") {
                    (ClientMode::Datagram, p)
                } else if let Some(p) = rest.strip_prefix("stream:") {
                    (ClientMode::Stream, p)
                } else {
                    (ClientMode::Stream, rest)
                };
                Ok(Self::SocketClient {
                    path: parse_path(value, path)?,
                    mode,
                })
            }
            "file" => Ok(Self::File {
                path: parse_path(value, rest)?,
            }),
            "stdout" => Err(ConfigError::BadSink {
                value: value.to_owned(),
                reason: "stdout takes no argument",
            }),
            _ => Err(ConfigError::BadSink {
                value: value.to_owned(),
                reason: "unknown sink kind",
            }),
        }
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::Journald { socket } if socket == Path::new(JOURNALD_SOCKET) => {
                f.write_str("journald")
            }
            Self::Journald { socket } => write!(f, "journald:{}", socket.display()),
            Self::SocketServer { path } => write!(f, "socket-server:{}", path.display()),
            Self::SocketClient {
                path,
                mode: ClientMode::Stream,
            } => write!(f, "socket-client:{}", path.display()),
            Self::SocketClient {
                path,
                mode: ClientMode::Datagram,
            } => write!(f, "socket-client:dgram:{}", path.display()),
            Self::File { path } => write!(f, "file:{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Configuration of the delivery layer. Every field has a default; unknown fields are
/// rejected. Call [`DeliverConfig::validate`] (also done by `Dispatcher::start`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverConfig {
    /// Outputs. Each gets its own queue, spool and worker.
    pub sinks: Vec<SinkSpec>,
    /// Root of the on-disk spools; each sink uses a subdirectory.
    pub spool_dir: PathBuf,
    /// Cap on undelivered bytes in one sink's spool. Oldest alerts are dropped beyond it.
    pub spool_max_bytes: u64,
    /// In-memory queue length per sink (alerts). Beyond it, alerts go to the spool.
    pub queue_len: usize,
    /// Permission bits of the socket-server socket.
    pub socket_mode: u32,
    /// Group owning the socket-server socket (name or numeric gid).
    pub socket_group: Option<String>,
    /// Lines queued per socket-server subscriber before it is disconnected.
    pub subscriber_queue_len: usize,
    /// File sink: rotate when the file would exceed this size; 0 disables rotation.
    pub file_max_bytes: u64,
    /// File sink: rotated files kept (`PATH.1` .. `PATH.N`).
    pub file_keep: usize,
    /// First retry delay after a sink fails, in milliseconds (doubles up to `backoff_max_ms`).
    pub backoff_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// Spool sync interval in milliseconds: segment data and the ack file are fsync'd at
    /// most this long after being written.
    pub spool_sync_ms: u64,
}

impl Default for DeliverConfig {
    fn default() -> Self {
        Self {
            sinks: Vec::new(),
            spool_dir: PathBuf::from("/var/lib/t1609-agent/spool"),
            spool_max_bytes: 64 * 1024 * 1024,
            queue_len: 4096,
            socket_mode: 0o660,
            socket_group: None,
            subscriber_queue_len: 1024,
            file_max_bytes: 64 * 1024 * 1024,
            file_keep: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            spool_sync_ms: 200,
        }
    }
}

fn invalid(field: &'static str, value: impl fmt::Display, allowed: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        allowed,
    }
}

impl DeliverConfig {
    /// Checks every field; the error names the field, the value and what is allowed.
    ///
    /// # Errors
    /// The first invalid field found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sinks.is_empty() {
            return Err(invalid("sinks", "[]", "at least one sink"));
        }
        for (i, s) in self.sinks.iter().enumerate() {
            if self.sinks[..i].contains(s) {
                return Err(ConfigError::DuplicateSink {
                    value: s.to_string(),
                });
            }
        }
        if !self.spool_dir.is_absolute() {
            return Err(invalid(
                "spool_dir",
                self.spool_dir.display(),
                "an absolute path",
            ));
        }
        if self.spool_max_bytes < 64 * 1024 {
            return Err(invalid(
                "spool_max_bytes",
                self.spool_max_bytes,
                "at least 65536 (64 KiB)",
            ));
        }
        if self.queue_len == 0 || self.queue_len > 1 << 20 {
            return Err(invalid("queue_len", self.queue_len, "1 to 1048576"));
        }
        if self.socket_mode > 0o777 {
            return Err(invalid(
                "socket_mode",
                format!("{:#o}", self.socket_mode),
                "permission bits 0o000 to 0o777",
            ));
        }
        if let Some(g) = &self.socket_group
            && (g.is_empty() || g.contains('\0'))
        {
            return Err(invalid(
                "socket_group",
                format!("{g:?}"),
                "a group name or numeric gid",
            ));
        }
        if self.subscriber_queue_len == 0 || self.subscriber_queue_len > 1 << 20 {
            return Err(invalid(
                "subscriber_queue_len",
                self.subscriber_queue_len,
                "1 to 1048576",
            ));
        }
        if self.file_max_bytes != 0 && self.file_max_bytes < 4096 {
            return Err(invalid(
                "file_max_bytes",
                self.file_max_bytes,
                "0 (no rotation) or at least 4096",
            ));
        }
        if self.file_keep == 0 || self.file_keep > 1000 {
            return Err(invalid("file_keep", self.file_keep, "1 to 1000"));
        }
        if self.backoff_initial_ms == 0 || self.backoff_initial_ms > 60_000 {
            return Err(invalid(
                "backoff_initial_ms",
                self.backoff_initial_ms,
                "1 to 60000",
            ));
        }
        if self.backoff_max_ms < self.backoff_initial_ms || self.backoff_max_ms > 600_000 {
            return Err(invalid(
                "backoff_max_ms",
                self.backoff_max_ms,
                "backoff_initial_ms to 600000",
            ));
        }
        if self.spool_sync_ms == 0 || self.spool_sync_ms > 60_000 {
            return Err(invalid("spool_sync_ms", self.spool_sync_ms, "1 to 60000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_sink_form() {
        assert_eq!("stdout".parse::<SinkSpec>().unwrap(), SinkSpec::Stdout);
        assert_eq!(
            "journald".parse::<SinkSpec>().unwrap(),
            SinkSpec::Journald {
                socket: JOURNALD_SOCKET.into()
            }
        );
        assert_eq!(
            "socket-server:/run/x.sock".parse::<SinkSpec>().unwrap(),
            SinkSpec::SocketServer {
                path: "/run/x.sock".into()
            }
        );
        assert_eq!(
            "socket-server".parse::<SinkSpec>().unwrap(),
            SinkSpec::SocketServer {
                path: DEFAULT_SERVER_SOCKET.into()
            }
        );
        assert_eq!(
            "socket-client:/run/c.sock".parse::<SinkSpec>().unwrap(),
            SinkSpec::SocketClient {
                path: "/run/c.sock".into(),
                mode: ClientMode::Stream
            }
        );
        assert_eq!(
            "socket-client:dgram:/run/c.sock"
                .parse::<SinkSpec>()
                .unwrap(),
            SinkSpec::SocketClient {
                path: "/run/c.sock".into(),
                mode: ClientMode::Datagram
            }
        );
        assert_eq!(
            "file:/var/log/a.json".parse::<SinkSpec>().unwrap(),
            SinkSpec::File {
                path: "/var/log/a.json".into()
            }
        );
        for s in [
            "stdout",
            "journald",
            "journald:/tmp/j",
            "socket-server:/a",
            "socket-client:/b",
            "socket-client:dgram:/c",
            "file:/d",
        ] {
            assert_eq!(s.parse::<SinkSpec>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_sinks_name_the_value() {
        for bad in [
            "",
            "syslog",
            "file:",
            "file:rel/path",
            "stdout:x",
            "socket-client",
        ] {
            let e = bad.parse::<SinkSpec>().unwrap_err();
            assert!(matches!(e, ConfigError::BadSink { .. }), "{bad}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn toml_defaults_and_unknown_fields() {
        let c: DeliverConfig = toml::from_str(r#"sinks = ["stdout", "file:/tmp/a"]"#).unwrap();
        assert_eq!(c.queue_len, 4096);
        assert_eq!(c.spool_max_bytes, 64 << 20);
        assert_eq!(c.socket_mode, 0o660);
        c.validate().unwrap();
        let e =
            toml::from_str::<DeliverConfig>("sinks = [\"stdout\"]\nqueue_lenn = 3").unwrap_err();
        assert!(e.to_string().contains("queue_lenn"), "{e}");
        let e = toml::from_str::<DeliverConfig>(r#"sinks = ["bogus:/x"]"#).unwrap_err();
        assert!(e.to_string().contains("bogus:/x"), "{e}");
    }

    #[test]
    fn validate_names_field_value_and_allowed() {
        let mut c = DeliverConfig {
            sinks: vec![SinkSpec::Stdout],
            ..DeliverConfig::default()
        };
        c.queue_len = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for `queue_len`: 0; allowed: 1 to 1048576"
        );
        c.queue_len = 10;
        c.socket_mode = 0o1777;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("socket_mode")
        );
        c.socket_mode = 0o660;
        c.sinks.push(SinkSpec::Stdout);
        assert!(matches!(
            c.validate().unwrap_err(),
            ConfigError::DuplicateSink { .. }
        ));
        c.sinks.pop();
        c.spool_dir = "relative".into();
        assert!(c.validate().unwrap_err().to_string().contains("spool_dir"));
        c.spool_dir = "/tmp".into();
        c.file_max_bytes = 10;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("file_max_bytes")
        );
        c.file_max_bytes = 0;
        c.validate().unwrap();
        c.sinks.clear();
        assert!(c.validate().unwrap_err().to_string().contains("sinks"));
    }
}
