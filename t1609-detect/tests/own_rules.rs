//! This crate's own test rules in Elastic's detection-rules format and in Sigma
//! (tests/rules), each with a positive event and a near-miss (tests/rules/cases.jsonl,
//! ECS documents with nested and dotted keys), and rules the engine must skip with their
//! reason (tests/rules-skipped).

use std::path::{Path, PathBuf};

use serde_json::Value;
use t1609_detect::{
    Engine, SkipKind, check_rules, check_rules_report,
    event::{EventType, ProcessEvent},
};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn engine() -> Engine {
    Engine::load(&[dir("rules")]).expect("test rules load")
}

const ELASTIC_IDS: &[&str] = &[
    "t1609-test-e1",
    "t1609-test-e2",
    "t1609-test-e3",
    "t1609-test-e4",
    "t1609-test-e5",
    "t1609-test-e6",
    "t1609-test-e7",
    "t1609-test-e8",
];

const SIGMA_IDS: &[&str] = &[
    "7a1c0000-0000-4000-8000-000000000001",
    "7a1c0000-0000-4000-8000-000000000002",
    "7a1c0000-0000-4000-8000-000000000003",
    "7a1c0000-0000-4000-8000-000000000004",
];

/// Rules in the built-in pack, loaded before the test's own.
fn builtin() -> usize {
    check_rules_report(&[])
        .expect("the built-in pack loads")
        .loaded
}

#[test]
fn every_test_rule_loads_unmodified() {
    let r = check_rules_report(&[dir("rules")]).expect("valid");
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(r.loaded, builtin() + ELASTIC_IDS.len() + SIGMA_IDS.len());
    for id in ELASTIC_IDS.iter().chain(SIGMA_IDS) {
        assert!(r.loaded_ids.iter().any(|(_, l)| l == id), "{id}");
    }
}

#[test]
fn each_rule_fires_on_its_positive_and_not_on_its_near_miss() {
    let e = engine();
    let text = std::fs::read_to_string(dir("rules").join("cases.jsonl")).expect("cases");
    let mut seen_pos = std::collections::BTreeSet::new();
    let mut seen_neg = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let c: Value = serde_json::from_str(line).expect("case");
        let id = c["rule"].as_str().expect("rule");
        let want = c["fires"].as_bool().expect("fires");
        let ev = ProcessEvent::from_ecs(&c["event"])
            .unwrap_or_else(|err| panic!("line {}: {err}", i + 1));
        let fired = e.evaluate(&ev).iter().any(|a| a.rule_id == id);
        assert_eq!(
            fired,
            want,
            "line {}: rule {id} ({}) on {ev:#?}",
            i + 1,
            c["why"]
        );
        if want {
            seen_pos.insert(id.to_string());
        } else {
            seen_neg.insert(id.to_string());
        }
    }
    for id in ELASTIC_IDS.iter().chain(SIGMA_IDS) {
        assert!(seen_pos.contains(*id), "{id} has no positive case");
        assert!(seen_neg.contains(*id), "{id} has no near-miss case");
    }
}

#[test]
fn each_rule_fires_on_the_example_built_from_its_literals() {
    let e = engine();
    for id in ELASTIC_IDS.iter().chain(SIGMA_IDS) {
        let ev = e
            .example_event(id)
            .unwrap_or_else(|| panic!("{id}: no example"));
        assert!(
            e.evaluate(&ev).iter().any(|a| a.rule_id == *id),
            "{id}: {ev:#?}"
        );
    }
    let exit = e.example_event("t1609-test-e6").expect("exit example");
    assert_eq!(exit.event_type, EventType::End);
}

#[test]
fn metadata_comes_from_the_rule_file() {
    let e = engine();
    let text = std::fs::read_to_string(dir("rules").join("cases.jsonl")).expect("cases");
    let first: Value = serde_json::from_str(text.lines().next().expect("line")).expect("json");
    let ev = ProcessEvent::from_ecs(&first["event"]).expect("event");
    let a = e
        .evaluate(&ev)
        .into_iter()
        .find(|a| a.rule_id == "t1609-test-e1")
        .expect("alert");
    assert_eq!(a.risk_score, 73);
    assert_eq!(a.severity, t1609_detect::Severity::High);
    let doc = a.to_ecs();
    assert_eq!(
        doc["rule"]["name"],
        "Listener started interactively inside a container"
    );
    assert_eq!(doc["threat"]["tactic"]["id"][0], "TA0011");
    // A tactic the table knows keeps the table's name.
    assert_eq!(doc["threat"]["tactic"]["name"][0], "Command and Control");
    assert_eq!(
        doc["threat"]["technique"]["name"][0],
        "Container Administration Command"
    );
    // Alerts carry the new fields, and the fast writer agrees with the definition.
    assert_eq!(
        doc["process"]["entry_leader"]["entry_meta"]["type"],
        "container"
    );
    assert_eq!(doc["host"]["os"]["type"], "linux");
    let mut fast = Vec::new();
    a.write_json(&mut fast).expect("write");
    assert_eq!(serde_json::from_slice::<Value>(&fast).expect("json"), doc);
    // A technique the table does not know takes the file's name.
    let ev3 = e.example_event("t1609-test-e3").expect("example");
    let a3 = e
        .evaluate(&ev3)
        .into_iter()
        .find(|a| a.rule_id == "t1609-test-e3")
        .expect("alert");
    assert_eq!(
        a3.to_ecs()["threat"]["technique"]["name"][0],
        "Technique of the test"
    );
}

#[test]
fn exit_alerts_say_end() {
    let e = engine();
    let ev = e.example_event("t1609-test-e6").expect("example");
    let a = e
        .evaluate(&ev)
        .into_iter()
        .find(|a| a.rule_id == "t1609-test-e6")
        .expect("alert");
    let doc = a.to_ecs();
    assert_eq!(doc["event"]["type"][0], "end");
    assert_eq!(doc["event"]["action"], "end");
    let mut fast = Vec::new();
    a.write_json(&mut fast).expect("write");
    assert_eq!(serde_json::from_slice::<Value>(&fast).expect("json"), doc);
}

#[test]
fn unevaluable_rules_are_skipped_with_their_reason() {
    let r = check_rules_report(&[dir("rules-skipped")]).expect("skips are not errors");
    assert_eq!(r.loaded, builtin(), "only the built-in pack");
    let kind = |id: &str| {
        r.skipped
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("{id} not skipped: {:?}", r.skipped))
            .kind
    };
    assert_eq!(kind("t1609-skip-sequence"), SkipKind::Sequence);
    assert_eq!(kind("t1609-skip-kuery"), SkipKind::NotEql);
    assert_eq!(kind("t1609-skip-file"), SkipKind::OtherCategory);
    assert_eq!(kind("t1609-skip-info"), SkipKind::OtherEventType);
    assert_eq!(kind("t1609-skip-ext"), SkipKind::FieldNotProvided);
    assert_eq!(kind("t1609-skip-env"), SkipKind::FieldNotProvided);
    assert_eq!(kind("t1609-skip-function"), SkipKind::Unsupported);
    assert_eq!(
        kind("7a1c0000-0000-4000-8000-0000000000f1"),
        SkipKind::FieldNotProvided
    );
    assert_eq!(
        kind("7a1c0000-0000-4000-8000-0000000000f2"),
        SkipKind::OtherLogSource
    );
    assert_eq!(r.skipped.len(), 9);
    let env = r
        .skipped
        .iter()
        .find(|s| s.id == "t1609-skip-env")
        .expect("env");
    assert!(
        env.reason.to_uppercase().contains("AWS_SECRET_ACCESS_KEY"),
        "{}",
        env.reason
    );
    assert!(env.to_string().contains("env_not_captured.toml:"), "{env}");
    // Named on its own, a rule that cannot be loaded is an error.
    let errs = check_rules(&[dir("rules-skipped").join("ext_field.toml")]).expect_err("error");
    assert!(errs[0].to_string().contains("process.Ext."), "{}", errs[0]);
    // The engine loads the rest and says what it skipped.
    assert_eq!(
        Engine::load(&[dir("rules-skipped")])
            .expect("load")
            .skipped()
            .len(),
        9
    );
}

#[test]
fn watch_set_and_fields_follow_the_rules() {
    let e = engine();
    let w = e.watch_set();
    // sshd is named by an exit rule only (exit_rules).
    for n in ["nc", "ncat", "curl", "nsenter", "unshare", "wget", "sh"] {
        assert!(w.names.contains(n), "{n}: {:?}", w.names);
    }
    // e4 tests only environment variables and a regex: it needs every exec, and says so.
    assert!(w.needs_every_exec && w.capture_all);
    assert!(
        w.capture_all_reasons
            .iter()
            .any(|r| r.contains("t1609-test-e4")),
        "{:?}",
        w.capture_all_reasons
    );
    assert!(w.exit_rules.contains("t1609-test-e6"));
    assert!(w.exit_only_rules.contains("t1609-test-e6"));
    // A rule silent on event.type matches exits too, but is not exit-only.
    assert!(w.exit_rules.contains("t1609.container_exec"));
    assert!(!w.exit_only_rules.contains("t1609.container_exec"));
    assert!(!w.names.contains("sshd"));
    let used = e.fields_used();
    for name in [
        "process.entry_leader.entry_meta.type",
        "process.env_vars",
        "container.security_context.privileged",
        "process.exit_code",
        "process.real_user.id",
    ] {
        assert!(
            used.iter().any(|f| f.name() == name),
            "{name} not in fields_used"
        );
    }
}

/// rsigma's own evaluator (the reference for Sigma) on the Sigma document of an event.
fn rsigma_fires(file: &Path, ev: &ProcessEvent) -> bool {
    let text = std::fs::read_to_string(file).expect("read");
    let coll = rsigma_parser::parse_sigma_yaml(&text).expect("parse");
    let rule = rsigma_eval::compile_rule(&coll.rules[0]).expect("compile");
    let doc = t1609_detect::sigma::sigma_doc(ev);
    rsigma_eval::evaluate_rule(&rule, &rsigma_eval::JsonEvent::borrow(&doc)).is_some()
}

/// The Sigma rules, translated into the engine's conditions, agree with rsigma-eval on
/// every case event.
#[test]
fn sigma_translation_agrees_with_rsigma() {
    let e = engine();
    let text = std::fs::read_to_string(dir("rules").join("cases.jsonl")).expect("cases");
    let files: Vec<PathBuf> = std::fs::read_dir(dir("rules").join("sigma"))
        .expect("dir")
        .flatten()
        .map(|d| d.path())
        .collect();
    let mut compared = 0;
    for line in text.lines() {
        let c: Value = serde_json::from_str(line).expect("case");
        let ev = ProcessEvent::from_ecs(&c["event"]).expect("event");
        for f in &files {
            let body = std::fs::read_to_string(f).expect("read");
            let id = SIGMA_IDS
                .iter()
                .find(|id| body.contains(*id))
                .expect("an id of ours");
            let ours = e.evaluate(&ev).iter().any(|a| a.rule_id == *id);
            assert_eq!(ours, rsigma_fires(f, &ev), "{id} on {ev:#?}");
            compared += 1;
        }
    }
    assert!(compared >= 100);
}
