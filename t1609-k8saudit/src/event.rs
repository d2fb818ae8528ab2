//! Serde model of `audit.k8s.io/v1` `Event` and `EventList`.
//!
//! Field names follow the documented schema
//! (<https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/>). Unknown fields
//! are kept out of the model but tolerated, so newer API servers still parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AuditError;

pub const API_VERSION: &str = "audit.k8s.io/v1";

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `ObjectReference` of the audit schema (not core/v1's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

/// The parts of `meta/v1` `Status` that audit events carry in `responseStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One `audit.k8s.io/v1` `Event`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuditEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `None`, `Metadata`, `Request` or `RequestResponse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// `RequestReceived`, `ResponseStarted`, `ResponseComplete` or `Panic`.
    pub stage: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    /// RFC 3339 with microseconds (`MicroTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_received_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_timestamp: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `audit.k8s.io/v1` `EventList`, the body of a webhook backend POST.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuditEventList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub items: Vec<AuditEvent>,
}

impl AuditEvent {
    pub fn object_ref(&self) -> ObjectReference {
        self.object_ref.clone().unwrap_or_default()
    }
}

fn check_kind(
    kind: Option<&str>,
    api_version: Option<&str>,
    expected: &'static str,
) -> Result<(), AuditError> {
    if let Some(k) = kind
        && k != expected
    {
        return Err(AuditError::NotAudit {
            expected,
            found: format!("kind {k}"),
        });
    }
    if let Some(v) = api_version
        && !v.starts_with("audit.k8s.io/")
    {
        return Err(AuditError::NotAudit {
            expected,
            found: format!("apiVersion {v}"),
        });
    }
    Ok(())
}

fn check_event(ev: &AuditEvent) -> Result<(), AuditError> {
    check_kind(ev.kind.as_deref(), ev.api_version.as_deref(), "Event")?;
    if ev.audit_id.is_empty() || ev.verb.is_empty() {
        return Err(AuditError::NotAudit {
            expected: "Event",
            found: "object without auditID or verb".into(),
        });
    }
    Ok(())
}

/// Parses one line of the audit log file backend (`--audit-log-path`, JSON format).
pub fn parse_event_line(line: &str) -> Result<AuditEvent, AuditError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(AuditError::Empty);
    }
    let ev: AuditEvent = serde_json::from_str(line)?;
    check_event(&ev)?;
    Ok(ev)
}

/// Parses a webhook backend body: an `EventList` (a bare `Event` is accepted too).
pub fn parse_event_list(body: &[u8]) -> Result<Vec<AuditEvent>, AuditError> {
    let v: Value = serde_json::from_slice(body)?;
    if v.get("kind").and_then(Value::as_str) == Some("Event") {
        let ev: AuditEvent = serde_json::from_value(v)?;
        check_event(&ev)?;
        return Ok(vec![ev]);
    }
    let list: AuditEventList = serde_json::from_value(v)?;
    check_kind(
        list.kind.as_deref(),
        list.api_version.as_deref(),
        "EventList",
    )?;
    if list.kind.is_none() && list.items.is_empty() {
        return Err(AuditError::NotAudit {
            expected: "EventList",
            found: "object without kind or items".into(),
        });
    }
    for ev in &list.items {
        check_event(ev)?;
    }
    Ok(list.items)
}

/// True for an `audit.k8s.io/v1` `Event` (how `replay` tells audit lines from process events).
pub fn looks_like_audit(v: &Value) -> bool {
    v.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
        && v.get("kind").and_then(Value::as_str) == Some("Event")
}

/// True for an `audit.k8s.io/v1` `EventList`.
pub fn looks_like_audit_list(v: &Value) -> bool {
    v.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
        && v.get("kind").and_then(Value::as_str) == Some("EventList")
}
