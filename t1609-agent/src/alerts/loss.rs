//! The alert that says captured events were lost: loss is never silent.

use serde_json::{Value, json};
use t1609_ecs::{AlertDoc, RuleRef, Severity};

use crate::capture::KernelCounters;

/// An alert reporting `lost` exec events and `lost_chunks` argv chunks the kernel had to
/// drop since the last one (`total`: since start).
pub fn capture_loss(
    host: Option<&str>,
    lost: u64,
    lost_chunks: u64,
    total: KernelCounters,
) -> Value {
    let rule = RuleRef {
        id: "t1609.agent_capture_loss",
        name: "t1609-agent lost captured exec events",
        description: Some(
            "The kernel ring buffer was full: exec events were dropped before the agent could read them.",
        ),
        reference: None,
    };
    AlertDoc::new(rule, Severity::Medium)
        .categorized(&["process"], &["info"], None)
        .message(format!(
            "t1609-agent: {lost} exec events and {lost_chunks} argv chunks lost (ring buffer full)"
        ))
        .t1609("lost_events", json!(lost))
        .t1609("lost_argv_chunks", json!(lost_chunks))
        .t1609("lost_events_total", json!(total.ringbuf_full))
        .t1609("lost_argv_chunks_total", json!(total.chunk_ringbuf_full))
        .host(host)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_was_lost() {
        let total = KernelCounters {
            ringbuf_full: 10,
            chunk_ringbuf_full: 3,
            ..Default::default()
        };
        let doc = capture_loss(Some("node-1"), 4, 1, total);
        assert_eq!(doc["rule"]["id"], "t1609.agent_capture_loss");
        assert_eq!(doc["event"]["severity"], 47);
        assert_eq!(doc["t1609"]["lost_events"], 4);
        assert_eq!(doc["t1609"]["lost_argv_chunks_total"], 3);
        assert!(doc["message"].as_str().unwrap().contains("4 exec events"));
    }
}
