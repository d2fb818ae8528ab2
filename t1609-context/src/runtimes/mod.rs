//! Container runtime metadata behind one interface: containerd (its own API and its CRI
//! plugin), CRI-O (CRI), Docker and podman (its storage on disk) feed one cache, from
//! their event streams where they have one, so a container that lived for less than a
//! second is still named. The agent's hot path only reads the cache ([`Runtimes::container`],
//! [`Runtimes::target`], [`Runtimes::pod`]): a read never waits on a socket; a miss says
//! why ([`PendingReason`]) and queues a lookup whose answer lands in the cache and in
//! [`Runtimes::take_answered`].

mod cache;
mod config;
mod containerd;
mod cri;
mod grpc;
mod info;
mod meta;
mod podman;
mod watch;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

pub use cache::{Meta, MetaCache, PendingReason, Wanted};
pub use config::{
    CONTAINERD_SOCKETS, CRI_SOCKETS, DOCKER_SOCKETS, Endpoint, EndpointKind, PODMAN_STORAGE,
    RuntimesConfig, RuntimesConfigError,
};
pub use cri::CRI_NAMESPACE;
pub use info::{
    ContainerInfo, LABEL_CRI_KIND, LABEL_NERDCTL_NAME, PodInfo, RuntimeKind, digest_of_ref,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{runtime::Handle, sync::mpsc, task::AbortHandle};

use crate::docker::RuntimeError;

/// Why a call to a runtime failed. Each names the socket (or storage file) and the call.
#[derive(Debug, thiserror::Error)]
pub enum RuntimesError {
    #[error("{}: cannot connect: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{}: {call} did not answer within {timeout:?}", socket.display())]
    Timeout {
        socket: PathBuf,
        call: &'static str,
        timeout: Duration,
    },
    #[error("{}: {call} failed: {}", socket.display(), source.message())]
    Rpc {
        socket: PathBuf,
        call: &'static str,
        #[source]
        source: Box<tonic::Status>,
    },
    #[error("{}: the event stream ended", socket.display())]
    StreamEnded { socket: PathBuf },
    #[error("{}: {source}", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not the JSON expected: {source}", path.display())]
    StorageJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Docker(#[from] RuntimeError),
}

/// Counters for `/metrics` and the stop line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that found nothing (`metadata_pending`).
    pub pending: u64,
    pub lookups_queued: u64,
    /// Misses that could not be queued (burst of unknown containers).
    pub queue_full: u64,
    /// Pending containers named later (see [`Runtimes::take_answered`]).
    pub late_answers: u64,
    pub not_found: u64,
    /// Failed calls, connections and streams of any runtime; `timeouts` among them.
    pub runtime_errors: u64,
    pub timeouts: u64,
    /// Events received from the runtimes' streams.
    pub events: u64,
    /// Watches restarted after a failure.
    pub stream_restarts: u64,
    /// Full lists applied.
    pub lists: u64,
    /// Gauges: containers (and sandboxes) cached, endpoints up.
    pub containers: u64,
    pub endpoints_up: u64,
}

/// One watched endpoint, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub runtime: RuntimeKind,
    /// Configured, or found at its well-known path.
    pub present: bool,
    pub up: bool,
    /// `events`, `polling`, `list`, `storage`, or `connecting`.
    pub mode: &'static str,
    pub last_error: Option<String>,
}

/// Aborts the background tasks when the last handle goes.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The runtimes' metadata: a cache for the hot path, kept by tasks on a tokio runtime.
#[derive(Clone)]
pub struct Runtimes {
    cache: Arc<MetaCache>,
    endpoints: Arc<Vec<Endpoint>>,
    _tasks: Arc<Tasks>,
}

impl Runtimes {
    /// Starts watching the endpoints of `cfg` (configured and detected) on `handle`:
    /// one task per endpoint, one answering misses, one expiring removed containers.
    /// Returns at once; nothing here waits on a runtime. Call it from outside or inside
    /// the runtime of `handle`.
    pub fn start(cfg: &RuntimesConfig, handle: &Handle) -> Runtimes {
        let endpoints = Arc::new(cfg.endpoints());
        let cache = Arc::new(MetaCache::new(
            cfg.max_containers,
            Duration::from_millis(cfg.removed_grace_ms),
            Duration::from_millis(cfg.poll_ms.max(1_000)),
        ));
        *cache
            .health
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = endpoints
            .iter()
            .map(|e| {
                cache::Health::new(e.kind.runtime(), &e.label(), e.explicit || e.path.exists())
            })
            .collect();
        let t = watch::Timing {
            timeout: cfg.timeout(),
            poll: Duration::from_millis(cfg.poll_ms),
            resync: Duration::from_millis(cfg.resync_ms),
        };
        let mut tasks = Vec::new();
        if !endpoints.is_empty() {
            let (tx, rx) = mpsc::channel(cfg.lookup_queue.max(1));
            cache.set_requests(tx);
            for (i, ep) in endpoints.iter().enumerate() {
                tasks.push(
                    handle
                        .spawn(watch::watch_endpoint(cache.clone(), i, ep.clone(), t))
                        .abort_handle(),
                );
            }
            tasks.push(
                handle
                    .spawn(watch::answer_misses(
                        cache.clone(),
                        endpoints.clone(),
                        rx,
                        t,
                    ))
                    .abort_handle(),
            );
            tasks.push(
                handle
                    .spawn(watch::housekeeping(cache.clone()))
                    .abort_handle(),
            );
        }
        Runtimes {
            cache,
            endpoints,
            _tasks: Arc::new(Tasks(tasks)),
        }
    }

    /// No runtime: every read is `Pending(NoRuntime)`.
    pub fn disabled() -> Runtimes {
        Runtimes {
            cache: Arc::new(MetaCache::new(16, Duration::ZERO, Duration::from_secs(1))),
            endpoints: Arc::new(Vec::new()),
            _tasks: Arc::new(Tasks(Vec::new())),
        }
    }

    /// Hot path: container `id` (as its cgroup names it).
    pub fn container(&self, id: &str) -> Meta {
        self.cache.container(id)
    }

    /// Hot path: the target of `tool exec … reference` (`docker`, `podman`, `nerdctl`,
    /// `ctr`, `crictl`), `namespace` from `-n` (containerd namespace).
    pub fn target(&self, tool: &str, namespace: Option<&str>, reference: &str) -> Meta {
        self.cache.target(tool, namespace, reference)
    }

    /// Hot path: the container a `kubectl exec -n namespace pod [-c container]` enters.
    pub fn pod(&self, namespace: &str, pod: &str, container: Option<&str>) -> Meta {
        self.cache.pod(namespace, pod, container)
    }

    /// Containers that were pending on a read and are named now, each once.
    pub fn take_answered(&self) -> Vec<Arc<ContainerInfo>> {
        self.cache.take_answered()
    }

    pub fn cache(&self) -> &Arc<MetaCache> {
        &self.cache
    }

    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        let health = self
            .cache
            .health
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.endpoints
            .iter()
            .zip(health.iter())
            .map(|(e, h)| EndpointStatus {
                endpoint: e.label(),
                runtime: h.kind,
                present: h.present,
                up: h.up,
                mode: h.mode,
                last_error: h.last_error.as_deref().map(str::to_owned),
            })
            .collect()
    }

    pub fn stats(&self) -> RuntimeStats {
        let c = &self.cache.counters;
        let up = self
            .cache
            .health
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|h| h.up)
            .count();
        RuntimeStats {
            hits: c.hits.load(Relaxed),
            pending: c.pending.load(Relaxed),
            lookups_queued: c.lookups_queued.load(Relaxed),
            queue_full: c.queue_full.load(Relaxed),
            late_answers: c.late_answers.load(Relaxed),
            not_found: c.not_found.load(Relaxed),
            runtime_errors: c.runtime_errors.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            events: c.events.load(Relaxed),
            stream_restarts: c.stream_restarts.load(Relaxed),
            lists: c.lists.load(Relaxed),
            containers: self.cache.len() as u64,
            endpoints_up: up as u64,
        }
    }

    /// Off the hot path (tests, follow-ups): polls `read` until it is known or
    /// `timeout` passes; returns the last answer.
    pub async fn wait_for(&self, timeout: Duration, read: impl Fn(&Runtimes) -> Meta) -> Meta {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = read(self);
            if matches!(m, Meta::Known(_)) || tokio::time::Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Writes what `meta` says into an alert document: `container.*` and, for a pod,
/// `orchestrator.*` and `kubernetes.container.name` when known; when pending,
/// `t1609.metadata.{pending, reason}` and, when the cgroup showed a pod (`pod_uid`),
/// `orchestrator.{type, resource.{type, uid}, metadata_pending: true}`. Fields already in
/// the document that `meta` does not know are kept.
pub fn write_ecs(doc: &mut Value, meta: &Meta, pod_uid: Option<&str>) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    // A pod the runtime has not named (yet): what the cgroup says, marked pending.
    let orchestrator = meta.known().and_then(|i| i.ecs_orchestrator()).or_else(|| {
        pod_uid.map(|uid| {
            json!({"type": "kubernetes", "resource": {"type": "pod", "uid": uid, "id": uid}, "metadata_pending": true})
        })
    });
    if let Some(o) = orchestrator {
        obj.insert("orchestrator".into(), o);
    }
    let metadata = match meta {
        Meta::Known(info) => {
            let c = obj.entry("container").or_insert_with(|| json!({}));
            if let (Some(c), Value::Object(new)) = (c.as_object_mut(), info.ecs_container()) {
                c.extend(new);
            }
            if let Some(n) = info.pod.as_ref().and_then(|p| p.container_name.as_deref()) {
                obj.insert("kubernetes".into(), json!({"container": {"name": n}}));
            }
            json!({"pending": false, "source": info.source})
        }
        Meta::Pending(reason) => json!({"pending": true, "reason": reason.to_string()}),
    };
    let t = obj.entry("t1609").or_insert_with(|| json!({}));
    if let Some(t) = t.as_object_mut() {
        t.insert("metadata".into(), metadata);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_known_pending_and_pod_pending() {
        let mut i = ContainerInfo::new("c1", RuntimeKind::Containerd, "cri");
        i.name = Some("app".into());
        i.pod = Some(PodInfo {
            name: "web-0".into(),
            namespace: "prod".into(),
            uid: "u-1".into(),
            container_name: Some("app".into()),
        });
        let mut doc = json!({"container": {"id": "c1", "runtime": "kubernetes"}});
        write_ecs(&mut doc, &Meta::Known(Arc::new(i)), Some("u-1"));
        assert_eq!(doc["container"]["runtime"], "containerd");
        assert_eq!(doc["orchestrator"]["namespace"], "prod");
        assert_eq!(doc["orchestrator"]["resource"]["name"], "web-0");
        assert_eq!(doc["orchestrator"]["metadata_pending"], false);
        assert_eq!(doc["kubernetes"]["container"]["name"], "app");

        let mut doc = json!({"container": {"id": "c2"}});
        write_ecs(
            &mut doc,
            &Meta::Pending(PendingReason::RuntimeDown("x.sock: timeout".into())),
            Some("u-2"),
        );
        assert_eq!(doc["orchestrator"]["metadata_pending"], true);
        assert_eq!(doc["orchestrator"]["resource"]["uid"], "u-2");
        assert!(
            doc["t1609"]["metadata"]["reason"]
                .as_str()
                .unwrap()
                .contains("x.sock")
        );
        assert_eq!(doc["container"]["id"], "c2");
        // A plain container that is pending: no orchestrator invented.
        let mut doc = json!({});
        write_ecs(&mut doc, &Meta::Pending(PendingReason::NotFound), None);
        assert!(doc.get("orchestrator").is_none());
        assert_eq!(doc["t1609"]["metadata"]["pending"], true);
    }

    #[tokio::test]
    async fn disabled_and_no_endpoint_say_no_runtime() {
        let r = Runtimes::disabled();
        assert_eq!(r.container("x"), Meta::Pending(PendingReason::NoRuntime));
        let cfg = RuntimesConfig {
            enabled: false,
            ..Default::default()
        };
        let r = Runtimes::start(&cfg, &Handle::current());
        assert_eq!(
            r.target("ctr", None, "x"),
            Meta::Pending(PendingReason::NoRuntime)
        );
        assert_eq!(r.stats().pending, 1);
    }
}
