//! Emitting an alert: a kubectl exec is tied to its Kubernetes audit twin, the alert is
//! counted by rule and handed to the sinks.
//!
//! A process rule's alert is written once, as JSON text, with what the agent adds
//! ([`Emitter::emit_alert`]); the sinks that write text never parse it. Only a kubectl
//! alert, which the audit correlator may rewrite, is built as a `Value`, as are the rare
//! alerts of other kinds ([`Emitter::emit`]).

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use serde_json::Value;
use t1609_detect::{Alert, AlertFields};
use t1609_k8saudit::Correlator;

use crate::{
    deliver::{Output, SentAlert},
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
    pub fn emit(&self, mut doc: Value) -> SentAlert {
        if doc["t1609"]["argv"]["tool"] == "kubectl" {
            self.correlate(&mut doc);
        }
        match doc["rule"]["id"].as_str() {
            Some(rule) => self.counters.alert(rule),
            None => self.counters.inc(Counter::Alerts),
        }
        self.send(SentAlert::new(Arc::new(doc)))
    }

    /// Delivers a process rule's alert with what `fields` add, and returns it as the
    /// sinks share it: as text, or, for a kubectl alert, also as the `Value` the
    /// correlator saw ([`SentAlert::parsed`]).
    pub fn emit_alert(&self, alert: &Alert, fields: &dyn AlertFields) -> SentAlert {
        self.counters.alert(&alert.rule_id);
        let sent = if alert.argv.as_ref().is_some_and(|i| i.tool == "kubectl") {
            let mut doc = alert.to_ecs_with(fields);
            self.correlate(&mut doc);
            SentAlert::new(Arc::new(doc))
        } else {
            SentAlert::from_text(alert.json_with(fields))
        };
        self.send(sent)
    }

    /// A kubectl exec seen here and the API server's audit entry for it share a group.
    fn correlate(&self, doc: &mut Value) {
        self.correlator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe_process_alert(doc, Instant::now());
    }

    fn send(&self, alert: SentAlert) -> SentAlert {
        self.output.submit_alert(&alert);
        alert
    }
}
