//! `Runtimes` with podman (Debian's 4.3, read from its storage on disk), with Docker,
//! and with runtimes that are gone or hung: reads never wait, misses say why, counters
//! count.
//!
//! podman's tests fail under `T1609_REQUIRE_PRIVILEGED=1` when podman cannot run a
//! container and otherwise print `skipping: <reason>`.

mod common;

use std::{
    os::unix::net::UnixListener,
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{sh, unique};
use t1609_context::{Meta, PendingReason, RuntimeKind, Runtimes, RuntimesConfig};

const WAIT: Duration = Duration::from_secs(10);
/// podman's default rlimits (nofile and nproc 1048576) need `CAP_SYS_RESOURCE` to raise;
/// these stay within any bounding set.
const PODMAN_LIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// `podman run -d` with crun as the issue asks; where crun cannot run here, runc, and
/// the reason printed. Returns (container id, OCI runtime used).
fn podman_run(name: &str, image: &str) -> Result<(String, &'static str), String> {
    let mut last = String::new();
    for runtime in ["crun", "runc"] {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            runtime,
            "--network",
            "host",
        ];
        args.extend_from_slice(PODMAN_LIMITS);
        args.extend_from_slice(&[image, "sleep", "300"]);
        match sh("podman", &args) {
            Ok(id) => {
                if runtime != "crun" {
                    println!("podman with crun failed here ({last}); ran it with runc instead");
                }
                return Ok((id, runtime));
            }
            Err(e) => {
                let _ = sh("podman", &["rm", "-f", "-t", "0", name]);
                last = e;
            }
        }
    }
    Err(last)
}

#[test]
fn podman_exec_target_and_its_processes_are_named() {
    let Some(f) = common::podman() else { return };
    let image = f["PODMAN_IMAGE"].clone();
    let storage = PathBuf::from(&f["PODMAN_STORAGE"]);
    let name = unique("t1609-pm");
    let (id, oci) = match podman_run(&name, &image) {
        Ok(x) => x,
        Err(e) => {
            assert!(
                std::env::var("T1609_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "T1609_REQUIRE_PRIVILEGED=1 but podman cannot run a container: {e}"
            );
            println!("skipping: podman cannot run a container: {e}");
            return;
        }
    };
    let rt = common::tokio_rt();
    let cfg = RuntimesConfig {
        auto_detect: false,
        podman_storage: vec![storage],
        poll_ms: 100,
        ..Default::default()
    };
    let runtimes = Runtimes::start(&cfg, rt.handle());
    let marker = unique("t1609-podman-exec");
    let exec = std::thread::spawn({
        let name = name.clone();
        let marker = marker.clone();
        move || {
            sh(
                "podman",
                &[
                    "exec",
                    &name,
                    "sh",
                    "-c",
                    &format!("sleep 1; echo {marker}"),
                ],
            )
        }
    });
    let pid = common::wait_pid(&format!("echo {marker}"), WAIT);
    let cg = common::container_of(pid);
    let result = rt.block_on(async {
        // `podman exec <name>` → the container, by name and by id prefix.
        let by_name = runtimes
            .wait_for(WAIT, |r| r.target("podman", None, &name))
            .await;
        let by_prefix = runtimes.target("podman", None, &id[..12]);
        let inside = cg.container_id.as_deref().map(|c| runtimes.container(c));
        (by_name, by_prefix, inside)
    });
    let out = exec.join().unwrap();
    let _ = sh("podman", &["rm", "-f", "-t", "0", &name]);
    assert_eq!(out.as_deref(), Ok(marker.as_str()), "podman exec ({oci})");
    let (by_name, by_prefix, inside) = result;
    let info = by_name.known().unwrap_or_else(|| panic!("{by_name:?}"));
    assert_eq!(&*info.id, id.as_str());
    assert_eq!(info.runtime, RuntimeKind::Podman);
    assert_eq!(info.name.as_deref(), Some(name.as_str()));
    assert_eq!(info.image.as_deref(), Some(image.as_str()));
    assert!(
        info.image_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{info:?}"
    );
    assert_eq!(
        by_prefix.known().map(|i| i.id.clone()),
        Some(info.id.clone())
    );
    // A process podman exec'd: its cgroup (libpod-<id>) names the same container.
    assert_eq!(cg.container_id.as_deref(), Some(id.as_str()), "{cg:?}");
    assert_eq!(
        inside.and_then(|m| m.known().map(|i| i.id.clone())),
        Some(info.id.clone())
    );
    // Near misses: docker does not know podman's names; an unknown name is not found.
    assert!(runtimes.target("docker", None, &name).known().is_none());
    let unknown = rt.block_on(runtimes.wait_for(Duration::from_millis(500), |r| {
        r.target("podman", None, "t1609-no-such-container")
    }));
    assert_eq!(unknown, Meta::Pending(PendingReason::NotFound));
}

#[test]
fn docker_containers_are_named_through_the_same_cache() {
    if sh("docker", &["info"]).is_err() {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("docker")
            .status();
    }
    if let Err(e) = sh("docker", &["image", "inspect", "t1609-test/busybox:1"]) {
        assert!(
            std::env::var("T1609_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "T1609_REQUIRE_PRIVILEGED=1 but docker is unavailable: {e}"
        );
        println!("skipping: docker: {e}");
        return;
    }
    let name = unique("t1609-dk");
    let id = sh(
        "docker",
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            &name,
            "t1609-test/busybox:1",
            "sleep",
            "60",
        ],
    )
    .unwrap();
    let rt = common::tokio_rt();
    let cfg = RuntimesConfig {
        auto_detect: false,
        docker: vec![PathBuf::from("/var/run/docker.sock")],
        ..Default::default()
    };
    let runtimes = Runtimes::start(&cfg, rt.handle());
    let m = rt.block_on(runtimes.wait_for(WAIT, |r| r.target("docker", None, &name)));
    let _ = sh("docker", &["rm", "-f", &name]);
    let info = m.known().unwrap_or_else(|| panic!("{m:?}"));
    assert_eq!(
        (&*info.id, info.runtime),
        (id.as_str(), RuntimeKind::Docker)
    );
    assert_eq!(info.image.as_deref(), Some("t1609-test/busybox:1"));
    assert!(runtimes.target("podman", None, &name).known().is_none());
}

/// Reads while a runtime is gone or hung: each answers within a millisecond, pending with
/// the runtime's error, and the errors are counted. No runtime is needed for this.
#[test]
fn runtime_gone_or_hung_reads_fail_fast_with_a_reason_and_a_counter() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.sock");
    let hung = dir.path().join("hung.sock");
    // Accepts connections (the kernel queues them) and never answers.
    let _listener = UnixListener::bind(&hung).unwrap();
    let rt = common::tokio_rt();
    for (socket, expect) in [(gone, "cannot connect"), (hung, "did not answer within")] {
        let cfg = RuntimesConfig {
            auto_detect: false,
            containerd: vec![socket.clone()],
            timeout_ms: 200,
            ..Default::default()
        };
        let runtimes = Runtimes::start(&cfg, rt.handle());
        let deadline = Instant::now() + WAIT;
        let mut slowest = Duration::ZERO;
        let reason = loop {
            let t0 = Instant::now();
            let m = runtimes
                .container("3f1c9e2b7a4d5c6e8f9012ab34cd56ef7890abcdef1234567890abcdef123456");
            slowest = slowest.max(t0.elapsed());
            match m {
                Meta::Pending(PendingReason::RuntimeDown(r)) => break r,
                Meta::Pending(PendingReason::LookupQueued) => {}
                other => panic!("{}: {other:?}", socket.display()),
            }
            assert!(
                Instant::now() < deadline,
                "{}: no reason after {WAIT:?}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            slowest < Duration::from_millis(5),
            "a read took {slowest:?}"
        );
        assert!(
            reason.contains(&*socket.to_string_lossy()) && reason.contains(expect),
            "{reason}"
        );
        // Targets too: nothing waits, the reason is the same.
        assert!(matches!(
            runtimes.target("ctr", None, "web"),
            Meta::Pending(PendingReason::RuntimeDown(_))
        ));
        let s = runtimes.stats();
        assert!(s.runtime_errors >= 1 && s.endpoints_up == 0, "{s:?}");
        if expect.contains("answer") {
            assert!(s.timeouts >= 1, "{s:?}");
        }
        let ep = &runtimes.endpoints()[0];
        assert!(
            !ep.up && ep.last_error.as_deref().is_some_and(|e| e.contains(expect)),
            "{ep:?}"
        );
    }
}
