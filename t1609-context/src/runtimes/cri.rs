//! The Kubernetes CRI (`runtime.v1`), as the kubelet speaks it to containerd and CRI-O:
//! pod sandboxes and containers with their Kubernetes metadata, and the runtime's
//! container event stream (`GetContainerEvents`) where it has one.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_cri::v1::{
    Container, ContainerEventResponse, ContainerEventType, ContainerFilter, ContainerMetadata,
    ContainerStatus, GetEventsRequest, ImageSpec, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxFilter, PodSandboxMetadata, PodSandboxStatus, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tokio::task::JoinHandle;
use tonic::{codec::Streaming, transport::Channel};

use super::{
    RuntimesError, grpc,
    info::{ContainerInfo, PodInfo, RuntimeKind, digest_of_ref, some},
};

/// The containerd namespace of its CRI plugin.
pub const CRI_NAMESPACE: &str = "k8s.io";

#[derive(Clone)]
pub(crate) struct CriClient {
    socket: PathBuf,
    timeout: Duration,
    rt: RuntimeServiceClient<Channel>,
    pub kind: RuntimeKind,
}

/// What one CRI event says.
pub(crate) enum CriEvent {
    Upsert(Vec<ContainerInfo>),
    Removed(String),
}

fn pod_of(meta: Option<&PodSandboxMetadata>) -> Option<PodInfo> {
    let m = meta.filter(|m| !m.name.is_empty() && !m.namespace.is_empty())?;
    Some(PodInfo {
        name: Arc::from(m.name.as_str()),
        namespace: Arc::from(m.namespace.as_str()),
        uid: Arc::from(m.uid.as_str()),
        container_name: None,
    })
}

impl CriClient {
    /// Connects and asks the runtime's name (`containerd`, `cri-o`).
    pub async fn connect(socket: PathBuf, timeout: Duration) -> Result<Self, RuntimesError> {
        let ch = grpc::channel(&socket, timeout).await?;
        let mut rt = RuntimeServiceClient::new(ch);
        let v = grpc::call(
            &socket,
            "CRI Version",
            timeout,
            rt.version(VersionRequest {
                version: "v1".into(),
            }),
        )
        .await?;
        let kind = if v.runtime_name.contains("cri-o") || v.runtime_name.contains("crio") {
            RuntimeKind::CriO
        } else {
            RuntimeKind::Containerd
        };
        Ok(Self {
            socket,
            timeout,
            rt,
            kind,
        })
    }

    fn sandbox_info(
        &self,
        id: &str,
        meta: Option<&PodSandboxMetadata>,
        source: &'static str,
    ) -> ContainerInfo {
        let mut i = ContainerInfo::new(id, self.kind, source);
        i.sandbox = true;
        i.pod = pod_of(meta);
        i.name = i.pod.as_ref().map(|p| p.name.clone());
        self.namespace(i)
    }

    fn namespace(&self, mut i: ContainerInfo) -> ContainerInfo {
        if self.kind == RuntimeKind::Containerd {
            i.namespace = Some(Arc::from(CRI_NAMESPACE));
        }
        i
    }

    /// A container as a list (`Container`) or a status (`ContainerStatus`) describes it:
    /// the same fields; the pod from its sandbox, else the kubelet's labels.
    #[expect(
        clippy::too_many_arguments,
        reason = "the shared fields of the CRI's two container messages"
    )]
    fn workload(
        &self,
        id: &str,
        meta: Option<&ContainerMetadata>,
        image: Option<&ImageSpec>,
        image_ref: &str,
        labels: &HashMap<String, String>,
        pod: Option<&PodInfo>,
        source: &'static str,
    ) -> ContainerInfo {
        let mut i = ContainerInfo::new(id, self.kind, source);
        let cname = meta.and_then(|m| some(&m.name));
        i.name.clone_from(&cname);
        // An image id (`sha256:…` of the config) is not a name.
        i.image = image
            .and_then(|s| some(&s.image))
            .filter(|s| !s.starts_with("sha256:"));
        i.image_digest = digest_of_ref(image_ref).map(Arc::from);
        i.pod = pod
            .cloned()
            .or_else(|| PodInfo::from_labels(labels))
            .map(|mut p| {
                p.container_name = cname.or(p.container_name);
                p
            });
        self.namespace(i)
    }

    fn container_info(
        &self,
        c: &Container,
        pods: &HashMap<String, PodInfo>,
        source: &'static str,
    ) -> ContainerInfo {
        self.workload(
            &c.id,
            c.metadata.as_ref(),
            c.image.as_ref(),
            &c.image_ref,
            &c.labels,
            pods.get(&c.pod_sandbox_id),
            source,
        )
    }

    fn status_info(
        &self,
        c: &ContainerStatus,
        pod: Option<&PodInfo>,
        source: &'static str,
    ) -> ContainerInfo {
        self.workload(
            &c.id,
            c.metadata.as_ref(),
            c.image.as_ref(),
            &c.image_ref,
            &c.labels,
            pod,
            source,
        )
    }

    /// Every pod sandbox and container the runtime has.
    pub async fn list_all(&mut self) -> Result<Vec<ContainerInfo>, RuntimesError> {
        self.list(None).await
    }

    /// One container or sandbox by id (`None` when the runtime does not have it).
    pub async fn one(&mut self, id: &str) -> Result<Option<ContainerInfo>, RuntimesError> {
        Ok(self
            .list(Some(id))
            .await?
            .into_iter()
            .find(|i| &*i.id == id))
    }

    async fn list(&mut self, id: Option<&str>) -> Result<Vec<ContainerInfo>, RuntimesError> {
        let (socket, timeout) = (self.socket.clone(), self.timeout);
        let cfilter = id.map(|id| ContainerFilter {
            id: id.to_owned(),
            ..Default::default()
        });
        let containers = grpc::call(
            &socket,
            "CRI ListContainers",
            timeout,
            self.rt
                .list_containers(ListContainersRequest { filter: cfilter }),
        )
        .await?
        .containers;
        // The sandboxes asked for: all of them, or the one the container is in (or the
        // id itself, when it is a sandbox's).
        let sandbox_id = match (id, containers.first()) {
            (None, _) => None,
            (Some(_), Some(c)) => Some(c.pod_sandbox_id.clone()),
            (Some(id), None) => Some(id.to_owned()),
        };
        let sandboxes = grpc::call(
            &socket,
            "CRI ListPodSandbox",
            timeout,
            self.rt.list_pod_sandbox(ListPodSandboxRequest {
                filter: sandbox_id.map(|id| PodSandboxFilter {
                    id,
                    ..Default::default()
                }),
            }),
        )
        .await?
        .items;
        let mut pods = HashMap::new();
        let mut out = Vec::with_capacity(sandboxes.len() + containers.len());
        for s in &sandboxes {
            let info = self.sandbox_info(&s.id, s.metadata.as_ref(), "cri");
            if let Some(p) = &info.pod {
                pods.insert(s.id.clone(), p.clone());
            }
            if id.is_none_or(|id| id == s.id) {
                out.push(info);
            }
        }
        out.extend(
            containers
                .iter()
                .map(|c| self.container_info(c, &pods, "cri")),
        );
        Ok(out)
    }

    /// Asks for the runtime's container event stream, on a task of its own (a runtime
    /// may send the stream's headers only with its first event). `Unimplemented` means the
    /// runtime has none (containerd 1.6, CRI-O before 1.26).
    pub fn events(&self) -> JoinHandle<Result<Streaming<ContainerEventResponse>, tonic::Status>> {
        let mut rt = self.rt.clone();
        tokio::spawn(async move {
            rt.get_container_events(GetEventsRequest {})
                .await
                .map(tonic::Response::into_inner)
        })
    }

    /// What one event of the stream says.
    pub fn on_event(&self, ev: &ContainerEventResponse) -> CriEvent {
        if ev.container_event_type == ContainerEventType::ContainerDeletedEvent as i32 {
            return CriEvent::Removed(ev.container_id.clone());
        }
        let sandbox: Option<&PodSandboxStatus> = ev.pod_sandbox_status.as_ref();
        let pod = sandbox.and_then(|s| pod_of(s.metadata.as_ref()));
        let mut out: Vec<ContainerInfo> = ev
            .containers_statuses
            .iter()
            .map(|c| self.status_info(c, pod.as_ref(), "cri-events"))
            .collect();
        if let Some(s) = sandbox {
            out.push(self.sandbox_info(&s.id, s.metadata.as_ref(), "cri-events"));
        }
        CriEvent::Upsert(out)
    }
}
