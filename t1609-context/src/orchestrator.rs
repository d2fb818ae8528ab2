//! `orchestrator.*` fields for an alert: pod name, namespace and UID from whichever source
//! knows them, with an explicit `metadata_pending` instead of silent blanks.

use serde::Serialize;

use crate::{cgroup::CgroupContext, docker::ContainerMeta, kubelet::KubeletPods};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OrchestratorMeta {
    /// `orchestrator.resource.name` (the pod).
    pub pod_name: Option<String>,
    /// `orchestrator.namespace`.
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    /// Kubernetes container name, when the kubelet pod list gave it.
    pub container_name: Option<String>,
    /// The process is in a Kubernetes pod (per its cgroup or runtime labels) but the pod's
    /// name or namespace is not known yet (no kubelet list / CRI answer, or not yet synced).
    pub metadata_pending: bool,
    /// Where the names came from: `docker-labels`, `kubelet`, `cgroup` (uid only) or `none`.
    pub source: &'static str,
}

/// Merges the cgroup's view with the runtime's labels and the kubelet pod list. Runtime
/// labels win, then the kubelet list; the cgroup only ever gives the pod UID.
pub fn orchestrator_meta(
    cg: &CgroupContext,
    docker: Option<&ContainerMeta>,
    kubelet: Option<&KubeletPods>,
) -> OrchestratorMeta {
    let mut m = OrchestratorMeta {
        source: "none",
        ..Default::default()
    };
    if let Some(d) = docker.filter(|d| d.pod_name.is_some() || d.pod_namespace.is_some()) {
        m.pod_name.clone_from(&d.pod_name);
        m.pod_namespace.clone_from(&d.pod_namespace);
        m.pod_uid.clone_from(&d.pod_uid);
        m.source = "docker-labels";
    } else if let Some(p) = cg
        .container_id
        .as_deref()
        .and_then(|id| kubelet.and_then(|k| k.by_container_id(id)))
    {
        m.pod_name = Some(p.pod_name.clone());
        m.pod_namespace = Some(p.pod_namespace.clone());
        m.pod_uid = Some(p.pod_uid.clone());
        m.container_name = Some(p.container_name.clone());
        m.source = "kubelet";
    }
    if m.pod_uid.is_none() && cg.pod_uid.is_some() {
        m.pod_uid.clone_from(&cg.pod_uid);
        if m.source == "none" {
            m.source = "cgroup";
        }
    }
    let in_pod = cg.pod_uid.is_some() || cg.qos.is_some() || m.pod_uid.is_some();
    m.metadata_pending = in_pod && (m.pod_name.is_none() || m.pod_namespace.is_none());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_cgroup;

    const ID: &str = "3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456";

    #[test]
    fn pending_is_explicit() {
        let pod_cg = parse_cgroup(&format!(
            "0::/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/{ID}"
        ));
        // No source for names: pending, with the UID from the cgroup.
        let m = orchestrator_meta(&pod_cg, None, None);
        assert!(m.metadata_pending);
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
        assert_eq!(m.source, "cgroup");
        // The kubelet list knows it.
        let list = format!(
            r#"{{"items":[{{"metadata":{{"name":"web-0","namespace":"prod","uid":"1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"}},
            "status":{{"containerStatuses":[{{"name":"nginx","containerID":"containerd://{ID}"}}]}}}}]}}"#
        );
        let k = KubeletPods::from_json(&list).unwrap();
        let m = orchestrator_meta(&pod_cg, None, Some(&k));
        assert!(!m.metadata_pending);
        assert_eq!(
            (m.pod_name.as_deref(), m.pod_namespace.as_deref(), m.source),
            (Some("web-0"), Some("prod"), "kubelet")
        );
        assert_eq!(m.container_name.as_deref(), Some("nginx"));
        // Docker labels win.
        let d = ContainerMeta {
            id: ID.into(),
            pod_name: Some("a".into()),
            pod_namespace: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            orchestrator_meta(&pod_cg, Some(&d), Some(&k)).source,
            "docker-labels"
        );
        // A plain docker container or a host process: no orchestrator, not pending.
        let plain = parse_cgroup(&format!("0::/docker/{}", "b".repeat(64)));
        let m = orchestrator_meta(&plain, None, Some(&k));
        assert!(!m.metadata_pending && m.pod_name.is_none());
        assert_eq!(
            orchestrator_meta(&parse_cgroup("0::/"), None, None).source,
            "none"
        );
    }
}
