//! Rule evaluation on audit events built from the audit.k8s.io/v1 schema (the API server
//! is imitated: no cluster runs in these tests).

mod common;

use common::*;
use serde_json::{Value, json};
use t1609_k8saudit::*;

fn ev(e: &Ev) -> AuditEvent {
    parse_event_line(&e.line()).expect("valid audit line")
}

fn one_alert(rules: &AuditRules, e: &Ev) -> Value {
    let alerts = rules.evaluate(&ev(e));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    alerts.into_iter().next().unwrap()
}

#[test]
fn atomic_test2_exec_alerts_with_the_contract_fields() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(&rules, &atomic_test2("a1b2c3d4-0001"));
    assert_eq!(a["event"]["kind"], "alert");
    assert_eq!(a["event"]["dataset"], "kubernetes.audit");
    assert!(a["event"]["id"].as_str().unwrap().len() >= 16);
    assert_eq!(a["@timestamp"], "2026-11-28T17:02:03.123456Z");
    assert_eq!(a["rule"]["id"], "t1609.k8s_pod_exec");
    assert!(
        a["rule"]["name"].is_string()
            && a["rule"]["description"].is_string()
            && a["rule"]["reference"].is_string()
    );
    assert_eq!(a["threat"]["framework"], "MITRE ATT&CK");
    assert_eq!(a["threat"]["tactic"]["id"], json!(["TA0002"]));
    assert_eq!(a["threat"]["tactic"]["name"], json!(["Execution"]));
    assert_eq!(a["threat"]["technique"]["id"], json!(["T1609"]));
    assert_eq!(
        a["threat"]["technique"]["name"],
        json!(["Container Administration Command"])
    );
    assert!(a["threat"]["technique"]["reference"].is_array());
    // medium exec + shell -> high
    assert_eq!(a["t1609"]["severity"], "high");
    assert_eq!(a["event"]["severity"], 73);
    assert_eq!(a["event"]["risk_score"], 73);
    assert_eq!(
        a["t1609"]["k8s"]["severity_reasons"],
        json!(["shell_command"])
    );
    assert!(a["t1609"]["group_id"].is_string());
    assert_eq!(a["user"]["name"], "kubernetes-admin");
    assert_eq!(
        a["user"]["roles"],
        json!(["kubeadm:cluster-admins", "system:authenticated"])
    );
    assert_eq!(
        a["kubernetes"]["audit"]["user"]["groups"],
        json!(["kubeadm:cluster-admins", "system:authenticated"])
    );
    assert_eq!(a["source"]["ip"], "192.0.2.10");
    assert_eq!(
        a["user_agent"]["original"],
        "kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8"
    );
    assert_eq!(a["orchestrator"]["type"], "kubernetes");
    assert_eq!(a["orchestrator"]["namespace"], "default");
    assert_eq!(a["orchestrator"]["resource"]["type"], "pod");
    assert_eq!(a["orchestrator"]["resource"]["name"], "atomic-exec-test");
    assert_eq!(a["container"]["name"], "atomic-exec-test");
    assert_eq!(a["process"]["command_line"], "/bin/sh");
    assert_eq!(a["process"]["args"], json!(["/bin/sh"]));
    assert_eq!(a["t1609"]["k8s"]["stdin"], true);
    assert_eq!(a["t1609"]["k8s"]["tty"], true);
    let k = &a["kubernetes"]["audit"];
    assert_eq!(k["auditID"], "a1b2c3d4-0001");
    assert_eq!(k["verb"], "create");
    assert_eq!(k["stage"], "ResponseComplete");
    assert_eq!(
        k["requestURI"],
        "/api/v1/namespaces/default/pods/atomic-exec-test/exec?command=%2Fbin%2Fsh&container=atomic-exec-test&stdin=true&stdout=true&tty=true"
    );
    assert_eq!(k["objectRef"]["resource"], "pods");
    assert_eq!(k["objectRef"]["subresource"], "exec");
    assert_eq!(k["objectRef"]["name"], "atomic-exec-test");
    assert_eq!(k["objectRef"]["namespace"], "default");
    assert_eq!(k["responseStatus"]["code"], 101);
    assert_eq!(a["event"]["outcome"], "success");
}

#[test]
fn event_ids_are_unique_and_group_id_is_per_audit_id() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(&rules, &atomic_test2("id-1"));
    let b = one_alert(&rules, &atomic_test2("id-2"));
    assert_ne!(a["event"]["id"], b["event"]["id"]);
    assert_ne!(a["t1609"]["group_id"], b["t1609"]["group_id"]);
}

#[test]
fn kube_system_exec_by_service_account_is_critical() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(&rules, &kube_system_sa_exec("ks-1"));
    assert_eq!(a["t1609"]["severity"], "critical");
    assert_eq!(a["event"]["severity"], 99);
    assert_eq!(
        a["t1609"]["k8s"]["severity_reasons"],
        json!(["shell_command", "system_namespace", "service_account"])
    );
    assert_eq!(
        a["process"]["args"],
        json!(["sh", "-c", "cat /etc/resolv.conf"])
    );
    assert_eq!(a["process"]["command_line"], "sh -c 'cat /etc/resolv.conf'");
    assert_eq!(a["container"]["name"], "coredns");
    assert_eq!(a["kubernetes"]["audit"]["verb"], "get");
    assert_eq!(a["user"]["name"], "system:serviceaccount:ci:deployer");
}

#[test]
fn non_shell_exec_in_default_namespace_is_medium() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(
        &rules,
        &Ev::exec("ns-1", "default", "web-1", &["cat", "/etc/hostname"]),
    );
    assert_eq!(a["t1609"]["severity"], "medium");
    assert_eq!(a["event"]["severity"], 47);
    assert_eq!(a["t1609"]["k8s"]["severity_reasons"], json!([]));
}

#[test]
fn busybox_sh_counts_as_shell() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(
        &rules,
        &Ev::exec("bb-1", "default", "web-1", &["busybox", "sh"]),
    );
    assert_eq!(a["t1609"]["k8s"]["command_is_shell"], true);
    assert_eq!(a["t1609"]["severity"], "high");
}

#[test]
fn anonymous_exec_is_raised_twice() {
    let rules = AuditRules::builtin().unwrap();
    let mut e = Ev::exec("anon-1", "default", "web-1", &["id"]);
    e.username = "system:anonymous".into();
    e.groups = vec!["system:unauthenticated".into()];
    let a = one_alert(&rules, &e);
    assert_eq!(a["t1609"]["severity"], "critical");
    assert_eq!(a["t1609"]["k8s"]["severity_reasons"], json!(["anonymous"]));
    assert_eq!(a["user"]["name"], "system:anonymous");
}

#[test]
fn port_forward_is_low() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(&rules, &port_forward("pf-1"));
    assert_eq!(a["t1609"]["severity"], "low");
    assert_eq!(a["event"]["severity"], 21);
    assert_eq!(a["t1609"]["k8s"]["kind"], "portforward");
    assert_eq!(a["t1609"]["k8s"]["ports"], json!(["5432"]));
    assert!(a.get("process").is_none());
    assert_eq!(a["event"]["category"], json!(["network"]));
}

#[test]
fn attach_alerts() {
    let rules = AuditRules::builtin().unwrap();
    let mut e = Ev::exec("at-1", "default", "web-1", &[]);
    e.subresource = Some("attach");
    let a = one_alert(&rules, &e);
    assert_eq!(a["t1609"]["k8s"]["kind"], "attach");
    assert_eq!(a["t1609"]["severity"], "medium");
}

#[test]
fn nodes_proxy_to_kubelet_exec_alerts() {
    let rules = AuditRules::builtin().unwrap();
    let a = one_alert(&rules, &node_proxy_exec("np-1"));
    assert_eq!(a["t1609"]["k8s"]["kind"], "node_proxy");
    assert_eq!(a["t1609"]["k8s"]["node"], "worker-1");
    assert_eq!(
        a["t1609"]["k8s"]["proxy_path"],
        "/exec/default/web-7d9c5b8f4-qx2lm/web"
    );
    assert_eq!(a["orchestrator"]["resource"]["name"], "web-7d9c5b8f4-qx2lm");
    assert_eq!(a["orchestrator"]["resource"]["parent"]["type"], "node");
    assert_eq!(a["orchestrator"]["namespace"], "default");
    assert_eq!(a["container"]["name"], "web");
    assert_eq!(a["process"]["args"], json!(["id"]));
    assert_eq!(a["t1609"]["k8s"]["stdin"], true);
    assert_eq!(a["t1609"]["severity"], "high");
    // /run/ with cmd= (kubelet's run endpoint), via the kubelet port form of the node name.
    let mut e = node_proxy_exec("np-2");
    e.request_uri =
        Some("/api/v1/nodes/worker-1:10250/proxy/run/kube-system/etcd-cp/etcd?cmd=sh+-c+id".into());
    let a = one_alert(&rules, &e);
    assert_eq!(a["process"]["args"], json!(["sh", "-c", "id"]));
    assert_eq!(a["orchestrator"]["namespace"], "kube-system");
    assert_eq!(a["t1609"]["severity"], "critical");
    // Other kubelet paths (metrics, logs) through nodes/proxy do not alert.
    let mut e = node_proxy_exec("np-3");
    e.verb = "get";
    e.request_uri = Some("/api/v1/nodes/worker-1/proxy/metrics".into());
    assert!(rules.evaluate(&ev(&e)).is_empty());
}

#[test]
fn get_and_list_pods_never_alert() {
    let rules = AuditRules::builtin().unwrap();
    assert!(rules.evaluate(&ev(&get_pods("gp-1"))).is_empty());
    let one = parse_event_line(&get_one_pod("gp-2").to_string()).unwrap();
    assert!(rules.evaluate(&one).is_empty());
    let mut w = get_pods("gp-3");
    w.verb = "watch";
    assert!(rules.evaluate(&ev(&w)).is_empty());
    // A create of a pod (no subresource) is not an exec either.
    let mut c = get_pods("gp-4");
    c.verb = "create";
    assert!(rules.evaluate(&ev(&c)).is_empty());
}

#[test]
fn malformed_lines_are_errors_not_panics() {
    assert!(parse_event_line(MALFORMED_LINE).is_err());
    assert!(parse_event_line("").is_err());
    assert!(parse_event_line("not json").is_err());
    assert!(parse_event_line(r#"{"kind":"Pod","apiVersion":"v1"}"#).is_err());
    assert!(parse_event_line(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#).is_err());
    assert!(parse_event_list(b"{\"kind\":\"EventList\",\"items\":[{]}").is_err());
    assert!(parse_event_list(b"[1,2]").is_err());
}

#[test]
fn one_alert_per_audit_id_across_stages() {
    let rules = AuditRules::builtin().unwrap();
    let mut e = atomic_test2("stage-1");
    e.stage = "RequestReceived";
    assert!(
        rules.evaluate(&ev(&e)).is_empty(),
        "RequestReceived does not alert"
    );
    e.stage = "ResponseStarted";
    assert_eq!(rules.evaluate(&ev(&e)).len(), 1);
    e.stage = "ResponseComplete";
    assert!(
        rules.evaluate(&ev(&e)).is_empty(),
        "same auditID already alerted"
    );
}

#[test]
fn denied_exec_is_reported_as_failure() {
    let rules = AuditRules::builtin().unwrap();
    let mut e = atomic_test2("deny-1");
    e.code = 403;
    let a = one_alert(&rules, &e);
    assert_eq!(a["event"]["outcome"], "failure");
    assert_eq!(a["kubernetes"]["audit"]["responseStatus"]["code"], 403);
}

#[test]
fn event_list_and_replay_routing() {
    let list = event_list(&[atomic_test2("l-1").json(), get_pods("l-2").json()]);
    let evs = parse_event_list(list.to_string().as_bytes()).unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].audit_id, "l-1");
    assert_eq!(
        evs[0].object_ref.as_ref().unwrap().subresource.as_deref(),
        Some("exec")
    );
    assert!(looks_like_audit(&atomic_test2("x").json()));
    assert!(!looks_like_audit(&list));
    assert!(looks_like_audit_list(&list));
    assert!(!looks_like_audit(
        &json!({"process": {"name": "kubectl"}, "event": {"kind": "event"}})
    ));
}

#[test]
fn impersonated_service_account_counts() {
    let rules = AuditRules::builtin().unwrap();
    let mut v = Ev::exec("imp-1", "default", "web-1", &["id"]).json();
    v["impersonatedUser"] = json!({"username": "system:serviceaccount:default:builder", "groups": ["system:serviceaccounts"]});
    let e = parse_event_line(&v.to_string()).unwrap();
    let a = rules.evaluate(&e).remove(0);
    assert_eq!(
        a["user"]["effective"]["name"],
        "system:serviceaccount:default:builder"
    );
    assert_eq!(
        a["t1609"]["k8s"]["severity_reasons"],
        json!(["service_account"])
    );
}

fn extra_rules(text: &str) -> Result<AuditRules, RuleError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("extra.toml");
    std::fs::write(&p, text).unwrap();
    AuditRules::load(&[p])
}

#[test]
fn exceptions_by_user_agent_and_namespace() {
    let rules = extra_rules(
        r#"
        [[exception]]
        rule = "t1609.k8s_pod_exec"
        name = "argo-rollouts-health"
        user_agent = ["argo-rollouts/*"]

        [[exception]]
        rule = "t1609.*"
        name = "ci-namespaces"
        namespace = ["ci-*"]
        "#,
    )
    .unwrap();
    let mut e = atomic_test2("ex-1");
    e.user_agent = "argo-rollouts/v1.7.2 (linux/amd64)".into();
    assert!(rules.evaluate(&ev(&e)).is_empty(), "excepted by user agent");
    let e = Ev::exec("ex-2", "ci-build-42", "runner-0", &["/bin/bash"]);
    assert!(
        rules.evaluate(&ev(&e)).is_empty(),
        "excepted by namespace glob"
    );
    // Still alerts outside the exception.
    let e = Ev::exec("ex-3", "cinema", "web-0", &["/bin/bash"]);
    assert_eq!(rules.evaluate(&ev(&e)).len(), 1);
    // The built-in rules alone do not except it.
    let b = AuditRules::builtin().unwrap();
    assert_eq!(
        b.evaluate(&ev(&Ev::exec(
            "ex-4",
            "ci-build-42",
            "runner-0",
            &["/bin/bash"]
        )))
        .len(),
        1
    );
}

#[test]
fn exceptions_by_user_and_group_all_fields_must_match() {
    let rules = extra_rules(
        r#"
        [[exception]]
        rule = "t1609.k8s_pod_exec"
        user = ["system:serviceaccount:ci:*"]
        group = ["system:serviceaccounts:ci"]
        namespace = ["staging"]
        "#,
    )
    .unwrap();
    let mut e = kube_system_sa_exec("ug-1");
    assert_eq!(rules.evaluate(&ev(&e)).len(), 1, "namespace differs");
    e.audit_id = "ug-2".into();
    e.namespace = "staging".into();
    assert!(rules.evaluate(&ev(&e)).is_empty());
}

#[test]
fn rule_files_are_checked() {
    let e = extra_rules("[[exception]]\nrule = \"no.such.rule\"\nuser = [\"x\"]\n").unwrap_err();
    assert!(e.to_string().contains("names no loaded rule"), "{e}");
    let e = extra_rules("[[exception]]\nrule = \"t1609.k8s_pod_exec\"\n").unwrap_err();
    assert!(e.to_string().contains("no condition"), "{e}");
    let e =
        extra_rules("[[exception]]\nrule = \"t1609.k8s_pod_exec\"\nusr = [\"x\"]\n").unwrap_err();
    assert!(e.to_string().contains("usr"), "{e}");
    let e = extra_rules("[[rule]]\nid = \"x\"\nname = \"x\"\ndataset = \"process\"\n[[rule.match]]\nkind = \"k\"\nresource = \"pods\"\nseverity = \"low\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("dataset"), "{e}");
    assert!(AuditRules::load(&["/nonexistent/rules.toml".into()]).is_err());
}

#[test]
fn a_rule_file_can_replace_or_disable_the_builtin_rule() {
    let r = extra_rules("[[rule]]\nid = \"t1609.k8s_pod_exec\"\nname = \"off\"\nenabled = false\n[[rule.match]]\nkind = \"exec\"\nresource = \"pods\"\nseverity = \"low\"\n")
        .unwrap();
    assert!(r.rule_ids().is_empty());
    assert!(r.evaluate(&ev(&atomic_test2("off-1"))).is_empty());
}

#[test]
fn replay_values_event_and_event_list() {
    let rules = AuditRules::builtin().unwrap();
    let v = atomic_test2("rp-1").json();
    assert_eq!(rules.evaluate_value(&v).unwrap().len(), 1);
    let list = event_list(&[
        atomic_test2("rp-2").json(),
        port_forward("rp-3").json(),
        get_pods("rp-4").json(),
    ]);
    assert_eq!(rules.evaluate_value(&list).unwrap().len(), 2);
    assert!(rules.evaluate_value(&json!({"kind": "Event"})).is_err());
}
