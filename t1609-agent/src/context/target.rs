//! The target of a container exec (`docker`/`podman`/`nerdctl`/`ctr`/`crictl exec`, and
//! `kubectl`/`oc exec` into a pod), named from the container runtimes' cache
//! (`t1609_context::Runtimes`). The hot path only reads the cache: a target it does not
//! know yet is asked for in the background and the alert says why it is unresolved.

use serde_json::{Value, json};
use t1609_context::{Meta, Runtimes};
use t1609_detect::{AlertFields, Members, argv::Invocation};

/// The container tools whose `exec`/`attach` is a container exec.
const EXEC_TOOLS: &[&str] = &[
    "docker", "podman", "nerdctl", "kubectl", "oc", "crictl", "ctr", "compose",
];

/// What [`Targets::resolve`] found for an alert.
pub struct Target {
    /// The exec's target as sessions match it: the resolved container id, else the
    /// name, container or pod on the command line.
    pub key: Option<String>,
    /// The alert is a container exec (a tool's `exec` or `attach`).
    pub is_exec: bool,
    /// The tool that ran it.
    pub tool: String,
    /// For a container exec whose target the command line names: that name and what the
    /// runtimes say about it (the alert's `t1609.target`).
    found: Option<(String, Meta)>,
}

pub struct Targets {
    runtimes: Runtimes,
}

impl Targets {
    pub fn new(runtimes: Runtimes) -> Self {
        Self { runtimes }
    }

    /// Works out the target of the alert on `inv`: for a container exec whose target the
    /// command line names, the container (and its pod) as the runtime knows it, or why it
    /// is not known. The alert carries it as `t1609.target` (its [`AlertFields`]).
    pub fn resolve(&self, inv: Option<&Invocation>) -> Target {
        let tool = inv.map_or("", |i| i.tool.as_str());
        let verb = inv.and_then(|i| i.verb.as_deref()).unwrap_or_default();
        let is_exec = EXEC_TOOLS.contains(&tool) && matches!(verb, "exec" | "attach");
        let container = inv.and_then(|i| i.container.as_deref());
        let pod = inv.and_then(|i| i.pod.as_deref());
        let mut key = container.or(pod).map(str::to_owned);
        let namespace = inv.and_then(|i| i.namespace.as_deref());
        let found = match (is_exec, tool) {
            (true, "kubectl" | "oc") => pod.map(|p| {
                (
                    p,
                    self.runtimes
                        .pod(namespace.unwrap_or("default"), p, container),
                )
            }),
            (true, "docker" | "podman" | "nerdctl" | "ctr" | "crictl") => {
                container.map(|c| (c, self.runtimes.target(tool, namespace, c)))
            }
            _ => None,
        };
        if let Some((_, Meta::Known(info))) = &found {
            key = Some(info.id.to_string());
        }
        Target {
            key,
            is_exec,
            tool: tool.to_owned(),
            found: found.map(|(named, meta)| (named.to_owned(), meta)),
        }
    }
}

impl AlertFields for Target {
    fn add_to_value(&self, doc: &mut Value) {
        let Some((named, meta)) = &self.found else {
            return;
        };
        doc["t1609"]["target"] = match meta {
            Meta::Known(info) => {
                let mut t = json!({"container": info.ecs_container(), "resolved": true});
                if let Some(o) = info.ecs_orchestrator() {
                    t["orchestrator"] = o;
                }
                t
            }
            Meta::Pending(reason) => json!({
                "container": {"name": named}, "resolved": false, "reason": reason.to_string(),
            }),
        };
    }

    fn t1609(&self, t: &mut Members<'_>) {
        let Some((named, meta)) = &self.found else {
            return;
        };
        t.object("target", |t| match meta {
            Meta::Known(info) => {
                t.object("container", |c| {
                    c.str("id", &info.id);
                    info.write_ecs_container(c);
                });
                t.bool("resolved", true);
                info.write_ecs_orchestrator(t);
            }
            Meta::Pending(reason) => {
                t.object("container", |c| c.str("name", named));
                t.bool("resolved", false);
                t.str("reason", &reason.to_string());
            }
        });
    }
}
