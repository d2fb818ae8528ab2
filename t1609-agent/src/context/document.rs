//! What the context stage adds to an ECS document (event or alert), and reads back from
//! one in `replay`.

use serde_json::{Value, json};
use t1609_context::Ancestor;

use super::ExecContext;

/// Adds what the context stage knows to an ECS document (event or alert), with the
/// process's session leader when it was read.
pub fn augment(doc: &mut Value, ctx: &ExecContext, session_leader: Option<u32>) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    let container = obj.entry("container").or_insert_with(|| json!({}));
    if let Some(c) = container.as_object_mut() {
        if let Some(id) = &ctx.cgroup.container_id {
            c.insert("id".into(), json!(id));
        }
        if ctx.cgroup.runtime.is_container() {
            c.insert("runtime".into(), json!(ctx.cgroup.runtime.as_str()));
        }
    }
    if let Some(uid) = &ctx.cgroup.pod_uid {
        // No pod-name source is wired on this host yet: say so rather than leave a blank.
        obj.insert(
            "orchestrator".into(),
            json!({"type": "kubernetes", "resource": {"type": "pod", "uid": uid}, "metadata_pending": true}),
        );
    }
    let t = obj.entry("t1609").or_insert_with(|| json!({}));
    if let Some(t) = t.as_object_mut() {
        t.insert("in_container".into(), json!(ctx.in_container));
        t.insert(
            "ancestry".into(),
            json!(
                ctx.ancestry
                    .iter()
                    .map(|a| json!({"pid": a.pid, "name": a.name, "executable": a.executable}))
                    .collect::<Vec<_>>()
            ),
        );
        if let Some(unit) = &ctx.cgroup.systemd_unit {
            t.insert("systemd_unit".into(), json!(unit));
        }
        if let Some(leader) = session_leader {
            t.insert("session_leader_pid".into(), json!(leader));
        }
    }
}

/// The ancestry an alert document carries (`t1609.ancestry`), for tuning in replay.
pub fn ancestry_from_doc(doc: &Value) -> Vec<Ancestor> {
    doc["t1609"]["ancestry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Ancestor {
                    pid: x["pid"]
                        .as_u64()
                        .and_then(|p| u32::try_from(p).ok())
                        .unwrap_or(0),
                    name: x["name"].as_str().unwrap_or_default().to_owned(),
                    executable: x["executable"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_round_trips_through_a_document() {
        let ctx = ExecContext {
            ancestry: vec![Ancestor {
                pid: 7,
                name: "bash".into(),
                executable: Some("/bin/bash".into()),
            }],
            in_container: true,
            ..Default::default()
        };
        let mut doc = json!({});
        augment(&mut doc, &ctx, Some(3));
        assert_eq!(doc["t1609"]["session_leader_pid"], 3);
        assert_eq!(doc["t1609"]["in_container"], true);
        assert_eq!(ancestry_from_doc(&doc), ctx.ancestry);
    }
}
