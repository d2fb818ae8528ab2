//! The engine with identity: names its index lacks (plugins, name variants, shapes) reach
//! their tool's rules, an event the agent identified by file content is evaluated as that
//! tool, and the alert says so: T1036.003 in `threat` when the name lies, confidence one
//! step lower for a shape-only match, the identity fields queryable in EQL.

mod common;

use std::path::PathBuf;

use common::{event, event_named, fires};
use t1609_detect::{Alert, Engine};

fn engine() -> Engine {
    Engine::builtin().expect("builtin pack loads")
}

fn exec_alert(alerts: &[Alert]) -> &Alert {
    alerts
        .iter()
        .find(|a| a.rule_id == "t1609.container_exec")
        .unwrap_or_else(|| panic!("no container_exec in {:?}", ids(alerts)))
}

fn ids(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule_id.as_str()).collect()
}

fn techniques(a: &Alert) -> Vec<String> {
    let doc = a.to_ecs();
    doc["threat"]["technique"]["id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Both writers, byte for byte, for the alerts these tests make.
fn same_json(a: &Alert) {
    let mut fast = Vec::new();
    a.write_json(&mut fast).unwrap();
    assert_eq!(fast, serde_json::to_vec(a).unwrap());
}

#[test]
fn a_kubectl_plugin_that_execs_is_indexed_and_fires() {
    let e = engine();
    let ev = event(&["kubectl-exec", "mypod", "--", "sh"]);
    let alerts = e.evaluate(&ev);
    let a = exec_alert(&alerts);
    let inv = a.argv.as_deref().unwrap();
    assert_eq!(
        (inv.tool.as_str(), inv.plugin.as_deref()),
        ("kubectl", Some("exec"))
    );
    assert_eq!(inv.pod.as_deref(), Some("mypod"));
    // A plugin is its own program, not a masquerade.
    assert_eq!(techniques(a), ["T1609"]);
    // The node-shell plugin run as a script by its interpreter (as the kernel reports it).
    let ev = event_named(
        Some("kubectl-node_shell"),
        &["/bin/sh", "/usr/local/bin/kubectl-node_shell", "node-1"],
        None,
    );
    assert!(fires(&e, "kubectl-node_shell node-1").contains(&"t1609.container_exec".into()));
    let alerts = e.evaluate(&ev);
    assert_eq!(
        exec_alert(&alerts).argv.as_deref().unwrap().verb.as_deref(),
        Some("node-shell")
    );
    // Near miss: a plugin whose name says nothing of exec.
    assert!(e.evaluate(&event(&["kubectl-ctx", "prod"])).is_empty());
}

#[test]
fn a_shape_only_match_is_one_step_less_confident_and_masquerading() {
    let e = engine();
    let alerts = e.evaluate(&event_named(
        Some(".x"),
        &[".x", "exec", "-it", "web", "sh"],
        None,
    ));
    let a = exec_alert(&alerts);
    assert_eq!(a.argv.as_deref().unwrap().recognised_by, Some("shape"));
    // The rule says high; the document says medium.
    assert_eq!(a.confidence.as_str(), "high");
    assert_eq!(a.stated_confidence().as_str(), "medium");
    assert_eq!(a.to_ecs()["t1609"]["confidence"], "medium");
    assert_eq!(techniques(a), ["T1609", "T1036.003"]);
    let tactics = a.to_ecs()["threat"]["tactic"]["id"].clone();
    assert_eq!(tactics, serde_json::json!(["TA0002", "TA0005"]));
    same_json(a);
    // The real client under its own name: neither.
    let alerts = e.evaluate(&event(&["docker", "exec", "-it", "web", "sh"]));
    let a = exec_alert(&alerts);
    assert_eq!(a.to_ecs()["t1609"]["confidence"], "high");
    assert_eq!(techniques(a), ["T1609"]);
    same_json(a);
}

#[test]
fn an_identified_file_is_evaluated_as_its_tool() {
    let e = engine();
    // A renamed docker with nothing shape-like in its arguments: by name and shape alone
    // nothing fires; identified, the container exec does.
    let argv = [".x", "exec", "web", "id"];
    let ev = event_named(Some(".x"), &argv, None);
    assert!(
        e.evaluate(&ev)
            .iter()
            .all(|a| a.rule_id != "t1609.container_exec")
    );
    let alerts = e.evaluate_identified(&ev, "docker");
    let a = exec_alert(&alerts);
    let inv = a.argv.as_deref().unwrap();
    assert_eq!(inv.container.as_deref(), Some("web"));
    assert_eq!(
        (inv.recognised_by, inv.masquerade),
        (Some("content"), Some("renamed"))
    );
    assert_eq!(
        a.to_ecs()["t1609"]["confidence"],
        "high",
        "content is not a guess"
    );
    assert_eq!(techniques(a), ["T1609", "T1036.003"]);
    // The alert keeps the real name.
    assert_eq!(a.to_ecs()["process"]["name"], ".x");
    same_json(a);
    // Upper case, a trailing space: name variants.
    for name in ["DOCKER", "docker "] {
        let ev = event_named(Some(name), &[name, "exec", "-it", "web", "sh"], None);
        let alerts = e.evaluate_identified(&ev, "docker");
        assert_eq!(
            exec_alert(&alerts).argv.as_deref().unwrap().masquerade,
            Some("name_variant")
        );
    }
    // ctr renamed, against dockerd's containerd.
    let ev = event_named(
        Some("kworker"),
        &[
            "kworker",
            "-n",
            "moby",
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            "abc",
            "id",
        ],
        None,
    );
    let alerts = e.evaluate_identified(&ev, "ctr");
    let inv = exec_alert(&alerts).argv.clone().unwrap();
    assert_eq!(
        (inv.tool.as_str(), inv.container.as_deref()),
        ("ctr", Some("abc"))
    );
    // A tool the parser has no rules for: evaluated as usual.
    let ev = event_named(Some("x"), &["x", "--version"], None);
    assert!(e.evaluate_identified(&ev, "containerd").is_empty());
}

#[test]
fn identity_fields_are_queryable() {
    let dir = std::env::temp_dir().join(format!("t1609-identity-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("masq.toml");
    std::fs::write(
        &path,
        r#"
[[rule]]
id = "test.masquerade"
name = "A container tool under a name that lies"
description = "test"
severity = "high"
confidence = "medium"
risk_score = 73
techniques = ["T1036.003"]
query = '''
process where t1609.argv.masquerade in ("renamed", "name_variant") and t1609.argv.recognised_by == "content"
'''

[[rule]]
id = "test.plugin"
name = "A kubectl plugin"
description = "test"
severity = "low"
confidence = "medium"
risk_score = 21
techniques = ["T1609"]
query = '''
process where t1609.argv.tool == "kubectl" and t1609.argv.plugin : "*"
'''
"#,
    )
    .unwrap();
    let e = Engine::load(&[path]).expect("rules with the identity fields load");
    let ev = event_named(Some(".x"), &[".x", "exec", "web", "id"], None);
    assert!(ids(&e.evaluate_identified(&ev, "docker")).contains(&"test.masquerade"));
    assert!(
        !ids(&e.evaluate(&event(&["docker", "exec", "web", "id"]))).contains(&"test.masquerade")
    );
    assert!(ids(&e.evaluate(&event(&["kubectl-ctx", "prod"]))).contains(&"test.plugin"));
    assert!(!ids(&e.evaluate(&event(&["kubectl", "get", "pods"]))).contains(&"test.plugin"));
    let _ = std::fs::remove_dir_all(&dir);
}
