//! Emitting an alert: a kubectl exec is tied to its Kubernetes audit twin, the alert is
//! counted by rule and handed to the sinks.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use serde_json::Value;
use t1609_k8saudit::Correlator;

use crate::{
    deliver::Output,
    stats::{Counter, Counters},
};

pub struct Emitter {
    output: Arc<Output>,
    correlator: Arc<Mutex<Correlator>>,
    counters: Arc<Counters>,
}

impl Emitter {
    pub fn new(
        output: Arc<Output>,
        correlator: Arc<Mutex<Correlator>>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            output,
            correlator,
            counters,
        }
    }

    /// Delivers `doc` and returns it as the sinks share it.
    pub fn emit(&self, mut doc: Value) -> Arc<Value> {
        if doc["t1609"]["argv"]["tool"] == "kubectl" {
            // A kubectl exec seen here and the API server's audit entry for it share a group.
            self.correlator
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe_process_alert(&mut doc, Instant::now());
        }
        match doc["rule"]["id"].as_str() {
            Some(rule) => self.counters.alert(rule),
            None => self.counters.inc(Counter::Alerts),
        }
        let doc = Arc::new(doc);
        self.output.submit(doc.clone());
        doc
    }
}
