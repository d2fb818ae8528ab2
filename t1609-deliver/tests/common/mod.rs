//! Helpers shared by the integration tests (real sockets, real journald, child processes).
#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use t1609_deliver::{DeliverConfig, Dispatcher, SinkSpec};
use tokio::{io::AsyncBufReadExt, net::UnixListener};

/// How long a test waits for something that should happen at once.
pub const T: Duration = Duration::from_secs(10);

/// An ECS alert with every field of the input contract; `seq` is also kept in
/// `t1609.seq` so order can be checked.
pub fn doc(run: &str, seq: u64, cmd: &str) -> Value {
    json!({
        "@timestamp": "2026-11-28T12:00:00.000Z",
        "event": {"id": format!("{run}-{seq:06}"), "kind": "alert", "severity": 73, "risk_score": 73},
        "rule": {"id": "t1609.container_admin_command", "name": "Container administration command"},
        "t1609": {"severity": "high", "group_id": "g1", "seq": seq},
        "process": {"pid": 4242, "executable": "/usr/bin/docker", "command_line": cmd, "name": "docker"},
        "user": {"name": "alice", "id": "1000"},
        "container": {"id": "c0ffee"},
    })
}

pub fn seq_of(v: &Value) -> Option<u64> {
    v["t1609"]["seq"].as_u64()
}

pub fn cfg(spool: &Path, sinks: &[&str]) -> DeliverConfig {
    DeliverConfig {
        sinks: sinks
            .iter()
            .map(|s| s.parse::<SinkSpec>().unwrap())
            .collect(),
        spool_dir: spool.to_path_buf(),
        backoff_initial_ms: 20,
        backoff_max_ms: 200,
        spool_sync_ms: 50,
        ..DeliverConfig::default()
    }
}

/// A unique-per-test run id.
pub fn run_id(name: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{t}", std::process::id())
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// An in-process stream collector: every complete line from every connection.
pub struct Collector {
    pub lines: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    pub path: PathBuf,
}

impl Collector {
    pub fn bind(path: &Path) -> Self {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let ls = lines.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let ls = ls.clone();
                tokio::spawn(async move {
                    let mut r = tokio::io::BufReader::new(s).lines();
                    while let Ok(Some(line)) = r.next_line().await {
                        ls.lock().unwrap().push(line);
                    }
                });
            }
        });
        Self {
            lines,
            task,
            path: path.to_path_buf(),
        }
    }

    pub fn docs(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts journald through scripts/services.sh. `Err(reason)` when it cannot run.
pub fn ensure_journald() -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("journald")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} journald failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !Path::new("/run/systemd/journal/socket").exists() {
        return Err("no /run/systemd/journal/socket".into());
    }
    Command::new("journalctl")
        .arg("--version")
        .output()
        .map_err(|e| format!("journalctl not available: {e}"))?;
    Ok(())
}

/// Skips (prints `skipping: ...` and returns) unless `T1609_REQUIRE_PRIVILEGED=1`, where it
/// fails instead.
#[macro_export]
macro_rules! require {
    ($r:expr) => {
        if let Err(reason) = $r {
            if std::env::var("T1609_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
                panic!("required component unavailable: {reason}");
            }
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

/// `journalctl -o json --all` entries matching the given `FIELD=value` matches, polled
/// until `want` entries are there (or 8 s).
pub fn journal_entries(matches: &[String], want: usize) -> Vec<Value> {
    let end = Instant::now() + Duration::from_secs(8);
    loop {
        let out = Command::new("journalctl")
            .args(["-o", "json", "--all", "--no-pager"])
            .args(matches)
            .output()
            .expect("journalctl runs");
        let v: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if v.len() >= want || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A journal field's bytes (journalctl prints non-printable values as byte arrays, and
/// repeated fields as an array of values).
pub fn field_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(a) if a.iter().all(Value::is_u64) => a
            .iter()
            .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
            .collect(),
        other => panic!("field holds several values (forged?): {other}"),
    }
}

/// This test binary, set to run only its test `child_main` with the role in
/// `T1609_DELIVER_CHILD` (see [`child_main`]).
pub fn child_command(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "child_main",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env("T1609_DELIVER_CHILD", role);
    c
}

/// Runs this test binary again as a child process in `role` (see [`child_command`]).
pub fn spawn_child(role: &str, stdout: Stdio) -> Child {
    child_command(role)
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Kills the child with SIGKILL when dropped (also when a test panics).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

/// Reads the child's stdout until it prints `READY` (libtest prints its own lines first).
pub fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut r = std::io::BufReader::new(out);
    let mut l = String::new();
    loop {
        l.clear();
        let n = r.read_line(&mut l).unwrap();
        assert!(n > 0, "child exited before READY");
        if l.trim() == "READY" {
            break;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
}

pub fn kill9(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(i32::try_from(child.id()).expect("a pid"), libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Asserts `got` is exactly `want`, reporting only the first difference.
pub fn assert_in_order(got: &[u64], want: std::ops::Range<u64>, what: &str) {
    let want: Vec<u64> = want.collect();
    if got != want.as_slice() {
        let i = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} items, want {}; first difference at index {i}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(i..(i + 5).min(got.len())),
            want.get(i..(i + 5).min(want.len())),
        );
    }
}

/// Parses a journald native-protocol payload into (field, value) pairs, as journald does.
pub fn parse_native(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let nl = i + buf[i..].iter().position(|&b| b == b'\n').unwrap();
        let line = &buf[i..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                line[eq + 1..].to_vec(),
            ));
            i = nl + 1;
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let len = u64::from_le_bytes(buf[nl + 1..nl + 9].try_into().unwrap());
            let len = usize::try_from(len).unwrap();
            out.push((key, buf[nl + 9..nl + 9 + len].to_vec()));
            assert_eq!(buf[nl + 9 + len], b'\n');
            i = nl + 10 + len;
        }
    }
    out
}

/// Receives one datagram and, if present, one `SCM_RIGHTS` descriptor.
pub fn recv_with_fd(
    sock: &std::os::unix::net::UnixDatagram,
) -> (Vec<u8>, Option<std::os::fd::OwnedFd>) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = vec![0u8; 1 << 20];
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; buffers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: valid socket and msghdr.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, 0) };
    let n = usize::try_from(n)
        .unwrap_or_else(|_| panic!("recvmsg: {}", std::io::Error::last_os_error()));
    data.truncate(n);
    let mut fd = None;
    // SAFETY: walking the control buffer the kernel filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
            fd = Some(std::os::fd::OwnedFd::from_raw_fd(raw));
        }
    }
    (data, fd)
}

/// A command line that tries to forge journal fields, JSON and terminal output.
pub fn hostile_cmd() -> String {
    "docker exec -it c1 sh\nPRIORITY=0\nT1609_RULE_ID=x\r\nMESSAGE=forged\u{0}NUL\u{1b}[31mRED\u{1b}[0m \u{2028}\"}{\\".to_owned()
}

/// What a child process started by [`spawn_child`] does, by its role in
/// `T1609_DELIVER_CHILD`; nothing in a normal test run. Each test binary that starts
/// children calls this from its own `#[test] fn child_main`.
pub fn child_main() {
    let Ok(role) = std::env::var("T1609_DELIVER_CHILD") else {
        return;
    };
    let parts: Vec<&str> = role.split('|').collect();
    match parts[0] {
        "collector" => {
            let (sock, out) = (parts[1], parts[2]);
            let _ = std::fs::remove_file(sock);
            let l = std::os::unix::net::UnixListener::bind(sock).unwrap();
            println!("READY");
            std::io::stdout().flush().unwrap();
            for c in l.incoming() {
                let mut c = c.unwrap();
                let out = out.to_owned();
                std::thread::spawn(move || {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&out)
                        .unwrap();
                    // Peek, persist, then consume: a SIGKILL at any point can duplicate
                    // bytes (still queued, so resent) but never lose read-but-unwritten ones.
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        // SAFETY: recv into a valid buffer on our own socket.
                        let n = unsafe {
                            libc::recv(
                                std::os::fd::AsRawFd::as_raw_fd(&c),
                                buf.as_mut_ptr().cast(),
                                buf.len(),
                                libc::MSG_PEEK,
                            )
                        };
                        // 0 at end of stream, negative on error.
                        let n = usize::try_from(n).unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        f.write_all(&buf[..n]).unwrap();
                        c.read_exact(&mut buf[..n]).unwrap();
                    }
                });
            }
        }
        "agent" => {
            let (spool, sock, n, run) = (
                parts[1],
                parts[2],
                parts[3].parse::<u64>().unwrap(),
                parts[4],
            );
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let c = cfg(
                    std::path::Path::new(spool),
                    &[&format!("socket-client:{sock}")],
                );
                let d = Dispatcher::start(c).await.unwrap();
                for i in 0..n {
                    d.submit(Arc::new(doc(run, i, "docker exec -it c1 /bin/sh")));
                }
                let ok = wait_for(T, || d.stats().sinks[0].spooled == n).await;
                assert!(ok, "child: not all spooled: {:?}", d.stats());
                println!("READY");
                std::io::stdout().flush().unwrap();
                tokio::time::sleep(Duration::from_mins(1)).await;
            });
        }
        "stdout" => {
            let (spool, run) = (parts[1], parts[2]);
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let d = Dispatcher::start(cfg(std::path::Path::new(spool), &["stdout"]))
                    .await
                    .unwrap();
                for i in 0..50 {
                    d.submit(Arc::new(doc(run, i, &hostile_cmd())));
                }
                d.shutdown(Duration::from_secs(5)).await;
            });
        }
        other => panic!("unknown child role {other}"),
    }
}
