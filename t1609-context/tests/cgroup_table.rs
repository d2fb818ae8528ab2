//! `parse_cgroup` over real-world `/proc/<pid>/cgroup` shapes (v1 and v2, every runtime).

use t1609_context::{Runtime, parse_cgroup};

const ID: &str = "3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456";
const UID_DASH: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
const UID_US: &str = "1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901";

struct Case {
    what: &'static str,
    text: String,
    runtime: Runtime,
    id: Option<&'static str>,
    pod: Option<&'static str>,
    unit: Option<&'static str>,
    qos: Option<&'static str>,
    monitor: bool,
}

fn case(what: &'static str, text: String, runtime: Runtime) -> Case {
    Case {
        what,
        text,
        runtime,
        id: None,
        pod: None,
        unit: None,
        qos: None,
        monitor: false,
    }
}

impl Case {
    fn id(mut self, id: &'static str) -> Self {
        self.id = Some(id);
        self
    }
    fn pod(mut self, p: &'static str, qos: &'static str) -> Self {
        self.pod = Some(p);
        self.qos = Some(qos);
        self
    }
    fn unit(mut self, u: &'static str) -> Self {
        self.unit = Some(u);
        self
    }
    fn monitor(mut self) -> Self {
        self.monitor = true;
        self
    }
}

fn v1_docker_full(id: &str) -> String {
    // As seen on this build machine (cgroupfs driver, cgroup v1, several hierarchies).
    format!(
        "12:hugetlb:/docker/{id}\n11:pids:/docker/{id}\n10:memory:/docker/{id}\n9:cpu,cpuacct:/docker/{id}\n\
         8:devices:/docker/{id}\n7:freezer:/docker/{id}\n1:name=systemd:/docker/{id}\n0::/\n"
    )
}

fn cases() -> Vec<Case> {
    vec![
        // --- Docker
        case("docker v1 cgroupfs", v1_docker_full(ID), Runtime::Docker).id(ID),
        case("docker v2 systemd", format!("0::/system.slice/docker-{ID}.scope\n"), Runtime::Docker).id(ID),
        case("docker v1 systemd driver", format!("5:pids:/system.slice/docker-{ID}.scope\n1:name=systemd:/system.slice/docker-{ID}.scope\n"), Runtime::Docker).id(ID),
        case("docker-in-docker (innermost wins)", format!("0::/docker/{}/docker/{ID}\n", "a".repeat(64)), Runtime::Docker).id(ID),
        case("docker v2 with cgroupns (relative path)", format!("0::/../../docker/{ID}\n"), Runtime::Docker).id(ID),
        // --- containerd (no Kubernetes)
        case("containerd ctr default ns, hex id", format!("0::/default/{ID}\n"), Runtime::Containerd).id(ID),
        case("containerd ctr named id", "4:memory:/default/redis\n0::/\n".to_string(), Runtime::Containerd).id("redis"),
        case("nerdctl systemd", format!("0::/nerdctl.slice/nerdctl-{ID}.scope\n"), Runtime::Containerd).id(ID),
        // --- Kubernetes + CRI
        case(
            "CRI containerd, systemd driver, burstable",
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope\n"),
            Runtime::CriContainerd,
        )
        .id(ID)
        .pod(UID_DASH, "burstable"),
        case(
            "CRI containerd, systemd, guaranteed (no QoS slice)",
            format!("0::/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope\n"),
            Runtime::CriContainerd,
        )
        .id(ID)
        .pod(UID_DASH, "guaranteed"),
        case(
            "kind node (kubelet.slice prefix), besteffort",
            format!("0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope\n"),
            Runtime::CriContainerd,
        )
        .id(ID)
        .pod(UID_DASH, "besteffort"),
        case("kubepods cgroupfs v1, burstable (runtime unknown)", format!("11:pids:/kubepods/burstable/pod{UID_DASH}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID_DASH}/{ID}\n"), Runtime::Kubernetes)
            .id(ID)
            .pod(UID_DASH, "burstable"),
        case("kubepods cgroupfs v2, besteffort", format!("0::/kubepods/besteffort/pod{UID_DASH}/{ID}\n"), Runtime::Kubernetes).id(ID).pod(UID_DASH, "besteffort"),
        case("kubepods cgroupfs, guaranteed", format!("0::/kubepods/pod{UID_DASH}/{ID}\n"), Runtime::Kubernetes).id(ID).pod(UID_DASH, "guaranteed"),
        case(
            "static pod (32-hex config hash uid)",
            format!("0::/kubepods/burstable/pod6b2e1c0a4cbd8f1b0f7a5e8b7f0c4f25/{ID}\n"),
            Runtime::Kubernetes,
        )
        .id(ID)
        .pod("6b2e1c0a4cbd8f1b0f7a5e8b7f0c4f25", "burstable"),
        case("pod-level cgroup, no container yet", format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice\n"), Runtime::Kubernetes)
            .pod(UID_DASH, "burstable"),
        case("dockershim in kubepods (systemd)", format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/docker-{ID}.scope\n"), Runtime::Docker)
            .id(ID)
            .pod(UID_DASH, "besteffort"),
        case(
            "containerd systemd-driver colon syntax on v1",
            format!("4:memory:/system.slice/containerd.service/kubepods-burstable-pod{UID_US}.slice:cri-containerd:{ID}\n"),
            Runtime::CriContainerd,
        )
        .id(ID)
        .pod(UID_DASH, "burstable"),
        // --- cri-o
        case("cri-o systemd v2", format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{ID}.scope\n"), Runtime::CriO)
            .id(ID)
            .pod(UID_DASH, "burstable"),
        case("cri-o conmon", format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-conmon-{ID}.scope\n"), Runtime::CriO)
            .id(ID)
            .pod(UID_DASH, "burstable")
            .monitor(),
        case("cri-o cgroupfs v1", format!("3:memory:/kubepods/besteffort/pod{UID_DASH}/crio-{ID}\n"), Runtime::CriO).id(ID).pod(UID_DASH, "besteffort"),
        // --- podman
        case("podman rootful systemd", format!("0::/machine.slice/libpod-{ID}.scope\n"), Runtime::Podman).id(ID),
        case("podman with container sub-cgroup", format!("0::/machine.slice/libpod-{ID}.scope/container\n"), Runtime::Podman).id(ID),
        case("podman conmon", format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"), Runtime::Podman).id(ID).monitor(),
        case(
            "podman rootless",
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n"),
            Runtime::Podman,
        )
        .id(ID)
        .unit("user@1000.service"),
        case("podman cgroupfs manager v1", format!("7:pids:/libpod_parent/libpod-{ID}\n"), Runtime::Podman).id(ID),
        // --- LXC / LXD
        case("lxc v1", "4:memory:/lxc/web01\n1:name=systemd:/lxc/web01\n".to_string(), Runtime::Lxc).id("web01"),
        case("lxc 4 / lxd payload", "0::/lxc.payload.web01/system.slice/sshd.service\n".to_string(), Runtime::Lxc).id("web01").unit("sshd.service"),
        case("lxc monitor", "0::/lxc.monitor.web01\n".to_string(), Runtime::Lxc).id("web01").monitor(),
        // --- systemd units
        case("system service v2", "0::/system.slice/gitlab-runner.service\n".to_string(), Runtime::SystemdUnit).unit("gitlab-runner.service"),
        case(
            "system service v1 (only name=systemd says it)",
            "12:pids:/system.slice/datadog-agent.service\n4:memory:/\n1:name=systemd:/system.slice/datadog-agent.service\n0::/\n".to_string(),
            Runtime::SystemdUnit,
        )
        .unit("datadog-agent.service"),
        case("service sub-cgroup", "0::/system.slice/containerd.service/sub\n".to_string(), Runtime::SystemdUnit).unit("containerd.service"),
        case("user unit", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/jenkins-agent.service\n".to_string(), Runtime::SystemdUnit)
            .unit("jenkins-agent.service"),
        // --- negatives
        case("user login session", "0::/user.slice/user-1000.slice/session-3.scope\n".to_string(), Runtime::Host).unit("session-3.scope"),
        case("init.scope", "0::/init.scope\n".to_string(), Runtime::Host).unit("init.scope"),
        case("root cgroup v2", "0::/\n".to_string(), Runtime::Host),
        case("root cgroup v1, all hierarchies", "12:pids:/\n4:memory:/\n1:name=systemd:/\n0::/\n".to_string(), Runtime::Host),
        case("this sandbox's shape (32-hex under an unknown parent)", "4:memory:/process_api/4e7809212c811b2942d6ae388478fa2b\n0::/\n".to_string(), Runtime::Host),
        case("short hex under docker is not an id", "0::/docker/abc\n".to_string(), Runtime::Host),
        case("empty text", String::new(), Runtime::Host),
    ]
}

#[test]
fn cgroup_table() {
    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for c in &cases {
        let got = parse_cgroup(&c.text);
        let ok = got.runtime == c.runtime
            && got.container_id.as_deref() == c.id
            && got.pod_uid.as_deref() == c.pod
            && got.systemd_unit.as_deref() == c.unit
            && got.qos.as_deref() == c.qos
            && got.monitor == c.monitor;
        if !ok {
            failures.push(format!("{}: got {got:?}", c.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} cgroup cases passed", cases.len());
}

#[test]
fn container_runtimes_are_containers() {
    assert!(Runtime::Docker.is_container());
    assert!(Runtime::Kubernetes.is_container());
    assert!(!Runtime::SystemdUnit.is_container());
    assert!(!Runtime::Host.is_container());
    assert_eq!(Runtime::CriO.as_str(), "cri-o");
}

#[test]
fn this_process_cgroup_parses() {
    // Real /proc/self/cgroup: whatever it says, parsing must not panic and must be stable.
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let a = parse_cgroup(&text);
    let b = parse_cgroup(&t1609_context::compact_cgroup_text(&text));
    assert_eq!(a, b);
}
