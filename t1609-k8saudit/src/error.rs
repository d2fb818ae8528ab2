use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the parsers and the two input modes.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("empty line")]
    Empty,
    #[error("invalid audit JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an audit.k8s.io {expected}: {found}")]
    NotAudit {
        expected: &'static str,
        found: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bind the audit webhook to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid audit configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("audit webhook TLS: {0}")]
    Tls(String),
    #[error("audit webhook bearer token file {path}: {message}")]
    Token { path: PathBuf, message: String },
}

/// Errors loading audit rule files.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: invalid TOML: {error}")]
    Toml {
        source_name: String,
        error: toml::de::Error,
    },
    #[error("{source_name}: rule `{rule}`: {message}")]
    Invalid {
        source_name: String,
        rule: String,
        message: String,
    },
}
