//! What the runtimes say about a container, in one shape whatever the runtime answered,
//! and the alert fields (ECS) made from it.

use std::{collections::HashMap, sync::Arc};

use serde::Serialize;
use serde_json::{Map, Value, json};
use t1609_detect::Members;

use crate::docker::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

/// nerdctl keeps a container's name in this containerd label.
pub const LABEL_NERDCTL_NAME: &str = "nerdctl/name";
/// containerd's CRI plugin marks its records `sandbox` or `container` with this label.
pub const LABEL_CRI_KIND: &str = "io.cri-containerd.kind";

/// The runtime that answered (`container.runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// containerd, through its own API or its CRI plugin (`k8s.io` namespace).
    Containerd,
    /// CRI-O, through the CRI.
    CriO,
    Docker,
    Podman,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::CriO => "cri-o",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Podman => "podman",
        }
    }
}

/// The pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PodInfo {
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    /// Empty when the runtime did not say (a label set without the uid).
    pub uid: Arc<str>,
    /// The Kubernetes container name (`kubectl exec -c`), absent for a sandbox.
    pub container_name: Option<Arc<str>>,
}

impl PodInfo {
    /// From the `io.kubernetes.*` labels the kubelet puts on every container and sandbox.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<PodInfo> {
        let get = |k: &str| labels.get(k).filter(|v| !v.is_empty());
        Some(PodInfo {
            name: Arc::from(get(LABEL_POD_NAME)?.as_str()),
            namespace: Arc::from(get(LABEL_POD_NAMESPACE)?.as_str()),
            uid: Arc::from(get(LABEL_POD_UID).map_or("", String::as_str)),
            container_name: get(LABEL_CONTAINER_NAME).map(|s| Arc::from(s.as_str())),
        })
    }
}

/// One container (or pod sandbox) as a runtime described it. Immutable once in the
/// cache: readers hold an `Arc` of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// The runtime's id: 64 hex characters, or the name `ctr run` was given.
    pub id: Arc<str>,
    /// `docker`/`podman`/`nerdctl` name, the Kubernetes container name for a CRI
    /// container, the pod name for a sandbox, the id for a `ctr` container.
    pub name: Option<Arc<str>>,
    pub runtime: RuntimeKind,
    /// containerd namespace (`k8s.io`, `default`, `moby`, …); `None` elsewhere.
    pub namespace: Option<Arc<str>>,
    /// The image as the container was created from (`docker.io/library/nginx:1`).
    pub image: Option<Arc<str>>,
    /// The image's manifest digest (`sha256:…`), where the runtime knows it.
    pub image_digest: Option<Arc<str>>,
    pub pod: Option<PodInfo>,
    /// A pod sandbox (the pause container), not a workload.
    pub sandbox: bool,
    /// Which API said it: `cri`, `cri-events`, `containerd`, `containerd-events`,
    /// `docker`, `podman-storage`.
    pub source: &'static str,
}

impl ContainerInfo {
    /// A bare record of `id` at `runtime`, to fill in.
    pub fn new(id: &str, runtime: RuntimeKind, source: &'static str) -> Self {
        Self {
            id: Arc::from(id),
            name: None,
            runtime,
            namespace: None,
            image: None,
            image_digest: None,
            pod: None,
            sandbox: false,
            source,
        }
    }

    /// Fills what `self` lacks from `older` (another answer about the same container):
    /// the CRI knows the pod's metadata, containerd's own API the namespace.
    #[must_use]
    pub fn merged_with(mut self, older: &ContainerInfo) -> ContainerInfo {
        if self.name.is_none() {
            self.name.clone_from(&older.name);
        }
        if self.namespace.is_none() {
            self.namespace.clone_from(&older.namespace);
        }
        if self.image.is_none() {
            self.image.clone_from(&older.image);
        }
        if self.image_digest.is_none() {
            self.image_digest.clone_from(&older.image_digest);
        }
        match (&mut self.pod, &older.pod) {
            (None, Some(p)) => self.pod = Some(p.clone()),
            (Some(p), Some(o)) => {
                if p.uid.is_empty() {
                    p.uid.clone_from(&o.uid);
                }
                if p.container_name.is_none() {
                    p.container_name.clone_from(&o.container_name);
                }
            }
            _ => {}
        }
        self.sandbox |= older.sandbox;
        self
    }

    /// ECS `container.*`: id, name, runtime, image name and digest.
    pub fn ecs_container(&self) -> Value {
        let mut c = Map::new();
        c.insert("id".into(), json!(&*self.id));
        if let Some(n) = &self.name {
            c.insert("name".into(), json!(&**n));
        }
        c.insert("runtime".into(), json!(self.runtime.as_str()));
        let mut image = Map::new();
        if let Some(i) = &self.image {
            image.insert("name".into(), json!(&**i));
        }
        if let Some(d) = &self.image_digest {
            image.insert("hash".into(), json!({"all": [&**d]}));
        }
        if !image.is_empty() {
            c.insert("image".into(), Value::Object(image));
        }
        Value::Object(c)
    }

    /// ECS `orchestrator.*` for a container of a pod (`None` outside Kubernetes).
    pub fn ecs_orchestrator(&self) -> Option<Value> {
        let p = self.pod.as_ref()?;
        let mut resource = json!({"type": "pod", "name": &*p.name});
        if !p.uid.is_empty() {
            resource["id"] = json!(&*p.uid);
            resource["uid"] = json!(&*p.uid);
        }
        Some(json!({
            "type": "kubernetes",
            "namespace": &*p.namespace,
            "resource": resource,
            "metadata_pending": false,
        }))
    }
}

/// The same fields written straight into alert JSON text (the agent's fast path): what
/// [`ContainerInfo::ecs_container`] and [`ContainerInfo::ecs_orchestrator`] build, member
/// for member (tested against them).
impl ContainerInfo {
    /// The members of `container` but its `id`, which the caller writes or replaces.
    pub fn write_ecs_container(&self, c: &mut Members<'_>) {
        c.opt_str("name", self.name.as_deref());
        c.str("runtime", self.runtime.as_str());
        if self.image.is_some() || self.image_digest.is_some() {
            c.object("image", |i| {
                i.opt_str("name", self.image.as_deref());
                if let Some(d) = self.image_digest.as_deref() {
                    i.object("hash", |h| h.strs("all", &[d]));
                }
            });
        }
    }

    /// The `orchestrator` member, for a container of a pod; `false`, writing nothing,
    /// outside Kubernetes.
    pub fn write_ecs_orchestrator(&self, doc: &mut Members<'_>) -> bool {
        let Some(p) = &self.pod else {
            return false;
        };
        doc.object("orchestrator", |o| {
            o.str("type", "kubernetes");
            o.str("namespace", &p.namespace);
            o.object("resource", |r| {
                r.str("type", "pod");
                r.str("name", &p.name);
                if !p.uid.is_empty() {
                    r.str("id", &p.uid);
                    r.str("uid", &p.uid);
                }
            });
            o.bool("metadata_pending", false);
        });
        true
    }
}

/// The image digest in a CRI `image_ref` or a repo digest (`repo@sha256:…`); an image
/// id alone (`sha256:…` of the config) is not a manifest digest and gives `None`.
pub fn digest_of_ref(image_ref: &str) -> Option<&str> {
    let (_, d) = image_ref.rsplit_once('@')?;
    d.starts_with("sha256:").then_some(d)
}

/// Non-empty `s` as an `Arc<str>`.
pub(crate) fn some(s: &str) -> Option<Arc<str>> {
    (!s.is_empty()).then(|| Arc::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pod_from_kubelet_labels_needs_name_and_namespace() {
        let l = labels(&[
            (LABEL_POD_NAME, "web-0"),
            (LABEL_POD_NAMESPACE, "prod"),
            (LABEL_POD_UID, "u-1"),
            (LABEL_CONTAINER_NAME, "app"),
        ]);
        let p = PodInfo::from_labels(&l).unwrap();
        assert_eq!((&*p.name, &*p.namespace, &*p.uid), ("web-0", "prod", "u-1"));
        assert_eq!(p.container_name.as_deref(), Some("app"));
        // A near miss: the name without the namespace is no pod.
        assert!(PodInfo::from_labels(&labels(&[(LABEL_POD_NAME, "web-0")])).is_none());
        assert!(
            PodInfo::from_labels(&labels(&[(LABEL_POD_NAME, ""), (LABEL_POD_NAMESPACE, "x")]))
                .is_none()
        );
    }

    #[test]
    fn digests_only_from_repo_digests() {
        assert_eq!(
            digest_of_ref("docker.io/library/busybox@sha256:abc"),
            Some("sha256:abc")
        );
        assert_eq!(digest_of_ref("sha256:abc"), None);
        assert_eq!(digest_of_ref("busybox:1"), None);
    }

    #[test]
    fn ecs_fields_and_merge() {
        let mut a = ContainerInfo::new("c1", RuntimeKind::Containerd, "cri");
        a.name = some("app");
        a.image = some("docker.io/x:1");
        a.image_digest = some("sha256:d");
        a.pod = Some(PodInfo {
            name: "web-0".into(),
            namespace: "prod".into(),
            uid: "".into(),
            container_name: some("app"),
        });
        let c = a.ecs_container();
        assert_eq!(c["runtime"], "containerd");
        assert_eq!(c["image"]["hash"]["all"][0], "sha256:d");
        let o = a.ecs_orchestrator().unwrap();
        assert_eq!(o["resource"]["name"], "web-0");
        assert!(
            o["resource"].get("uid").is_none(),
            "no uid known: none written"
        );

        let mut native = ContainerInfo::new("c1", RuntimeKind::Containerd, "containerd");
        native.namespace = some("k8s.io");
        native.pod = Some(PodInfo {
            name: "web-0".into(),
            namespace: "prod".into(),
            uid: "u-1".into(),
            container_name: None,
        });
        let m = a.merged_with(&native);
        assert_eq!(m.namespace.as_deref(), Some("k8s.io"));
        assert_eq!(m.pod.as_ref().map(|p| &*p.uid), Some("u-1"));
        assert_eq!(m.source, "cri");
        let plain = ContainerInfo::new("d", RuntimeKind::Docker, "docker");
        assert!(plain.ecs_orchestrator().is_none());
        assert!(plain.ecs_container().get("image").is_none());
    }

    /// The text writers write what the `Value` builders build, for every shape.
    #[test]
    fn written_fields_match_the_values() {
        let mut shapes = Vec::new();
        for (name, image, digest) in [
            (None, None, None),
            (some("app\n\"x\""), some("docker.io/x:1"), some("sha256:d")),
            (None, None, some("sha256:d")),
            (some("n"), some("i"), None),
        ] {
            for uid in ["", "u-1"] {
                let mut i = ContainerInfo::new("c\u{1}1", RuntimeKind::CriO, "cri");
                (i.name, i.image, i.image_digest) = (name.clone(), image.clone(), digest.clone());
                shapes.push(i.clone());
                i.pod = Some(PodInfo {
                    name: "web-0".into(),
                    namespace: "prod".into(),
                    uid: uid.into(),
                    container_name: None,
                });
                shapes.push(i);
            }
        }
        for i in shapes {
            let written = Members::object_text(|doc| {
                doc.object("container", |c| {
                    c.str("id", &i.id);
                    i.write_ecs_container(c);
                });
                let pod = i.write_ecs_orchestrator(doc);
                assert_eq!(pod, i.pod.is_some());
            });
            let written: Value = serde_json::from_str(&written).unwrap();
            let mut built = json!({"container": i.ecs_container()});
            if let Some(o) = i.ecs_orchestrator() {
                built["orchestrator"] = o;
            }
            assert_eq!(written, built, "{i:?}");
        }
    }
}
