//! Correlation of the process-side `kubectl exec` alert with the audit alert of the same
//! exec (the audit event imitates kube-apiserver's, built from the audit.k8s.io/v1 schema).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use t1609_k8saudit::*;

/// The shape of a process alert from the agent's kubectl capture (t1609-detect's ECS).
fn process_alert(id: &str, pod: &str, namespace: Option<&str>, command: &[&str]) -> Value {
    let mut argv = json!({ "tool": "kubectl", "verb": "exec", "pod": pod, "command": command });
    if let Some(ns) = namespace {
        argv["namespace"] = json!(ns);
    }
    let args: Vec<&str> = ["kubectl", "exec", "-it", pod, "--"]
        .iter()
        .chain(command.iter())
        .copied()
        .collect();
    json!({
        "@timestamp": "2026-11-28T17:02:03.000Z",
        "event": { "kind": "alert", "id": id, "category": ["process"] },
        "process": { "name": "kubectl", "args": args },
        "t1609": { "group_id": format!("grp-{id}"), "severity": "high", "argv": argv },
    })
}

fn audit_alert(rules: &AuditRules, e: &Ev) -> Value {
    rules
        .evaluate(&parse_event_line(&e.line()).unwrap())
        .remove(0)
}

#[test]
fn process_then_audit_within_window_share_the_group() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let mut p = process_alert("proc-1", "atomic-exec-test", None, &["/bin/sh"]);
    let mut a = audit_alert(&rules, &atomic_test2("cor-1"));
    c.observe_process_alert(&mut p, t0);
    c.observe_audit_alert(&mut a, t0 + Duration::from_secs(2));
    assert_eq!(a["t1609"]["group_id"], "grp-proc-1");
    assert_eq!(a["t1609"]["correlated_with"], "proc-1");
    assert_eq!(p["t1609"]["group_id"], "grp-proc-1");
    assert_eq!(c.pending(), 0);
}

#[test]
fn audit_then_process_within_window_share_the_group() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let mut a = audit_alert(&rules, &kube_system_sa_exec("cor-2"));
    let audit_group = a["t1609"]["group_id"].clone();
    let audit_id = a["event"]["id"].clone();
    let mut p = process_alert(
        "proc-2",
        "pod/coredns-76f75df574-8xk2p",
        Some("kube-system"),
        &["sh", "-c", "cat /etc/resolv.conf"],
    );
    c.observe_audit_alert(&mut a, t0);
    c.observe_process_alert(&mut p, t0 + Duration::from_secs(5));
    assert_eq!(p["t1609"]["group_id"], audit_group);
    assert_eq!(p["t1609"]["correlated_with"], audit_id);
}

/// One kubectl exec raises several process alerts (the Elastic rule and ours) sharing
/// one group. When the audit alert came first, every one of them joins it, not only the
/// first (found by the live operate test under load).
#[test]
fn audit_first_then_every_alert_of_the_process_event_joins_it() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let mut a = audit_alert(&rules, &atomic_test2("cor-4"));
    let audit_group = a["t1609"]["group_id"].clone();
    c.observe_audit_alert(&mut a, t0);
    let mut first = process_alert("proc-4", "atomic-exec-test", None, &["/bin/sh"]);
    let mut second = first.clone();
    second["event"]["id"] = json!("proc-4b");
    c.observe_process_alert(&mut first, t0 + Duration::from_millis(10));
    c.observe_process_alert(&mut second, t0 + Duration::from_millis(10));
    assert_eq!(first["t1609"]["group_id"], audit_group);
    assert_eq!(second["t1609"]["group_id"], audit_group);
    assert_eq!(second["t1609"]["correlated_with"], a["event"]["id"]);
    assert_eq!(c.pending(), 0, "neither waits for another partner");
    // Another exec (its own group) is not swept in.
    let mut other = process_alert("proc-5", "atomic-exec-test", None, &["/bin/sh"]);
    c.observe_process_alert(&mut other, t0 + Duration::from_millis(20));
    assert_eq!(other["t1609"]["group_id"], "grp-proc-5");
}

#[test]
fn outside_the_window_no_correlation() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(10));
    let t0 = Instant::now();
    let mut p = process_alert("proc-3", "atomic-exec-test", Some("default"), &["/bin/sh"]);
    let mut a = audit_alert(&rules, &atomic_test2("cor-3"));
    let own = a["t1609"]["group_id"].clone();
    c.observe_process_alert(&mut p, t0);
    c.observe_audit_alert(&mut a, t0 + Duration::from_secs(11));
    assert_eq!(a["t1609"]["group_id"], own);
    assert!(a["t1609"].get("correlated_with").is_none());
}

#[test]
fn different_pod_namespace_or_command_no_correlation() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    for (i, mut p) in [
        process_alert("x1", "other-pod", None, &["/bin/sh"]),
        process_alert("x2", "atomic-exec-test", Some("prod"), &["/bin/sh"]),
        process_alert("x3", "atomic-exec-test", None, &["/bin/bash"]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = audit_alert(&rules, &atomic_test2(&format!("cor-4-{i}")));
        c.observe_process_alert(&mut p, t0);
        c.observe_audit_alert(&mut a, t0 + Duration::from_secs(1));
        assert!(a["t1609"].get("correlated_with").is_none(), "{p}");
    }
}

#[test]
fn each_alert_pairs_once() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let mut p1 = process_alert("p1", "atomic-exec-test", None, &["/bin/sh"]);
    let mut p2 = process_alert("p2", "atomic-exec-test", None, &["/bin/sh"]);
    c.observe_process_alert(&mut p1, t0);
    c.observe_process_alert(&mut p2, t0 + Duration::from_secs(1));
    let mut a1 = audit_alert(&rules, &atomic_test2("once-1"));
    let mut a2 = audit_alert(&rules, &atomic_test2("once-2"));
    let mut a3 = audit_alert(&rules, &atomic_test2("once-3"));
    c.observe_audit_alert(&mut a1, t0 + Duration::from_secs(2));
    c.observe_audit_alert(&mut a2, t0 + Duration::from_secs(2));
    c.observe_audit_alert(&mut a3, t0 + Duration::from_secs(2));
    let mut partners = vec![
        a1["t1609"]["correlated_with"].clone(),
        a2["t1609"]["correlated_with"].clone(),
    ];
    partners.sort_by_key(ToString::to_string);
    assert_eq!(partners, vec![json!("p1"), json!("p2")]);
    assert!(a3["t1609"].get("correlated_with").is_none());
}

#[test]
fn non_kubectl_exec_alerts_are_ignored() {
    let mut c = Correlator::new(Duration::from_secs(30));
    let mut p = process_alert("d1", "atomic-exec-test", None, &["/bin/sh"]);
    p["t1609"]["argv"]["tool"] = json!("docker");
    c.observe_process_alert(&mut p, Instant::now());
    assert_eq!(c.pending(), 0);
    let rules = AuditRules::builtin().unwrap();
    let mut pf = audit_alert(&rules, &port_forward("cor-pf"));
    c.observe_audit_alert(&mut pf, Instant::now());
    assert_eq!(c.pending(), 0, "port-forward runs no command to match");
}

/// A flood of distinct `kubectl exec` alerts that never pair (one pod each) stays
/// bounded, forgets the oldest first, and an audit alert still finds its partner among
/// the newest.
#[test]
fn a_flood_of_unpaired_alerts_stays_bounded_and_the_newest_still_pair() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    // The pod of atomic_test2's audit event, first and last among 20,000 others.
    let mut first = process_alert("first", "atomic-exec-test", None, &["/bin/sh"]);
    c.observe_process_alert(&mut first, t0);
    for i in 0..20_000 {
        let mut p = process_alert(&format!("p{i}"), &format!("pod-{i}"), None, &["/bin/sh"]);
        c.observe_process_alert(&mut p, t0);
    }
    assert_eq!(c.pending(), 16_384);
    let mut a = audit_alert(&rules, &atomic_test2("flood-1"));
    c.observe_audit_alert(&mut a, t0 + Duration::from_secs(1));
    assert!(
        a["t1609"].get("correlated_with").is_none(),
        "the oldest wait was forgotten at the bound: {a:#}"
    );
    let mut last = process_alert("last", "atomic-exec-test", None, &["/bin/sh"]);
    c.observe_process_alert(&mut last, t0 + Duration::from_secs(1));
    // The audit alert above now waits too; the process alert just paired with it.
    assert_eq!(last["t1609"]["correlated_with"], a["event"]["id"]);
    // Past the window every wait goes.
    let mut late = process_alert("late", "other-pod", None, &["/bin/sh"]);
    c.observe_process_alert(&mut late, t0 + Duration::from_secs(40));
    assert_eq!(c.pending(), 1);
}

/// Of several waiting partners the latest is taken; a paired wait's place in the arrival
/// order does not expire a later wait of the same key.
#[test]
fn the_latest_partner_pairs_first_and_expiry_keeps_later_waits() {
    let rules = AuditRules::builtin().unwrap();
    let mut c = Correlator::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let mut p1 = process_alert("p1", "atomic-exec-test", None, &["/bin/sh"]);
    let mut p2 = process_alert("p2", "atomic-exec-test", None, &["/bin/sh"]);
    c.observe_process_alert(&mut p1, t0);
    c.observe_process_alert(&mut p2, t0 + Duration::from_secs(10));
    let mut a1 = audit_alert(&rules, &atomic_test2("late-1"));
    c.observe_audit_alert(&mut a1, t0 + Duration::from_secs(11));
    assert_eq!(a1["t1609"]["correlated_with"], "p2");
    // At 41 s p1 and the paired p2 are past the window; a wait made at 20 s is not.
    let mut p3 = process_alert("p3", "atomic-exec-test", None, &["/bin/sh"]);
    c.observe_process_alert(&mut p3, t0 + Duration::from_secs(20));
    let mut a2 = audit_alert(&rules, &atomic_test2("late-2"));
    c.observe_audit_alert(&mut a2, t0 + Duration::from_secs(41));
    assert_eq!(a2["t1609"]["correlated_with"], "p3");
    assert_eq!(c.pending(), 0);
}
