//! `/proc/<pid>/cgroup` → container id, runtime, pod UID, quality-of-service class and
//! systemd unit.
//!
//! Handles cgroup v1 (`N:controllers:/path`, several lines) and v2 (`0::/path`), and a
//! bare path (`/docker/<id>`). See the crate README for the full list of layouts.

use serde::Serialize;

/// The container runtime (or host-side owner) a cgroup path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// `/docker/<id>` (cgroupfs driver) or `docker-<id>.scope` (systemd driver).
    Docker,
    /// containerd outside Kubernetes: `/<namespace>/<id>` (cgroupfs), `nerdctl-<id>.scope`.
    Containerd,
    /// containerd's CRI plugin: `cri-containerd-<id>.scope`.
    CriContainerd,
    /// cri-o: `crio-<id>.scope`, `crio-<id>` and its monitor `crio-conmon-<id>.scope`.
    CriO,
    /// podman / libpod: `libpod-<id>.scope`, `libpod-<id>` and `libpod-conmon-<id>.scope`.
    Podman,
    /// Inside `kubepods` but the runtime is not visible in the path (cgroupfs driver:
    /// `/kubepods/burstable/pod<uid>/<id>`).
    Kubernetes,
    /// LXC / LXD: `/lxc/<name>`, `/lxc.payload.<name>`, `/lxc.monitor.<name>`.
    Lxc,
    /// A systemd service unit (`system.slice/foo.service`, user units too).
    SystemdUnit,
    /// Nothing container-like: root cgroup, `init.scope`, user sessions, unknown layouts.
    #[default]
    Host,
}

impl Runtime {
    /// ECS-style lower-case name (`container.runtime`).
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriContainerd => "cri-containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Lxc => "lxc",
            Runtime::SystemdUnit => "systemd",
            Runtime::Host => "host",
        }
    }

    /// True for the runtimes that mean "a container" (not a systemd unit, not the host).
    pub fn is_container(self) -> bool {
        !matches!(self, Runtime::SystemdUnit | Runtime::Host)
    }
}

/// What a cgroup path says about where a process runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CgroupContext {
    /// Container id (64-hex for docker/containerd CRI/cri-o/podman; the container name for
    /// LXC and for containerd ids chosen by `ctr run`).
    pub container_id: Option<String>,
    pub runtime: Runtime,
    /// Kubernetes pod UID, normalised to the dashed form (`_` from the systemd driver → `-`).
    /// Static (mirror) pods carry a 32-hex config hash instead, returned as is.
    pub pod_uid: Option<String>,
    /// Innermost systemd unit (`foo.service`, `session-3.scope`, `init.scope`), when the
    /// path has one that is not a container scope.
    pub systemd_unit: Option<String>,
    /// Kubernetes quality-of-service class: `guaranteed`, `burstable` or `besteffort` (kubepods only).
    pub qos: Option<String>,
    /// The process is the runtime's monitor (`crio-conmon-`, `libpod-conmon-`,
    /// `lxc.monitor.`), not the container workload.
    pub monitor: bool,
}

impl CgroupContext {
    fn score(&self) -> u8 {
        if self.container_id.is_some() {
            5
        } else if self.pod_uid.is_some() {
            4
        } else if self.runtime == Runtime::Kubernetes {
            3
        } else if self.runtime == Runtime::SystemdUnit {
            2
        } else {
            u8::from(self.systemd_unit.is_some())
        }
    }
}

/// Parses the text of `/proc/<pid>/cgroup` (all lines, v1 or v2), a single line of it, or a
/// bare cgroup path. With several v1 lines, the most informative one wins (container id >
/// pod > kubepods > service unit > scope > nothing).
pub fn parse_cgroup(proc_pid_cgroup_text: &str) -> CgroupContext {
    let mut best = CgroupContext::default();
    for line in proc_pid_cgroup_text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let ctx = parse_path(cgroup_line_path(line));
        if ctx.score() > best.score() {
            best = ctx;
        }
    }
    best
}

/// The path part of a `/proc/<pid>/cgroup` line (`hierarchy:controllers:path`), or the line
/// itself when it is already a path.
pub fn cgroup_line_path(line: &str) -> &str {
    let line = line.trim();
    if line.starts_with('/') {
        return line;
    }
    let mut it = line.splitn(3, ':');
    match (it.next(), it.next(), it.next()) {
        (Some(_), Some(_), Some(path)) => path,
        _ => line,
    }
}

/// Keeps one line per distinct path from a v1 cgroup file (a v2 file has one line), so a
/// process table can store a compact but lossless-enough copy for [`parse_cgroup`].
pub fn compact_cgroup_text(text: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let path = cgroup_line_path(line);
        if seen.contains(&path) {
            continue;
        }
        seen.push(path);
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

const CONTAINERD_NAMESPACES: &[&str] =
    &["default", "k8s.io", "moby", "buildkit", "services.linuxkit"];

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
}

/// A runtime id after a prefix: hex, at least 12 characters (short ids are accepted).
fn prefixed_id(s: &str) -> Option<&str> {
    (s.len() >= 12 && is_hex(s)).then_some(s)
}

fn strip_unit_suffix(seg: &str) -> &str {
    seg.strip_suffix(".scope")
        .or_else(|| seg.strip_suffix(".slice"))
        .unwrap_or(seg)
}

/// `pod<uid>` at the end of a segment stem: 36-char UUID (with `-` or `_`) or a 32-hex hash.
fn pod_uid_in(stem: &str) -> Option<String> {
    let idx = stem.rfind("pod")?;
    let cand = &stem[idx + 3..];
    let normalised = cand.replace('_', "-");
    let ok_uuid = normalised.len() == 36
        && normalised.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if ok_uuid || (cand.len() == 32 && is_hex(cand)) {
        Some(normalised.to_ascii_lowercase())
    } else {
        None
    }
}

/// The path's segments, without `.` and `..` (cgroup namespaces show them).
/// containerd's systemd-driver path syntax leaks into some v1 hosts as
/// `<slice>:<prefix>:<id>` (`kubepods-…-pod<uid>.slice:cri-containerd:<id>`): it is
/// expanded to `<slice>/<prefix>-<id>.scope`.
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "a systemd unit type, lowercase by definition, not a file extension"
)]
fn segments(path: &str) -> Vec<String> {
    let mut expanded: Vec<String> = Vec::new();
    for seg in path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
    {
        let parts: Vec<&str> = seg.split(':').collect();
        if parts.len() == 3
            && parts[0].ends_with(".slice")
            && !parts[1].is_empty()
            && !parts[2].is_empty()
        {
            expanded.push(parts[0].to_string());
            expanded.push(format!("{}-{}.scope", parts[1], parts[2]));
        } else {
            expanded.push(seg.to_string());
        }
    }
    expanded
}

#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "systemd unit types, lowercase by definition, not file extensions"
)]
fn parse_path(path: &str) -> CgroupContext {
    let expanded = segments(path.trim().trim_end_matches(" (deleted)"));
    let segs: Vec<&str> = expanded.iter().map(String::as_str).collect();
    let mut ctx = CgroupContext::default();
    let mut kube = false;

    for (i, seg) in segs.iter().enumerate() {
        let stem = strip_unit_suffix(seg);
        let prev = if i > 0 { Some(segs[i - 1]) } else { None };

        // Kubernetes: kubepods, kubepods.slice, kubelet-kubepods-*.slice (kind), QoS, pod uid.
        if seg.contains("kubepods") {
            kube = true;
            if stem.contains("burstable") {
                ctx.qos = Some("burstable".into());
            } else if stem.contains("besteffort") {
                ctx.qos = Some("besteffort".into());
            }
            if let Some(uid) = pod_uid_in(stem) {
                ctx.pod_uid = Some(uid);
            }
            continue;
        }
        if kube {
            if *seg == "burstable" || *seg == "besteffort" {
                ctx.qos = Some((*seg).to_string());
                continue;
            }
            if let Some(rest) = seg.strip_prefix("pod")
                && let Some(uid) = pod_uid_in(&format!("pod{rest}"))
            {
                ctx.pod_uid = Some(uid);
                continue;
            }
        }

        let mut set = |rt: Runtime, id: &str, monitor: bool| {
            ctx.runtime = rt;
            ctx.container_id = Some(id.to_string());
            ctx.monitor = monitor;
        };

        if let Some(id) = stem.strip_prefix("docker-").and_then(prefixed_id) {
            set(Runtime::Docker, id, false);
        } else if let Some(id) = stem.strip_prefix("cri-containerd-").and_then(prefixed_id) {
            set(Runtime::CriContainerd, id, false);
        } else if let Some(id) = stem.strip_prefix("crio-conmon-").and_then(prefixed_id) {
            set(Runtime::CriO, id, true);
        } else if let Some(id) = stem.strip_prefix("crio-").and_then(prefixed_id) {
            set(Runtime::CriO, id, false);
        } else if let Some(id) = stem.strip_prefix("libpod-conmon-").and_then(prefixed_id) {
            set(Runtime::Podman, id, true);
        } else if let Some(id) = stem.strip_prefix("libpod-").and_then(prefixed_id) {
            set(Runtime::Podman, id, false);
        } else if let Some(id) = stem.strip_prefix("nerdctl-").and_then(prefixed_id) {
            set(Runtime::Containerd, id, false);
        } else if let Some(name) = seg.strip_prefix("lxc.payload.").filter(|s| !s.is_empty()) {
            set(Runtime::Lxc, name, false);
        } else if let Some(name) = seg.strip_prefix("lxc.monitor.").filter(|s| !s.is_empty()) {
            set(Runtime::Lxc, name, true);
        } else if prev == Some("lxc") && i == 1 {
            set(Runtime::Lxc, seg, false);
        } else if is_hex64(seg) {
            if prev == Some("docker") {
                set(Runtime::Docker, seg, false);
            } else if kube {
                set(Runtime::Kubernetes, seg, false);
            } else if segs[..i].iter().any(|s| s.contains("docker")) {
                // docker with a custom --cgroup-parent
                set(Runtime::Docker, seg, false);
            } else {
                // `/<containerd namespace>/<id>` and other OCI runtimes' bare ids.
                set(Runtime::Containerd, seg, false);
            }
        } else if i == 1 && segs.len() == 2 && CONTAINERD_NAMESPACES.contains(&segs[0]) {
            // `ctr run` with a user-chosen id under a containerd namespace (cgroupfs).
            set(Runtime::Containerd, seg, false);
        } else if seg.ends_with(".service") || seg.ends_with(".scope") {
            ctx.systemd_unit = Some((*seg).to_string());
        }
    }

    if ctx.container_id.is_none() {
        if kube {
            ctx.runtime = Runtime::Kubernetes;
        } else if ctx
            .systemd_unit
            .as_deref()
            .is_some_and(|u| u.ends_with(".service"))
        {
            ctx.runtime = Runtime::SystemdUnit;
        }
    }
    if kube {
        if ctx.qos.is_none() {
            ctx.qos = Some("guaranteed".into());
        }
        // Inside a pod the unit (if any) is a container scope, never a host service.
        ctx.systemd_unit = None;
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456";

    #[test]
    fn hex_ids() {
        assert!(is_hex64(ID));
        assert_eq!(
            pod_uid_in("kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901"),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901".into())
        );
        assert_eq!(pod_uid_in("kubepods"), None);
    }

    #[test]
    fn line_path() {
        assert_eq!(cgroup_line_path("12:pids:/docker/x"), "/docker/x");
        assert_eq!(cgroup_line_path("0::/"), "/");
        assert_eq!(cgroup_line_path("1:name=systemd:/a:b"), "/a:b");
        assert_eq!(cgroup_line_path("/system.slice"), "/system.slice");
    }

    #[test]
    fn compact() {
        let t =
            "12:pids:/docker/a\n11:memory:/docker/a\n1:name=systemd:/system.slice/docker.service\n";
        assert_eq!(
            compact_cgroup_text(t),
            "12:pids:/docker/a\n1:name=systemd:/system.slice/docker.service"
        );
    }
}
