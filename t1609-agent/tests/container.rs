//! The agent in a container on a real local dockerd (image imported from a rootfs: no
//! registry), as in CI and on a Kubernetes node: hostPID, explicit capabilities, the
//! kernel mounts. It must catch a `docker exec` run on the host.

mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

/// Builds the agent's image `tag` from the test's agent binary, with a config that
/// prints alerts on stdout.
fn build_image(tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[deliver]\nsinks = [\"stdout\"]\n[metrics]\nlisten = \"\"\n",
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docker/make-local-image.sh");
    let built = Command::new("bash")
        .arg(script)
        .arg(agent_bin())
        .env("IMAGE", tag)
        .env("CONFIG", &config)
        .status()
        .unwrap();
    assert!(built.success(), "make-local-image.sh failed");
}

/// Starts the agent's container `name` as the `DaemonSet` runs it.
fn run_agent(name: &str, tag: &str) {
    // Not --privileged: this machine's dockerd does not know CAP_BPF, so SYS_ADMIN stands in
    // (for CAP_NET_ADMIN too). A private cgroup namespace, as in a pod, with the host's
    // cgroup mount at /host/sys/fs/cgroup, as the DaemonSet has it.
    let out = docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--pid=host",
        "--cgroupns=private",
        "-v",
        "/sys/fs/cgroup:/host/sys/fs/cgroup:ro",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "SYS_PTRACE",
        "--cap-add",
        "SETPCAP",
        "--cap-add",
        "DAC_READ_SEARCH",
        "-v",
        "/sys/kernel/tracing:/sys/kernel/tracing",
        "-v",
        "/sys/kernel/btf:/sys/kernel/btf:ro",
        "--tmpfs",
        "/var/lib/t1609-agent",
        "--tmpfs",
        "/run/t1609-agent",
        tag,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for the containerised agent's ready line; fails if it exits or takes a minute.
fn wait_ready(name: &str) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let logs = docker(&["logs", name]);
        let err = String::from_utf8_lossy(&logs.stderr);
        if let Some(ready) = err.lines().find(|l| l.contains("t1609-agent ready")) {
            // The host's cgroup root, not the namespace's: the hook sees every container.
            assert!(
                ready.contains("unix_connects=\"cgroup/connect_unix\""),
                "{err}"
            );
            break;
        }
        let state = docker(&["inspect", "-f", "{{.State.Running}}", name]);
        assert!(
            String::from_utf8_lossy(&state.stdout).trim() == "true" && Instant::now() < deadline,
            "containerised agent did not get ready:\n{}",
            String::from_utf8_lossy(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn containerised_agent_detects_host_docker_exec() {
    if !privileged_or_skip("containerised_agent_detects_host_docker_exec") || !services("docker") {
        return;
    }
    let tag = format!("local/t1609-agent:test-{}", std::process::id());
    build_image(&tag);
    let agent_name = format!("t1609-agent-{}", std::process::id());
    let target = format!("t1609-target-{}", std::process::id());
    let _ = docker(&["rm", "-f", &agent_name, &target]);
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &target,
        "t1609-test/busybox:1",
        "sleep",
        "600",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_agent(&agent_name, &tag);
    wait_ready(&agent_name);
    let out = docker(&["exec", "-i", &target, "/bin/sh", "-c", "/bin/id"]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_secs(1));
    let _ = docker(&["stop", "-t", "20", &agent_name]);
    let logs = docker(&["logs", &agent_name]);
    let _ = docker(&["rm", "-f", &agent_name, &target]);
    let _ = docker(&["rmi", &tag]);
    let stdout = String::from_utf8_lossy(&logs.stdout).into_owned();
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let alerts = parse_alerts(&lines);
    let exec = alerts_of(&alerts, "t1609.container_exec");
    assert!(
        exec.iter().any(|a| get(a, "process.command_line")
            .as_str()
            .is_some_and(|c| c.contains(&target))),
        "no container_exec alert for the host's docker exec:\n{stdout}\n{}",
        String::from_utf8_lossy(&logs.stderr)
    );
}
