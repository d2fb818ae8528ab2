//! Hostile argv through the live kernel path (issue #8, "Hostile input"): a watched fake
//! `docker` is executed with attacker-shaped arguments; the real agent captures it with
//! eBPF and delivers to journald (the shared instance of `scripts/services.sh`) and to a
//! socket-server sink read by a subscriber in the test. Both outputs are checked for
//! every case: each socket line is exactly one JSON document, each journal entry has
//! exactly one value per field (a forged field would add a second one), and journald's
//! `T1609_ECS` is the very document the socket carried.
//!
//! Already covered elsewhere and not repeated: the record-level argv checks of
//! `capture.rs` (32 KiB cap, awkward arguments) and the journald-only forging checks of
//! `alerts.rs::hostile_argv_cannot_forge_journal_fields_or_split_json`.

mod common;

use std::{
    collections::BTreeMap,
    ffi::{CString, OsStr},
    io::{ErrorKind, Read},
    os::unix::{ffi::OsStrExt, net::UnixStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use base64::Engine as _;
use common::*;
use serde_json::Value;

/// Captured argv cap (README "argv capture"): 4 KiB plus 7 continuation records.
const ARGV_CAP: usize = 32 * 1024;

/// Reads the socket-server sink: raw lines, kept as bytes so a split or a raw control
/// byte cannot hide behind a lossy conversion.
struct Subscriber {
    lines: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    fn connect(path: &Path) -> Self {
        let mut s = UnixStream::connect(path).expect("connect to the socket-server sink");
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, st) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut partial = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => push_lines(&mut partial, &buf[..k], &l),
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) =>
                    {
                        if st.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    Err(e) => panic!("subscriber read: {e}"),
                }
            }
            assert!(partial.is_empty(), "unterminated line: {partial:?}");
        });
        Self {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// Every line so far; each must be one JSON document without a raw control byte.
    fn docs(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        for l in lines.iter() {
            assert!(
                l.iter().all(|&b| b >= 0x20),
                "raw control byte in a socket line: {:?}",
                String::from_utf8_lossy(l)
            );
        }
        json_lines(&lines, "socket")
    }

    fn raw(&self) -> Vec<Vec<u8>> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for the agent to close the connection (it stopped).
    fn finish(&mut self) {
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !t.is_finished() {
                if Instant::now() > deadline {
                    self.stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            t.join().unwrap();
        }
    }
}

/// One agent with both sinks, a watched fake `docker`, and a marker naming this run.
struct Run {
    /// Holds the fake tool and the socket; removed with the run.
    dir: tempfile::TempDir,
    agent: Agent,
    sub: Subscriber,
    docker: PathBuf,
    marker: String,
    /// `journalctl --since` for this agent's entries: an exec storm earlier on the host
    /// can wrap pids, and an older agent with the same pid left entries in the journal.
    since: String,
}

/// What both sinks delivered, checked for agreement.
struct Delivered {
    /// Socket documents, in order.
    socket: Vec<Value>,
    /// The same lines as received on the wire.
    socket_raw: Vec<Vec<u8>>,
    /// Journal entries of this agent, raw (`journalctl -o json`).
    journal: Vec<Value>,
}

impl Run {
    fn start(test: &str, extra_args: &[&str]) -> Option<Self> {
        if !privileged_or_skip(test) || !services("journald") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let docker = fake_tool(dir.path(), "docker");
        let sock = dir.path().join("alerts.sock");
        let sink = format!("socket-server:{}", sock.display());
        let mut args = vec!["--output", "journald", "--output", &sink];
        args.extend_from_slice(extra_args);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let since = format!("--since=@{}", now.saturating_sub(1));
        let agent = Agent::start_with_config("[context]\ndedup_window_ms = 0\n", &args);
        let sub = Subscriber::connect(&sock);
        Some(Self {
            dir,
            agent,
            sub,
            docker,
            marker: format!("hx{}{}", std::process::id(), test.len()),
            since,
        })
    }

    fn exec(&self, args: &[&OsStr]) {
        let st = Command::new(&self.docker).args(args).status().unwrap();
        assert!(st.success());
    }

    /// A plain exec after the hostile one: the agent must still capture and deliver, and
    /// since each sink keeps submission order, once its alerts are on the socket
    /// everything raised before them is too. Then stop and collect both outputs.
    fn finish(mut self) -> Delivered {
        let canary = format!("{}-canary", self.marker);
        exec_marked(&self.docker, &canary);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.sub.docs().iter().any(|a| on_container(a, &canary)) {
            assert!(
                Instant::now() < deadline,
                "the canary exec after the hostile one never arrived: the agent stalled\n{}",
                self.agent.drain_log().join("\n")
            );
            assert!(
                self.agent.child.try_wait().unwrap().is_none(),
                "agent died:\n{}",
                self.agent.drain_log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = self.agent.child.id();
        let (_, log) = self.agent.stop();
        // A panicking task (a sink worker, the pipeline) would not stop the process.
        assert!(
            !log.iter().any(|l| l.contains("panicked")),
            "{}",
            log.join("\n")
        );
        self.sub.finish();
        let socket = self.sub.docs();
        let socket_raw = self.sub.raw();
        assert_eq!(socket.len(), socket_raw.len());
        // journald is a separate sink: wait for it to hold as many of our alerts.
        let filter = [
            &format!("_PID={pid}")[..],
            "SYSLOG_IDENTIFIER=t1609-agent",
            &self.since,
        ];
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut journal = journal_json(&filter);
        while journal.len() < socket.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            journal = journal_json(&filter);
        }
        let d = Delivered {
            socket,
            socket_raw,
            journal,
        };
        d.check_agreement();
        d
    }
}

fn on_container(a: &Value, name: &str) -> bool {
    get(a, "process.args")
        .as_array()
        .is_some_and(|v| v.iter().any(|x| x == name))
}

fn one(e: &Value, field: &str) -> Vec<u8> {
    let v = journal_values(&e[field]);
    assert_eq!(
        v.len(),
        1,
        "{field} must occur exactly once: {:?}",
        e[field]
    );
    v.into_iter().next().unwrap()
}

impl Delivered {
    /// The same alerts on both sinks; every journal entry well formed.
    fn check_agreement(&self) {
        let by_id: BTreeMap<String, &Value> =
            self.socket.iter().map(|a| (event_id(a), a)).collect();
        assert_eq!(by_id.len(), self.socket.len(), "no duplicate on the socket");
        assert_eq!(
            self.journal.len(),
            self.socket.len(),
            "one journal entry per socket alert"
        );
        for e in &self.journal {
            assert_eq!(one(e, "SYSLOG_IDENTIFIER"), b"t1609-agent");
            let prio = one(e, "PRIORITY");
            assert!(
                [&b"2"[..], b"3", b"4", b"5"].contains(&&prio[..]),
                "PRIORITY {prio:?}"
            );
            let msg = one(e, "MESSAGE");
            let msg = String::from_utf8(msg).expect("MESSAGE is UTF-8");
            assert!(
                !msg.chars().any(char::is_control),
                "MESSAGE has a raw control character: {msg:?}"
            );
            let ecs = journal_ecs(e);
            let id = event_id(&ecs);
            assert_eq!(one(e, "T1609_EVENT_ID"), id.as_bytes());
            assert_eq!(
                one(e, "T1609_RULE_ID"),
                get(&ecs, "rule.id").as_str().unwrap().as_bytes()
            );
            let sock = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("journal alert {id} not on the socket"));
            assert_eq!(*sock, &ecs, "T1609_ECS differs from the socket document");
            if let Some(cmd) = get(&ecs, "process.command_line").as_str() {
                assert_eq!(
                    one(e, "T1609_COMMAND_LINE"),
                    cmd.as_bytes(),
                    "T1609_COMMAND_LINE keeps the exact bytes"
                );
            }
        }
    }

    fn alerts_on(&self, container: &str) -> Vec<&Value> {
        self.socket
            .iter()
            .filter(|a| on_container(a, container))
            .collect()
    }

    fn journal_for(&self, a: &Value) -> &Value {
        let id = event_id(a);
        self.journal
            .iter()
            .find(|e| journal_ecs(e)["event"]["id"] == id.as_str())
            .unwrap()
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn one_mib_of_padding_is_cut_at_the_cap_and_flagged_on_both_sinks() {
    let Some(run) = Run::start("one_mib_of_padding", &[]) else {
        return;
    };
    let m = run.marker.clone();
    // One argument may not exceed 128 KiB (MAX_ARG_STRLEN): 16 of 64 KiB make 1 MiB.
    let pad = "P".repeat(64 * 1024);
    let mut args: Vec<&OsStr> = ["exec", "-it", &m, "sh"].map(os).to_vec();
    args.extend(std::iter::repeat_n(os(&pad), 16));
    args.push(os("tail-after-1mib"));
    run.exec(&args);
    let total: usize =
        run.docker.as_os_str().len() + 1 + args.iter().map(|a| a.len() + 1).sum::<usize>();
    let d = run.finish();

    let mine = d.alerts_on(&m);
    let rules: Vec<&str> = mine
        .iter()
        .map(|a| get(a, "rule.id").as_str().unwrap())
        .collect();
    assert!(rules.contains(&"t1609.argv_truncated"), "{rules:?}");
    assert!(rules.contains(&"t1609.container_exec"), "{rules:?}");
    for a in &mine {
        assert_eq!(get(a, "t1609.argv_truncated"), true);
        assert_eq!(get(a, "process.args_count"), 22, "argc is exact");
        assert_eq!(
            usize::try_from(get(a, "t1609.argv_total_len").as_u64().unwrap()).unwrap(),
            total,
            "the real argv length"
        );
        let got = str_args(a);
        assert_eq!(got[1..5], ["exec", "-it", m.as_str(), "sh"], "head intact");
        // NUL-separated, as in the process's memory; the cut argument has no NUL.
        let kept: usize = got.iter().map(|s| s.len() + 1).sum::<usize>() - 1;
        assert_eq!(kept, ARGV_CAP, "the head is kept up to the cap");
        assert!(!got.iter().any(|s| s == "tail-after-1mib"));
        let line = serde_json::to_vec(a).unwrap();
        assert!(line.len() < 256 * 1024, "alert of {} bytes", line.len());
    }
    let low = mine
        .iter()
        .find(|a| get(a, "rule.id") == "t1609.argv_truncated")
        .unwrap();
    assert_eq!(get(low, "t1609.severity"), "low");
    assert_eq!(one(d.journal_for(low), "PRIORITY"), b"5", "low = notice");
    assert_eq!(one(d.journal_for(low), "T1609_SEVERITY"), b"low");
}

#[test]
fn ten_thousand_arguments_report_exact_argc_on_both_sinks() {
    let Some(run) = Run::start("ten_thousand_arguments", &[]) else {
        return;
    };
    let small = format!("{}-small", run.marker);
    let big = format!("{}-big", run.marker);
    // 10,000 one-byte arguments (20 KB): under the cap, all arrive.
    let mut args: Vec<&OsStr> = ["exec", "-it", &small, "sh"].map(os).to_vec();
    args.extend(std::iter::repeat_n(os("a"), 10_000));
    run.exec(&args);
    // 10,000 five-byte arguments (60 KB): over the cap, cut, argc still exact.
    let numbered: Vec<String> = (0..10_000).map(|i| format!("{i:05}")).collect();
    let mut args: Vec<&OsStr> = ["exec", "-it", &big, "sh"].map(os).to_vec();
    args.extend(numbered.iter().map(|s| os(s)));
    run.exec(&args);
    let d = run.finish();

    let smalls = d.alerts_on(&small);
    assert!(!smalls.is_empty());
    for a in &smalls {
        assert_eq!(get(a, "process.args_count"), 10_005);
        assert_eq!(get(a, "t1609.argv_truncated"), false);
        let got = str_args(a);
        assert_eq!(got.len(), 10_005, "every argument arrives");
        assert!(got[5..].iter().all(|s| s == "a"));
    }
    assert!(
        smalls
            .iter()
            .all(|a| get(a, "rule.id") != "t1609.argv_truncated"),
        "not truncated, no truncation alert"
    );

    let bigs = d.alerts_on(&big);
    assert!(
        bigs.iter()
            .any(|a| get(a, "rule.id") == "t1609.argv_truncated"),
        "truncation alert"
    );
    for a in &bigs {
        assert_eq!(get(a, "process.args_count"), 10_005, "argc is exact");
        assert_eq!(get(a, "t1609.argv_truncated"), true);
        let got = str_args(a);
        assert!(got.len() < 10_005 && got.len() > 4000, "{}", got.len());
        // The kept head is exact (the last kept argument may be cut).
        for (i, s) in got[5..got.len() - 1].iter().enumerate() {
            assert_eq!(s, &numbered[i]);
        }
        let e = d.journal_for(a);
        let cmd = one(e, "T1609_COMMAND_LINE");
        assert!(cmd.len() <= ARGV_CAP && cmd.len() > 20_000, "{}", cmd.len());
    }
}

#[test]
fn non_utf8_bytes_become_replacement_chars_with_exact_base64_on_both_sinks() {
    let Some(run) = Run::start("non_utf8_bytes", &[]) else {
        return;
    };
    let m = run.marker.clone();
    // The executable's own path is not UTF-8 either.
    let odd_dir = run.dir.path().join(OsStr::from_bytes(b"bin\xff\xfe"));
    std::fs::create_dir(&odd_dir).unwrap();
    let docker = fake_tool(&odd_dir, "docker");
    let raw: Vec<&[u8]> = vec![
        b"exec",
        b"-it",
        m.as_bytes(),
        b"sh",
        b"\xff\xfe\x80bad",
        b"ok\xc3\x28half",
        b"\xed\xa0\x80surrogate",
    ];
    let st = Command::new(&docker)
        .args(raw.iter().map(|b| OsStr::from_bytes(b)))
        .status()
        .unwrap();
    assert!(st.success());
    let d = run.finish();

    let mine = d.alerts_on(&m);
    assert!(!mine.is_empty());
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut want_raw: Vec<&[u8]> = vec![docker.as_os_str().as_bytes()];
    want_raw.extend(&raw);
    for a in &mine {
        let got = str_args(a);
        let lossy: Vec<String> = want_raw
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(got, lossy, "invalid bytes become U+FFFD");
        assert!(got[5].starts_with('\u{fffd}'));
        let exact: Vec<Vec<u8>> = get(a, "t1609.args_b64")
            .as_array()
            .expect("t1609.args_b64")
            .iter()
            .map(|s| b64.decode(s.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(exact, want_raw, "args_b64 round-trips every argument");
        let exe = b64
            .decode(
                get(a, "t1609.executable_b64")
                    .as_str()
                    .expect("executable_b64"),
            )
            .unwrap();
        assert_eq!(exe, docker.as_os_str().as_bytes());
        assert_eq!(get(a, "process.name"), "docker");
        // Journald got the same text, valid UTF-8 with the replacement characters.
        let e = d.journal_for(a);
        let cmd = String::from_utf8(one(e, "T1609_COMMAND_LINE")).expect("UTF-8");
        assert!(cmd.contains("\u{fffd}\u{fffd}\u{fffd}bad"), "{cmd:?}");
        assert_eq!(
            one(e, "T1609_PROCESS_EXECUTABLE"),
            get(a, "process.executable").as_str().unwrap().as_bytes()
        );
    }
}

#[test]
fn newlines_cannot_forge_journal_fields_or_split_socket_lines() {
    let Some(run) = Run::start("newline_forgery", &[]) else {
        return;
    };
    let m = run.marker.clone();
    let forge = "x\nPRIORITY=0\nSYSLOG_IDENTIFIER=sshd\nT1609_RULE_ID=forged\nMESSAGE=forged\nT1609_EVENT_ID=forged\nT1609_ECS={}\n";
    let crlf = "y\r\nMESSAGE_ID=00000000000000000000000000000000\r\n";
    let lead = "\nT1609_SEVERITY=info";
    run.exec(&["exec", "-it", &m, forge, crlf, lead].map(os));
    let d = run.finish();

    let mine = d.alerts_on(&m);
    assert!(!mine.is_empty());
    for a in &mine {
        assert_eq!(
            str_args(a)[4..],
            [forge, crlf, lead],
            "exact arguments kept"
        );
        let e = d.journal_for(a);
        // check_agreement: one value per field. Here: none of the forged values.
        assert_ne!(one(e, "PRIORITY"), b"0");
        assert_ne!(one(e, "T1609_RULE_ID"), b"forged");
        assert_ne!(one(e, "T1609_EVENT_ID"), b"forged");
        assert_ne!(one(e, "T1609_SEVERITY"), b"info");
        assert_ne!(one(e, "MESSAGE"), b"forged");
        assert_ne!(one(e, "MESSAGE_ID"), b"00000000000000000000000000000000");
    }
    // No line of the socket stream starts with a forged key: nothing was split.
    for l in &d.socket_raw {
        assert_eq!(l.first(), Some(&b'{'), "{:?}", String::from_utf8_lossy(l));
    }
    assert_eq!(d.raw_socket_for(&m).len(), mine.len(), "one line per alert");
}

#[test]
fn ansi_escapes_are_escaped_in_json_and_message() {
    let Some(run) = Run::start("ansi_escapes", &[]) else {
        return;
    };
    let m = run.marker.clone();
    let ansi = "\x1b[2J\x1b[H\x1b]0;owned\x07\x1b[31mred\x1b[0m\u{9b}6n";
    run.exec(&["exec", "-it", &m, "sh", "-c", ansi].map(os));
    let d = run.finish();

    let mine = d.alerts_on(&m);
    assert!(!mine.is_empty());
    for a in &mine {
        assert_eq!(str_args(a)[6], ansi);
        let e = d.journal_for(a);
        assert!(
            one(e, "T1609_COMMAND_LINE")
                .windows(4)
                .any(|w| w == b"\x1b[2J"),
            "exact bytes kept in the structured field"
        );
        let msg = String::from_utf8(one(e, "MESSAGE")).unwrap();
        assert!(msg.contains("\\x1b[2J"), "escape shown escaped: {msg:?}");
        assert!(!msg.contains('\u{9b}'), "C1 CSI escaped: {msg:?}");
    }
    // Socket: the escape travels as `\u001b`, never as a raw byte (checked by docs()).
    let lines = d.raw_socket_for(&m);
    assert!(!lines.is_empty());
    for l in lines {
        assert!(!l.contains(&0x1b) && !l.contains(&0x07));
        assert!(l.windows(6).any(|w| w == b"\\u001b"));
    }
}

impl Delivered {
    fn raw_socket_for(&self, marker: &str) -> Vec<Vec<u8>> {
        // As a whole JSON string (the canary's name only starts with the marker).
        let quoted = format!("\"{marker}\"");
        self.socket_raw
            .iter()
            .filter(|l| l.windows(quoted.len()).any(|w| w == quoted.as_bytes()))
            .cloned()
            .collect()
    }
}

/// fork + execve(path, {NULL}, {NULL}): argc 0. Since Linux 5.18 the kernel then passes
/// one empty argument instead (commit dcd46d897adb "exec: Force single empty string when
/// argv is empty").
fn exec_with_empty_argv(path: &Path) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let argv: [*const libc::c_char; 1] = [std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child only calls execve and _exit (async-signal-safe) on data prepared
    // before the fork.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the empty-argv exec failed: status {status:#x}"
        );
    }
}

#[test]
fn empty_argv_is_reported_and_does_not_stall_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec.json");
    let Some(run) = Run::start("empty_argv", &["--record", record.to_str().unwrap()]) else {
        return;
    };
    exec_with_empty_argv(&run.docker);
    let docker = run.docker.clone();
    let d = run.finish();

    // What the agent reports for it: the kernel's single empty argument.
    let recs = read_records(&record);
    let mine = records_for(&recs, &docker);
    let empty: Vec<&&Value> = mine
        .iter()
        .filter(|r| get(r, "process.args_count") != 5)
        .collect();
    assert_eq!(empty.len(), 1, "{mine:#?}");
    let r = empty[0];
    assert_eq!(str_args(r), [""], "{r:#}");
    assert_eq!(get(r, "process.args_count"), 1);
    assert_eq!(get(r, "process.command_line"), "");
    assert_eq!(get(r, "process.name"), "docker");
    assert_eq!(get(r, "t1609.argv_truncated"), false);
    // No verb, nothing to alert on: the only alerts are the canary's, on both sinks.
    let pid = get(r, "process.pid").clone();
    assert!(
        d.socket.iter().all(|a| *get(a, "process.pid") != pid),
        "{:#?}",
        d.socket
    );
    assert!(!d.socket.is_empty(), "the canary's alerts");
}
