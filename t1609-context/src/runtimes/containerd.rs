//! containerd's own API: every namespace (`k8s.io` of its CRI plugin, `default` of `ctr`
//! and nerdctl, `moby` of Docker, any other), container records with their labels, image
//! digests, and the events service, whose stream names a container from its creation
//! (containerd 1.6 has no CRI event stream; this one has been there since 1.0).

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use containerd_client::{
    events::{ContainerCreate, ContainerDelete},
    services::v1::{
        Container, GetContainerRequest, GetImageRequest, ListContainersRequest,
        ListNamespacesRequest, SubscribeRequest, containers_client::ContainersClient,
        events_client::EventsClient, images_client::ImagesClient,
        namespaces_client::NamespacesClient,
    },
    types::Envelope,
};
use prost::Message;
use tokio::task::JoinHandle;
use tonic::{Code, codec::Streaming, transport::Channel};

use super::{
    RuntimesError, grpc,
    info::{ContainerInfo, LABEL_CRI_KIND, LABEL_NERDCTL_NAME, PodInfo, RuntimeKind, some},
};

#[derive(Clone)]
pub(crate) struct ContainerdClient {
    socket: PathBuf,
    timeout: Duration,
    channel: Channel,
    /// (namespace, image name) → manifest digest; images change far less than containers.
    digests: HashMap<(String, String), Option<Arc<str>>>,
}

/// What one event of the stream says.
pub(crate) enum NativeEvent {
    Created { namespace: String, id: String },
    Removed(String),
    Other,
}

/// A request carrying containerd's namespace header; `None` for a namespace that cannot
/// be a header value (containerd would not have created it).
fn in_ns<T>(msg: T, ns: &str) -> Option<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", ns.parse().ok()?);
    Some(r)
}

impl ContainerdClient {
    /// Connects and checks that the socket speaks containerd's API (a namespace list).
    pub async fn connect(socket: PathBuf, timeout: Duration) -> Result<Self, RuntimesError> {
        let channel = grpc::channel(&socket, timeout).await?;
        let c = Self {
            socket,
            timeout,
            channel,
            digests: HashMap::new(),
        };
        c.namespaces().await?;
        Ok(c)
    }

    async fn namespaces(&self) -> Result<Vec<String>, RuntimesError> {
        let mut ns = NamespacesClient::new(self.channel.clone());
        Ok(grpc::call(
            &self.socket,
            "containerd Namespaces.List",
            self.timeout,
            ns.list(ListNamespacesRequest::default()),
        )
        .await?
        .namespaces
        .into_iter()
        .map(|n| n.name)
        .collect())
    }

    /// Every container of every namespace.
    pub async fn list_all(&mut self) -> Result<Vec<ContainerInfo>, RuntimesError> {
        let mut out = Vec::new();
        for ns in self.namespaces().await? {
            let Some(req) = in_ns(ListContainersRequest::default(), &ns) else {
                continue;
            };
            let mut cc = ContainersClient::new(self.channel.clone());
            let list = grpc::call(
                &self.socket,
                "containerd Containers.List",
                self.timeout,
                cc.list(req),
            )
            .await?
            .containers;
            for c in &list {
                let info = self.info(&ns, c, "containerd").await;
                out.push(info);
            }
        }
        Ok(out)
    }

    /// One container; `None` when the namespace does not have it (any more).
    pub async fn get(
        &mut self,
        ns: &str,
        id: &str,
        source: &'static str,
    ) -> Result<Option<ContainerInfo>, RuntimesError> {
        let Some(req) = in_ns(GetContainerRequest { id: id.to_owned() }, ns) else {
            return Ok(None);
        };
        let mut cc = ContainersClient::new(self.channel.clone());
        match grpc::call(
            &self.socket,
            "containerd Containers.Get",
            self.timeout,
            cc.get(req),
        )
        .await
        {
            Ok(r) => match r.container {
                Some(c) => Ok(Some(self.info(ns, &c, source).await)),
                None => Ok(None),
            },
            Err(RuntimesError::Rpc { source, .. }) if source.code() == Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn info(&mut self, ns: &str, c: &Container, source: &'static str) -> ContainerInfo {
        let mut i = ContainerInfo::new(&c.id, RuntimeKind::Containerd, source);
        i.namespace = some(ns);
        i.image = some(&c.image);
        i.pod = PodInfo::from_labels(&c.labels);
        i.sandbox = c.labels.get(LABEL_CRI_KIND).is_some_and(|k| k == "sandbox");
        // nerdctl's name; a Kubernetes container's name; else the id, which `ctr run`
        // users choose as a name.
        i.name = c
            .labels
            .get(LABEL_NERDCTL_NAME)
            .and_then(|n| some(n))
            .or_else(|| i.pod.as_ref().and_then(|p| p.container_name.clone()))
            .or_else(|| {
                i.sandbox
                    .then(|| i.pod.as_ref().map(|p| p.name.clone()))
                    .flatten()
            })
            .or_else(|| (!c.labels.contains_key(LABEL_CRI_KIND)).then(|| i.id.clone()));
        if !c.image.is_empty() {
            i.image_digest = self.digest(ns, &c.image).await;
        }
        i
    }

    /// The manifest digest of image `name` in `ns`, remembered.
    async fn digest(&mut self, ns: &str, name: &str) -> Option<Arc<str>> {
        let key = (ns.to_owned(), name.to_owned());
        if let Some(d) = self.digests.get(&key) {
            return d.clone();
        }
        let req = in_ns(
            GetImageRequest {
                name: name.to_owned(),
            },
            ns,
        )?;
        let mut ic = ImagesClient::new(self.channel.clone());
        let d = grpc::call(
            &self.socket,
            "containerd Images.Get",
            self.timeout,
            ic.get(req),
        )
        .await
        .ok()
        .and_then(|r| r.image)
        .and_then(|i| i.target)
        .and_then(|t| some(&t.digest));
        if self.digests.len() > 4096 {
            self.digests.clear();
        }
        self.digests.insert(key, d.clone());
        d
    }

    /// Subscribes to the events of every namespace about containers, on a task of its
    /// own: containerd sends the stream's headers only with its first event, so the call
    /// is not bounded by a deadline; the watcher's lists tell whether containerd answers.
    pub fn subscribe(&self) -> JoinHandle<Result<Streaming<Envelope>, tonic::Status>> {
        let mut ec = EventsClient::new(self.channel.clone());
        tokio::spawn(async move {
            ec.subscribe(SubscribeRequest {
                filters: vec![r#"topic~="^/containers/""#.to_owned()],
            })
            .await
            .map(tonic::Response::into_inner)
        })
    }
}

/// What an envelope of the events stream says.
pub(crate) fn on_envelope(env: &Envelope) -> NativeEvent {
    let Some(any) = &env.event else {
        return NativeEvent::Other;
    };
    match env.topic.as_str() {
        "/containers/create" => match ContainerCreate::decode(any.value.as_slice()) {
            Ok(c) => NativeEvent::Created {
                namespace: env.namespace.clone(),
                id: c.id,
            },
            Err(_) => NativeEvent::Other,
        },
        "/containers/delete" => match ContainerDelete::decode(any.value.as_slice()) {
            Ok(c) => NativeEvent::Removed(c.id),
            Err(_) => NativeEvent::Other,
        },
        _ => NativeEvent::Other,
    }
}
