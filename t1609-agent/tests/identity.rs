//! A container tool known by what its file is (issue #22), live: the real docker client
//! and `ctr` copied, hard-linked and renamed (a hidden name, upper case, a trailing space,
//! a non-UTF-8 byte) and run against the real dockerd. The probe reports each, the agent
//! classifies its file, and the container-exec alert names the target, the tool and that
//! the name lies (T1036.003). The client under its own name gets no such flag. A kubectl
//! plugin script and `exec -a` spoofing, likewise.
//!
//! The hold for a new file's verdict is raised from 0.5 s to 5 s: classifying a 45 MB
//! client takes ~0.1 s here, but the machine is shared with other builds and tests.

mod common;

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use serde_json::Value;

const CONFIG: &str = "[identity]\nhold_ms = 5000\n";

/// One agent at a time: each agent classifies every new file on the host, the other
/// tests' copies included, and a new file's first exec waits for its verdict.
static ONE_AGENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_agent() -> std::sync::MutexGuard<'static, ()> {
    ONE_AGENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real docker client of the distribution's package (docker.io), else the one on PATH.
fn docker_client() -> PathBuf {
    let deb = Path::new("/usr/bin/docker");
    if deb.exists() {
        return deb.to_owned();
    }
    which("docker")
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!p.is_empty(), "{tool} is not installed (scripts/setup.sh)");
    std::fs::canonicalize(p).unwrap()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A container of the tests' image, removed on drop.
struct Target {
    name: String,
    id: String,
}

impl Target {
    fn start(tag: &str) -> Target {
        let name = format!("t1609-identity-{tag}-{}", std::process::id());
        let id = docker_container(&name);
        Target { name, id }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// Runs `exe args…` (its name may be anything, bytes included) to success.
fn run(exe: &Path, args: &[&str]) {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdout(std::process::Stdio::null());
    let child = spawn_retrying(&mut cmd);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}: {}", exe.display(), out.status);
}

/// Waits for the alert of a new file's first exec: held for the file's verdict, it comes
/// once the verdict is in the probe's map. The probe reports a new file once; its other
/// execs while the verdict is pending go unseen, so the next name for the same file
/// waits for this.
fn wait_alert(agent: &Agent, seen: &mut Vec<String>, marker: &str) {
    wait_until(&format!("the alert of {marker}"), 30, || {
        agent.take_stdout(seen);
        seen.iter()
            .any(|l| l.contains(marker) && l.contains("t1609.container_exec"))
    });
}

/// The container-exec alerts whose command line carries `marker`.
fn exec_alerts<'a>(alerts: &'a [Value], marker: &str) -> Vec<&'a Value> {
    alerts_of(alerts, "t1609.container_exec")
        .into_iter()
        .filter(|a| {
            get(a, "process.command_line")
                .as_str()
                .is_some_and(|c| c.contains(marker))
        })
        .collect()
}

fn techniques(a: &Value) -> Vec<&str> {
    get(a, "threat.technique.id")
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The one container-exec alert of `marker`, known by content as `tool` under a name
/// that lies (`masquerade`), with the file's hash and the target.
fn assert_identified(
    alerts: &[Value],
    marker: &str,
    tool: &str,
    masquerade: &str,
    hash: &str,
    target: &str,
) {
    let found = exec_alerts(alerts, marker);
    assert_eq!(found.len(), 1, "{marker}: {found:#?}");
    let a = found[0];
    let what = format!("{marker}: {a:#}");
    assert_eq!(get(a, "t1609.tool.name"), tool, "{what}");
    assert_eq!(get(a, "t1609.argv.tool"), tool, "{what}");
    assert_eq!(get(a, "t1609.argv.recognised_by"), "content", "{what}");
    assert_eq!(get(a, "t1609.argv.masquerade"), masquerade, "{what}");
    assert_eq!(get(a, "t1609.argv.container"), target, "{what}");
    assert_eq!(get(a, "process.hash.sha256"), hash, "{what}");
    assert!(techniques(a).contains(&"T1036.003"), "{what}");
    assert_eq!(get(a, "t1609.confidence"), "high", "{what}");
}

#[test]
fn renamed_copied_and_linked_docker_clients_are_known_by_content() {
    if !privileged_or_skip("renamed_copied_and_linked_docker_clients_are_known_by_content")
        || !services("docker")
    {
        return;
    }
    let _one = one_agent();
    let client = docker_client();
    let hash = sha256(&client);
    let target = Target::start("docker");
    let dir = tempfile::tempdir().unwrap();
    // A copy under a hidden name, hard links to it under the other names.
    let hidden = dir.path().join(".dkr");
    std::fs::copy(&client, &hidden).unwrap();
    let upper = dir.path().join("DOCKER");
    let spaced = dir.path().join("docker ");
    let bytes = dir.path().join(OsStr::from_bytes(b"dock\xffer"));
    for link in [&upper, &spaced, &bytes] {
        std::fs::hard_link(&hidden, link).unwrap();
    }
    // A file that is not docker, run with the same arguments: nothing to find.
    let not_docker = dir.path().join(".dkr-echo");
    std::fs::copy("/bin/echo", &not_docker).unwrap();
    let agent = Agent::start_with_config(CONFIG, &[]);
    let t = target.name.as_str();
    // No -i, no -t: nothing in the arguments says docker, only the file does.
    let mut out = Vec::new();
    run(&client, &["exec", t, "/bin/echo", "m-own-name"]);
    run(&hidden, &["exec", t, "/bin/echo", "m-hidden"]);
    wait_alert(&agent, &mut out, "m-hidden");
    run(&upper, &["exec", t, "/bin/echo", "m-upper"]);
    run(&spaced, &["exec", t, "/bin/echo", "m-spaced"]);
    run(&bytes, &["exec", t, "/bin/echo", "m-bytes"]);
    run(&not_docker, &["exec", t, "/bin/echo", "m-not-docker"]);
    // Renamed again, the same file: its verdict holds.
    let renamed = dir.path().join("kworker");
    std::fs::rename(&hidden, &renamed).unwrap();
    run(&renamed, &["exec", t, "/bin/echo", "m-renamed"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (rest, log) = agent.stop();
    out.extend(rest);
    let alerts = parse_alerts(&out);
    let all = format!("{:#?}\n{}", alerts, log.join("\n"));
    // The client under its own name: known by name, no masquerade.
    let own = exec_alerts(&alerts, "m-own-name");
    assert_eq!(own.len(), 1, "{all}");
    assert!(
        get(own[0], "t1609.argv.masquerade").is_null(),
        "{:#}",
        own[0]
    );
    assert!(!techniques(own[0]).contains(&"T1036.003"), "{:#}", own[0]);
    assert_eq!(get(own[0], "t1609.target.resolved"), true, "{:#}", own[0]);
    for (marker, masquerade) in [
        ("m-hidden", "renamed"),
        ("m-upper", "name_variant"),
        ("m-spaced", "name_variant"),
        ("m-bytes", "renamed"),
        ("m-renamed", "renamed"),
    ] {
        assert_identified(&alerts, marker, "docker", masquerade, &hash, t);
        // The docker socket resolved the target.
        let a = exec_alerts(&alerts, marker)[0];
        assert_eq!(get(a, "t1609.target.resolved"), true, "{a:#}");
        assert_eq!(
            get(a, "t1609.target.container.id"),
            target.id.as_str(),
            "{a:#}"
        );
    }
    // The real name is kept, bytes included (base64 beside the lossy text).
    let a = exec_alerts(&alerts, "m-bytes")[0];
    assert_eq!(get(a, "process.name"), "dock\u{fffd}er", "{a:#}");
    assert!(get(a, "t1609.executable_b64").is_string(), "{a:#}");
    assert_eq!(
        get(exec_alerts(&alerts, "m-spaced")[0], "process.name"),
        "docker "
    );
    assert!(exec_alerts(&alerts, "m-not-docker").is_empty(), "{all}");
}

#[test]
fn renamed_ctr_is_known_by_content() {
    if !privileged_or_skip("renamed_ctr_is_known_by_content") || !services("docker") {
        return;
    }
    let _one = one_agent();
    let ctr = which("ctr");
    let hash = sha256(&ctr);
    let target = Target::start("ctr");
    let dir = tempfile::tempdir().unwrap();
    let hidden = dir.path().join(".c");
    std::fs::copy(&ctr, &hidden).unwrap();
    let upper = dir.path().join("CTR");
    let spaced = dir.path().join("ctr ");
    let bytes = dir.path().join(OsStr::from_bytes(b"c\xfftr"));
    for link in [&upper, &spaced, &bytes] {
        std::fs::hard_link(&hidden, link).unwrap();
    }
    let agent = Agent::start_with_config(CONFIG, &[]);
    // dockerd's own containerd: its tasks are the containers, in namespace `moby`.
    let sock = "/var/run/docker/containerd/containerd.sock";
    let exec = |exe: &Path, marker: &str| {
        run(
            exe,
            &[
                "--address",
                sock,
                "-n",
                "moby",
                "tasks",
                "exec",
                "--exec-id",
                marker,
                &target.id,
                "/bin/echo",
                marker,
            ],
        );
    };
    let mut out = Vec::new();
    exec(&ctr, "m-ctr-own");
    exec(&hidden, "m-ctr-hidden");
    wait_alert(&agent, &mut out, "m-ctr-hidden");
    exec(&upper, "m-ctr-upper");
    exec(&spaced, "m-ctr-spaced");
    exec(&bytes, "m-ctr-bytes");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (rest, log) = agent.stop();
    out.extend(rest);
    let alerts = parse_alerts(&out);
    let own = exec_alerts(&alerts, "m-ctr-own");
    assert_eq!(own.len(), 1, "{alerts:#?}\n{}", log.join("\n"));
    assert!(
        get(own[0], "t1609.argv.masquerade").is_null(),
        "{:#}",
        own[0]
    );
    for (marker, masquerade) in [
        ("m-ctr-hidden", "renamed"),
        ("m-ctr-upper", "name_variant"),
        ("m-ctr-spaced", "name_variant"),
        ("m-ctr-bytes", "renamed"),
    ] {
        assert_identified(&alerts, marker, "ctr", masquerade, &hash, &target.id);
    }
}

#[test]
fn kubectl_plugin_scripts_and_exec_a_spoofing_are_caught() {
    if !privileged_or_skip("kubectl_plugin_scripts_and_exec_a_spoofing_are_caught")
        || !services("docker")
    {
        return;
    }
    let _one = one_agent();
    let client = docker_client();
    let target = Target::start("spoof");
    let dir = tempfile::tempdir().unwrap();
    // A node-shell plugin, as `kubectl node-shell` would run it, and a plugin whose name
    // says nothing of exec (reported by the probe, no alert).
    let plugin = dir.path().join("kubectl-node_shell");
    let other = dir.path().join("kubectl-ctx");
    for p in [&plugin, &other] {
        std::fs::write(p, "#!/bin/sh\necho \"$0 $*\"\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let copy = dir.path().join(".d");
    std::fs::copy(&client, &copy).unwrap();
    let agent = Agent::start_with_config(CONFIG, &[]);
    run(&plugin, &["m-plugin-node"]);
    run(&other, &["m-plugin-ctx"]);
    let t = target.name.as_str();
    // argv[0] spoofed on the real client: its name is still docker.
    let spoof = format!(
        "exec -a nginx {} exec {t} /bin/echo m-argv0-real",
        client.display()
    );
    run(Path::new("/bin/bash"), &["-c", &spoof]);
    // argv[0] says docker on a renamed copy: the file says it too, the name does not.
    let spoof = format!(
        "exec -a docker {} exec {t} /bin/echo m-argv0-copy",
        copy.display()
    );
    run(Path::new("/bin/bash"), &["-c", &spoof]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (out, log) = agent.stop();
    let alerts = parse_alerts(&out);
    let all = format!("{alerts:#?}\n{}", log.join("\n"));
    let node: Vec<&Value> = alerts_of(&alerts, "t1609.container_exec")
        .into_iter()
        .filter(|a| get(a, "t1609.argv.plugin") == "node_shell")
        .collect();
    assert_eq!(node.len(), 1, "{all}");
    let a = node[0];
    // The script's own path, from the tracepoint.
    assert_eq!(
        get(a, "process.executable"),
        plugin.to_str().unwrap(),
        "{a:#}"
    );
    assert_eq!(get(a, "t1609.argv.tool"), "kubectl", "{a:#}");
    assert_eq!(get(a, "t1609.argv.verb"), "node-shell", "{a:#}");
    assert!(
        !alerts.iter().any(|a| get(a, "t1609.argv.plugin") == "ctx"),
        "{all}"
    );
    let spoofed = exec_alerts(&alerts, "m-argv0-real");
    assert_eq!(spoofed.len(), 1, "{all}");
    let a = spoofed[0];
    assert_eq!(get(a, "process.name"), "docker", "{a:#}");
    assert_eq!(get(a, "process.args")[0], "nginx", "{a:#}");
    assert_eq!(get(a, "t1609.argv.masquerade"), "argv0", "{a:#}");
    assert!(techniques(a).contains(&"T1036.003"), "{a:#}");
    assert_identified(
        &alerts,
        "m-argv0-copy",
        "docker",
        "renamed",
        &sha256(&client),
        t,
    );
}

/// The `[identity]` section: a value out of range names its key, line and what is allowed.
#[test]
fn identity_config_errors_name_the_key_and_line() {
    use t1609_agent::config::Config;
    let ok = Config::from_toml(
        Path::new("c.toml"),
        "[identity]\ndirs = [\"/opt/tools\"]\nhash_lists = [\"/etc/t1609-agent/hashes.toml\"]\nqueue_capacity = 64\n",
    )
    .unwrap();
    assert_eq!(ok.identity.queue_capacity, 64);
    let err = Config::from_toml(
        Path::new("c.toml"),
        "[identity]\nenabled = true\nhold_ms = 9000\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("c.toml:3: ") && err.contains("identity.hold_ms"),
        "{err}"
    );
    assert!(err.contains("0 to 5000"), "{err}");
    let err = Config::from_toml(Path::new("c.toml"), "[identity]\nhash_list = []\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("c.toml:2:") && err.contains("hash_list"),
        "{err}"
    );
}

/// An operator's hash list names a tool content analysis cannot (here a build of `true`
/// listed as docker): the alert says how it was known and from which entry. A bad list
/// stops the start, naming file, line and field.
#[test]
fn an_operator_hash_list_names_a_tool() {
    if !privileged_or_skip("an_operator_hash_list_names_a_tool") {
        return;
    }
    let _one = one_agent();
    let dir = tempfile::tempdir().unwrap();
    // A copy of `true` no other file shares: trailing bytes an ELF loader ignores.
    let tool = dir.path().join(".t");
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(format!("t1609 test {}", std::process::id()).as_bytes());
    std::fs::write(&tool, bytes).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let list = dir.path().join("hashes.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &list,
        format!(
            "# test\n[[hash]]\nsha256 = \"{}\"\ntool = \"docker\"\n",
            sha256(&tool)
        ),
    )
    .unwrap();
    std::fs::write(&bad, "[[hash]]\nsha256 = \"abc\"\ntool = \"docker\"\n").unwrap();
    let cfg = |l: &Path| {
        format!(
            "[identity]\nhold_ms = 5000\nhash_lists = [{:?}]\n",
            l.to_str().unwrap()
        )
    };
    let agent = Agent::start_with_config(&cfg(&list), &[]);
    run(&tool, &["exec", "web-hashed", "sh"]);
    let mut out = Vec::new();
    wait_alert(&agent, &mut out, "web-hashed");
    let (rest, _) = agent.stop();
    out.extend(rest);
    let alerts = parse_alerts(&out);
    let a = exec_alerts(&alerts, "web-hashed");
    assert_eq!(a.len(), 1, "{alerts:#?}");
    assert_eq!(get(a[0], "t1609.tool.how"), "sha256", "{:#}", a[0]);
    // The entry's `sha256` line.
    let source = format!("{}:3", list.display());
    assert_eq!(
        get(a[0], "t1609.tool.source"),
        source.as_str(),
        "{:#}",
        a[0]
    );
    // A bad list: the agent refuses to start and says where.
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[deliver]\nspool_dir = {:?}\n[metrics]\nlisten = \"\"\n{}",
            dir.path().join("spool").to_str().unwrap(),
            cfg(&bad)
        ),
    )
    .unwrap();
    let out = Command::new(agent_bin())
        .args(["run", "--config", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}:2", bad.display())) && err.contains("sha256"),
        "{err}"
    );
}
