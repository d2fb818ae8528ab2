use std::{net::SocketAddr, path::PathBuf};

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
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the audit webhook to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid audit configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// A certificate or key file without the PEM block it should hold.
    #[error("audit webhook TLS: {path}: no PEM {missing}")]
    TlsPem {
        path: PathBuf,
        /// `certificate` or `private key`.
        missing: &'static str,
    },
    /// rustls refused the certificate or key.
    #[error("audit webhook TLS: {source}")]
    Tls {
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    #[error("audit webhook bearer token file {path}: {source}")]
    TokenRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit webhook bearer token file {path}: empty token")]
    TokenEmpty { path: PathBuf },
}

/// Errors loading audit rule files.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{source_name}: invalid TOML: {error}")]
    Toml {
        source_name: String,
        #[source]
        error: toml::de::Error,
    },
    #[error("{source_name}: rule `{rule}`: {message}")]
    Invalid {
        source_name: String,
        rule: String,
        message: String,
    },
    /// A pattern of a rule (a glob or a `proxy_path` regex) that does not compile.
    #[error("{source_name}: rule `{rule}`: {what}: {error}")]
    Pattern {
        source_name: String,
        rule: String,
        /// Which pattern, e.g. ``match `exec`: proxy_path``.
        what: String,
        #[source]
        error: regex::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::{error::Error as _, io};

    use super::*;

    #[test]
    fn messages_name_the_file_and_keep_the_cause() {
        let e = AuditError::TlsPem {
            path: "/etc/k/cert.pem".into(),
            missing: "certificate",
        };
        assert_eq!(
            e.to_string(),
            "audit webhook TLS: /etc/k/cert.pem: no PEM certificate"
        );
        let e = AuditError::TokenEmpty {
            path: "/etc/k/token".into(),
        };
        assert_eq!(
            e.to_string(),
            "audit webhook bearer token file /etc/k/token: empty token"
        );
        let cause = || io::Error::from(io::ErrorKind::NotFound);
        let e = AuditError::TokenRead {
            path: "/etc/k/token".into(),
            source: cause(),
        };
        assert_eq!(
            e.to_string(),
            format!("audit webhook bearer token file /etc/k/token: {}", cause())
        );
        assert!(e.source().unwrap().is::<io::Error>());
        let e = RuleError::Read {
            source_name: "extra.toml".into(),
            error: cause(),
        };
        assert!(e.source().unwrap().is::<io::Error>());
    }
}
