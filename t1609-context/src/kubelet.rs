//! The kubelet's `/pods` answer (a `v1.PodList`) → container id → pod name, namespace, UID.
//!
//! Fetching it (read-only port 10255, or 10250 with a token) is the agent's job; this type
//! only indexes the JSON so it is testable from fixtures.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Where a container id belongs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PodRef {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub container_name: String,
    /// `containerd`, `docker`, `cri-o` … (the `containerID` scheme).
    pub runtime: String,
    /// Container image as reported in the status.
    pub image: Option<String>,
    /// `init`, `regular` or `ephemeral` (`kubectl debug` adds ephemeral containers).
    pub kind: &'static str,
}

/// A pod's default container name and its (container name, id) pairs in spec order.
type PodContainers = (Option<String>, Vec<(String, String)>);

/// Index of a kubelet `PodList` by container id (full id and 12-char prefix).
#[derive(Debug, Clone, Default)]
pub struct KubeletPods {
    by_id: HashMap<String, PodRef>,
    /// (namespace, pod name) → (default container, [(container name, id)] in spec order).
    by_pod: HashMap<(String, String), PodContainers>,
    pods: usize,
}

#[derive(Deserialize)]
struct PodList {
    /// `null` when the kubelet has no pods.
    #[serde(default)]
    items: Option<Vec<Pod>>,
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    containers: Vec<SpecContainer>,
}

#[derive(Deserialize)]
struct SpecContainer {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[expect(
    clippy::struct_field_names,
    reason = "the field names of the Kubernetes PodStatus object"
)]
struct Status {
    #[serde(default)]
    container_statuses: Vec<CStatus>,
    #[serde(default)]
    init_container_statuses: Vec<CStatus>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<CStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CStatus {
    #[serde(default)]
    name: String,
    #[serde(rename = "containerID", default)]
    container_id: Option<String>,
    #[serde(default)]
    image: Option<String>,
}

/// `containerd://<id>` → (`containerd`, `<id>`).
pub fn split_container_id(s: &str) -> (String, String) {
    match s.split_once("://") {
        Some((scheme, id)) => (scheme.to_string(), id.to_ascii_lowercase()),
        None => (String::new(), s.to_ascii_lowercase()),
    }
}

impl KubeletPods {
    pub fn from_json(pod_list_json: &str) -> Result<Self, serde_json::Error> {
        let list: PodList = serde_json::from_str(pod_list_json)?;
        let mut by_id = HashMap::new();
        let mut by_pod = HashMap::new();
        let items = list.items.unwrap_or_default();
        let pods = items.len();
        for pod in items {
            // `kubectl exec` without -c: the annotated default container, else the first
            // container of the spec.
            let default = pod
                .metadata
                .annotations
                .get("kubectl.kubernetes.io/default-container")
                .cloned()
                .or_else(|| pod.spec.containers.first().map(|c| c.name.clone()));
            let mut named: Vec<(String, String)> = Vec::new();
            let groups = [
                ("regular", &pod.status.container_statuses),
                ("init", &pod.status.init_container_statuses),
                ("ephemeral", &pod.status.ephemeral_container_statuses),
            ];
            for (kind, statuses) in groups {
                for cs in statuses {
                    let Some(cid) = cs.container_id.as_deref().filter(|c| !c.is_empty()) else {
                        continue;
                    };
                    let (runtime, id) = split_container_id(cid);
                    named.push((cs.name.clone(), id.clone()));
                    by_id.insert(
                        id,
                        PodRef {
                            pod_name: pod.metadata.name.clone(),
                            pod_namespace: pod.metadata.namespace.clone(),
                            pod_uid: pod.metadata.uid.clone(),
                            container_name: cs.name.clone(),
                            runtime,
                            image: cs.image.clone(),
                            kind,
                        },
                    );
                }
            }
            // Order by spec position so the first regular container comes first.
            let pos = |n: &str| {
                pod.spec
                    .containers
                    .iter()
                    .position(|c| c.name == n)
                    .unwrap_or(usize::MAX)
            };
            named.sort_by_key(|(n, _)| pos(n));
            by_pod.insert(
                (pod.metadata.namespace.clone(), pod.metadata.name.clone()),
                (default, named),
            );
        }
        Ok(Self {
            by_id,
            by_pod,
            pods,
        })
    }

    /// Looks up a full id, a `scheme://id`, or a unique prefix of at least 12 characters.
    pub fn by_container_id(&self, id: &str) -> Option<&PodRef> {
        let (_, id) = split_container_id(id.trim());
        if let Some(p) = self.by_id.get(&id) {
            return Some(p);
        }
        if id.len() < 12 {
            return None;
        }
        let mut hits = self.by_id.iter().filter(|(k, _)| k.starts_with(&id));
        let first = hits.next()?;
        hits.next().is_none().then_some(first.1)
    }

    /// The container id a `kubectl exec -n <namespace> <pod> [-c <container>]` targets:
    /// the named container, else the pod's default container
    /// (`kubectl.kubernetes.io/default-container`, else the first in the spec).
    pub fn container_id_for(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Option<&str> {
        let (default, list) = self.by_pod.get(&(namespace.to_string(), pod.to_string()))?;
        let want = container.or(default.as_deref());
        match want {
            Some(name) => list
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| id.as_str()),
            None => list.first().map(|(_, id)| id.as_str()),
        }
    }

    /// All containers of the pod with this UID.
    pub fn by_pod_uid(&self, uid: &str) -> Vec<(&str, &PodRef)> {
        self.by_id
            .iter()
            .filter(|(_, p)| p.pod_uid == uid)
            .map(|(k, p)| (k.as_str(), p))
            .collect()
    }

    pub fn pod_count(&self) -> usize {
        self.pods
    }

    pub fn container_count(&self) -> usize {
        self.by_id.len()
    }
}
