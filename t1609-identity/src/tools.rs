//! The container tools this crate knows: their canonical names, the names their files are
//! installed under, the Go main package paths that build them, and the name check that
//! says whether an exec ran under one of the tool's own names.

use serde::Serialize;

/// What a tool is for, so the agent can choose what to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An administration client (docker, kubectl, ctr, crictl, podman, nerdctl, oc,
    /// nsenter, kubelet API clients): its execs are what T1609 rules judge.
    Client,
    /// A low-level runtime run by hand or by the daemons (runc, crun).
    Runtime,
    /// Daemons and shims (dockerd, containerd, containerd-shim, conmon, kubelet, crio):
    /// known so that a parent can be recognised, not watched for their own execs.
    Plumbing,
}

/// One known tool.
#[derive(Debug)]
pub struct ToolSpec {
    /// Canonical name, as `t1609.argv.tool` spells it where the rule engine knows it.
    pub name: &'static str,
    /// File names the tool is installed and run under (first: the usual one). An exec
    /// under another name is a rename.
    pub names: &'static [&'static str],
    /// Go main package paths that build it, without major-version segments (`/v2`), as
    /// the `path` line of the Go build info gives them.
    pub go_paths: &'static [&'static str],
    pub role: Role,
}

impl ToolSpec {
    /// A small stable number for the kernel's verdict map (0 means "not a tool").
    pub fn id(&self) -> u8 {
        TOOLS
            .iter()
            .position(|t| std::ptr::eq(t, self))
            .and_then(|i| u8::try_from(i + 1).ok())
            .unwrap_or(0)
    }

    /// Whether the kernel should report this tool's execs (clients and runtimes).
    pub fn watched(&self) -> bool {
        matches!(self.role, Role::Client | Role::Runtime)
    }
}

const fn t(
    name: &'static str,
    names: &'static [&'static str],
    go_paths: &'static [&'static str],
    role: Role,
) -> ToolSpec {
    ToolSpec {
        name,
        names,
        go_paths,
        role,
    }
}

/// Every known tool. C tools (nsenter, crun, conmon) have no Go build info: they are
/// known by the build-id and sha256 of the installed copies (see `inventory`) and by the
/// operator's hash list.
pub static TOOLS: &[ToolSpec] = &[
    t(
        "docker",
        &["docker"],
        &["github.com/docker/cli/cmd/docker"],
        Role::Client,
    ),
    t(
        "kubectl",
        &["kubectl"],
        &[
            "k8s.io/kubernetes/cmd/kubectl",
            "k8s.io/kubernetes/cmd/kubectl-sdk",
            "k8s.io/kubectl/cmd/kubectl",
        ],
        Role::Client,
    ),
    t(
        "ctr",
        &["ctr"],
        &["github.com/containerd/containerd/cmd/ctr"],
        Role::Client,
    ),
    t(
        "crictl",
        &["crictl"],
        &[
            "sigs.k8s.io/cri-tools/cmd/crictl",
            "github.com/kubernetes-sigs/cri-tools/cmd/crictl",
        ],
        Role::Client,
    ),
    t(
        "podman",
        &["podman", "podman-remote"],
        &["github.com/containers/podman/cmd/podman"],
        Role::Client,
    ),
    t(
        "nerdctl",
        &["nerdctl"],
        &["github.com/containerd/nerdctl/cmd/nerdctl"],
        Role::Client,
    ),
    t(
        "oc",
        &["oc"],
        &["github.com/openshift/oc/cmd/oc"],
        Role::Client,
    ),
    t(
        "compose",
        &["docker-compose"],
        &["github.com/docker/compose/cmd"],
        Role::Client,
    ),
    t(
        "kubeletctl",
        &["kubeletctl"],
        &["github.com/cyberark/kubeletctl"],
        Role::Client,
    ),
    // The container penetration toolkit (kubelet and runtime API calls, escapes).
    t(
        "cdk",
        &["cdk"],
        &["github.com/cdk-team/CDK/cmd/cdk"],
        Role::Client,
    ),
    t("nsenter", &["nsenter"], &[], Role::Client),
    // A multi-call binary: kubectl, crictl and ctr are among its applets.
    t(
        "k3s",
        &["k3s", "kubectl", "crictl", "ctr", "k3s-server", "k3s-agent"],
        &[
            "github.com/k3s-io/k3s/cmd/server",
            "github.com/rancher/k3s/cmd/server",
        ],
        Role::Client,
    ),
    t(
        "runc",
        &["runc"],
        &["github.com/opencontainers/runc"],
        Role::Runtime,
    ),
    t("crun", &["crun"], &[], Role::Runtime),
    t(
        "containerd-shim",
        &[
            "containerd-shim-runc-v2",
            "containerd-shim",
            "containerd-shim-runc-v1",
        ],
        &[
            "github.com/containerd/containerd/cmd/containerd-shim-runc-v2",
            "github.com/containerd/containerd/cmd/containerd-shim",
            "github.com/containerd/containerd/cmd/containerd-shim-runc-v1",
        ],
        Role::Plumbing,
    ),
    t(
        "containerd",
        &["containerd"],
        &["github.com/containerd/containerd/cmd/containerd"],
        Role::Plumbing,
    ),
    t(
        "dockerd",
        &["dockerd"],
        &[
            "github.com/docker/docker/cmd/dockerd",
            "github.com/moby/moby/cmd/dockerd",
        ],
        Role::Plumbing,
    ),
    t("conmon", &["conmon"], &[], Role::Plumbing),
    t(
        "crio",
        &["crio"],
        &["github.com/cri-o/cri-o/cmd/crio"],
        Role::Plumbing,
    ),
    t(
        "kubelet",
        &["kubelet"],
        &["k8s.io/kubernetes/cmd/kubelet"],
        Role::Plumbing,
    ),
];

/// The tool called `name` (canonical name).
pub fn spec(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The tool whose installed file name is `file_name` (exactly), for the start-up scan.
/// Multi-call applet names (`kubectl` is also k3s's) resolve to the dedicated tool.
pub fn spec_by_file_name(file_name: &[u8]) -> Option<&'static ToolSpec> {
    TOOLS
        .iter()
        .find(|t| t.names.first().is_some_and(|n| n.as_bytes() == file_name))
        .or_else(|| {
            TOOLS
                .iter()
                .find(|t| t.names.iter().any(|n| n.as_bytes() == file_name))
        })
}

/// The tool a Go main package path builds. Major-version segments (`/v2`, `/v5`) are
/// ignored, so one entry covers every major version of a module.
pub fn spec_by_go_path(path: &str) -> Option<&'static ToolSpec> {
    let canon = strip_major_versions(path);
    TOOLS
        .iter()
        .find(|t| t.go_paths.iter().any(|p| *p == canon))
}

fn strip_major_versions(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        let major = i > 0
            && seg.len() > 1
            && seg.starts_with('v')
            && seg[1..].bytes().all(|b| b.is_ascii_digit());
        if major {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(seg);
    }
    out
}

/// How an exec's name compares with the names of the tool its file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameCheck {
    /// Exactly one of the tool's own names.
    Own,
    /// One of its names once case and surrounding white space are ignored (`DOCKER`,
    /// `docker `): meant to slip past name-based filters; a masquerade all the same.
    Variant,
    /// Another name altogether (`.x`, `kworker`, a name with a non-UTF-8 byte).
    Renamed,
}

impl NameCheck {
    /// Whether the exec ran under a name that is not the tool's own (T1036.003).
    pub fn is_masquerade(self) -> bool {
        self != NameCheck::Own
    }
}

/// Compares an exec's real `process.name` (the executed file's basename, raw bytes: a
/// name need not be UTF-8) with the tool's names.
pub fn check_name(tool: &ToolSpec, process_name: &[u8]) -> NameCheck {
    if tool.names.iter().any(|n| n.as_bytes() == process_name) {
        return NameCheck::Own;
    }
    let trimmed = trim(process_name);
    if tool
        .names
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(trimmed))
    {
        NameCheck::Variant
    } else {
        NameCheck::Renamed
    }
}

/// Trims ASCII white space and, where the edges are valid UTF-8, any Unicode white space
/// (a no-break space after a name looks like nothing in `ps`).
fn trim(name: &[u8]) -> &[u8] {
    let mut s = name.trim_ascii();
    loop {
        let before = s.len();
        if let Some(c) = last_char(s).filter(|c| c.is_whitespace()) {
            s = &s[..s.len() - c.len_utf8()];
        }
        if let Some(c) = first_char(s).filter(|c| c.is_whitespace()) {
            s = &s[c.len_utf8()..];
        }
        s = s.trim_ascii();
        if s.len() == before {
            return s;
        }
    }
}

fn first_char(s: &[u8]) -> Option<char> {
    (1..=4.min(s.len()))
        .find_map(|n| std::str::from_utf8(&s[..n]).ok())
        .and_then(|p| p.chars().next())
}

fn last_char(s: &[u8]) -> Option<char> {
    (1..=4.min(s.len()))
        .find_map(|n| std::str::from_utf8(&s[s.len() - n..]).ok())
        .and_then(|p| p.chars().next_back())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for t in TOOLS {
            assert!(seen.insert(t.name), "{}", t.name);
            assert_ne!(t.id(), 0);
            assert_eq!(spec(t.name).map(ToolSpec::id), Some(t.id()));
            assert!(!t.names.is_empty(), "{}", t.name);
        }
    }

    #[test]
    fn go_paths_ignore_major_versions() {
        let ctr = |p| spec_by_go_path(p).map(|t| t.name);
        assert_eq!(
            ctr("github.com/containerd/containerd/v2/cmd/ctr"),
            Some("ctr")
        );
        assert_eq!(
            ctr("github.com/containers/podman/v5/cmd/podman"),
            Some("podman")
        );
        assert_eq!(ctr("github.com/docker/compose/v2/cmd"), Some("compose"));
        assert_eq!(ctr("github.com/docker/cli/cmd/docker"), Some("docker"));
        // The same module, another command: not a tool, or another one.
        assert_eq!(ctr("github.com/docker/cli/cmd/docker-trust"), None);
        assert_eq!(
            ctr("github.com/containerd/containerd/cmd/containerd"),
            Some("containerd")
        );
        assert_eq!(ctr("github.com/hashicorp/terraform"), None);
        assert_eq!(ctr(""), None);
    }

    #[test]
    fn file_names_prefer_the_dedicated_tool() {
        let by = |n: &[u8]| spec_by_file_name(n).map(|t| t.name);
        assert_eq!(by(b"kubectl"), Some("kubectl"));
        assert_eq!(by(b"k3s"), Some("k3s"));
        assert_eq!(by(b"podman-remote"), Some("podman"));
        assert_eq!(by(b"containerd-shim-runc-v2"), Some("containerd-shim"));
        assert_eq!(by(b"bash"), None);
    }

    #[test]
    fn name_check_cases() {
        let docker = spec("docker").unwrap();
        let podman = spec("podman").unwrap();
        for (name, want) in [
            (&b"docker"[..], NameCheck::Own),
            (b"DOCKER", NameCheck::Variant),
            (b"Docker", NameCheck::Variant),
            (b"docker ", NameCheck::Variant),
            (b" docker\t", NameCheck::Variant),
            ("docker\u{a0}".as_bytes(), NameCheck::Variant),
            ("\u{2003}DoCkEr".as_bytes(), NameCheck::Variant),
            (b".docker", NameCheck::Renamed),
            (b".x", NameCheck::Renamed),
            (b"doc\xffker", NameCheck::Renamed),
            (b"docker\xff", NameCheck::Renamed),
            (b"\xff", NameCheck::Renamed),
            (b"", NameCheck::Renamed),
            (b"   ", NameCheck::Renamed),
            (b"dockerd", NameCheck::Renamed),
        ] {
            assert_eq!(
                check_name(docker, name),
                want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(check_name(podman, b"podman-remote"), NameCheck::Own);
        assert_eq!(check_name(podman, b"PODMAN-REMOTE"), NameCheck::Variant);
        assert!(!NameCheck::Own.is_masquerade());
        assert!(NameCheck::Variant.is_masquerade());
    }
}
