//! `Runtimes` against a real containerd 1.6 (Debian's, with its CRI plugin), a containerd
//! of the tests' own started by `scripts/runtimes.sh` (own socket, root and state; dockerd's
//! is left alone). The CRI is driven as the kubelet drives it (crictl is not in Debian):
//! `RunPodSandbox` with Kubernetes metadata, `CreateContainer`, `StartContainer`, `ExecSync`
//! and `Exec`; and `ctr` in the CRI's namespace and in one of its own.
//!
//! Without the runtime these tests fail under `T1609_REQUIRE_PRIVILEGED=1` and otherwise
//! print `skipping: <reason>`.

#![expect(
    clippy::large_futures,
    reason = "the CRI calls' futures (tonic) are large; a test awaits them once each"
)]

mod common;

use std::{
    io::{Read, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{Pod, cri, sandbox_config, sh, unique};
use k8s_cri::v1::{ExecRequest, ExecSyncRequest};
use t1609_context::{
    Meta, RuntimeKind, Runtimes, RuntimesConfig,
    runtimes::{CRI_NAMESPACE, EndpointStatus},
};

const WAIT: Duration = Duration::from_secs(10);

fn watching(socket: &str, cri_only: bool) -> RuntimesConfig {
    let path = vec![PathBuf::from(socket)];
    RuntimesConfig {
        auto_detect: false,
        containerd: if cri_only { Vec::new() } else { path.clone() },
        cri: if cri_only { path } else { Vec::new() },
        timeout_ms: 2_000,
        poll_ms: 200,
        ..Default::default()
    }
}

/// Waits until every endpoint is up; returns their status.
async fn up(r: &Runtimes) -> Vec<EndpointStatus> {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = r.endpoints();
        if e.iter().all(|e| e.up) {
            return e;
        }
        assert!(Instant::now() < deadline, "runtime not up: {e:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CRI Exec: the kubelet gets a URL from the runtime and streams the session through it
/// (here over WebSocket, channel protocol v4); returns what the session wrote.
fn stream_exec(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("http://").expect("an http streaming URL");
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).expect("connect to the streaming server");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dDE2MDktZXhlYy10ZXN0IQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
#[expect(clippy::too_many_lines, reason = "one kubelet scenario, step by step")]
fn kubelet_path_names_namespace_pod_container_and_image() {
    let Some((facts, _serial)) = common::containerd() else {
        return;
    };
    let socket = facts["CONTAINERD_SOCKET"].clone();
    let image = facts["BUSYBOX_IMAGE"].clone();
    let rt = common::tokio_rt();
    let runtimes = Runtimes::start(&watching(&socket, false), rt.handle());
    rt.block_on(async {
        let ep = up(&runtimes).await;
        assert_eq!(ep[0].mode, "events");
        let mut client = cri(&socket).await;
        let uid = common::pod_uid();
        let pod_name = unique("web");
        let mut pod = Pod::run(
            &mut client,
            &socket,
            sandbox_config(&pod_name, "t1609-prod", &uid),
        )
        .await;
        let id = pod
            .create(&mut client, "app", &image, &["sleep", "300"])
            .await;
        Pod::start(&mut client, &id).await;

        // ExecSync: the kubelet's probes and `kubectl exec` without a stream.
        let reply = client
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["sh".into(), "-c".into(), "echo synced-$((6*7))".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        assert_eq!(
            (
                reply.exit_code,
                String::from_utf8_lossy(&reply.stdout).trim()
            ),
            (0, "synced-42")
        );

        // Exec: `kubectl exec` proper, through the streaming server. The process it starts
        // is found by its marker, and its cgroup names the container.
        let marker = unique("t1609-exec");
        let url = client
            .exec(ExecRequest {
                container_id: id.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("sleep 1; echo {marker}-done"),
                ],
                stdout: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let session = std::thread::spawn(move || stream_exec(&url));
        let pid = common::wait_pid(&marker, WAIT);
        let cg = common::container_of(pid);
        assert_eq!(cg.container_id.as_deref(), Some(id.as_str()), "{cg:?}");
        assert_eq!(cg.pod_uid.as_deref(), Some(uid.as_str()));
        let out = session.join().unwrap();
        assert!(
            contains(&out, &format!("{marker}-done")),
            "{}",
            String::from_utf8_lossy(&out)
        );

        // The hot path's read: every field of the alert.
        let Meta::Known(info) = runtimes.container(&id) else {
            panic!("not named: {:?}", runtimes.container(&id));
        };
        let p = info.pod.as_ref().expect("pod");
        assert_eq!(
            (&*p.namespace, &*p.name, &*p.uid),
            ("t1609-prod", pod_name.as_str(), uid.as_str())
        );
        assert_eq!(p.container_name.as_deref(), Some("app"));
        assert_eq!(info.name.as_deref(), Some("app"));
        assert_eq!(info.runtime, RuntimeKind::Containerd);
        assert_eq!(info.namespace.as_deref(), Some(CRI_NAMESPACE));
        assert_eq!(info.image.as_deref(), Some(image.as_str()));
        let digest = info.image_digest.as_deref().expect("digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        assert!(!info.sandbox);
        // The sandbox is known as the pod's, not as a workload.
        let sb = runtimes.container(&pod.sandbox_id);
        assert!(sb.known().is_some_and(|s| s.sandbox), "{sb:?}");
        // `crictl exec <id prefix>` and `kubectl exec -n ns pod [-c app]` find it too.
        assert_eq!(
            runtimes
                .target("crictl", None, &id[..13])
                .known()
                .map(|i| i.id.clone()),
            Some(info.id.clone())
        );
        assert_eq!(
            runtimes
                .pod("t1609-prod", &pod_name, Some("app"))
                .known()
                .map(|i| i.id.clone()),
            Some(info.id.clone())
        );
        assert_eq!(
            runtimes
                .pod("t1609-prod", &pod_name, None)
                .known()
                .map(|i| i.id.clone()),
            Some(info.id.clone())
        );
        // Near misses: another namespace, another container name.
        assert!(runtimes.pod("default", &pod_name, None).known().is_none());
        assert!(
            runtimes
                .pod("t1609-prod", &pod_name, Some("sidecar"))
                .known()
                .is_none()
        );
        let s = runtimes.stats();
        assert!(s.hits >= 4 && s.events > 0, "{s:?}");
        drop(pod);
    });
}

#[test]
#[expect(clippy::too_many_lines, reason = "one ctr scenario, step by step")]
fn ctr_task_exec_in_k8s_io_and_in_its_own_namespace_resolve() {
    let Some((facts, _serial)) = common::containerd() else {
        return;
    };
    let socket = facts["CONTAINERD_SOCKET"].clone();
    let image = facts["BUSYBOX_IMAGE"].clone();
    let own = facts["CONTAINERD_OWN_NAMESPACE"].clone();
    let rt = common::tokio_rt();
    let runtimes = Runtimes::start(&watching(&socket, false), rt.handle());
    rt.block_on(async {
        up(&runtimes).await;
        let mut client = cri(&socket).await;
        let pod_name = unique("ctr-pod");
        let mut pod = Pod::run(
            &mut client,
            &socket,
            sandbox_config(&pod_name, "t1609-ops", &common::pod_uid()),
        )
        .await;
        let id = pod
            .create(&mut client, "shell", &image, &["sleep", "300"])
            .await;
        Pod::start(&mut client, &id).await;

        // `ctr -n k8s.io task exec` into the kubelet's container.
        let exec_id = unique("e");
        let out = sh(
            "ctr",
            &[
                "-a",
                &socket,
                "-n",
                "k8s.io",
                "task",
                "exec",
                "--exec-id",
                &exec_id,
                &id,
                "sh",
                "-c",
                "echo in-k8s",
            ],
        )
        .unwrap();
        assert_eq!(out, "in-k8s");
        let m = runtimes
            .wait_for(WAIT, |r| r.target("ctr", Some("k8s.io"), &id))
            .await;
        let info = m.known().unwrap_or_else(|| panic!("{m:?}"));
        assert_eq!(info.pod.as_ref().map(|p| &*p.name), Some(pod_name.as_str()));
        assert_eq!(info.name.as_deref(), Some("shell"));
        // ctr's default namespace is "default": the same id there is a near miss.
        assert!(runtimes.target("ctr", None, &id).known().is_none());

        // `ctr run` in a namespace of its own: the id is the name the user chose.
        let name = unique("ctr-web");
        sh(
            "ctr",
            &[
                "-a",
                &socket,
                "-n",
                &own,
                "run",
                "-d",
                "--null-io",
                "--label",
                &format!("nerdctl/name={name}-n"),
                &image,
                &name,
                "sleep",
                "300",
            ],
        )
        .unwrap();
        let out = sh(
            "ctr",
            &[
                "-a",
                &socket,
                "-n",
                &own,
                "task",
                "exec",
                "--exec-id",
                "e1",
                &name,
                "sh",
                "-c",
                "echo in-own",
            ],
        );
        let m = runtimes
            .wait_for(WAIT, |r| r.target("ctr", Some(&own), &name))
            .await;
        let cleanup = || {
            let _ = sh(
                "ctr",
                &[
                    "-a", &socket, "-n", &own, "task", "kill", "-s", "KILL", &name,
                ],
            );
            std::thread::sleep(Duration::from_millis(200));
            let _ = sh(
                "ctr",
                &["-a", &socket, "-n", &own, "task", "rm", "-f", &name],
            );
            let _ = sh(
                "ctr",
                &["-a", &socket, "-n", &own, "container", "rm", &name],
            );
        };
        assert_eq!(out.as_deref(), Ok("in-own"));
        let info = m.known().unwrap_or_else(|| panic!("{m:?}")).clone();
        assert_eq!(
            (info.runtime, info.namespace.as_deref()),
            (RuntimeKind::Containerd, Some(own.as_str()))
        );
        assert_eq!(info.image.as_deref(), Some(image.as_str()));
        assert!(
            info.image_digest
                .as_deref()
                .is_some_and(|d| d.starts_with("sha256:"))
        );
        assert!(info.pod.is_none());
        // nerdctl is not in Debian; its containers are containerd records labelled
        // nerdctl/name, as this one is: `nerdctl -n <ns> exec <name>` resolves by it.
        assert_eq!(
            runtimes
                .target("nerdctl", Some(&own), &format!("{name}-n"))
                .known()
                .map(|i| i.id.clone()),
            Some(info.id.clone())
        );
        assert!(
            runtimes
                .target("nerdctl", None, &format!("{name}-n"))
                .known()
                .is_none()
        );
        cleanup();
        drop(pod);
    });
}

#[test]
fn a_container_gone_within_a_second_is_still_named_from_the_event_stream() {
    let Some((facts, _serial)) = common::containerd() else {
        return;
    };
    let socket = facts["CONTAINERD_SOCKET"].clone();
    let image = facts["BUSYBOX_IMAGE"].clone();
    let rt = common::tokio_rt();
    let runtimes = Runtimes::start(&watching(&socket, false), rt.handle());
    rt.block_on(async {
        up(&runtimes).await;
        let mut client = cri(&socket).await;
        let pod_name = unique("blink");
        let mut pod = Pod::run(
            &mut client,
            &socket,
            sandbox_config(&pod_name, "t1609-jobs", &common::pod_uid()),
        )
        .await;
        // Create, start, exec into and remove a container within a second. On two busy
        // cores one round can take longer; up to three rounds, each printed.
        let mut round = 0;
        let (id, lived) = loop {
            round += 1;
            let t0 = Instant::now();
            let id = pod
                .create(&mut client, "flash", &image, &["sleep", "30"])
                .await;
            Pod::start(&mut client, &id).await;
            let reply = client
                .exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["id".into()],
                    timeout: 5,
                })
                .await
                .expect("ExecSync")
                .into_inner();
            assert_eq!(reply.exit_code, 0);
            Pod::remove_container(&mut client, &id).await;
            let lived = t0.elapsed();
            println!("round {round}: the container lived {lived:?}");
            if lived < Duration::from_secs(1) || round == 3 {
                break (id, lived);
            }
        };
        assert!(
            lived < Duration::from_secs(1),
            "the container lived {lived:?} in each of 3 rounds"
        );
        pod.containers.clear();
        // Gone from the runtime, still named in the cache, from the event stream (a list
        // can no longer return it).
        let m = runtimes
            .wait_for(WAIT, |r| {
                let m = r.container(&id);
                match &m {
                    Meta::Known(i)
                        if i.pod.as_ref().is_some_and(|p| p.container_name.is_some()) =>
                    {
                        m
                    }
                    _ => Meta::Pending(t1609_context::PendingReason::LookupQueued),
                }
            })
            .await;
        let info = m.known().unwrap_or_else(|| {
            panic!(
                "short-lived container not named: {:?}",
                runtimes.container(&id)
            )
        });
        assert!(
            info.source.starts_with("containerd-events"),
            "{}",
            info.source
        );
        let p = info.pod.as_ref().unwrap();
        assert_eq!(
            (&*p.namespace, &*p.name, p.container_name.as_deref()),
            ("t1609-jobs", pod_name.as_str(), Some("flash"))
        );
        println!(
            "container lived {lived:?} and is named from the event stream ({})",
            info.source
        );
        drop(pod);
    });
}

/// A CRI-only endpoint (as CRI-O is watched): containerd 1.6 has no `GetContainerEvents`,
/// so the watcher polls; the pod is still named. (CRI-O is not in Debian.)
#[test]
fn cri_only_endpoint_falls_back_to_polling_without_container_events() {
    let Some((facts, _serial)) = common::containerd() else {
        return;
    };
    let socket = facts["CONTAINERD_SOCKET"].clone();
    let image = facts["BUSYBOX_IMAGE"].clone();
    let rt = common::tokio_rt();
    let runtimes = Runtimes::start(&watching(&socket, true), rt.handle());
    rt.block_on(async {
        let ep = up(&runtimes).await;
        println!("CRI endpoint mode on this containerd: {}", ep[0].mode);
        assert!(matches!(ep[0].mode, "events" | "polling"), "{ep:?}");
        assert_eq!(
            ep[0].runtime,
            RuntimeKind::Containerd,
            "the CRI Version names containerd"
        );
        let mut client = cri(&socket).await;
        let pod_name = unique("polled");
        let mut pod = Pod::run(
            &mut client,
            &socket,
            sandbox_config(&pod_name, "t1609-cri", &common::pod_uid()),
        )
        .await;
        let id = pod
            .create(&mut client, "main", &image, &["sleep", "60"])
            .await;
        Pod::start(&mut client, &id).await;
        let m = runtimes
            .wait_for(WAIT, |r| match r.container(&id) {
                Meta::Known(i) if i.pod.is_some() => Meta::Known(i),
                other => other,
            })
            .await;
        let info = m.known().unwrap_or_else(|| panic!("{m:?}"));
        assert_eq!(info.pod.as_ref().map(|p| &*p.name), Some(pod_name.as_str()));
        assert_eq!(info.name.as_deref(), Some("main"));
        assert!(info.source.starts_with("cri"), "{}", info.source);
        drop(pod);
    });
}
