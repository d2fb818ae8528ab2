//! `orchestrator.*` fields for an alert: pod name, namespace and UID from whichever source
//! knows them, with an explicit `metadata_pending` instead of silent blanks.

use serde::Serialize;

use crate::{cgroup::CgroupContext, kubelet::KubeletPods, runtimes::ContainerInfo};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OrchestratorMeta {
    /// `orchestrator.resource.name` (the pod).
    pub pod_name: Option<String>,
    /// `orchestrator.namespace`.
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    /// Kubernetes container name, when the runtime or the kubelet pod list gave it.
    pub container_name: Option<String>,
    /// The process is in a Kubernetes pod (per its cgroup or runtime labels) but the pod's
    /// name or namespace is not known yet (no kubelet list / CRI answer, or not yet synced).
    pub metadata_pending: bool,
    /// Where the names came from: the runtime's answer (its `ContainerInfo::source`:
    /// `cri`, `containerd-events`, `docker`, …), `kubelet`, `cgroup` (uid only) or `none`.
    pub source: &'static str,
}

/// Merges the cgroup's view with the runtime's answer (see `runtimes`) and the kubelet pod
/// list. The runtime wins, then the kubelet list; the cgroup only ever gives the pod UID.
pub fn orchestrator_meta(
    cg: &CgroupContext,
    runtime: Option<&ContainerInfo>,
    kubelet: Option<&KubeletPods>,
) -> OrchestratorMeta {
    let mut m = OrchestratorMeta {
        source: "none",
        ..Default::default()
    };
    if let Some((info, p)) = runtime.and_then(|i| i.pod.as_ref().map(|p| (i, p))) {
        m.pod_name = Some(p.name.to_string());
        m.pod_namespace = Some(p.namespace.to_string());
        m.pod_uid = (!p.uid.is_empty()).then(|| p.uid.to_string());
        m.container_name = p.container_name.as_deref().map(str::to_owned);
        m.source = info.source;
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
    use crate::{
        parse_cgroup,
        runtimes::{PodInfo, RuntimeKind},
    };

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
        // The runtime's answer wins.
        let mut d = ContainerInfo::new(ID, RuntimeKind::Containerd, "cri");
        d.pod = Some(PodInfo {
            name: "a".into(),
            namespace: "b".into(),
            uid: "".into(),
            container_name: None,
        });
        let m = orchestrator_meta(&pod_cg, Some(&d), Some(&k));
        assert_eq!((m.source, m.pod_name.as_deref()), ("cri", Some("a")));
        assert_eq!(
            m.pod_uid.as_deref(),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
            "uid from the cgroup"
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
