//! Network side of T1609, for real: a local HTTPS "kubelet" on 127.0.0.1:10250 with a
//! certificate made by the test, and a Unix socket configured as a runtime socket.
//! All traffic stays on loopback.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

const SERVER: &str = r"
import http.server, socket, ssl, sys, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('Content-Length') or 0); self.rfile.read(n)
        self.send_response(200); self.end_headers(); self.wfile.write(b'uid=0(root)\n')
    do_GET = do_POST
    def log_message(self, *a): pass
mode = sys.argv[1]
if mode == 'tls':
    srv = http.server.HTTPServer(('127.0.0.1', int(sys.argv[2])), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
else:
    class U(http.server.HTTPServer):
        address_family = socket.AF_UNIX
        def server_bind(self):
            self.socket.bind(self.server_address)
        def get_request(self):
            s, _ = self.socket.accept(); return s, ('unix', 0)
    path = sys.argv[2]
    if os.path.exists(path): os.unlink(path)
    srv = U(path, H)
print('listening', flush=True)
srv.serve_forever()
";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server(args: &[&str]) -> Server {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVER)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "test server did not start");
    Server(child)
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    (cert, key)
}

fn curl() -> PathBuf {
    ["/usr/bin/curl", "/bin/curl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("curl installed")
}

/// The kubelet port is fixed (10250), so the tests that use it take turns.
static KUBELET_PORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn kubelet_run_via_curl_raises_argv_and_connect_alerts_linked() {
    if !privileged_or_skip("kubelet_run_via_curl_raises_argv_and_connect_alerts_linked") {
        return;
    }
    let _port = KUBELET_PORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let _srv = server(&[
        "tls",
        "10250",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ]);
    let agent = Agent::start(&[]);
    let out = Command::new(curl())
        .args([
            "-sk",
            "-XPOST",
            "https://127.0.0.1:10250/run/default/atomic-pod/ctr",
            "-d",
            "cmd=id",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl to the local kubelet failed");
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = agent.stop();
    let alerts = parse_alerts(&lines);

    let argv = alerts_of(&alerts, "t1609.kubelet_api_exec");
    assert_eq!(argv.len(), 1, "{alerts:#?}");
    let a = argv[0];
    let url = get(a, "t1609.argv");
    let dump = url.to_string();
    assert!(
        dump.contains("atomic-pod") && dump.contains("\"default\"") && dump.contains("ctr"),
        "decoded URL parts: {dump}"
    );

    let connect = alerts_of(&alerts, "t1609.kubelet_api_connect");
    assert_eq!(connect.len(), 1, "{alerts:#?}");
    let c = connect[0];
    assert_eq!(get(c, "destination.port"), 10250);
    assert_eq!(get(c, "destination.ip"), "127.0.0.1");
    assert_eq!(get(c, "t1609.origin"), "host");
    assert_eq!(get(c, "process.name"), "curl");
    assert_eq!(
        get(c, "t1609.group_id"),
        get(a, "t1609.group_id"),
        "the two alerts are linked"
    );
    assert_eq!(get(c, "t1609.related_event_id"), get(a, "event.id"));
}

#[test]
fn renamed_client_still_raises_the_connect_alert() {
    if !privileged_or_skip("renamed_client_still_raises_the_connect_alert") {
        return;
    }
    let _port = KUBELET_PORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let _srv = server(&[
        "tls",
        "10250",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ]);
    let renamed = dir.path().join("x");
    std::fs::copy(curl(), &renamed).unwrap();
    let agent = Agent::start(&[]);
    let status = Command::new(&renamed)
        .args(["-sk", "https://127.0.0.1:10250/pods"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // And a python socket, the other classic custom client.
    let py = Command::new("python3")
        .args([
            "-c",
            "import socket; s=socket.create_connection(('127.0.0.1',10250)); s.close()",
        ])
        .status()
        .unwrap();
    assert!(py.success());
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = agent.stop();
    let alerts = parse_alerts(&lines);
    let connect = alerts_of(&alerts, "t1609.kubelet_api_connect");
    let names: Vec<&str> = connect
        .iter()
        .filter_map(|a| get(a, "process.name").as_str())
        .collect();
    assert!(names.contains(&"x"), "renamed curl: {names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("python")),
        "python socket: {names:?}"
    );
    assert!(
        alerts_of(&alerts, "t1609.kubelet_api_exec").is_empty(),
        "an unwatched name raises no argv alert"
    );
}

#[test]
fn runtime_socket_access_by_unexpected_client_only() {
    if !privileged_or_skip("runtime_socket_access_by_unexpected_client_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let _srv = server(&["unix", sock.to_str().unwrap()]);
    let docker_named = dir.path().join("docker");
    std::fs::copy(curl(), &docker_named).unwrap();
    let cfg = format!(
        "[network]\nruntime_sockets = [{:?}]\n",
        sock.to_str().unwrap()
    );
    let agent = Agent::start_with_config(&cfg, &[]);
    let url = "http://localhost/containers/json";
    let s = sock.to_str().unwrap();
    assert!(
        Command::new(curl())
            .args(["-s", "--unix-socket", s, url])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    // A listed client (named docker) does not alert.
    assert!(
        Command::new(&docker_named)
            .args(["-s", "--unix-socket", s, url])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = agent.stop();
    let alerts = parse_alerts(&lines);
    let access = alerts_of(&alerts, "t1609.runtime_socket_access");
    assert_eq!(access.len(), 1, "{alerts:#?}");
    assert_eq!(get(access[0], "process.name"), "curl");
    assert_eq!(get(access[0], "destination.address"), s);
    assert_eq!(get(access[0], "network.transport"), "unix");
}

#[test]
fn unrelated_port_raises_nothing() {
    if !privileged_or_skip("unrelated_port_raises_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let _srv = server(&[
        "tls",
        "18443",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ]);
    let renamed = dir.path().join("x");
    std::fs::copy(curl(), &renamed).unwrap();
    let agent = Agent::start(&[]);
    assert!(
        Command::new(&renamed)
            .args(["-sk", "https://127.0.0.1:18443/run/default/p/c"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = agent.stop();
    let alerts = parse_alerts(&lines);
    // Other tests may connect to 10250 meanwhile: only this test's client counts.
    let mine = renamed.to_str().unwrap();
    let net: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            get(a, "event.category")[0] == "network" && get(a, "process.executable") == mine
        })
        .collect();
    assert!(net.is_empty(), "{net:#?}");
    // The same client to the kubelet port does alert, so the filter above is not vacuous.
    let _port = KUBELET_PORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _srv2 = server(&[
        "tls",
        "10250",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ]);
    let agent = Agent::start(&[]);
    assert!(
        Command::new(&renamed)
            .args(["-sk", "https://127.0.0.1:10250/pods"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = agent.stop();
    let alerts = parse_alerts(&lines);
    assert!(
        alerts
            .iter()
            .any(|a| get(a, "rule.id") == "t1609.kubelet_api_connect"
                && get(a, "process.executable") == mine)
    );
}

/// BPF links of `pid` of one kind (`perf`: tracepoints; `cgroup`), read from its fdinfo.
fn links(pid: u32, kind: &str) -> usize {
    let want = format!("link_type:\t{kind}");
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l == want))
        .count()
}

fn ready(log: &[String]) -> String {
    log.iter()
        .find(|l| l.contains("t1609-agent ready"))
        .cloned()
        .unwrap_or_default()
}

/// Unix connects are caught by the cgroup hook, which only `AF_UNIX` connects pay for,
/// or by the syscall tracepoint, which every syscall on the host pays for; with no
/// runtime socket configured, by neither. Each start attaches what its ready line says.
/// The build machine (Linux 6.18, the host's cgroup namespace) has the cgroup hook, so
/// `"cgroup"` must start here.
#[test]
fn unix_connect_hook_attaches_what_the_ready_line_says() {
    if !privileged_or_skip("unix_connect_hook_attaches_what_the_ready_line_says") {
        return;
    }
    // exec, fork, exit, inet_sock_set_state, then the Unix side.
    for (toml, says, perf, cgroup) in [
        (
            "[network]\nunix_connect_hook = \"cgroup\"\n",
            "cgroup/connect_unix",
            4,
            1,
        ),
        (
            "[network]\nunix_connect_hook = \"tracepoint\"\n",
            "syscalls:sys_enter_connect",
            5,
            0,
        ),
        ("[network]\nruntime_sockets = []\n", "off", 4, 0),
    ] {
        let agent = Agent::start_with_config(toml, &[]);
        let pid = agent.child.id();
        let (got_perf, got_cgroup) = (links(pid, "perf"), links(pid, "cgroup"));
        let (_, log) = agent.stop();
        let line = ready(&log);
        assert!(
            line.contains(&format!("unix_connects=\"{says}\"")),
            "{toml}: {line}"
        );
        assert_eq!((got_perf, got_cgroup), (perf, cgroup), "{toml}: {line}");
    }
    // The default picks the cgroup hook where it can.
    let agent = Agent::start(&[]);
    let got_cgroup = links(agent.child.id(), "cgroup");
    let (_, log) = agent.stop();
    assert!(
        ready(&log).contains("unix_connects=\"cgroup/connect_unix\""),
        "{}",
        ready(&log)
    );
    assert_eq!(got_cgroup, 1);
}

/// Both hooks see the same connects: curl's, and Python's, whose address length leaves
/// out the path's NUL (the cgroup hook reads the kernel's copy, bounded by that length).
#[test]
fn runtime_socket_connects_seen_by_either_hook() {
    if !privileged_or_skip("runtime_socket_connects_seen_by_either_hook") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("containerd.sock");
    let _srv = server(&["unix", sock.to_str().unwrap()]);
    let s = sock.to_str().unwrap();
    let py = format!(
        "import socket; c = socket.socket(socket.AF_UNIX); c.connect({s:?}); \
         c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); c.recv(100)"
    );
    for hook in ["cgroup", "tracepoint"] {
        let cfg = format!(
            "[network]\nruntime_sockets = [{s:?}]\nexpected_clients = []\nunix_connect_hook = \"{hook}\"\n"
        );
        let agent = Agent::start_with_config(&cfg, &[]);
        let url = "http://localhost/v1/containers";
        let curl_ok = Command::new(curl())
            .args(["-s", "--unix-socket", s, url])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        let py_ok = Command::new("python3").args(["-c", &py]).status().unwrap();
        assert!(curl_ok.success() && py_ok.success(), "{hook}");
        std::thread::sleep(Duration::from_millis(300));
        let (lines, log) = agent.stop();
        let alerts = parse_alerts(&lines);
        let mut clients: Vec<String> = alerts_of(&alerts, "t1609.runtime_socket_access")
            .iter()
            .filter(|a| get(a, "destination.address") == s)
            .map(|a| {
                let name = get(a, "process.name").as_str().unwrap_or_default();
                // The interpreter's name carries its version (python3.11).
                if name.starts_with("python3") {
                    "python3".to_owned()
                } else {
                    name.to_owned()
                }
            })
            .collect();
        clients.sort();
        assert_eq!(clients, ["curl", "python3"], "{hook}: {}", ready(&log));
    }
}
