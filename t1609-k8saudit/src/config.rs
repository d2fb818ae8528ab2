//! `[kubernetes_audit]`-style configuration of the two input modes.

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration error, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Both input modes are optional; neither is on by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Follow the API server's audit log file (`--audit-log-path`).
    pub file: Option<FileSourceConfig>,
    /// Receive the API server's audit webhook backend POSTs.
    pub webhook: Option<WebhookConfig>,
    /// Extra audit rule files, loaded after the built-in `k8s_audit.toml`.
    pub rule_files: Vec<PathBuf>,
    /// Window, in seconds, in which a `kubectl exec` process alert and an audit alert of the
    /// same pod, namespace and command get one group id.
    pub correlation_window_secs: u64,
}

/// Where to start when no saved state exists for the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    End,
    Beginning,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The audit log file (JSON lines).
    pub path: PathBuf,
    /// Where the read offset and inode are saved (written atomically via rename).
    pub state_file: PathBuf,
    /// Where to start without saved state: `end` (default) or `beginning`.
    pub start_at: StartAt,
    /// How often to look for new lines, rotation and truncation.
    pub poll_interval_ms: u64,
    /// Longest accepted line; a longer one is counted as malformed and skipped.
    pub max_line_bytes: usize,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig {
            path: PathBuf::from("/var/log/kubernetes/audit/audit.log"),
            state_file: PathBuf::from("/var/lib/t1609-agent/k8saudit-file.state"),
            start_at: StartAt::End,
            poll_interval_ms: 250,
            max_line_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// File holding the bearer token the API server must send (its webhook kubeconfig's
    /// `token`). Without it, any client may post.
    pub bearer_token_file: Option<PathBuf>,
    /// Largest accepted body; a larger one gets 413.
    pub max_body_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9444)),
            tls_cert: None,
            tls_key: None,
            bearer_token_file: None,
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

impl AuditConfig {
    /// Checks the values serde cannot; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(f) = &self.file {
            f.validate()?;
        }
        if let Some(w) = &self.webhook {
            w.validate()?;
        }
        if self.correlation_window_secs > 3600 {
            return Err(err("correlation_window_secs", "must be at most 3600"));
        }
        for (i, p) in self.rule_files.iter().enumerate() {
            if p.as_os_str().is_empty() {
                return Err(err(&format!("rule_files[{i}]"), "empty path"));
            }
        }
        Ok(())
    }

    /// The correlation window (30 s when unset).
    pub fn correlation_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(if self.correlation_window_secs == 0 {
            30
        } else {
            self.correlation_window_secs
        })
    }
}

impl FileSourceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(err("file.path", "empty path"));
        }
        if self.state_file.as_os_str().is_empty() {
            return Err(err("file.state_file", "empty path"));
        }
        if self.state_file == self.path {
            return Err(err("file.state_file", "must differ from file.path"));
        }
        if self.poll_interval_ms == 0 || self.poll_interval_ms > 60_000 {
            return Err(err("file.poll_interval_ms", "must be between 1 and 60000"));
        }
        if self.max_line_bytes < 1024 {
            return Err(err("file.max_line_bytes", "must be at least 1024"));
        }
        Ok(())
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(err(
                    "webhook.tls_key",
                    "required when webhook.tls_cert is set",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "webhook.tls_cert",
                    "required when webhook.tls_key is set",
                ));
            }
            _ => {}
        }
        if self.max_body_bytes == 0 {
            return Err(err("webhook.max_body_bytes", "must be greater than 0"));
        }
        if self.max_body_bytes > 1024 * 1024 * 1024 {
            return Err(err("webhook.max_body_bytes", "must be at most 1 GiB"));
        }
        if let Some(p) = &self.bearer_token_file
            && p.as_os_str().is_empty()
        {
            return Err(err("webhook.bearer_token_file", "empty path"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let c: AuditConfig = toml::from_str(
            r#"
            correlation_window_secs = 20
            [file]
            path = "/var/log/kube-audit.log"
            state_file = "/tmp/x.state"
            start_at = "beginning"
            [webhook]
            listen = "0.0.0.0:9444"
            tls_cert = "/etc/t1609/tls.crt"
            tls_key = "/etc/t1609/tls.key"
            bearer_token_file = "/etc/t1609/token"
            max_body_bytes = 1048576
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.file.as_ref().unwrap().start_at, StartAt::Beginning);
        assert_eq!(c.file.as_ref().unwrap().poll_interval_ms, 250);
        assert_eq!(c.correlation_window().as_secs(), 20);
        assert_eq!(AuditConfig::default().file, None);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let e =
            toml::from_str::<AuditConfig>("[webhook]\nlisten = \"127.0.0.1:1\"\nmax_body = 3\n")
                .unwrap_err();
        assert!(e.to_string().contains("max_body"), "{e}");
        let c: AuditConfig = toml::from_str("[webhook]\ntls_cert = \"/a\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "webhook.tls_key");
        let c: AuditConfig = toml::from_str("[webhook]\nmax_body_bytes = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "webhook.max_body_bytes");
        let c: AuditConfig = toml::from_str("[file]\npoll_interval_ms = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().field, "file.poll_interval_ms");
    }
}
