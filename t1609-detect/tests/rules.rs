//! Each built-in rule: at least three positive and three negative cases, including the
//! negatives the issue lists (read-only commands, look-alike binaries, `--exec-opt`,
//! letter case).

mod common;

use common::{SEED, event, event_named, fires, ids};
use t1609_detect::{Engine, Severity};

fn engine() -> Engine {
    Engine::builtin().expect("builtin pack loads")
}

fn has(e: &Engine, cmd: &str, rule: &str) -> bool {
    fires(e, cmd).iter().any(|r| r == rule)
}

fn seed(e: &Engine, argv: &[&str]) -> bool {
    ids(e, &event(argv)).iter().any(|r| r == SEED)
}

const READ_ONLY: &[&str] = &[
    "docker ps",
    "docker images",
    "kubectl get pods",
    "kubectl logs web-0",
    "crictl ps",
    "podman version",
    "ctr images ls",
    "runc list",
    "nsenter --help",
];

#[test]
fn sharper_rules_ignore_read_only_commands_and_look_alikes() {
    let e = engine();
    for cmd in READ_ONLY.iter().chain(
        [
            "dockerd --exec-opt native.cgroupdriver=systemd",
            "docker-compose ps",
            // A kubectl plugin whose name says nothing of exec (`kubectl-exec` does: see
            // tests/identity_engine.rs).
            "kubectl-ctx prod",
            "docker run --exec-opt x alpine",
        ]
        .iter(),
    ) {
        assert!(
            fires(&e, cmd).is_empty(),
            "{cmd} fired {:?}",
            fires(&e, cmd)
        );
    }
}

#[test]
fn seed_rule_positive() {
    let e = engine();
    assert!(seed(&e, &["docker", "exec", "-it", "web", "sh"]));
    assert!(seed(&e, &["kubectl", "run", "x", "--image=alpine"]));
    assert!(seed(&e, &["docker", "run", "--privileged", "alpine"]));
    assert!(seed(&e, &["nsenter", "--target", "1", "--pid"]));
    // `:` ignores case.
    assert!(seed(&e, &["docker", "EXEC", "web"]));
    assert!(seed(
        &e,
        &["docker", "run", "--cap-add", "sys_admin", "alpine"]
    ));
    // The seed's known noise: runtime plumbing.
    assert!(seed(
        &e,
        &[
            "runc",
            "--root",
            "/run/containerd/runc/k8s.io",
            "exec",
            "--process",
            "/tmp/p",
            "--detach",
            "abc"
        ]
    ));
}

#[test]
fn seed_rule_negative() {
    let e = engine();
    for argv in [
        &["docker", "ps"][..],
        &["kubectl", "get", "pods"],
        &["crictl", "ps"],
        &["podman", "version"],
        &["ctr", "images", "ls"],
        &["runc", "list"],
        // `exec` only inside an argument.
        &["docker", "--exec-opt", "x", "ps"],
    ] {
        assert!(!seed(&e, argv), "{argv:?}");
    }
    // `in` is case-sensitive: DOCKER is not docker.
    assert!(
        !ids(
            &e,
            &event_named(Some("DOCKER"), &["DOCKER", "exec", "web"], None)
        )
        .iter()
        .any(|r| r == SEED)
    );
    // Verbatim EQL: process.args includes argv[0], so `process.args : "nsenter"` makes
    // every nsenter invocation, even `nsenter --help`, fire the seed rule (the sharper
    // rules do not).
    assert!(seed(&e, &["nsenter", "--help"]));
    // Look-alikes are other names.
    assert!(
        !ids(
            &e,
            &event(&["dockerd", "--exec-opt", "native.cgroupdriver=systemd"])
        )
        .iter()
        .any(|r| r == SEED)
    );
    assert!(
        !ids(&e, &event(&["docker-compose", "run", "web"]))
            .iter()
            .any(|r| r == SEED)
    );
    assert!(
        !ids(&e, &event(&["kubectl-exec", "mypod"]))
            .iter()
            .any(|r| r == SEED)
    );
}

#[test]
fn container_exec_positive_and_severity() {
    let e = engine();
    let r = "t1609.container_exec";
    for cmd in [
        "kubectl exec -it web-0 -- sh",
        "docker exec web id",
        "crictl exec -it 4f2a sh",
        "ctr task exec --exec-id x web sh",
        "oc rsh api-1",
        "lxc exec c1 -- bash",
        "kubectl cp default/web-0:/etc/passwd ./p",
        "kubectl debug -it web-0 --image=busybox",
        "docker compose exec web sh",
        "docker run -it ubuntu bash",
        "nsenter -t 4242 -n ip a",
        "sudo docker exec -it web bash",
    ] {
        assert!(has(&e, cmd, r), "{cmd}");
    }
    let sev = |cmd: &str| {
        let argv = common::split(cmd);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        e.evaluate(&event(&refs))
            .into_iter()
            .find(|a| a.rule_id == r)
            .map(|a| (a.severity, a.risk_score))
    };
    assert_eq!(sev("docker exec web id"), Some((Severity::Medium, 47)));
    assert_eq!(sev("docker exec -it web id"), Some((Severity::High, 73)));
    assert_eq!(sev("docker exec web sh"), Some((Severity::High, 73)));
    assert_eq!(
        sev("kubectl exec web-0 -- /bin/bash -c id"),
        Some((Severity::High, 73))
    );
    assert_eq!(
        sev("kubectl exec web-0 -- busybox sh"),
        Some((Severity::High, 73))
    );
    assert_eq!(
        sev("kubectl exec web-0 -- cat /etc/passwd"),
        Some((Severity::Medium, 47))
    );
}

#[test]
fn container_exec_negative() {
    let e = engine();
    let r = "t1609.container_exec";
    for cmd in [
        "docker ps",
        "kubectl get pods",
        "kubectl EXEC -it web-0 -- sh",
        "kubectl exec",
        "docker exec --help",
        "docker run alpine",
        "docker run --rm alpine sleep 1d",
        "kubectl port-forward svc/web 80",
        "docker-compose up -d",
    ] {
        assert!(!has(&e, cmd, r), "{cmd}");
    }
}

#[test]
fn kubelet_api_exec_positive_negative_and_decoding() {
    let e = engine();
    let r = "t1609.kubelet_api_exec";
    for cmd in [
        "curl -k -XPOST https://10.0.0.1:10250/run/kube-system/p/c -d cmd=id",
        "wget --post-data cmd=id https://10.0.0.1:10250/exec/ns/p/c",
        "kubeletctl exec id -p p -c c -n ns -s 10.0.0.1",
        "curl -k https://10.0.0.1:10250/%61ttach/ns/p/c",
        "curl -k https://api:6443/api/v1/nodes/n1/proxy/run/ns/p/c -d cmd=id",
    ] {
        assert!(has(&e, cmd, r), "{cmd}");
    }
    for cmd in [
        "curl -k https://10.0.0.1:10250/pods",
        "curl http://10.0.0.1:10255/runningpods/",
        "curl -k https://10.0.0.1:10250/healthz",
        "curl -k https://10.0.0.1:10250/portForward/ns/p",
        "curl -k https://10.0.0.1:8443/run/ns/p/c",
        "curl --help",
    ] {
        assert!(!has(&e, cmd, r), "{cmd}");
    }
    // The decoded target appears in the alert.
    let ev = event(&[
        "curl",
        "-k",
        "https://10.0.0.1:10250/run/kube%2Dsystem/etcd-m/etcd",
        "-d",
        "cmd=cat+/etc/shadow",
    ]);
    let a = e
        .evaluate(&ev)
        .into_iter()
        .find(|a| a.rule_id == r)
        .expect("alert");
    let doc = a.to_ecs();
    assert_eq!(doc["t1609"]["argv"]["namespace"], "kube-system");
    assert_eq!(doc["t1609"]["argv"]["pod"], "etcd-m");
    assert_eq!(doc["t1609"]["argv"]["container"], "etcd");
    assert_eq!(doc["t1609"]["argv"]["url_port"], 10250);
    assert_eq!(doc["t1609"]["argv"]["command"][0], "cat");
}

#[test]
fn kubelet_api_discovery_positive_negative() {
    let e = engine();
    let r = "t1613.kubelet_api_discovery";
    for cmd in [
        "curl -sk https://10.0.0.1:10250/pods",
        "curl http://10.0.0.1:10255/pods",
        "kubeletctl runningpods -s 10.0.0.1",
        "curl -k https://10.0.0.1:10250/portForward/ns/p?port=80",
    ] {
        assert!(has(&e, cmd, r), "{cmd}");
        assert!(!has(&e, cmd, "t1609.kubelet_api_exec"), "{cmd}");
    }
    for cmd in [
        "curl -sk https://10.0.0.1:10250/healthz",
        "curl https://example.com/pods",
        "curl -k https://10.0.0.1:10250/run/ns/p/c -d cmd=id",
        "kubectl get pods",
    ] {
        assert!(!has(&e, cmd, r), "{cmd}");
    }
    let a = e
        .evaluate(&event(&["curl", "-sk", "https://10.0.0.1:10250/pods"]))
        .into_iter()
        .next()
        .expect("alert");
    assert_eq!(a.severity, Severity::Low);
    assert_eq!(a.to_ecs()["threat"]["technique"]["id"][0], "T1613");
}

#[test]
fn host_namespace_escape_positive_negative() {
    let e = engine();
    let r = "t1609.host_namespace_escape";
    for cmd in [
        "nsenter -t 1 -m -u -i -n -p -- bash",
        "nsenter --target=1 --all",
        "nsenter -at1 sh",
        "docker run --privileged alpine",
        "docker run -v /:/host alpine",
        "docker run --mount type=bind,source=/,target=/h alpine",
        "podman run --cap-add=SYS_ADMIN fedora",
        "nerdctl run --pid=host alpine",
        "docker run --security-opt seccomp:unconfined alpine",
        "docker run --device=/dev/mem alpine",
        "ctr run --privileged docker.io/library/alpine:latest x",
        "doas docker run --ipc=host alpine",
    ] {
        assert!(has(&e, cmd, r), "{cmd}");
    }
    for cmd in [
        "nsenter --help",
        "nsenter -t 4242 -n ip a",
        "docker run -v /srv:/srv alpine",
        "docker run --cap-add NET_ADMIN alpine",
        "docker exec --privileged web id",
        "docker run --uts=host alpine",
        "docker ps --privileged",
    ] {
        assert!(!has(&e, cmd, r), "{cmd}");
    }
    let a = e
        .evaluate(&event(&["nsenter", "-t", "1", "-a"]))
        .into_iter()
        .find(|a| a.rule_id == r)
        .expect("alert");
    assert_eq!(a.severity, Severity::Critical);
    let doc = a.to_ecs();
    let techs: Vec<&str> = doc["threat"]["technique"]["id"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(techs.contains(&"T1609") && techs.contains(&"T1611"));
}

#[test]
fn runtime_api_direct_positive_negative() {
    let e = engine();
    let r = "t1609.runtime_api_direct";
    for cmd in [
        "curl --unix-socket /var/run/docker.sock -X POST http://localhost/containers/create -d {}",
        "curl --unix-socket /var/run/docker.sock -X POST http://localhost/v1.43/containers/web/exec -d {}",
        "curl -X POST http://10.0.0.5:2375/containers/create",
        "docker -H tcp://10.0.0.5:2375 exec web id",
        "podman --url tcp://10.0.0.5:2376 run alpine",
    ] {
        assert!(has(&e, cmd, r), "{cmd}");
    }
    for cmd in [
        "curl --unix-socket /var/run/docker.sock http://localhost/containers/json",
        "docker -H tcp://10.0.0.5:2375 ps",
        "curl http://10.0.0.5:8080/containers/create",
        "docker exec web id",
    ] {
        assert!(!has(&e, cmd, r), "{cmd}");
    }
}

#[test]
fn runc_exec_direct_positive_negative() {
    let e = engine();
    let r = "t1609.runc_exec_direct";
    let fired = |argv: &[&str], parent: &str| {
        ids(&e, &event_named(None, argv, Some(parent)))
            .iter()
            .any(|x| x == r)
    };
    assert!(fired(&["runc", "exec", "-t", "web", "sh"], "bash"));
    assert!(fired(&["crun", "exec", "web", "id"], "sshd"));
    assert!(fired(
        &[
            "runc",
            "--root",
            "/run/containerd/runc/k8s.io",
            "exec",
            "-t",
            "abc",
            "sh"
        ],
        "zsh"
    ));
    assert!(!fired(
        &[
            "runc",
            "exec",
            "--process",
            "/tmp/p.json",
            "--detach",
            "abc"
        ],
        "containerd-shim-runc-v2"
    ));
    assert!(!fired(
        &[
            "crun",
            "exec",
            "--process",
            "/tmp/p.json",
            "--detach",
            "abc"
        ],
        "conmon"
    ));
    assert!(!fired(&["runc", "list"], "bash"));
    assert!(!fired(&["runc", "exec", "--help"], "bash"));
    assert!(!fired(&["runc", "exec"], "bash"));
}

#[test]
fn argv_truncated_positive_negative() {
    let e = engine();
    let r = "t1609.argv_truncated";
    let fired = |argv: &[&str], trunc: bool| {
        let mut ev = event(argv);
        ev.capture.argv_truncated = trunc;
        ids(&e, &ev).iter().any(|x| x == r)
    };
    assert!(fired(&["docker", "run", "-e", "PAD=xxxx"], true));
    assert!(fired(&["kubectl", "get", "pods"], true));
    assert!(fired(&["sudo", "nsenter", "-t"], true));
    assert!(!fired(&["docker", "run", "-e", "PAD=xxxx"], false));
    assert!(!fired(&["ls", "-la"], true));
    assert!(!fired(&["python3", "-c", "x"], true));
    let mut ev = event(&["curl", "-k"]);
    ev.capture.argv_incomplete = true;
    assert!(ids(&e, &ev).iter().any(|x| x == r));
}

#[test]
fn wrapper_and_inner_command_share_a_group_id() {
    let e = engine();
    // sudo forks: the inner docker has sudo as parent.
    let mut wrapper = event(&["sudo", "docker", "exec", "-it", "web", "sh"]);
    wrapper.process.pid = Some(100);
    let mut inner = event(&["docker", "exec", "-it", "web", "sh"]);
    inner.process.pid = Some(101);
    if let Some(p) = inner.process.parent.as_deref_mut() {
        p.pid = Some(100);
        p.name = Some("sudo".into());
        p.args = Some(
            ["sudo", "docker", "exec", "-it", "web", "sh"]
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
    }
    let wa = e.evaluate(&wrapper);
    let ia = e.evaluate(&inner);
    assert!(!wa.is_empty() && !ia.is_empty());
    let g = wa[0].group_id.clone();
    assert!(g.is_some());
    assert!(
        wa.iter().chain(ia.iter()).all(|a| a.group_id == g),
        "one incident"
    );
    assert_eq!(
        wa.iter()
            .find(|a| a.rule_id == "t1609.container_exec")
            .and_then(|a| a.argv.as_ref())
            .map(|i| i.wrappers.clone()),
        Some(vec!["sudo".to_string()])
    );
    // env execs in place: same pid, different parent.
    let mut env = event(&["env", "A=1", "docker", "exec", "web", "id"]);
    env.process.pid = Some(200);
    let mut envd = event(&["docker", "exec", "web", "id"]);
    envd.process.pid = Some(200);
    assert_eq!(e.evaluate(&env)[0].group_id, e.evaluate(&envd)[0].group_id);
    // Unrelated commands differ.
    assert_ne!(e.evaluate(&env)[0].group_id, ia[0].group_id);
    // Several rules on one event share the group.
    let multi = e.evaluate(&event(&[
        "docker",
        "run",
        "--privileged",
        "-it",
        "alpine",
        "sh",
    ]));
    assert!(multi.len() >= 3);
    assert!(multi.iter().all(|a| a.group_id == multi[0].group_id));
    // But alert ids are unique.
    let mut ids: Vec<&str> = multi.iter().map(|a| a.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), multi.len());
}

#[test]
fn watch_set_covers_rule_names() {
    let w = engine().watch_set();
    assert!(!w.capture_all, "{:?}", w.capture_all_reasons);
    for n in [
        "docker",
        "kubectl",
        "crictl",
        "ctr",
        "podman",
        "nsenter",
        "runc",
        "crun",
        "nerdctl",
        "oc",
        "lxc",
        "curl",
        "wget",
        "kubeletctl",
        "busybox",
        "k3s",
        "sudo",
        "env",
        "python3",
        "docker-compose",
    ] {
        assert!(w.names.contains(n), "{n} missing from {:?}", w.names);
    }
    assert!(!w.names.contains("sh") && !w.names.contains("bash"));
    assert!(w.shells.contains("sh") && w.shells.contains("bash"));
    assert!(w.shell_rules.contains("t1609.container_exec"));
}

#[test]
fn alert_ecs_document_has_the_delivery_paths() {
    let e = engine();
    let a = e
        .evaluate(&event(&[
            "kubectl", "exec", "-it", "web-0", "-n", "prod", "--", "sh",
        ]))
        .into_iter()
        .find(|a| a.rule_id == "t1609.container_exec")
        .expect("alert");
    let d = a.to_ecs();
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(d["event"]["severity"], 73);
    assert_eq!(d["event"]["risk_score"], 73);
    assert_eq!(d["event"]["category"][0], "process");
    assert_eq!(d["event"]["type"][0], "start");
    assert_eq!(d["event"]["id"].as_str().map(str::len), Some(32));
    assert_eq!(d["rule"]["id"], "t1609.container_exec");
    assert!(
        d["rule"]["name"].is_string()
            && d["rule"]["description"].is_string()
            && d["rule"]["reference"].is_string()
    );
    assert_eq!(d["threat"]["framework"], "MITRE ATT&CK");
    assert_eq!(d["threat"]["tactic"]["id"][0], "TA0002");
    assert_eq!(d["threat"]["tactic"]["name"][0], "Execution");
    assert_eq!(d["threat"]["technique"]["id"][0], "T1609");
    assert_eq!(
        d["threat"]["technique"]["name"][0],
        "Container Administration Command"
    );
    assert_eq!(d["t1609"]["severity"], "high");
    assert_eq!(d["t1609"]["confidence"], "high");
    assert!(d["t1609"]["group_id"].is_string());
    assert_eq!(d["t1609"]["argv"]["tool"], "kubectl");
    assert_eq!(d["t1609"]["argv"]["verb"], "exec");
    assert_eq!(d["t1609"]["argv"]["pod"], "web-0");
    assert_eq!(d["t1609"]["argv"]["namespace"], "prod");
    assert_eq!(d["t1609"]["argv"]["interactive"], true);
    assert_eq!(d["t1609"]["argv"]["command"][0], "sh");
    assert_eq!(d["process"]["name"], "kubectl");
    assert_eq!(d["process"]["parent"]["name"], "bash");
    assert_eq!(d["user"]["id"], "0");
    assert_eq!(d["host"]["hostname"], "node-1");
    assert_eq!(d["@timestamp"], "2026-11-28T12:00:00Z");
    assert_eq!(d["t1609"]["argv_truncated"], false);
    // The streaming writer produces the same document.
    let mut buf = Vec::new();
    a.write_json(&mut buf).expect("write");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&buf).expect("json"),
        d
    );
}
