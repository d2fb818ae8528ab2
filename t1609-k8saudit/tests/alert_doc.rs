//! The whole ECS document of an audit alert, pinned: every field and value the rules write,
//! for an exec (impersonated, denied), a port-forward and a nodes/proxy exec. Only what
//! changes from run to run (`event.id`, `event.created`, and `@timestamp` when the event
//! carries no time) is checked apart.

mod common;

use common::{atomic_test2, node_proxy_exec, port_forward};
use serde_json::{Value, json};
use t1609_k8saudit::{AuditRules, parse_event_line};

const GOLDEN: &str = include_str!("fixtures/alert_doc.json");

fn alert(rules: &AuditRules, v: &Value) -> Value {
    let mut alerts = rules.evaluate(&parse_event_line(&v.to_string()).expect("an audit event"));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    alerts.remove(0)
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    for k in keys {
        v.as_object_mut().expect("an object").remove(*k);
    }
    v
}

/// Drops the fields that differ between runs, after checking their form.
fn stable(mut a: Value) -> Value {
    let id = a["event"]["id"].as_str().expect("event.id").to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let created = a["event"]["created"].as_str().expect("event.created");
    assert!(created.ends_with('Z'), "{created}");
    let event = a["event"].as_object_mut().expect("event");
    event.remove("id");
    event.remove("created");
    a
}

#[test]
fn audit_alert_documents_are_pinned() {
    let golden: Vec<Value> = serde_json::from_str(GOLDEN).expect("fixture is JSON");
    let rules = AuditRules::builtin().expect("built-in rules load");

    let mut exec = atomic_test2("doc-1").json();
    exec["impersonatedUser"] = json!({"username": "system:serviceaccount:default:builder", "uid": "u-2", "groups": ["system:serviceaccounts"]});
    exec["responseStatus"] =
        json!({"metadata": {}, "code": 403, "status": "Failure", "reason": "Forbidden"});
    let forward = without(port_forward("doc-2").json(), &["requestReceivedTimestamp"]);
    let proxy = without(
        node_proxy_exec("doc-3").json(),
        &["requestReceivedTimestamp", "stageTimestamp", "annotations"],
    );

    assert_eq!(stable(alert(&rules, &exec)), golden[0]);
    assert_eq!(stable(alert(&rules, &forward)), golden[1]);
    // No time in the event: `@timestamp` is when the alert was made, `event.created`.
    let a = alert(&rules, &proxy);
    assert_eq!(a["@timestamp"], a["event"]["created"]);
    assert_eq!(stable(without(a, &["@timestamp"])), golden[2]);
}
