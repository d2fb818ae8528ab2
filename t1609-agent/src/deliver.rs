//! Deliver stage: hands alert documents to the configured sinks.

use std::{io::Write, sync::{Arc, Mutex}, time::Duration};

use crate::config::OutputConfig;

pub struct Output {
    stdout: Mutex<std::io::Stdout>,
}

impl Output {
    pub async fn start(_config: &OutputConfig) -> anyhow::Result<Self> {
        Ok(Self { stdout: Mutex::new(std::io::stdout()) })
    }

    /// Never blocks the capture loop for long.
    pub fn submit(&self, alert: Arc<serde_json::Value>) {
        let mut out = self.stdout.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(out, "{alert}");
        let _ = out.flush();
    }

    pub async fn shutdown(self, _deadline: Duration) {}
}
