//! The background: one task per endpoint keeps the cache in step with the runtime (a
//! full list, then its event stream, or polling where it has none), and one task answers
//! the misses of the hot path. Every failure is a warning on the first occurrence, a
//! counter, and a retry with back-off; the cache keeps answering meanwhile.

use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};
use tonic::{Code, codec::Streaming};

use super::{
    RuntimesError,
    cache::{Health, MetaCache, PendingReason, Wanted},
    config::{Endpoint, EndpointKind},
    containerd::{ContainerdClient, NativeEvent, on_envelope},
    cri::{CRI_NAMESPACE, CriClient, CriEvent},
    info::{ContainerInfo, PodInfo, RuntimeKind},
    podman::PodmanStorage,
};
use crate::docker::DockerClient;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub timeout: Duration,
    pub poll: Duration,
    pub resync: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Lookups of one burst of misses are coalesced this long before the runtimes are asked.
const COALESCE: Duration = Duration::from_millis(20);

fn set_health(cache: &MetaCache, i: usize, f: impl FnOnce(&mut Health)) {
    let mut h = cache
        .health
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(h) = h.get_mut(i) {
        f(h);
    }
}

fn mark_up(cache: &MetaCache, i: usize, mode: &'static str, kind: Option<RuntimeKind>) {
    set_health(cache, i, |h| {
        if !h.up {
            tracing::info!(runtime = %h.label, mode, "container runtime connected");
        }
        h.up = true;
        h.present = true;
        h.mode = mode;
        if let Some(k) = kind {
            h.kind = k;
        }
    });
}

fn count_error(cache: &MetaCache, e: &RuntimesError) {
    cache.counters.runtime_errors.fetch_add(1, Relaxed);
    if matches!(e, RuntimesError::Timeout { .. }) {
        cache.counters.timeouts.fetch_add(1, Relaxed);
    }
}

fn upsert_all(cache: &MetaCache, i: usize, infos: Vec<ContainerInfo>) {
    cache.counters.lists.fetch_add(1, Relaxed);
    let listed: HashSet<Arc<str>> = infos.iter().map(|c| c.id.clone()).collect();
    for info in infos {
        cache.upsert(i, info);
    }
    cache.retire_missing(i, &listed);
}

fn docker_info(m: crate::docker::ContainerMeta) -> ContainerInfo {
    let mut i = ContainerInfo::new(&m.id, RuntimeKind::Docker, "docker");
    i.name = m.name.as_deref().map(Arc::from);
    i.image = m.image.as_deref().map(Arc::from);
    if let (Some(name), Some(ns)) = (m.pod_name, m.pod_namespace) {
        i.pod = Some(PodInfo {
            name: name.into(),
            namespace: ns.into(),
            uid: m.pod_uid.unwrap_or_default().into(),
            container_name: None,
        });
    }
    i
}

/// Lists everything `ep` has (one connection, bounded by the timeout of each call).
async fn list_endpoint(ep: &Endpoint, t: Timing) -> Result<Vec<ContainerInfo>, RuntimesError> {
    match ep.kind {
        EndpointKind::Containerd => {
            let mut c = ContainerdClient::connect(ep.path.clone(), t.timeout).await?;
            let mut all = c.list_all().await?;
            if let Ok(mut cri) = CriClient::connect(ep.path.clone(), t.timeout).await {
                all.extend(cri.list_all().await?);
            }
            Ok(all)
        }
        EndpointKind::Cri => {
            CriClient::connect(ep.path.clone(), t.timeout)
                .await?
                .list_all()
                .await
        }
        EndpointKind::Docker => Ok(DockerClient::new(ep.path.clone(), t.timeout)
            .list()
            .await?
            .into_iter()
            .map(docker_info)
            .collect()),
        EndpointKind::PodmanStorage => PodmanStorage::new(ep.path.clone()).list_all(),
    }
}

/// Keeps endpoint `i` in the cache for as long as the task lives.
pub(crate) async fn watch_endpoint(cache: Arc<MetaCache>, i: usize, ep: Endpoint, t: Timing) {
    let mut backoff = BACKOFF_MIN;
    let mut warned = false;
    loop {
        if !ep.explicit && !ep.path.exists() {
            // A well-known path with nothing there: not a runtime of this host (yet).
            set_health(&cache, i, |h| h.present = false);
            tokio::time::sleep(t.resync).await;
            continue;
        }
        let started = Instant::now();
        let err = match ep.kind {
            EndpointKind::Containerd => watch_containerd(&cache, i, &ep, t).await,
            EndpointKind::Cri => watch_cri(&cache, i, &ep, t).await,
            EndpointKind::Docker => watch_docker(&cache, i, &ep, t).await,
            EndpointKind::PodmanStorage => watch_podman(&cache, i, &ep, t).await,
        };
        count_error(&cache, &err);
        cache.counters.stream_restarts.fetch_add(1, Relaxed);
        let was_up = cache
            .health
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(i)
            .is_some_and(|h| h.up);
        if was_up || !warned {
            tracing::warn!(runtime = %ep.label(), error = %err, "container runtime unavailable: alerts from its containers say metadata_pending until it answers");
            warned = true;
        }
        set_health(&cache, i, |h| {
            h.up = false;
            h.present = true;
            h.last_error = Some(Arc::from(err.to_string()));
        });
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Aborts a spawned call when the watch that started it ends.
struct Abort<T>(JoinHandle<T>);

impl<T> Drop for Abort<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next message of a stream that may not be established yet (then never ready).
async fn next<T>(stream: &mut Option<Streaming<T>>) -> Result<Option<T>, tonic::Status> {
    match stream {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

fn stream_err<'a>(
    ep: &'a Endpoint,
    call: &'static str,
) -> impl Fn(tonic::Status) -> RuntimesError + 'a {
    move |s| RuntimesError::Rpc {
        socket: ep.path.clone(),
        call,
        source: Box::new(s),
    }
}

async fn relist_containerd(
    cache: &MetaCache,
    i: usize,
    client: &mut ContainerdClient,
    cri: Option<&CriClient>,
) -> Result<(), RuntimesError> {
    let mut all = client.list_all().await?;
    if let Some(cri) = cri {
        all.extend(cri.clone().list_all().await?);
    }
    upsert_all(cache, i, all);
    Ok(())
}

/// containerd: a full list, then its events service for every namespace (and its CRI
/// plugin for the Kubernetes metadata of `k8s.io` containers).
async fn watch_containerd(
    cache: &Arc<MetaCache>,
    i: usize,
    ep: &Endpoint,
    t: Timing,
) -> RuntimesError {
    let ended = || RuntimesError::StreamEnded {
        socket: ep.path.clone(),
    };
    let run = async {
        let mut client = ContainerdClient::connect(ep.path.clone(), t.timeout).await?;
        let cri = CriClient::connect(ep.path.clone(), t.timeout).await.ok();
        // Subscribe before listing: nothing created in between is missed.
        let mut sub = Abort(client.subscribe());
        tokio::task::yield_now().await;
        relist_containerd(cache, i, &mut client, cri.as_ref()).await?;
        mark_up(cache, i, "events", None);
        let mut stream = None;
        let mut resync = tokio::time::interval(t.resync);
        resync.tick().await;
        loop {
            tokio::select! {
                r = &mut sub.0, if stream.is_none() => {
                    stream = Some(r.map_err(|_| ended())?.map_err(stream_err(ep, "containerd Events.Subscribe"))?);
                }
                msg = next(&mut stream) => {
                    let env = msg.map_err(stream_err(ep, "containerd events"))?.ok_or_else(ended)?;
                    cache.counters.events.fetch_add(1, Relaxed);
                    match on_envelope(&env) {
                        NativeEvent::Created { namespace, id } => {
                            if let Some(info) = client.get(&namespace, &id, "containerd-events").await? {
                                cache.upsert(i, info);
                            }
                            if namespace == CRI_NAMESPACE && let Some(cri) = cri.clone() {
                                tokio::spawn(enrich_from_cri(cache.clone(), i, cri, id));
                            }
                        }
                        NativeEvent::Removed(id) => cache.removed(&id),
                        NativeEvent::Other => {}
                    }
                }
                _ = resync.tick() => relist_containerd(cache, i, &mut client, cri.as_ref()).await?,
            }
        }
    };
    match run.await {
        Ok(()) => ended(),
        Err(e) => e,
    }
}

/// The CRI's view of a container containerd just created: its Kubernetes name and
/// pod. The CRI plugin records it a moment after containerd does, hence the retries.
async fn enrich_from_cri(cache: Arc<MetaCache>, i: usize, mut cri: CriClient, id: String) {
    for delay in [0, 10, 50, 200, 500] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        match cri.one(&id).await {
            Ok(Some(mut info)) => {
                info.source = "containerd-events+cri";
                cache.upsert(i, info);
                return;
            }
            Ok(None) => {}
            Err(e) => {
                count_error(&cache, &e);
                return;
            }
        }
    }
}

/// A CRI runtime: a full list, then `GetContainerEvents`, or polling where the runtime
/// does not have it (and until its stream is there).
async fn watch_cri(cache: &Arc<MetaCache>, i: usize, ep: &Endpoint, t: Timing) -> RuntimesError {
    let ended = || RuntimesError::StreamEnded {
        socket: ep.path.clone(),
    };
    let run = async {
        let mut cri = CriClient::connect(ep.path.clone(), t.timeout).await?;
        let mut sub = Abort(cri.events());
        tokio::task::yield_now().await;
        upsert_all(cache, i, cri.list_all().await?);
        let mut stream = None;
        // `Unimplemented` comes at once; a stream may only show with its first event.
        let mut polling = false;
        match tokio::time::timeout(t.timeout, &mut sub.0).await {
            Ok(Ok(Ok(s))) => stream = Some(s),
            Ok(Ok(Err(st))) if st.code() == Code::Unimplemented => polling = true,
            Ok(Ok(Err(st))) => return Err(stream_err(ep, "CRI GetContainerEvents")(st)),
            Ok(Err(_)) => return Err(ended()),
            Err(_) => {}
        }
        mark_up(
            cache,
            i,
            if polling { "polling" } else { "events" },
            Some(cri.kind),
        );
        let mut poll = tokio::time::interval(t.poll);
        let mut resync = tokio::time::interval(t.resync);
        resync.tick().await;
        loop {
            tokio::select! {
                r = &mut sub.0, if stream.is_none() && !polling => match r.map_err(|_| ended())? {
                    Ok(s) => stream = Some(s),
                    Err(st) if st.code() == Code::Unimplemented => {
                        polling = true;
                        mark_up(cache, i, "polling", None);
                    }
                    Err(st) => return Err(stream_err(ep, "CRI GetContainerEvents")(st)),
                },
                msg = next(&mut stream) => {
                    let ev = msg.map_err(stream_err(ep, "CRI events"))?.ok_or_else(ended)?;
                    cache.counters.events.fetch_add(1, Relaxed);
                    match cri.on_event(&ev) {
                        CriEvent::Upsert(infos) => infos.into_iter().for_each(|c| cache.upsert(i, c)),
                        CriEvent::Removed(id) => cache.removed(&id),
                    }
                }
                _ = poll.tick(), if stream.is_none() => upsert_all(cache, i, cri.list_all().await?),
                _ = resync.tick() => upsert_all(cache, i, cri.list_all().await?),
            }
        }
    };
    match run.await {
        Ok(()) => ended(),
        Err(e) => e,
    }
}

/// Docker: a list every `resync` (its event stream is not read here); misses ask at once.
async fn watch_docker(cache: &Arc<MetaCache>, i: usize, ep: &Endpoint, t: Timing) -> RuntimesError {
    loop {
        match list_endpoint(ep, t).await {
            Ok(all) => {
                upsert_all(cache, i, all);
                mark_up(cache, i, "list", None);
            }
            Err(e) => return e,
        }
        tokio::time::sleep(t.resync).await;
    }
}

/// podman: its storage re-read whenever the containers file changes (checked every `poll`).
async fn watch_podman(cache: &Arc<MetaCache>, i: usize, ep: &Endpoint, t: Timing) -> RuntimesError {
    let mut storage = PodmanStorage::new(ep.path.clone());
    loop {
        if storage.changed() {
            match storage.list_all() {
                Ok(all) => upsert_all(cache, i, all),
                Err(e) => return e,
            }
        }
        mark_up(cache, i, "storage", None);
        tokio::time::sleep(t.poll).await;
    }
}

/// Answers the hot path's misses: each burst, coalesced, costs one list of each runtime
/// that could know the containers asked for.
pub(crate) async fn answer_misses(
    cache: Arc<MetaCache>,
    endpoints: Arc<Vec<Endpoint>>,
    mut rx: mpsc::Receiver<Wanted>,
    t: Timing,
) {
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(COALESCE).await;
        let mut batch = vec![first];
        while let Ok(w) = rx.try_recv() {
            batch.push(w);
        }
        let wants_all = batch.iter().any(|w| w.kinds().is_empty());
        let kinds: HashSet<RuntimeKind> = batch
            .iter()
            .flat_map(|w| w.kinds().iter().copied())
            .collect();
        let health: Vec<Health> = cache
            .health
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut errors: Vec<String> = Vec::new();
        let lists = endpoints.iter().enumerate().filter(|(i, ep)| {
            let h = &health[*i];
            h.present
                && (wants_all || kinds.contains(&h.kind) || kinds.contains(&ep.kind.runtime()))
        });
        for (i, ep) in lists {
            match list_endpoint(ep, t).await {
                Ok(all) => all.into_iter().for_each(|c| cache.upsert(i, c)),
                Err(e) => {
                    count_error(&cache, &e);
                    errors.push(e.to_string());
                }
            }
        }
        for w in &batch {
            let reason = match cache.find(w) {
                Ok(_) => None,
                Err(PendingReason::Ambiguous) => Some(PendingReason::Ambiguous),
                Err(_) if !errors.is_empty() => {
                    Some(PendingReason::RuntimeDown(Arc::from(errors.join("; "))))
                }
                Err(_) => Some(PendingReason::NotFound),
            };
            cache.lookup_done(w, reason);
        }
    }
}

/// Drops removed containers past their grace, every second.
pub(crate) async fn housekeeping(cache: Arc<MetaCache>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        cache.expire();
    }
}
