//! What a cache read answers ([`Meta`]), why it found nothing ([`PendingReason`]), and
//! what a lookup is for ([`Wanted`]).

use std::{fmt, sync::Arc};

use serde::Serialize;

use super::info::{ContainerInfo, RuntimeKind};

/// The answer of a cache read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    Known(Arc<ContainerInfo>),
    /// Not known (yet): the alert says `metadata_pending` with this reason.
    Pending(PendingReason),
}

impl Meta {
    pub fn known(&self) -> Option<&Arc<ContainerInfo>> {
        match self {
            Meta::Known(i) => Some(i),
            Meta::Pending(_) => None,
        }
    }
}

/// Why a read found nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum PendingReason {
    /// A lookup is on its way; the answer lands in the cache (see `take_answered`).
    LookupQueued,
    /// Every runtime that could know it was asked, and none does.
    NotFound,
    /// A prefix that matches more than one container.
    Ambiguous,
    /// The runtimes that could know it are unreachable or hung (their last error).
    RuntimeDown(Arc<str>),
    /// No runtime socket is configured or was found.
    NoRuntime,
    /// Too many unknown containers at once: the lookup queue was full.
    QueueFull,
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PendingReason::LookupQueued => f.write_str("runtime lookup in progress"),
            PendingReason::NotFound => f.write_str("no runtime knows this container"),
            PendingReason::Ambiguous => f.write_str("the id prefix matches several containers"),
            PendingReason::RuntimeDown(e) => write!(f, "container runtime unavailable: {e}"),
            PendingReason::NoRuntime => {
                f.write_str("no container runtime socket configured or found")
            }
            PendingReason::QueueFull => f.write_str("runtime lookup queue full"),
        }
    }
}

/// What an exec names as its target, and where to look for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// A container id, as a cgroup gives it.
    Id(Box<str>),
    /// `tool` (`docker`, `podman`, `nerdctl`, `ctr`, `crictl`) `exec … <reference>`.
    Target {
        tool: Box<str>,
        namespace: Option<Box<str>>,
        reference: Box<str>,
    },
    /// `kubectl exec -n <namespace> <pod> [-c <container>]`.
    Pod {
        namespace: Box<str>,
        pod: Box<str>,
        container: Option<Box<str>>,
    },
}

impl Wanted {
    /// The runtimes that can answer it (empty: all).
    pub fn kinds(&self) -> &'static [RuntimeKind] {
        match self {
            Wanted::Target { tool, .. } => match &**tool {
                "docker" => &[RuntimeKind::Docker],
                "podman" => &[RuntimeKind::Podman],
                "nerdctl" | "ctr" => &[RuntimeKind::Containerd],
                "crictl" => &[RuntimeKind::Containerd, RuntimeKind::CriO],
                _ => &[],
            },
            Wanted::Pod { .. } => &[
                RuntimeKind::Containerd,
                RuntimeKind::CriO,
                RuntimeKind::Docker,
            ],
            Wanted::Id(_) => &[],
        }
    }
}
