//! Runs the configured inputs and turns their events into alerts.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::{
    config::AuditConfig, error::AuditError, file::follow_file, rules::AuditRules,
    stats::AuditStats, webhook::WebhookServer,
};

/// Starts the file follower and/or the webhook that `cfg` enables, evaluates every event
/// with `rules` (counting them in `stats.alerts`) and sends the alerts to `alerts`.
/// Returns when the inputs have ended (after `stop` turns true), with the first input
/// error if any. A webhook bind, TLS or token error is returned before anything runs.
pub async fn run_sources(
    cfg: AuditConfig,
    rules: Arc<AuditRules>,
    alerts: mpsc::Sender<Value>,
    stats: Arc<AuditStats>,
    stop: watch::Receiver<bool>,
) -> Result<(), AuditError> {
    cfg.validate()?;
    let (tx, mut rx) = mpsc::channel(4096);
    let mut tasks = Vec::new();
    if let Some(w) = &cfg.webhook {
        let server = WebhookServer::bind(w).await?;
        tasks.push(tokio::spawn(server.serve(
            tx.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    if let Some(f) = cfg.file.clone() {
        tasks.push(tokio::spawn(follow_file(
            f,
            tx.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    drop(tx);
    let mut delivering = true;
    while let Some(ev) = rx.recv().await {
        for alert in rules.evaluate_counted(&ev, &stats) {
            if delivering && alerts.send(alert).await.is_err() {
                tracing::warn!(
                    "alert channel closed; kubernetes audit alerts are dropped until stop"
                );
                delivering = false;
            }
        }
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "kubernetes audit input failed");
                first_err.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "kubernetes audit input panicked"),
        }
    }
    first_err.map_or(Ok(()), Err)
}
