//! Deliver stage: hands alert documents to the configured sinks (t1609-deliver), which
//! queue, spool to disk when a sink is down, and never block the capture loop.

use std::{sync::Arc, time::Duration};

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

    pub fn stats(&self) -> DeliverStats {
        self.dispatcher.stats()
    }

    /// Drains the queues and flushes the spools, within `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        self.dispatcher.shutdown(deadline).await;
    }
}
