//! Deliver stage: hands alert documents to the configured sinks (t1609-deliver), which
//! queue, spool to disk when a sink is down, and never block the capture loop.

use std::{sync::Arc, time::Duration};

pub use t1609_deliver::Alert as SentAlert;
use t1609_deliver::{DeliverConfig, DeliverError, DeliverStats, Dispatcher};

pub struct Output {
    dispatcher: Dispatcher,
}

impl Output {
    pub async fn start(config: DeliverConfig) -> Result<Self, DeliverError> {
        Ok(Self {
            dispatcher: Dispatcher::start(config).await?,
        })
    }

    /// Never blocks: the alert is queued, spooled, or counted as dropped.
    pub fn submit(&self, alert: Arc<serde_json::Value>) {
        self.dispatcher.submit(alert);
    }

    /// [`Output::submit`] for an alert already made (written as text, or built).
    pub fn submit_alert(&self, alert: &SentAlert) {
        self.dispatcher.submit_alert(alert);
    }

    pub fn stats(&self) -> DeliverStats {
        self.dispatcher.stats()
    }

    /// Drains the queues and flushes the spools, within `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        self.dispatcher.shutdown(deadline).await;
    }
}
