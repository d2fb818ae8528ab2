//! Shared helpers for the privileged end-to-end tests: they run the real agent binary,
//! which loads the real eBPF program into the running kernel.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod faults;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::Value;

/// `T1609_REQUIRE_PRIVILEGED=1` (set by `.ci/run` and `cargo xtask test`): a missing
/// requirement of a test is a failure, not a skip.
pub fn privileged_required() -> bool {
    std::env::var("T1609_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// True when the kernel tests can run here. Under `T1609_REQUIRE_PRIVILEGED=1`, a missing
/// requirement is a test failure instead.
pub fn privileged_or_skip(test: &str) -> bool {
    let required = privileged_required();
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("needs root (CAP_BPF + CAP_PERFMON)")
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("needs kernel BTF (/sys/kernel/btf/vmlinux)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if required => panic!("{test}: {r}, and T1609_REQUIRE_PRIVILEGED=1"),
        Some(r) => {
            eprintln!("skipping {test}: {r}");
            false
        }
    }
}

pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_t1609-agent"))
}

/// A running agent. Stopping it (SIGTERM) waits for it to drain and exit.
pub struct Agent {
    /// Holds the agent's config and spool; removed when the agent is dropped.
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub stderr_lines: mpsc::Receiver<String>,
    pub stdout_lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

fn pump(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Agent {
    /// Starts `t1609-agent run ARGS` and waits until it reports it is attached.
    pub fn start(args: &[&str]) -> Agent {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Self::start_full("", args, env)
    }

    /// Starts the agent with `extra_toml` appended to a config that gives it a private
    /// spool directory (agents in parallel tests must not share one).
    pub fn start_with_config(extra_toml: &str, args: &[&str]) -> Agent {
        Self::start_full(extra_toml, args, &[])
    }

    pub fn start_full(extra_toml: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let spool = dir.path().join("spool");
        // Port 0: parallel agents must not fight over the metrics port.
        let metrics = if extra_toml.contains("[metrics]") {
            ""
        } else {
            "[metrics]\nlisten = \"127.0.0.1:0\"\n"
        };
        std::fs::write(
            &config,
            format!(
                "[deliver]\nspool_dir = {:?}\n{metrics}{extra_toml}\n",
                spool.to_str().unwrap()
            ),
        )
        .unwrap();
        Self::launch(dir, &config, args, env)
    }

    /// Runs `t1609-agent run --config CONFIG ARGS` and waits for its ready line.
    fn launch(dir: tempfile::TempDir, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = Command::new(agent_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        cmd.env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn t1609-agent");
        let stderr_lines = pump(child.stderr.take().unwrap());
        let stdout_lines = pump(child.stdout.take().unwrap());
        let mut agent = Agent {
            dir,
            child,
            stderr_lines,
            stdout_lines,
            log: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            match agent.stderr_lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let ready = line.contains("t1609-agent ready");
                    agent.log.push(line);
                    if ready {
                        return agent;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = agent.child.try_wait() {
                        panic!(
                            "agent exited with {status} before ready:\n{}",
                            agent.drain_log().join("\n")
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "agent not ready after 60 s:\n{}",
                        agent.log.join("\n")
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = agent.child.wait().unwrap();
                    panic!(
                        "agent exited with {status} before ready:\n{}",
                        agent.log.join("\n")
                    );
                }
            }
        }
    }

    /// The metrics/health address from the ready line.
    pub fn metrics_addr(&self) -> String {
        let ready = self
            .log
            .iter()
            .find(|l| l.contains("t1609-agent ready"))
            .expect("ready line");
        let at = ready.find("metrics=").expect("metrics= in the ready line") + "metrics=".len();
        ready[at..].split_whitespace().next().unwrap().to_owned()
    }

    pub fn drain_log(&mut self) -> Vec<String> {
        while let Ok(l) = self.stderr_lines.try_recv() {
            self.log.push(l);
        }
        self.log.clone()
    }

    pub fn signal(&self, sig: libc::c_int) {
        signal(&self.child, sig);
    }

    /// SIGTERM, then wait for a clean exit; returns stdout lines and the stderr log.
    pub fn stop(mut self) -> (Vec<String>, Vec<String>) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = Vec::new();
        // The pumps end at EOF after exit.
        while let Ok(l) = self.stdout_lines.recv_timeout(Duration::from_secs(2)) {
            out.push(l);
        }
        let log = {
            while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_millis(500)) {
                self.log.push(l);
            }
            self.log.clone()
        };
        assert!(
            status.success(),
            "agent exited with {status}:\n{}",
            log.join("\n")
        );
        (out, log)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` to a child of this process.
pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: plain kill(2) on our child's pid.
    unsafe { libc::kill(pid, sig) };
}

/// Polls `ok` every 100 ms; fails the test after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads a `--record` file: one JSON document per line, every line must parse.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("record line is not JSON ({e}): {l:?}"))
        })
        .collect()
}

/// A copy of /bin/true named `name` in `dir`: a harmless stand-in for a container tool.
pub fn fake_tool(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/true", &p).unwrap();
    p
}

/// Follows a dotted ECS path through nested objects.
pub fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, k| v.get(k).unwrap_or(&Value::Null))
}

pub fn str_args(v: &Value) -> Vec<String> {
    get(v, "process.args")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Alerts (JSON lines on the agent's stdout) of one rule.
pub fn alerts_of<'a>(alerts: &'a [Value], rule: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| get(a, "rule.id").as_str() == Some(rule))
        .collect()
}

pub fn parse_alerts(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("alert line is not one JSON document ({e}): {l:?}"))
        })
        .collect()
}

pub fn records_for<'a>(records: &'a [Value], executable: &Path) -> Vec<&'a Value> {
    let exe = executable.to_str().unwrap();
    records
        .iter()
        .filter(|r| get(r, "process.executable").as_str() == Some(exe))
        .collect()
}

/// Starts a real service the test needs (`scripts/services.sh journald|docker`). When it
/// cannot start: a failure under `T1609_REQUIRE_PRIVILEGED=1`, otherwise a printed skip.
pub fn services(which: &str) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let ok = Command::new("bash")
        .arg(script)
        .arg(which)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !privileged_required(),
            "could not start {which}, and T1609_REQUIRE_PRIVILEGED=1"
        );
        eprintln!("skipping: {which} could not be started");
    }
    ok
}

/// Starts (or restarts) container `name` of the tests' image, sleeping for ten minutes;
/// returns its id.
pub fn docker_container(name: &str) -> String {
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    let out = output_ok(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        name,
        "t1609-test/busybox:1",
        "sleep",
        "600",
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `cmd` to its end; it must succeed (its stderr says why not).
pub fn output_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---- Helpers for the fault and hostile-input tests (faults_*.rs, hostile.rs) ----

impl Agent {
    /// Starts the agent with a config whose `[deliver] spool_dir` is `spool`, a directory
    /// the caller owns: a restarted agent must find the first one's spool, and the
    /// full-disk test puts it on a small tmpfs. As in `start_with_config`, `extra_toml`
    /// follows `spool_dir`, so its first keys belong to `[deliver]`.
    pub fn start_with_spool(spool: &Path, extra_toml: &str, args: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[deliver]\nspool_dir = {:?}\n{extra_toml}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
                spool.to_str().unwrap()
            ),
        )
        .unwrap();
        Self::launch(dir, &config, args, &[])
    }

    /// Stdout lines printed so far (non-blocking), appended to `into`.
    pub fn take_stdout(&self, into: &mut Vec<String>) {
        while let Ok(l) = self.stdout_lines.try_recv() {
            into.push(l);
        }
    }

    /// `kill -9`: no drain, no flush. Returns the stdout lines that were still unread.
    pub fn kill9(mut self) -> Vec<String> {
        self.signal(libc::SIGKILL);
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}"
        );
        let mut out = Vec::new();
        while let Ok(l) = self.stdout_lines.recv_timeout(Duration::from_secs(2)) {
            out.push(l);
        }
        out
    }

    /// One sample from `/metrics` (exact series name with labels), or None. Every series
    /// the tests read is a counter or a gauge of whole numbers.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let text = http_get_body(&self.metrics_addr(), "/metrics")?;
        text.lines()
            .find(|l| l.split_once(' ').is_some_and(|(name, _)| name == series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Polls a metric (refreshed by the agent every second) until `ok` holds.
    pub fn wait_metric(&self, series: &str, secs: u64, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.metric(series);
            if let Some(v) = v.filter(|v| ok(*v)) {
                return v;
            }
            assert!(Instant::now() < deadline, "{series} = {v:?} after {secs} s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Body of `GET path` on the metrics listener, None if it does not answer.
pub fn http_get_body(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_owned())
}

/// Runs `tool exec -it MARKER sh`: a watched exec whose alerts carry `marker`.
pub fn exec_marked(tool: &Path, marker: &str) {
    let st = Command::new(tool)
        .args(["exec", "-it", marker, "sh"])
        .status()
        .unwrap();
    assert!(st.success(), "{} {marker}", tool.display());
}

/// The alert's `event.id`.
pub fn event_id(a: &Value) -> String {
    get(a, "event.id")
        .as_str()
        .unwrap_or_else(|| panic!("alert without event.id: {a}"))
        .to_owned()
}

/// Every value of a journald field as `journalctl -o json` prints it: a string, an array
/// of byte values (a binary-safe value), or an array of those when the field occurs more
/// than once in the entry. A forged field therefore shows up as a second value.
pub fn journal_values(v: &Value) -> Vec<Vec<u8>> {
    let one = |v: &Value| -> Option<Vec<u8>> {
        match v {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Array(a) if a.iter().all(Value::is_u64) => Some(
                a.iter()
                    .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
                    .collect(),
            ),
            _ => None,
        }
    };
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) if !a.is_empty() && !a.iter().all(Value::is_u64) => {
            a.iter().map(|x| one(x).expect("journal value")).collect()
        }
        _ => vec![one(v).expect("journal value")],
    }
}

/// Entries `journalctl -o json --all ARGS` prints (e.g. `_PID=…`, `--namespace=…`).
pub fn journal_json(args: &[&str]) -> Vec<Value> {
    let out = Command::new("journalctl")
        .args(["-o", "json", "--all", "--no-pager"])
        .args(args)
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("journalctl line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The `T1609_ECS` document of a journal entry (exactly one such field).
pub fn journal_ecs(e: &Value) -> Value {
    let v = journal_values(&e["T1609_ECS"]);
    assert_eq!(v.len(), 1, "one T1609_ECS field: {e}");
    serde_json::from_slice(&v[0]).expect("T1609_ECS is one JSON document")
}

/// Appends `bytes` to `partial` and moves every complete line (without its newline) into
/// `lines`: what a socket reader does with each read.
pub fn push_lines(partial: &mut Vec<u8>, bytes: &[u8], lines: &Mutex<Vec<Vec<u8>>>) {
    partial.extend_from_slice(bytes);
    while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        lines.lock().unwrap().push(line[..line.len() - 1].to_vec());
    }
}

/// Each line parsed as exactly one JSON document; `what` names the source in a failure.
pub fn json_lines(lines: &[Vec<u8>], what: &str) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!(
                    "{what} line is not one JSON document ({e}): {:?}",
                    String::from_utf8_lossy(&l[..l.len().min(300)])
                )
            })
        })
        .collect()
}

/// The agent's final statistics line ("t1609-agent stopped ...").
pub fn stop_line(log: &[String]) -> &str {
    log.iter()
        .find(|l| l.contains("t1609-agent stopped"))
        .unwrap_or_else(|| panic!("no stop line in {log:#?}"))
}

/// The number after `key=` on the stop line.
pub fn stop_count(stopped: &str, key: &str) -> u64 {
    let at = stopped
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("{key} in {stopped}"));
    stopped[at + key.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} value in {stopped}"))
}

/// Runs `cmd` to its end, which must be a success; returns its pid.
pub fn run_ok(cmd: &mut Command) -> u32 {
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(status.success(), "{cmd:?}: {status}");
    pid
}

/// Spawns `cmd`, retrying while the executable is busy: a file this test just copied
/// can still be open for writing in a child another test thread forked meanwhile (the
/// descriptor closes only at that child's exec), and exec'ing it fails with ETXTBSY.
pub fn spawn_retrying(cmd: &mut Command) -> std::process::Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
        }
    }
    panic!("{cmd:?}: executable still busy after 2 s");
}
