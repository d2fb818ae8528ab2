//! Labelled argv cases for knowing a container tool by what it is rather than what it is
//! called (issue #22), table-driven: for every class, positives and near-miss negatives,
//! including ordinary programs with an `exec` subcommand.
//!
//! Each case is checked twice:
//! - against every rule of the shipped pack, tried as the engine tries an indexed rule
//!   (each parsed invocation in turn), whatever the event's name: what replay yields once
//!   the engine routes an unindexed name through `argv::index_key`;
//! - through `Engine::evaluate` as it is: equal results when the engine's index has the
//!   name; otherwise `argv::index_key` must name an indexed name under which the expected
//!   rules are found.

mod common;

use std::collections::BTreeSet;

use t1609_detect::{
    Engine,
    argv::{self, Invocation},
    eql::{self, Node},
    event::ProcessEvent,
};

struct Case {
    class: &'static str,
    /// `process.name`: the executed file's basename.
    name: &'static str,
    argv: &'static [&'static str],
    parent: &'static str,
    tty: bool,
    /// Sharper rules expected (the seed rule is not judged here).
    expect: &'static [&'static str],
    /// Fields of the event's first invocation: tool, `recognised_by`, `masquerade`.
    tool: Option<&'static str>,
    how: Option<&'static str>,
    masq: Option<&'static str>,
}

const EXEC: &str = "t1609.container_exec";
const ESCAPE: &str = "t1609.host_namespace_escape";
const KUBELET: &str = "t1609.kubelet_api_exec";
const SHELL: &str = "t1609.container_shell_from_runtime";
const RUNC: &str = "t1609.runc_exec_direct";

const fn case(
    class: &'static str,
    name: &'static str,
    argv: &'static [&'static str],
    expect: &'static [&'static str],
) -> Case {
    Case {
        class,
        name,
        argv,
        parent: "bash",
        tty: false,
        expect,
        tool: None,
        how: None,
        masq: None,
    }
}

impl Case {
    const fn is(
        mut self,
        tool: &'static str,
        how: Option<&'static str>,
        masq: Option<&'static str>,
    ) -> Case {
        self.tool = Some(tool);
        self.how = how;
        self.masq = masq;
        self
    }
    const fn parent(mut self, p: &'static str) -> Case {
        self.parent = p;
        self
    }
    const fn tty(mut self) -> Case {
        self.tty = true;
        self
    }
}

const OVERRIDES_BREAKOUT: &str = r#"{"apiVersion":"v1","spec":{"hostPID":true,"hostNetwork":true,"containers":[{"name":"x","image":"alpine","stdin":true,"tty":true,"command":["nsenter","--target","1","--mount","--uts","--ipc","--net","--pid","--"],"args":["bash"],"securityContext":{"privileged":true}}]}}"#;
const OVERRIDES_HOSTPATH: &str = r#"{"spec":{"volumes":[{"name":"h","hostPath":{"path":"/"}}],"containers":[{"name":"x","image":"alpine","command":["sleep","3600"],"volumeMounts":[{"name":"h","mountPath":"/host"}]}]}}"#;
const OVERRIDES_PLAIN: &str = r#"{"spec":{"containers":[{"name":"x","image":"alpine","command":["sleep","3600"],"resources":{"limits":{"cpu":"100m"}}}]}}"#;
const OVERRIDES_HOSTPID_ONLY: &str = r#"{"spec":{"hostPID":true,"containers":[{"name":"x","image":"alpine","command":["nsenter","-t","1","-m","-u","-i","-n","-p","sh"]}]}}"#;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // --- renamed, hidden, case and white-space variants of docker (shape or name) ---
    case("renamed docker", ".x", &[".x", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", Some("shape"), Some("renamed")),
    case("renamed docker, argv[0] spoofed as docker", ".x", &["docker", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", Some("shape"), Some("renamed")),
    case("renamed docker, -u root", "kworker", &["kworker", "exec", "-u", "root", "-i", "web", "cat", "/etc/shadow"], &[EXEC]).is("docker", Some("shape"), Some("renamed")),
    case("upper-case docker", "DOCKER", &["DOCKER", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", Some("name_variant"), Some("name_variant")),
    case("trailing space", "docker ", &["docker ", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", Some("name_variant"), Some("name_variant")),
    case("no-break space", "docker\u{a0}", &["x", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", Some("name_variant"), Some("name_variant")),
    case("non-UTF-8 byte (decoded as U+FFFD)", "doc\u{fffd}ker", &["doc\u{fffd}ker", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", Some("shape"), Some("renamed")),
    case("renamed docker, -H socket, no -it", "d", &["d", "-H", "unix:///var/run/docker.sock", "exec", "web", "id"], &[EXEC]).is("docker", Some("shape"), Some("renamed")),
    case("renamed docker run breaking isolation", ".r", &[".r", "run", "--rm", "--privileged", "--pid=host", "-v", "/:/host", "alpine", "chroot", "/host", "sh"], &[EXEC, ESCAPE]).is("docker", Some("shape"), Some("renamed")),
    // --- kubectl-style shapes ---
    case("renamed kubectl", "kworker", &["kworker", "exec", "-it", "web-0", "--", "sh"], &[EXEC]).is("kubectl", Some("shape"), Some("renamed")),
    case("renamed kubectl, -n -c pod/", "k", &["k", "exec", "-n", "prod", "-c", "app", "pod/web-0", "--", "cat", "/etc/shadow"], &[EXEC]).is("kubectl", Some("shape"), Some("renamed")),
    case("renamed kubectl, --kubeconfig", "svc", &["svc", "--kubeconfig", "/tmp/.k", "exec", "web-0", "--", "id"], &[EXEC]).is("kubectl", Some("shape"), Some("renamed")),
    case("upper-case kubectl", "KUBECTL", &["KUBECTL", "exec", "-it", "web-0", "--", "sh"], &[EXEC]).is("kubectl", Some("name_variant"), Some("name_variant")),
    case("microk8s kubectl", "microk8s", &["microk8s", "kubectl", "exec", "-it", "web-0", "--", "sh"], &[EXEC]).is("kubectl", None, None),
    // --- ctr, nerdctl, crictl, runc by their options ---
    case("renamed ctr, containerd socket, k8s.io", "x", &["x", "--address", "/run/containerd/containerd.sock", "-n", "k8s.io", "tasks", "exec", "--exec-id", "e1", "-t", "abc123", "sh"], &[EXEC]).is("ctr", Some("shape"), Some("renamed")),
    case("renamed ctr, --exec-id only", "svc", &["svc", "t", "exec", "--exec-id", "shell", "c1", "/bin/sh"], &[EXEC]).is("ctr", Some("shape"), Some("renamed")),
    case("renamed ctr run with the host root", "x", &["x", "-n", "k8s.io", "run", "--rm", "--mount", "type=bind,src=/,dst=/host,options=rbind", "docker.io/library/alpine:latest", "pwn", "sh"], &[EXEC, ESCAPE]).is("ctr", Some("shape"), Some("renamed")),
    case("renamed nerdctl, -n k8s.io", "n", &["n", "-n", "k8s.io", "exec", "-it", "abc", "sh"], &[EXEC]).is("nerdctl", Some("shape"), Some("renamed")),
    case("renamed crictl, runtime endpoint", "c", &["c", "-r", "unix:///run/containerd/containerd.sock", "exec", "-it", "abc", "sh"], &[EXEC]).is("crictl", Some("shape"), Some("renamed")),
    case("renamed runc, --root", "r", &["r", "--root", "/run/containerd/runc/k8s.io", "exec", "-t", "abc", "sh"], &[RUNC]).is("runc", Some("shape"), Some("renamed")),
    // --- kubelet and API server URLs, whatever the program ---
    case("CDK kcurl", "cdk", &["cdk", "kcurl", "anonymous", "post", "https://10.0.0.5:10250/run/default/web-0/app", "cmd=id"], &[KUBELET]).is("url_client", None, None),
    case("unknown program, kubelet /exec URL", "k", &["./k", "https://10.0.0.5:10250/exec/default/web-0/app?command=id&input=1&output=1&tty=1"], &[KUBELET]).is("url_client", Some("url"), None),
    case("unknown program, API server pods/exec", "tool", &["tool", "--insecure", "wss://api.k8s:6443/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true"], &[KUBELET]).is("url_client", Some("url"), None),
    case("unknown program, node proxy /run", "x", &["x", "https://api:6443/api/v1/nodes/n1/proxy/run/kube-system/etcd-n1/etcd"], &[KUBELET]).is("url_client", Some("url"), None),
    // --- exec -a: argv[0] lies, the name does not ---
    case("exec -a nginx docker", "docker", &["nginx", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", None, Some("argv0")),
    case("exec -a '' kubectl", "kubectl", &["", "exec", "-it", "web-0", "--", "sh"], &[EXEC]).is("kubectl", None, Some("argv0")),
    // --- plugins ---
    case("kubectl node-shell plugin", "kubectl-node_shell", &["kubectl-node_shell", "worker-1"], &[EXEC, ESCAPE]).is("kubectl", None, None),
    case("kubectl plugin script run by bash (as Elastic reports it)", "bash", &["bash", "/usr/local/bin/kubectl-node_shell", "worker-1"], &[EXEC, ESCAPE]).is("kubectl", None, None),
    case("kubectl iexec plugin", "kubectl-iexec", &["/root/.krew/bin/kubectl-iexec", "web", "sh"], &[EXEC]).is("kubectl", None, None),
    case("kubectl pod-shell plugin", "kubectl-pod_shell", &["kubectl-pod_shell", "-n", "prod", "web-0", "--", "bash"], &[EXEC]).is("kubectl", None, None),
    case("docker debug CLI plugin", "docker-debug", &["/usr/libexec/docker/cli-plugins/docker-debug", "debug", "web"], &[EXEC]).is("docker", None, None),
    case("docker compose CLI plugin", "docker-compose", &["/usr/libexec/docker/cli-plugins/docker-compose", "compose", "exec", "web", "sh"], &[EXEC]).is("compose", None, None),
    // --- kubectl run --overrides: the pod spec is read ---
    case("kubectl run, hostPID privileged nsenter -t 1", "kubectl", &["kubectl", "run", "x", "--restart=Never", "-it", "--rm", "--image", "alpine", "--overrides", OVERRIDES_BREAKOUT], &[EXEC, ESCAPE]).is("kubectl", None, None),
    case("kubectl run, hostPID nsenter -t 1 without privileged", "kubectl", &["kubectl", "run", "y", "--image=alpine", "--overrides", OVERRIDES_HOSTPID_ONLY], &[EXEC, ESCAPE]).is("kubectl", None, None),
    case("kubectl run, host root hostPath", "kubectl", &["kubectl", "run", "x", "--image=alpine", "--overrides", OVERRIDES_HOSTPATH], &[ESCAPE]).is("kubectl", None, None),
    // --- the container side of an exec ---
    case("shell under runc with a tty", "sh", &["sh"], &[SHELL]).parent("runc").tty(),
    case("bash under the containerd shim with a tty", "bash", &["bash", "-i"], &[SHELL]).parent("containerd-shim-runc-v2").tty(),
    case("shell under conmon with a tty", "bash", &["/bin/bash"], &[SHELL]).parent("conmon").tty(),
    // --- lxc's successor ---
    case("incus exec", "incus", &["incus", "exec", "c1", "--", "bash"], &[EXEC]).is("lxc", None, None),
    // --- the normal clients: no masquerade flag ---
    case("docker exec", "docker", &["docker", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", None, None),
    case("docker exec, argv[0] a path", "docker", &["/usr/bin/docker", "exec", "-it", "web", "sh"], &[EXEC]).is("docker", None, None),
    case("kubectl exec", "kubectl", &["kubectl", "exec", "-it", "web-0", "--", "sh"], &[EXEC]).is("kubectl", None, None),
    case("k3s kubectl exec", "k3s", &["k3s", "kubectl", "exec", "-it", "web-0", "--", "sh"], &[EXEC]).is("kubectl", None, None),
    case("ctr task exec", "ctr", &["ctr", "-n", "k8s.io", "task", "exec", "--exec-id", "x", "-t", "abc", "sh"], &[EXEC]).is("ctr", None, None),
    case("kubelet's nsenter, but from a shell", "nsenter", &["nsenter", "--net=/proc/4242/ns/net", "-F", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0"], &[EXEC]).is("nsenter", None, None),

    // ================= near misses: nothing fires =================
    // Ordinary programs with an exec (or run) subcommand.
    case("git", "git", &["git", "rebase", "--exec", "make test", "main"], &[]),
    case("git exec-path", "git", &["git", "--exec-path"], &[]),
    case("cargo run -- exec", "cargo", &["cargo", "run", "--", "exec", "-it", "web", "sh"], &[]),
    case("cargo exec plugin", "cargo", &["cargo", "exec", "--", "ls"], &[]),
    case("npm exec --", "npm", &["npm", "exec", "--", "eslint", "."], &[]),
    case("npm exec -c", "npm", &["npm", "exec", "-c", "eslint . --fix"], &[]),
    case("npm exec --package", "npm", &["npm", "exec", "--package=cowsay", "--", "cowsay", "hi"], &[]),
    case("pnpm exec", "pnpm", &["pnpm", "exec", "tsc", "-b"], &[]),
    case("yarn exec", "yarn", &["yarn", "exec", "--", "jest", "--watch"], &[]),
    case("poetry run", "poetry", &["poetry", "run", "python", "manage.py", "shell"], &[]),
    case("poetry shell", "poetry", &["poetry", "shell"], &[]),
    case("flatpak run", "flatpak", &["flatpak", "run", "org.gimp.GIMP"], &[]),
    case("flatpak enter", "flatpak", &["flatpak", "enter", "1234", "bash"], &[]),
    case("flatpak-spawn", "flatpak-spawn", &["flatpak-spawn", "--host", "bash"], &[]),
    case("ip netns exec", "ip", &["ip", "netns", "exec", "ns1", "bash"], &[]),
    case("ip -n netns exec", "ip", &["ip", "-n", "ns1", "netns", "exec", "ns1", "sh"], &[]),
    case("bundle exec", "bundle", &["bundle", "exec", "rake", "db:migrate"], &[]),
    case("mise exec", "mise", &["mise", "exec", "node@20", "--", "node", "-v"], &[]),
    case("direnv exec", "direnv", &["direnv", "exec", ".", "make"], &[]),
    case("opam exec", "opam", &["opam", "exec", "--", "dune", "build"], &[]),
    case("dotnet exec", "dotnet", &["dotnet", "exec", "app.dll"], &[]),
    case("toolbox run", "toolbox", &["toolbox", "run", "-c", "fedora", "ls"], &[]),
    case("npm run build -- --privileged", "npm", &["npm", "run", "build", "--", "--privileged"], &[]),
    case("unknown run without an isolation break", "x", &["x", "run", "alpine", "sh"], &[]),
    case("ssh running docker remotely", "ssh", &["ssh", "host", "docker", "exec", "-it", "web", "sh"], &[]),
    // Shapes that lack evidence or a real target.
    case("exec without flags or target evidence", "tool", &["tool", "exec", "web", "sh"], &[]),
    case("exec with a version spec for a target", "tool", &["tool", "exec", "-it", "node@20", "--", "sh"], &[]),
    case("exec with an unknown option", "tool", &["tool", "exec", "-x", "web", "sh"], &[]),
    case("exec with no command", "tool", &["tool", "exec", "-it", "web"], &[]),
    case("exec with an unknown global option", "tool", &["tool", "--verbose", "exec", "-it", "web", "sh"], &[]),
    case("ctr-like tasks exec without containerd evidence", "tool", &["tool", "tasks", "exec", "abc", "sh"], &[]),
    case("a non-containerd --address", "tool", &["tool", "--address", "127.0.0.1:8080", "tasks", "exec", "--exec-id", "x", "abc", "sh"], &[]),
    // Kubelet URLs as data, and discovery (not exec).
    case("grep for a kubelet URL", "grep", &["grep", "-r", "https://10.0.0.5:10250/run/", "."], &[]),
    case("echo of an exec URL", "echo", &["echo", "https://10.0.0.5:10250/exec/a/b/c"], &[]),
    case("unknown program reading kubelet /pods", "x", &["x", "https://10.0.0.5:10250/pods"], &[]),
    case("unknown program, API server pod list", "x", &["x", "https://api:6443/api/v1/namespaces/default/pods"], &[]),
    // Runtime plumbing (the documented exceptions).
    case("kubelet's pod IP look-up", "nsenter", &["nsenter", "--net=/proc/4242/ns/net", "-F", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0"], &[]).parent("kubelet"),
    case("kubelet's hairpin ethtool", "nsenter", &["nsenter", "--net=/proc/4242/ns/net", "--", "ethtool", "--statistics", "eth0"], &[]).parent("kubelet"),
    case("runc exec by the containerd shim", "runc", &["runc", "--root", "/run/containerd/runc/k8s.io", "--log", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/log.json", "--log-format", "json", "exec", "--process", "/tmp/runc-process123", "--detach", "--pid-file", "/run/x/pid", "abc"], &[]).parent("containerd-shim-runc-v2"),
    case("crun exec by conmon", "crun", &["/usr/bin/crun", "exec", "--pid-file", "/run/p", "--process", "/tmp/spec.json", "--detach", "-t", "abc"], &[]).parent("conmon"),
    case("runc re-exec (init)", "exe", &["runc", "init"], &[]).parent("runc"),
    case("the containerd shim itself", "containerd-shim-runc-v2", &["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary", "/usr/bin/containerd", "-id", "abc", "start"], &[]).parent("containerd"),
    case("conmon for an exec", "conmon", &["/usr/bin/conmon", "--api-version", "1", "-c", "abc", "-u", "abc", "-r", "/usr/bin/crun", "-b", "/var/lib/containers/x", "-p", "/run/p", "-n", "web", "--exec", "--exec-process-spec", "/tmp/spec.json"], &[]).parent("podman"),
    case("kubelet itself", "kubelet", &["/usr/bin/kubelet", "--config", "/var/lib/kubelet/config.yaml", "--kubeconfig", "/etc/kubernetes/kubelet.conf", "--container-runtime-endpoint", "unix:///run/containerd/containerd.sock"], &[]).parent("systemd"),
    // Near misses of the others.
    case("kubelet nsenter into the mount namespace", "nsenter", &["nsenter", "--net=/proc/4242/ns/net", "--mount=/proc/4242/ns/mnt", "--", "ip", "addr"], &[EXEC]).parent("kubelet"),
    case("shell under runc without a tty (exec probe)", "sh", &["sh", "-c", "cat /tmp/healthy"], &[]).parent("runc"),
    case("shell with a tty under sshd", "bash", &["-bash"], &[]).parent("sshd").tty(),
    case("kubectl run with plain overrides", "kubectl", &["kubectl", "run", "x", "--image=alpine", "--overrides", OVERRIDES_PLAIN], &[]),
    case("kubectl plugin that does nothing of the kind", "kubectl-ctx", &["kubectl-ctx", "prod"], &[]),
    case("docker credential helper", "docker-credential-gcloud", &["docker-credential-gcloud", "get"], &[]),
    case("docker buildx plugin", "docker-buildx", &["/usr/libexec/docker/cli-plugins/docker-buildx", "buildx", "build", "."], &[]),
    case("DOCKER ps (a variant, nothing T1609)", "DOCKER", &["DOCKER", "ps"], &[]),
    case("docker EXEC (verbs are case-sensitive)", "docker", &["docker", "EXEC", "-it", "web", "sh"], &[]),
];

struct PackRule {
    id: String,
    cond: Node,
}

/// The shipped pack's rules, parsed from the file the engine embeds.
fn pack() -> Vec<PackRule> {
    let text = include_str!("../rules/t1609.toml");
    let v: toml::Value = toml::from_str(text).expect("rules parse");
    v["rule"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| PackRule {
            id: r["id"].as_str().expect("id").to_string(),
            cond: eql::parse_query(r["query"].as_str().expect("query")).expect("query parses"),
        })
        .collect()
}

fn event_of(c: &Case) -> ProcessEvent {
    let mut ev = common::event_named(Some(c.name), c.argv, Some(c.parent));
    if c.tty {
        ev.capture.tty = Some("pts0".into());
    }
    ev
}

/// Every rule tried on every event, as the engine tries an indexed rule.
fn fired(rules: &[PackRule], ev: &ProcessEvent, invs: &[Invocation]) -> BTreeSet<String> {
    rules
        .iter()
        .filter(|r| r.id != common::SEED)
        .filter(|r| {
            if r.cond.needs_argv() && !invs.is_empty() {
                invs.iter().any(|inv| r.cond.eval(&eql::ctx(ev, Some(inv))))
            } else {
                r.cond.eval(&eql::ctx(ev, None))
            }
        })
        .map(|r| r.id.clone())
        .collect()
}

fn sharper(engine: &Engine, ev: &ProcessEvent) -> BTreeSet<String> {
    engine
        .evaluate(ev)
        .into_iter()
        .map(|a| a.rule_id)
        .filter(|r| r != common::SEED)
        .collect()
}

#[test]
fn labelled_identity_cases() {
    let rules = pack();
    let engine = Engine::builtin().expect("builtin pack");
    let watch = engine.watch_set();
    let indexed = |n: &str| watch.names.contains(n) || watch.shells.contains(n);
    let mut failures = Vec::new();
    let (mut positives, mut negatives) = (0, 0);
    for c in CASES {
        let ev = event_of(c);
        let args: Vec<String> = c.argv.iter().map(ToString::to_string).collect();
        let invs = argv::parse(Some(c.name), &args);
        let want: BTreeSet<String> = c.expect.iter().map(ToString::to_string).collect();
        let got = fired(&rules, &ev, &invs);
        let mut fail = |what: String| failures.push(format!("[{}] {:?}: {what}", c.class, c.argv));
        if got != want {
            fail(format!("rules {got:?}, expected {want:?}"));
        }
        if want.is_empty() {
            negatives += 1;
        } else {
            positives += 1;
        }
        if let Some(tool) = c.tool {
            let first = invs.first();
            let fields = first.map(|i| (i.tool.as_str(), i.recognised_by, i.masquerade));
            if fields != Some((tool, c.how, c.masq)) {
                fail(format!(
                    "first invocation {fields:?}, expected {:?}",
                    (tool, c.how, c.masq)
                ));
            }
            if let Some(i) = first {
                // What an alert on it adds: T1036.003 with the flag, lower confidence for a
                // shape-only match.
                let masq = i.extra_techniques() == ["T1036.003"];
                if masq != c.masq.is_some() || i.shape_only() != (c.how == Some("shape")) {
                    fail(format!(
                        "extra techniques {:?}, shape_only {}",
                        i.extra_techniques(),
                        i.shape_only()
                    ));
                }
            }
        }
        // Through the engine as it is, or as `index_key` would route it.
        let lower = c.name.to_lowercase();
        if indexed(c.name) || indexed(&lower) {
            let e = sharper(&engine, &ev);
            if e != want {
                fail(format!("engine {e:?}, expected {want:?}"));
            }
        } else if !want.is_empty() {
            match argv::index_key(c.name, &args) {
                Some(k) if indexed(k) => {
                    // The rules under `k`, tried on the event under that name: the same
                    // parse, except for plugins, whose grammar comes from their own name
                    // (for them, `k` is the host CLI whose rules apply).
                    let plugin = invs
                        .first()
                        .and_then(|i| i.plugin.as_deref().map(|_| i.tool.clone()));
                    let mut as_k = ev.clone();
                    as_k.process.name = Some(k.to_string());
                    let e = sharper(&engine, &as_k);
                    if !want.is_subset(&e) && plugin.as_deref() != Some(k) {
                        fail(format!(
                            "rules under index key {k}: {e:?}, expected {want:?}"
                        ));
                    }
                }
                k => fail(format!("index key {k:?} is not an indexed name")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert!(
        positives >= 40 && negatives >= 40,
        "{positives} positives, {negatives} negatives"
    );
}

#[test]
fn alerts_carry_the_masquerade_flag() {
    let engine = Engine::builtin().expect("builtin pack");
    for (name, argv, masq) in [
        (
            "DOCKER",
            &["DOCKER", "exec", "-it", "web", "sh"][..],
            Some("name_variant"),
        ),
        (
            "docker",
            &["nginx", "exec", "-it", "web", "sh"][..],
            Some("argv0"),
        ),
        ("docker", &["docker", "exec", "-it", "web", "sh"][..], None),
    ] {
        let ev = common::event_named(Some(name), argv, None);
        let alerts = engine.evaluate(&ev);
        let a = alerts
            .iter()
            .find(|a| a.rule_id == EXEC)
            .unwrap_or_else(|| panic!("{argv:?}: no {EXEC}"));
        assert_eq!(a.argv.as_ref().and_then(|i| i.masquerade), masq, "{argv:?}");
        let doc = a.to_ecs();
        let mut fast = Vec::new();
        a.write_json(&mut fast).unwrap();
        let fast: serde_json::Value = serde_json::from_slice(&fast).unwrap();
        assert_eq!(doc, fast, "{argv:?}");
        assert_eq!(
            doc["t1609"]["argv"]["masquerade"].as_str(),
            masq,
            "{argv:?}: {}",
            doc["t1609"]["argv"]
        );
        // The real name and executable stay as they were.
        assert_eq!(doc["process"]["name"].as_str(), Some(name));
    }
}

#[test]
fn parse_identified_marks_content_and_name() {
    let a = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let inv =
        &argv::parse_identified("docker", ".x", &a(&["docker", "exec", "-it", "web", "sh"]))[0];
    assert_eq!(
        (inv.tool.as_str(), inv.recognised_by, inv.masquerade),
        ("docker", Some("content"), Some("renamed"))
    );
    assert_eq!(inv.container.as_deref(), Some("web"));
    let inv = &argv::parse_identified("docker", "DOCKER", &a(&["DOCKER", "ps"]))[0];
    assert_eq!(inv.masquerade, Some("name_variant"));
    let inv = &argv::parse_identified("docker", "docker", &a(&["docker", "exec", "web", "id"]))[0];
    assert_eq!((inv.recognised_by, inv.masquerade), (Some("content"), None));
    let inv =
        &argv::parse_identified("kubectl", "kubectl", &a(&["sshd", "exec", "p", "--", "id"]))[0];
    assert_eq!(inv.masquerade, Some("argv0"));
    // A renamed ctr whose arguments alone would not say so.
    let inv = &argv::parse_identified("ctr", "x", &a(&["x", "t", "exec", "abc", "sh"]))[0];
    assert_eq!(
        (
            inv.tool.as_str(),
            inv.verb.as_deref(),
            inv.container.as_deref()
        ),
        ("ctr", Some("exec"), Some("abc"))
    );
    // k3s's applets, CDK, and a name the parser has no grammar for.
    let inv = &argv::parse_identified(
        "k3s",
        "k3s",
        &a(&["k3s", "kubectl", "exec", "-it", "p", "--", "sh"]),
    )[0];
    assert_eq!((inv.tool.as_str(), inv.masquerade), ("kubectl", None));
    let inv = &argv::parse_identified(
        "cdk",
        "svc",
        &a(&[
            "svc",
            "kcurl",
            "anonymous",
            "post",
            "https://n:10250/run/a/b/c",
        ]),
    )[0];
    assert_eq!(
        (inv.tool.as_str(), inv.api_action),
        ("url_client", Some("run"))
    );
    assert!(argv::parse_identified("containerd-shim", "x", &a(&["x", "-id", "a"])).is_empty());
}
