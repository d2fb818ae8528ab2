//! `[runtimes]`: which runtime endpoints to watch (found at their well-known paths, and
//! those configured), and the timing of calls, lists and the cache.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::info::RuntimeKind;

/// containerd sockets probed when `auto_detect` is on: the distributions' default, k3s
/// and RKE2's own, microk8s's.
pub const CONTAINERD_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
];
/// CRI-only sockets (CRI-O).
pub const CRI_SOCKETS: &[&str] = &["/run/crio/crio.sock"];
pub const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock"];
/// Rootful podman's containers/storage.
pub const PODMAN_STORAGE: &[&str] = &["/var/lib/containers/storage"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimesConfig {
    /// Off: no runtime is asked, every container alert says `metadata_pending`.
    pub enabled: bool,
    /// Watch the well-known sockets and storage above that exist (re-checked every
    /// `resync_ms`, so a runtime started after the agent is picked up).
    pub auto_detect: bool,
    /// containerd sockets (its own API for every namespace, plus its CRI plugin).
    pub containerd: Vec<PathBuf>,
    /// CRI sockets of runtimes other than containerd (CRI-O).
    pub cri: Vec<PathBuf>,
    /// Docker Engine sockets.
    pub docker: Vec<PathBuf>,
    /// podman's containers/storage roots (`podman info --format '{{.Store.GraphRoot}}'`).
    pub podman_storage: Vec<PathBuf>,
    /// Deadline of one call to a runtime.
    pub timeout_ms: u64,
    /// Polling period where a runtime has no event stream (CRI without
    /// `GetContainerEvents`) and of podman's storage check.
    pub poll_ms: u64,
    /// Full relist of every runtime (corrects anything an event stream missed).
    pub resync_ms: u64,
    /// How long a removed container stays named, for late alerts about it.
    pub removed_grace_ms: u64,
    /// Cache bound (removed containers go first, then the oldest).
    pub max_containers: usize,
    /// Unknown containers queued for a lookup at once; past it a miss says `queue full`.
    pub lookup_queue: usize,
}

impl Default for RuntimesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            auto_detect: true,
            containerd: Vec::new(),
            cri: Vec::new(),
            docker: Vec::new(),
            podman_storage: Vec::new(),
            timeout_ms: 500,
            poll_ms: 1_000,
            resync_ms: 10_000,
            removed_grace_ms: 60_000,
            max_containers: 16_384,
            lookup_queue: 1_024,
        }
    }
}

/// A bad value of `[runtimes]`, with what is allowed.
#[derive(Debug, thiserror::Error)]
#[error("runtimes.{key} = {value}: {allowed}")]
pub struct RuntimesConfigError {
    pub key: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

/// How a watched endpoint is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    Containerd,
    Cri,
    Docker,
    PodmanStorage,
}

impl EndpointKind {
    /// The runtime its containers belong to (a CRI socket is taken for CRI-O until its
    /// `Version` says otherwise).
    pub fn runtime(self) -> RuntimeKind {
        match self {
            EndpointKind::Containerd => RuntimeKind::Containerd,
            EndpointKind::Cri => RuntimeKind::CriO,
            EndpointKind::Docker => RuntimeKind::Docker,
            EndpointKind::PodmanStorage => RuntimeKind::Podman,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Containerd => "containerd",
            EndpointKind::Cri => "cri",
            EndpointKind::Docker => "docker",
            EndpointKind::PodmanStorage => "podman-storage",
        }
    }
}

/// One socket (or storage root) to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub path: PathBuf,
    /// Configured by hand: its absence is an error to report. A detected one that is
    /// absent is only not there (yet).
    pub explicit: bool,
}

impl Endpoint {
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.path.display())
    }
}

impl RuntimesConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn validate(&self) -> Result<(), RuntimesConfigError> {
        let range = |key, v: u64, lo: u64, hi: u64, allowed| {
            if v < lo || v > hi {
                return Err(RuntimesConfigError {
                    key,
                    value: v.to_string(),
                    allowed,
                });
            }
            Ok(())
        };
        range(
            "timeout_ms",
            self.timeout_ms,
            10,
            60_000,
            "10 to 60000 (ms)",
        )?;
        range("poll_ms", self.poll_ms, 50, 600_000, "50 to 600000 (ms)")?;
        range(
            "resync_ms",
            self.resync_ms,
            1_000,
            3_600_000,
            "1000 to 3600000 (ms)",
        )?;
        range(
            "removed_grace_ms",
            self.removed_grace_ms,
            0,
            86_400_000,
            "0 to 86400000 (ms)",
        )?;
        range(
            "max_containers",
            self.max_containers as u64,
            16,
            1_000_000,
            "16 to 1000000",
        )?;
        range(
            "lookup_queue",
            self.lookup_queue as u64,
            1,
            65_536,
            "1 to 65536",
        )?;
        for (key, paths) in [
            ("containerd", &self.containerd),
            ("cri", &self.cri),
            ("docker", &self.docker),
            ("podman_storage", &self.podman_storage),
        ] {
            if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
                return Err(RuntimesConfigError {
                    key,
                    value: format!("{:?}", p.display().to_string()),
                    allowed: "absolute paths",
                });
            }
        }
        Ok(())
    }

    /// The endpoints to watch: the configured ones, then the well-known ones (when
    /// `auto_detect`), each path once (`/var/run` and `/run` are one directory).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        if !self.enabled {
            return Vec::new();
        }
        let mut out: Vec<Endpoint> = Vec::new();
        let mut add = |kind, path: &Path, explicit| {
            let same = |e: &Endpoint| {
                e.path == path
                    || (canonical(&e.path).is_some() && canonical(&e.path) == canonical(path))
            };
            if !out.iter().any(same) {
                out.push(Endpoint {
                    kind,
                    path: path.to_owned(),
                    explicit,
                });
            }
        };
        let groups: [(EndpointKind, &Vec<PathBuf>, &[&str]); 4] = [
            (
                EndpointKind::Containerd,
                &self.containerd,
                CONTAINERD_SOCKETS,
            ),
            (EndpointKind::Cri, &self.cri, CRI_SOCKETS),
            (EndpointKind::Docker, &self.docker, DOCKER_SOCKETS),
            (
                EndpointKind::PodmanStorage,
                &self.podman_storage,
                PODMAN_STORAGE,
            ),
        ];
        for (kind, configured, _) in &groups {
            for p in *configured {
                add(*kind, p, true);
            }
        }
        if self.auto_detect {
            for (kind, _, known) in &groups {
                for p in *known {
                    add(*kind, Path::new(p), false);
                }
            }
        }
        out
    }
}

/// The path with its directory's symlinks resolved (the socket itself may be absent).
fn canonical(p: &Path) -> Option<PathBuf> {
    let dir = p.parent()?.canonicalize().ok()?;
    Some(dir.join(p.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_key() {
        let c = RuntimesConfig::default();
        c.validate().unwrap();
        let bad: RuntimesConfig = toml::from_str("timeout_ms = 0").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("runtimes.timeout_ms = 0") && e.contains("10 to 60000"),
            "{e}"
        );
        let rel: RuntimesConfig = toml::from_str(r#"containerd = ["run/x.sock"]"#).unwrap();
        assert!(
            rel.validate()
                .unwrap_err()
                .to_string()
                .contains("runtimes.containerd")
        );
        assert!(
            toml::from_str::<RuntimesConfig>("sockets = []").is_err(),
            "unknown key"
        );
    }

    #[test]
    fn endpoints_configured_first_then_detected_each_once() {
        let c: RuntimesConfig = toml::from_str(
            r#"containerd = ["/run/t/containerd.sock", "/run/containerd/containerd.sock"]
               podman_storage = ["/home/u/.local/share/containers/storage"]"#,
        )
        .unwrap();
        let e = c.endpoints();
        assert_eq!(e[0].path, Path::new("/run/t/containerd.sock"));
        assert!(e[0].explicit);
        assert_eq!(
            e.iter()
                .filter(|x| x.path == Path::new("/run/containerd/containerd.sock"))
                .count(),
            1
        );
        assert!(
            e.iter()
                .any(|x| x.path == Path::new("/run/k3s/containerd/containerd.sock") && !x.explicit)
        );
        assert!(e.iter().any(|x| x.kind == EndpointKind::Cri));
        let off = RuntimesConfig {
            auto_detect: false,
            ..c.clone()
        };
        assert_eq!(off.endpoints().len(), 3);
        let disabled = RuntimesConfig {
            enabled: false,
            ..c
        };
        assert!(disabled.endpoints().is_empty());
    }
}
