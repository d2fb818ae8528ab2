//! Namespaces and `DockerClient` against the real kernel and the real dockerd of the build
//! machine (`scripts/services.sh docker` starts it and imports t1609-test/busybox:1; never pull).
//!
//! If dockerd cannot be started, the docker tests fail when `T1609_REQUIRE_PRIVILEGED=1` and
//! otherwise print `skipping: <reason>` and return.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use t1609_context::{
    DockerClient, ProcessTable, Runtime, RuntimeError, host_namespaces, in_container, parse_cgroup,
    process_namespaces,
};

const IMAGE: &str = "t1609-test/busybox:1";

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn start_docker() -> Result<(), String> {
    if docker(&["info"]).is_err() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg("docker")
            .status()
            .map_err(|e| format!("cannot run `bash {} docker`: {e}", script.display()))?;
        if !st.success() {
            return Err(format!("{} docker exited with {st}", script.display()));
        }
    }
    docker(&["info"]).map_err(|e| format!("dockerd not reachable: {e}"))?;
    docker(&["image", "inspect", IMAGE]).map_err(|e| format!("image {IMAGE} missing: {e}"))?;
    Ok(())
}

/// `true` when docker is usable; otherwise skip (or fail under `T1609_REQUIRE_PRIVILEGED=1`).
fn docker_available() -> bool {
    static STATE: OnceLock<Result<(), String>> = OnceLock::new();
    match STATE.get_or_init(start_docker) {
        Ok(()) => true,
        Err(reason) => {
            assert!(
                std::env::var("T1609_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "T1609_REQUIRE_PRIVILEGED=1 but docker is unavailable: {reason}"
            );
            println!("skipping: {reason}");
            false
        }
    }
}

/// A running busybox container, removed on drop.
struct Container {
    name: String,
    id: String,
}

impl Container {
    fn run(tag: &str, secs: u32) -> Container {
        let name = format!(
            "t1609-ctx-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() % 100_000
        );
        let secs = secs.to_string();
        let id = docker(&["run", "-d", "--rm", "--name", &name, IMAGE, "sleep", &secs])
            .expect("docker run");
        Container { name, id }
    }

    fn pid(&self) -> u32 {
        docker(&["inspect", "-f", "{{.State.Pid}}", &self.name])
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn host_and_this_process_share_namespaces() {
    let proc = Path::new("/proc");
    let host = host_namespaces(proc).expect("host namespaces (pid 1 or kthreadd)");
    let me = process_namespaces(proc, std::process::id()).unwrap();
    assert!(host.pid != 0 && host.mnt != 0 && host.net != 0);
    assert_eq!(host.pid, me.pid);
    assert_eq!(host.mnt, me.mnt);
    assert!(!in_container(&host, me.pid, me.mnt));
    assert!(process_namespaces(proc, u32::MAX - 1).is_err());
}

#[test]
fn real_container_process_is_in_container() {
    if !docker_available() {
        return;
    }
    let c = Container::run("ns", 30);
    let pid = c.pid();
    assert!(pid > 0);
    let proc = Path::new("/proc");
    let host = host_namespaces(proc).unwrap();
    let ns = process_namespaces(proc, pid).unwrap();
    assert_ne!(ns.pid, host.pid);
    assert_ne!(ns.mnt, host.mnt);
    assert!(in_container(&host, ns.pid, ns.mnt));

    // Its cgroup names the container (this machine: cgroup v1, cgroupfs → /docker/<id>).
    let cg = parse_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
    assert_eq!(cg.container_id.as_deref(), Some(c.id.as_str()), "{cg:?}");
    assert_eq!(cg.runtime, Runtime::Docker);

    // The process table's compact copy parses the same; ancestry reaches containerd-shim.
    let mut t = ProcessTable::new(proc, 1000, Duration::from_secs(10));
    let info = t.refresh_from_proc(pid).unwrap().clone();
    assert_eq!(info.name, "sleep");
    assert_eq!(
        parse_cgroup(info.cgroup.as_deref().unwrap())
            .container_id
            .as_deref(),
        Some(c.id.as_str())
    );
    let anc = t.refresh_ancestry(pid, 8);
    assert!(
        anc.iter().any(|a| a.name.starts_with("containerd-shim")),
        "{anc:?}"
    );
}

#[test]
fn docker_client_resolves_real_containers() {
    if !docker_available() {
        return;
    }
    let c = Container::run("resolve", 60);
    let inspect_id = docker(&["inspect", "-f", "{{.Id}}", &c.name]).unwrap();
    assert_eq!(inspect_id, c.id);
    let client = DockerClient::new(
        PathBuf::from("/var/run/docker.sock"),
        Duration::from_secs(5),
    );
    let rt = rt();

    let m = rt.block_on(client.resolve(&c.name)).unwrap();
    assert_eq!(m.id, inspect_id);
    assert_eq!(m.id.len(), 64);
    assert!(m.id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(m.name.as_deref(), Some(c.name.as_str()));
    assert_eq!(m.image.as_deref(), Some(IMAGE));
    assert_eq!(m.pod_name, None); // not a Kubernetes container

    // A short id (as `docker exec 3f1c9e2b7a4d` would pass) resolves to the same full id.
    let by_short = rt.block_on(client.resolve(&inspect_id[..12])).unwrap();
    assert_eq!(by_short.id, inspect_id);
    assert!(rt.block_on(client.ping()).unwrap());

    // Unknown name → NotFound.
    let unknown = format!("t1609-ctx-no-such-{}", std::process::id());
    match rt.block_on(client.resolve(&unknown)) {
        Err(RuntimeError::NotFound(n)) => assert_eq!(n, unknown),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn unreachable_socket_fails_fast_with_clear_error() {
    let rt = rt();
    // 1) No socket at all.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("docker.sock");
    let client = DockerClient::new(missing.clone(), Duration::from_secs(2));
    let t0 = Instant::now();
    let err = rt.block_on(client.resolve("c1")).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, RuntimeError::Unreachable { .. }), "{err:?}");
    assert!(err.is_unavailable());
    let msg = err.to_string();
    assert!(
        msg.contains("unreachable") && msg.contains(&missing.display().to_string()),
        "{msg}"
    );

    // 2) A socket that accepts and never answers: bounded by the timeout, no hang.
    let stuck = dir.path().join("stuck.sock");
    let listener = std::os::unix::net::UnixListener::bind(&stuck).unwrap();
    let client = DockerClient::new(stuck, Duration::from_millis(300));
    let t0 = Instant::now();
    let err = rt.block_on(client.resolve("c1")).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(err.to_string().contains("did not answer"));
    drop(listener);
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Finds the process whose cmdline contains `needle` among the descendants of the
/// containerd-shim that parents `init_pid` (the injected process is its sibling).
fn find_injected(init_pid: u32, needle: &str) -> Option<u32> {
    let shim = std::fs::read_to_string(format!("/proc/{init_pid}/stat"))
        .ok()
        .and_then(|s| t1609_context::process::parse_stat(&s))
        .map(|s| s.ppid)?;
    children_of(shim).into_iter().find(|&p| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
        })
    })
}

#[test]
fn docker_exec_injected_process_is_outside_the_init_tree() {
    if !docker_available() {
        return;
    }
    let c = Container::run("inject", 60);
    let init = c.pid();
    // The host-side client: `docker exec -d c sh -c 'sleep 30; true'`.
    docker(&["exec", "-d", &c.name, "/bin/sh", "-c", "sleep 30; true"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (sh, sleep) = loop {
        if let Some(sh) = find_injected(init, "sleep 30; true")
            && let Some(&sleep) = children_of(sh).first()
        {
            break (sh, sleep);
        }
        assert!(Instant::now() < deadline, "injected process not found");
        std::thread::sleep(Duration::from_millis(50));
    };

    let proc = Path::new("/proc");
    let mut t = ProcessTable::new(proc, 10_000, Duration::from_secs(10));
    for pid in [sleep, sh, init] {
        t.refresh_from_proc(pid).unwrap();
    }
    t.refresh_ancestry(sleep, 8);
    let sh_info = t.get(sh).unwrap().clone();
    // Injected: its parent is runtime plumbing, not the container's init tree; same
    // container.
    assert!(t.get(sh_info.ppid).is_some());
    assert!(!t.is_descendant_of(sh, init));
    assert!(t.is_descendant_of(sleep, sh));
    assert_eq!(sh_info.command_line(), "/bin/sh -c sleep 30; true");
    let cid = parse_cgroup(sh_info.cgroup.as_deref().unwrap())
        .container_id
        .unwrap();
    assert_eq!(cid, c.id);
    let host = host_namespaces(proc).unwrap();
    let ns = process_namespaces(proc, sh).unwrap();
    assert!(in_container(&host, ns.pid, ns.mnt));
    // The name on the client's command line resolves to that container.
    let client = DockerClient::new(
        PathBuf::from("/var/run/docker.sock"),
        Duration::from_secs(5),
    );
    let target = rt().block_on(client.resolve(&c.name)).unwrap();
    assert_eq!(target.id, cid);
    // The container's own init (also parented by the shim) is told apart by its NSpid.
    assert_eq!(t1609_context::process::read_ns_pid(proc, init), Some(1));
    assert_ne!(t1609_context::process::read_ns_pid(proc, sh), Some(1));
}
