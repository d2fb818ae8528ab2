//! The ECS alert document of a rule hit on an audit event, started from
//! [`t1609_ecs::AlertDoc`] like every alert of the agent.

use serde_json::{Map, Value, json};
use t1609_ecs::{AlertDoc, RuleRef, Threat, digest, now_rfc3339};

use super::{compile::DATASET, eval::Hit};
use crate::{
    event::{AuditEvent, ObjectReference},
    uri::basename,
};

/// Removes nulls, empty strings, empty arrays and objects left empty by that.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => {
            a.retain_mut(prune);
            !a.is_empty()
        }
        Value::Object(m) => {
            m.retain(|_, v| prune(v));
            !m.is_empty()
        }
        _ => true,
    }
}

/// `user` (the authenticated user, and the impersonated one as `user.effective`) and
/// `related`.
fn user_fields(ev: &AuditEvent) -> (Value, Value) {
    let imp = ev.impersonated_user.as_ref();
    let mut related_users = vec![json!(ev.user.username)];
    if let Some(u) = imp {
        related_users.push(json!(u.username));
    }
    let user = json!({
        "name": ev.user.username,
        "id": ev.user.uid,
        "roles": ev.user.groups,
        "group": { "name": ev.user.groups },
        "effective": imp.map(|u| json!({ "name": u.username, "id": u.uid, "roles": u.groups })),
    });
    let related = json!({ "user": related_users, "ip": ev.source_ips });
    (user, related)
}

/// `kubernetes.audit`: the audit event itself, under its own field names.
fn audit_record(ev: &AuditEvent, or: &ObjectReference) -> Value {
    let imp = ev.impersonated_user.as_ref();
    json!({
        "auditID": ev.audit_id,
        "level": ev.level,
        "stage": ev.stage,
        "verb": ev.verb,
        "requestURI": ev.request_uri,
        "sourceIPs": ev.source_ips,
        "userAgent": ev.user_agent,
        "user": { "username": ev.user.username, "uid": ev.user.uid, "groups": ev.user.groups },
        "impersonatedUser": imp.map(|u| json!({ "username": u.username, "uid": u.uid, "groups": u.groups })),
        "objectRef": serde_json::to_value(or).unwrap_or(Value::Null),
        "responseStatus": ev.response_status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        "requestReceivedTimestamp": ev.request_received_timestamp,
        "stageTimestamp": ev.stage_timestamp,
        "annotations": ev.annotations,
    })
}

/// `t1609.k8s`: what the request asked for, as the rules saw it.
fn k8s_fields(h: &Hit) -> Value {
    let req = h.req;
    let mut k8s = Map::new();
    k8s.insert("kind".into(), json!(h.m.kind));
    k8s.insert("stdin".into(), json!(req.stdin));
    k8s.insert("stdout".into(), json!(req.stdout));
    k8s.insert("tty".into(), json!(req.tty));
    k8s.insert("command_is_shell".into(), json!(h.shell));
    k8s.insert("severity_reasons".into(), json!(h.reasons));
    k8s.insert("node".into(), json!(req.node));
    k8s.insert("proxy_path".into(), json!(req.proxy_path));
    k8s.insert("kubelet_endpoint".into(), json!(req.kubelet_endpoint));
    k8s.insert("ports".into(), json!(req.ports));
    k8s.insert(
        "impersonated".into(),
        json!(h.ev.impersonated_user.is_some()),
    );
    Value::Object(k8s)
}

/// The alert document of `h`. Empty values are left out (see [`prune`]).
pub(super) fn build_alert(h: &Hit) -> Value {
    let (rule, ev, req) = (h.rule, h.ev, h.req);
    let or = ev.object_ref();
    let created = now_rfc3339();
    // The time of the request, as the API server saw it; the alert's own time when the
    // event carries none.
    let ts = ev
        .request_received_timestamp
        .clone()
        .or_else(|| ev.stage_timestamp.clone())
        .unwrap_or_else(|| created.clone());
    let outcome = match ev.response_status.as_ref().and_then(|s| s.code) {
        Some(c) if c >= 400 => "failure",
        Some(_) => "success",
        None => "unknown",
    };
    let (category, etype) = if h.m.kind.contains("portforward") {
        ("network", "connection")
    } else {
        ("process", "start")
    };
    let action = match &or.subresource {
        Some(s) => format!("{}/{}", or.resource.clone().unwrap_or_default(), s),
        None => or.resource.clone().unwrap_or_default(),
    };
    let mut resource = json!({ "type": "pod", "name": req.pod });
    if or.resource.as_deref() == Some("nodes") {
        resource["parent"] = json!({ "type": "node" });
    }
    let process = if req.command.is_empty() {
        Value::Null
    } else {
        json!({
            "command_line": req.command_line(),
            "args": req.command,
            "args_count": req.command.len(),
            "name": basename(&req.command[0]),
        })
    };
    let (user, related) = user_fields(ev);
    let rule_ref = RuleRef {
        id: &rule.id,
        name: &rule.name,
        description: Some(&rule.description),
        reference: Some(&rule.reference),
    };
    let mut doc = AlertDoc::new(rule_ref, h.severity)
        .timestamp(ts)
        .categorized(&[category], &[etype], Some(&action))
        .event("dataset", json!(DATASET))
        .event("module", json!("kubernetes"))
        .event("provider", json!("kube-apiserver"))
        .event("outcome", json!(outcome))
        .event("created", json!(created))
        .threat(&Threat::of(&["TA0002"], &["T1609"]))
        .set("user", user)
        .set("related", related)
        .set("source", json!({ "ip": ev.source_ips.first() }))
        .set("user_agent", json!({ "original": ev.user_agent }))
        .set(
            "orchestrator",
            json!({
                "type": "kubernetes",
                "namespace": req.namespace,
                "api_version": or.api_version,
                "resource": resource,
            }),
        )
        .set("container", json!({ "name": req.container }))
        .set("process", process)
        .set("kubernetes", json!({ "audit": audit_record(ev, &or) }))
        .group(digest(&[b"k8saudit", ev.audit_id.as_bytes()]))
        .t1609("source", json!(DATASET))
        .t1609("references", json!(rule.references))
        .t1609("k8s", k8s_fields(h))
        .build();
    // The rule file the rule came from.
    doc["rule"]["ruleset"] = json!(rule.source);
    prune(&mut doc);
    // Booleans and empty lists that carry meaning are kept explicitly.
    if let Some(t) = doc.pointer_mut("/t1609/k8s").and_then(Value::as_object_mut) {
        t.entry("severity_reasons").or_insert_with(|| json!([]));
    }
    doc
}
