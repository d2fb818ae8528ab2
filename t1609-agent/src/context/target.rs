//! The target of a `docker exec` (or `podman`/`nerdctl exec`): the name or id prefix on
//! its command line resolved to the container through the runtime's socket.
//!
//! Lookups run on the hot-path thread (on a small runtime of its own), so they are
//! bounded: at most [`MAX_LOOKUPS_PER_SEC`], each within the configured timeout, none
//! for [`RUNTIME_RETRY`] after the runtime did not answer, answers cached for 30 s. A hung
//! socket therefore costs capture one timeout a second, not one per alert.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_context::DockerClient;
use t1609_detect::argv::Invocation;

const MAX_LOOKUPS_PER_SEC: u32 = 20;
/// How long lookups pause after the runtime did not answer.
const RUNTIME_RETRY: Duration = Duration::from_secs(1);
const CACHE_TTL: Duration = Duration::from_secs(30);
/// The container tools whose `exec`/`attach` is a container exec.
const EXEC_TOOLS: &[&str] = &[
    "docker", "podman", "nerdctl", "kubectl", "oc", "crictl", "ctr", "compose",
];

pub struct Targets {
    docker: Option<DockerClient>,
    /// Runs the lookups' awaits on the hot-path thread; built there on first use (a
    /// runtime must not be dropped inside the main one's async context).
    runtime: Option<tokio::runtime::Runtime>,
    resolved: HashMap<String, (Option<Value>, Instant)>,
    /// (start of the current second, lookups in it)
    budget: (Instant, u32),
    down_until: Option<Instant>,
}

/// What [`Targets::resolve`] found for an alert.
pub struct Target {
    /// The exec's target as sessions match it: the resolved container id, else the
    /// name, container or pod on the command line.
    pub key: Option<String>,
    /// The alert is a container exec (a tool's `exec` or `attach`).
    pub is_exec: bool,
    /// The tool that ran it.
    pub tool: String,
}

impl Targets {
    /// `docker`: the Docker Engine socket client, `None` when lookups are off.
    pub fn new(docker: Option<DockerClient>) -> Self {
        Self {
            docker,
            runtime: None,
            resolved: HashMap::new(),
            budget: (Instant::now(), 0),
            down_until: None,
        }
    }

    /// Works out the target of the alert on `inv` and, for a docker-style exec, writes
    /// `t1609.target` into `doc` (resolved, or why not).
    pub fn resolve(&mut self, inv: Option<&Invocation>, doc: &mut Value) -> Target {
        let tool = inv.map_or("", |i| i.tool.as_str());
        let verb = inv.and_then(|i| i.verb.as_deref()).unwrap_or_default();
        let is_exec = EXEC_TOOLS.contains(&tool) && matches!(verb, "exec" | "attach");
        let container = inv.and_then(|i| i.container.as_deref());
        let mut key = container
            .or_else(|| inv.and_then(|i| i.pod.as_deref()))
            .map(str::to_owned);
        if is_exec
            && matches!(tool, "docker" | "podman" | "nerdctl")
            && let Some(name) = container
        {
            let resolved = self.lookup(name);
            if let Some(id) = resolved.as_ref().and_then(|r| r["id"].as_str()) {
                key = Some(id.to_owned());
            }
            doc["t1609"]["target"] = match resolved {
                Some(r) => json!({"container": r, "resolved": true}),
                None => json!({"container": {"name": name}, "resolved": false,
                               "reason": "the container runtime did not answer (no socket, timeout or unknown name)"}),
            };
        }
        Target {
            key,
            is_exec,
            tool: tool.to_owned(),
        }
    }

    /// Resolves a target (name or id prefix) to the container's details, cached.
    fn lookup(&mut self, target: &str) -> Option<Value> {
        let docker = self.docker.as_ref()?;
        if let Some((v, at)) = self.resolved.get(target)
            && at.elapsed() < CACHE_TTL
        {
            return v.clone();
        }
        if self.budget.0.elapsed() >= Duration::from_secs(1) {
            self.budget = (Instant::now(), 0);
        }
        if self.budget.1 >= MAX_LOOKUPS_PER_SEC
            || self.down_until.is_some_and(|t| Instant::now() < t)
        {
            return None;
        }
        self.budget.1 += 1;
        if self.runtime.is_none() {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => self.runtime = Some(rt),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build the runtime for container lookups");
                    return None;
                }
            }
        }
        let runtime = self.runtime.as_ref()?;
        let v = match runtime.block_on(docker.resolve(target)) {
            Ok(meta) => Some(json!({
                "id": meta.id, "name": meta.name, "image": {"name": meta.image},
                "pod": {"name": meta.pod_name, "namespace": meta.pod_namespace, "uid": meta.pod_uid},
            })),
            Err(e) => {
                tracing::debug!(target, error = %e, "docker target not resolved");
                if e.is_unavailable() {
                    self.down_until = Some(Instant::now() + RUNTIME_RETRY);
                }
                None
            }
        };
        if self.resolved.len() > 1024 {
            self.resolved.clear();
        }
        self.resolved
            .insert(target.to_owned(), (v.clone(), Instant::now()));
        v
    }
}
