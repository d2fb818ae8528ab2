//! `KubeletPods` from a `PodList` JSON fixture. There is no Kubernetes cluster on the build
//! machine (and none can be installed), so this test uses a fixture shaped like the
//! kubelet's `/pods` answer (`v1.PodList`) instead of a live kubelet.

use t1609_context::{KubeletPods, parse_cgroup};

const FIXTURE: &str = include_str!("fixtures/kubelet_pods.json");
const WEB: &str = "3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456";

#[test]
fn maps_container_ids_to_pods() {
    let pods = KubeletPods::from_json(FIXTURE).unwrap();
    assert_eq!(pods.pod_count(), 2);
    assert_eq!(pods.container_count(), 4);

    let web = pods.by_container_id(WEB).unwrap();
    assert_eq!(
        (web.pod_name.as_str(), web.pod_namespace.as_str()),
        ("web-0", "prod")
    );
    assert_eq!(web.pod_uid, "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901");
    assert_eq!(web.container_name, "nginx");
    assert_eq!(web.runtime, "containerd");
    assert_eq!(web.kind, "regular");
    // scheme:// form and 12-char prefix.
    assert_eq!(
        pods.by_container_id(&format!("containerd://{WEB}"))
            .unwrap()
            .pod_name,
        "web-0"
    );
    assert_eq!(pods.by_container_id(&WEB[..12]).unwrap().pod_name, "web-0");
    assert!(pods.by_container_id(&WEB[..6]).is_none());
    // Ephemeral (kubectl debug) and init containers are indexed too.
    let dbg = pods.by_container_id("e".repeat(64).as_str()).unwrap();
    assert_eq!(
        (dbg.kind, dbg.container_name.as_str()),
        ("ephemeral", "debugger-x7k2")
    );
    assert_eq!(pods.by_container_id(&"1".repeat(64)).unwrap().kind, "init");
    // A pending container without an id is skipped; unknown ids → None.
    assert!(pods.by_container_id(&"9".repeat(64)).is_none());
    assert_eq!(
        pods.by_pod_uid("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
            .len(),
        3
    );

    // kubectl exec target → container id: explicit -c, annotated default, none running.
    assert_eq!(pods.container_id_for("prod", "web-0", None), Some(WEB));
    assert_eq!(
        pods.container_id_for("prod", "web-0", Some("init-perms")),
        Some("1".repeat(64).as_str())
    );
    assert_eq!(
        pods.container_id_for("jobs", "batch-7f9c", None),
        Some("2".repeat(64).as_str())
    );
    assert_eq!(
        pods.container_id_for("jobs", "batch-7f9c", Some("sidecar")),
        None
    );
    assert_eq!(pods.container_id_for("prod", "nope", None), None);

    // Joined with a cgroup line: container id → pod (the enrich path).
    let cg = parse_cgroup(&format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{WEB}.scope"
    ));
    let p = pods
        .by_container_id(cg.container_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(Some(p.pod_uid.as_str()), cg.pod_uid.as_deref());
}

#[test]
fn bad_json_is_an_error_and_empty_list_is_fine() {
    assert!(KubeletPods::from_json("{not json").is_err());
    assert_eq!(
        KubeletPods::from_json(
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}"#
        )
        .map(|p| p.pod_count())
        .ok(),
        Some(0)
    );
    assert_eq!(
        KubeletPods::from_json(r#"{"kind":"PodList","items":[]}"#)
            .unwrap()
            .pod_count(),
        0
    );
}
