//! The agent with a real container runtime (the tests' own containerd, started by
//! `scripts/runtimes.sh`):
//! - the kubelet's path: a pod run through the CRI as the kubelet does (`RunPodSandbox`
//!   with Kubernetes metadata, `CreateContainer`, `StartContainer`), then `ExecSync`: the session
//!   alert of the runtime's exec names the namespace, pod, container name and image, and
//!   lists what ran;
//! - `ctr task exec` into a container that carries the kubelet's pod labels: the alert
//!   names the target's pod, namespace, container name and image, and the session alert
//!   names the same container.
//!
//! Requires root; under `T1609_REQUIRE_PRIVILEGED=1` a runtime that cannot start fails
//! the test.

mod common;
/// t1609-context's CRI driver for its own runtime tests, shared, not copied.
#[path = "../../t1609-context/tests/common/mod.rs"]
mod cri;

use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{Agent, alerts_of, parse_alerts, privileged_or_skip, privileged_required};
use serde_json::Value;

/// `scripts/runtimes.sh containerd`'s facts (`KEY=VALUE`), or why not.
fn containerd() -> Option<HashMap<String, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/runtimes.sh");
    let out = Command::new("bash").arg(script).arg("containerd").output();
    match out {
        Ok(o) if o.status.success() => Some(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                !privileged_required(),
                "containerd for the tests did not start: {why}"
            );
            eprintln!("skipping: containerd did not start: {why}");
            None
        }
    }
}

/// `ctr --address SOCK -n k8s.io ARGS`, its output checked.
fn ctr(sock: &str, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .args(["--address", sock, "-n", "k8s.io"])
        .args(args)
        .output()
        .expect("ctr runs");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the test's container even when the test fails.
struct Cleanup<'a> {
    sock: &'a str,
    id: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            let _ = Command::new("ctr")
                .args(["--address", self.sock, "-n", "k8s.io"])
                .args(args)
                .output();
        };
        run(&["task", "kill", "-s", "SIGKILL", &self.id]);
        std::thread::sleep(Duration::from_millis(300));
        run(&["task", "delete", "-f", &self.id]);
        run(&["container", "delete", &self.id]);
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.').try_fold(v, |v, k| v.get(k))?.as_str()
}

#[test]
fn ctr_exec_into_a_pod_container_names_pod_container_image_and_session() {
    if !privileged_or_skip("ctr_exec_into_a_pod_container_names_pod_container_image_and_session") {
        return;
    }
    let Some(facts) = containerd() else { return };
    let sock = facts["CONTAINERD_SOCKET"].clone();
    let image = facts["BUSYBOX_IMAGE"].clone();
    let id = format!("t1609-agent-e2e-{}", std::process::id());
    let uid = format!("uid-{}", std::process::id());
    let agent = Agent::start_with_config(
        &format!("[runtimes]\nauto_detect = false\ncontainerd = [{sock:?}]\n"),
        &["--output", "stdout"],
    );
    let _cleanup = Cleanup {
        sock: &sock,
        id: id.clone(),
    };
    // The labels the kubelet puts on a pod's container.
    let labels = [
        "io.kubernetes.pod.name=web-0".to_owned(),
        "io.kubernetes.pod.namespace=prod".to_owned(),
        format!("io.kubernetes.pod.uid={uid}"),
        "io.kubernetes.container.name=app".to_owned(),
    ];
    let mut run = vec!["run", "-d"];
    for l in &labels {
        run.extend(["--label", l]);
    }
    run.extend([image.as_str(), id.as_str(), "sleep", "120"]);
    ctr(&sock, &run);
    // The runtime's event stream names it before anyone asks.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10)
        && agent.metric("t1609_runtime_containers").unwrap_or(0) == 0
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    // The injected command itself (busybox's shell would run `id` in-process, unseen).
    ctr(
        &sock,
        &["task", "exec", "--exec-id", "e2e", &id, "id", "-u"],
    );
    // The session alert goes out when its window (3 s) closes.
    std::thread::sleep(Duration::from_secs(4));
    let (out, log) = agent.stop();
    let alerts = parse_alerts(&out);

    check_ctr_alerts(&alerts, &log, &id, &uid);
}

/// The `ctr task exec` alert names the target's pod; the session alert names the same
/// container and lists what ran.
fn check_ctr_alerts(alerts: &[Value], log: &[String], id: &str, uid: &str) {
    let host_side = alerts_of(alerts, "t1609.container_exec");
    let exec = host_side
        .iter()
        .find(|a| str_at(a, "process.name") == Some("ctr"))
        .unwrap_or_else(|| panic!("no container_exec alert on ctr: {alerts:#?}\n{log:#?}"));
    let target = &exec["t1609"]["target"];
    assert_eq!(target["resolved"], true, "{target:#}");
    assert_eq!(str_at(target, "container.id"), Some(id), "{target:#}");
    assert_eq!(
        str_at(target, "container.runtime"),
        Some("containerd"),
        "{target:#}"
    );
    assert!(
        str_at(target, "container.image.name").is_some_and(|i| i.contains("t1609-test/busybox")),
        "{target:#}"
    );
    assert_eq!(
        str_at(target, "orchestrator.namespace"),
        Some("prod"),
        "{target:#}"
    );
    assert_eq!(
        str_at(target, "orchestrator.resource.name"),
        Some("web-0"),
        "{target:#}"
    );
    assert_eq!(
        str_at(target, "orchestrator.resource.uid"),
        Some(uid),
        "{target:#}"
    );

    let sessions = alerts_of(alerts, "t1609.injected_session");
    let session = sessions
        .iter()
        .find(|a| str_at(a, "container.id") == Some(id))
        .unwrap_or_else(|| panic!("no session alert for {id}: {sessions:#?}\n{log:#?}"));
    assert_eq!(
        session["t1609"]["group_id"], exec["t1609"]["group_id"],
        "the session is tied to the ctr alert"
    );
    assert_eq!(
        str_at(session, "container.name"),
        Some("app"),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "orchestrator.namespace"),
        Some("prod"),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "orchestrator.resource.name"),
        Some("web-0"),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "kubernetes.container.name"),
        Some("app"),
        "{session:#}"
    );
    let commands: Vec<&str> = session["t1609"]["session"]["commands"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(commands, ["id -u"], "the commands run inside");
    assert_eq!(
        str_at(session, "t1609.session.injected.name"),
        Some("id"),
        "{session:#}"
    );
}

#[test]
fn kubelet_exec_sync_through_the_cri_names_namespace_pod_container_and_image() {
    if !privileged_or_skip(
        "kubelet_exec_sync_through_the_cri_names_namespace_pod_container_and_image",
    ) {
        return;
    }
    let Some((facts, _serial)) = cri::containerd() else {
        return;
    };
    let sock = facts["CONTAINERD_SOCKET"].clone();
    let image = facts["BUSYBOX_IMAGE"].clone();
    let agent = Agent::start_with_config(
        &format!("[runtimes]\nauto_detect = false\ncontainerd = [{sock:?}]\n"),
        &["--output", "stdout"],
    );
    let pod_name = cri::unique("web");
    let uid = cri::pod_uid();
    let rt = cri::tokio_rt();
    let (pod, id) = rt.block_on(async {
        let mut client = cri::cri(&sock).await;
        let mut pod = cri::Pod::run(
            &mut client,
            &sock,
            cri::sandbox_config(&pod_name, "t1609-prod", &uid),
        )
        .await;
        let id = Box::pin(pod.create(&mut client, "app", &image, &["sleep", "300"])).await;
        cri::Pod::start(&mut client, &id).await;
        // ExecSync, as the kubelet runs `kubectl exec` without a stream and probes.
        let reply = client
            .exec_sync(k8s_cri::v1::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["id".into(), "-u".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        assert_eq!(reply.exit_code, 0);
        (pod, id)
    });
    // The session alert goes out when its window (3 s) closes.
    std::thread::sleep(Duration::from_secs(4));
    let (out, log) = agent.stop();
    let alerts = parse_alerts(&out);
    let sessions = alerts_of(&alerts, "t1609.injected_session");
    let session = sessions
        .iter()
        .find(|a| str_at(a, "container.id") == Some(id.as_str()))
        .unwrap_or_else(|| panic!("no session alert for {id}: {sessions:#?}\n{log:#?}"));
    assert_eq!(
        str_at(session, "container.name"),
        Some("app"),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "container.runtime"),
        Some("containerd"),
        "{session:#}"
    );
    assert!(
        str_at(session, "container.image.name").is_some_and(|i| i.contains("t1609-test/busybox")),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "orchestrator.type"),
        Some("kubernetes"),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "orchestrator.namespace"),
        Some("t1609-prod"),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "orchestrator.resource.name"),
        Some(pod_name.as_str()),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "orchestrator.resource.uid"),
        Some(uid.as_str()),
        "{session:#}"
    );
    assert_eq!(
        str_at(session, "kubernetes.container.name"),
        Some("app"),
        "{session:#}"
    );
    let commands: Vec<&str> = session["t1609"]["session"]["commands"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(commands, ["id -u"], "what ran inside");
    drop(pod);
}
