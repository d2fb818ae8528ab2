//! What the runtime tests share: the runtimes of `scripts/runtimes.sh` (a containerd of the
//! tests' own, podman), a CRI client driving containerd as the kubelet does, and finding
//! a process by a marker in its command line.
//!
//! When a runtime cannot be started, the tests fail under `T1609_REQUIRE_PRIVILEGED=1`
//! and otherwise print `skipping: <reason>` and return.

#![allow(dead_code, reason = "each test file uses its own part of this module")]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard, OnceLock, PoisonError},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// What `scripts/runtimes.sh` printed (`KEY=VALUE` lines).
pub type Facts = HashMap<String, String>;

fn run_script(which: &str) -> Result<Facts, String> {
    // SAFETY of the check: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the runtimes need root".into());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/runtimes.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(which)
        .output()
        .map_err(|e| format!("cannot run `bash {} {which}`: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} {which}` exited with {}: {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn available(state: &'static OnceLock<Result<Facts, String>>, which: &str) -> Option<Facts> {
    match state.get_or_init(|| run_script(which)) {
        Ok(f) => Some(f.clone()),
        Err(reason) => {
            assert!(
                std::env::var("T1609_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "T1609_REQUIRE_PRIVILEGED=1 but {which} is unavailable: {reason}"
            );
            println!("skipping: {which}: {reason}");
            None
        }
    }
}

/// The tests' containerd (socket, namespaces, images), started once per test binary, and
/// a guard that keeps its tests one at a time: on two cores, parallel pods would blur
/// the timing of the short-lived container's test.
pub fn containerd() -> Option<(Facts, MutexGuard<'static, ()>)> {
    static STATE: OnceLock<Result<Facts, String>> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let facts = available(&STATE, "containerd")?;
    Some((facts, SERIAL.lock().unwrap_or_else(PoisonError::into_inner)))
}

/// podman and its image.
pub fn podman() -> Option<Facts> {
    static STATE: OnceLock<Result<Facts, String>> = OnceLock::new();
    available(&STATE, "podman")
}

pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A unique-enough suffix for names of one test run.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{nanos:x}", std::process::id())
}

/// A random-looking UUID (v4 layout) for a pod.
pub fn pod_uid() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let h = format!(
        "{:08x}{:08x}{:016x}",
        std::process::id(),
        t.subsec_nanos(),
        t.as_secs()
    );
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The CRI of the socket, as the kubelet dials it.
pub async fn cri(socket: &str) -> RuntimeServiceClient<Channel> {
    let path = PathBuf::from(socket);
    let ch = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect to the CRI socket");
    RuntimeServiceClient::new(ch)
}

/// The labels the kubelet puts on a container.
pub fn kubelet_labels(
    pod: &PodSandboxMetadata,
    container: Option<&str>,
) -> HashMap<String, String> {
    let mut l = HashMap::from([
        ("io.kubernetes.pod.name".to_owned(), pod.name.clone()),
        (
            "io.kubernetes.pod.namespace".to_owned(),
            pod.namespace.clone(),
        ),
        ("io.kubernetes.pod.uid".to_owned(), pod.uid.clone()),
    ]);
    if let Some(c) = container {
        l.insert("io.kubernetes.container.name".to_owned(), c.to_owned());
    }
    l
}

/// A pod sandbox as the kubelet asks for one: Kubernetes metadata, the kubelet's cgroup
/// parent (cgroupfs driver), host network (no CNI).
pub fn sandbox_config(name: &str, namespace: &str, uid: &str) -> PodSandboxConfig {
    let meta = PodSandboxMetadata {
        name: name.to_owned(),
        uid: uid.to_owned(),
        namespace: namespace.to_owned(),
        attempt: 0,
    };
    PodSandboxConfig {
        labels: kubelet_labels(&meta, None),
        metadata: Some(meta),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod and its containers; removed (containers, then sandbox) when dropped.
pub struct Pod {
    socket: String,
    pub sandbox_id: String,
    pub config: PodSandboxConfig,
    pub containers: Vec<String>,
}

impl Pod {
    pub async fn run(
        cri: &mut RuntimeServiceClient<Channel>,
        socket: &str,
        config: PodSandboxConfig,
    ) -> Pod {
        let sandbox_id = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        Pod {
            socket: socket.to_owned(),
            sandbox_id,
            config,
            containers: Vec::new(),
        }
    }

    /// `CreateContainer` with the kubelet's labels (not started).
    pub async fn create(
        &mut self,
        cri: &mut RuntimeServiceClient<Channel>,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> String {
        let meta = self.config.metadata.clone().unwrap();
        let id = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: self.sandbox_id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: name.to_owned(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: image.to_owned(),
                        ..Default::default()
                    }),
                    command: command.iter().map(|s| (*s).to_owned()).collect(),
                    labels: kubelet_labels(&meta, Some(name)),
                    ..Default::default()
                }),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        self.containers.push(id.clone());
        id
    }

    pub async fn start(cri: &mut RuntimeServiceClient<Channel>, id: &str) {
        cri.start_container(StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .expect("StartContainer");
    }

    pub async fn remove_container(cri: &mut RuntimeServiceClient<Channel>, id: &str) {
        let _ = cri
            .stop_container(StopContainerRequest {
                container_id: id.to_owned(),
                timeout: 0,
            })
            .await;
        cri.remove_container(RemoveContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .expect("RemoveContainer");
    }
}

/// Stops and removes the pod's containers and sandbox, also when the test panicked (on
/// a thread of its own with its own runtime: a drop cannot await).
impl Drop for Pod {
    fn drop(&mut self) {
        let socket = self.socket.clone();
        let sandbox = self.sandbox_id.clone();
        let containers = std::mem::take(&mut self.containers);
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut cri = cri(&socket).await;
                for c in containers {
                    let _ = cri
                        .stop_container(StopContainerRequest {
                            container_id: c.clone(),
                            timeout: 0,
                        })
                        .await;
                    let _ = cri
                        .remove_container(RemoveContainerRequest { container_id: c })
                        .await;
                }
                let _ = cri
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: sandbox.clone(),
                    })
                    .await;
                let _ = cri
                    .remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: sandbox,
                    })
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// The container tools whose own command line carries the command they run inside.
const CLIENTS: &[&str] = &["podman", "ctr", "docker", "conmon", "runc", "crun"];

/// The pid of a live process whose command line contains `marker` (not a client tool
/// that passes it on).
pub fn pid_with(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let exe = cmd.split(' ').next()?.rsplit('/').next()?;
            (cmd.contains(marker) && !CLIENTS.contains(&exe)).then_some(pid)
        })
}

/// Waits up to `timeout` for a process with `marker` in its command line.
pub fn wait_pid(marker: &str, timeout: Duration) -> u32 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(p) = pid_with(marker) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no process with {marker:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The container id the cgroup of `pid` names.
pub fn container_of(pid: u32) -> t1609_context::CgroupContext {
    t1609_context::parse_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap())
}

/// Runs a command; its stdout, or the failure with stderr.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd} {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
