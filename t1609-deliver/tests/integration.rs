//! Integration tests with real components: journald, Unix sockets, files, child processes
//! killed with SIGKILL. Each test is bounded (< 20 s).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::doc_markdown,
    clippy::duration_suboptimal_units,
    clippy::many_single_char_names,
    clippy::similar_names,
    clippy::too_many_lines,
    reason = "test and benchmark code, 64-bit Linux only"
)]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use t1609_deliver::{DeliverConfig, Dispatcher};
use tokio::io::AsyncBufReadExt;
use tokio::net::UnixStream;

const T: Duration = Duration::from_secs(10);

/// Entry point of child processes (see `spawn_child`); a no-op in a normal test run.
#[test]
fn child_main() {
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
                        if n <= 0 {
                            return;
                        }
                        let n = n as usize;
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
                tokio::time::sleep(Duration::from_secs(60)).await;
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

fn hostile_cmd() -> String {
    "docker exec -it c1 sh\nPRIORITY=0\nT1609_RULE_ID=x\r\nMESSAGE=forged\u{0}NUL\u{1b}[31mRED\u{1b}[0m \u{2028}\"}{\\".to_owned()
}

// ---------------------------------------------------------------- journald

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_entry_has_every_field() {
    require!(ensure_journald());
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("jfields");
    let d = Dispatcher::start(cfg(dir.path(), &["journald"]))
        .await
        .unwrap();
    let v = doc(&run, 1, "docker exec -it c1 /bin/sh");
    d.submit(Arc::new(v.clone()));
    d.shutdown(Duration::from_secs(3)).await;
    let id = format!("{run}-000001");
    let e = journal_entries(
        &[
            "T1609_RULE_ID=t1609.container_admin_command".into(),
            format!("T1609_EVENT_ID={id}"),
        ],
        1,
    );
    assert_eq!(e.len(), 1, "journal entry for {id} not found");
    let e = &e[0];
    let s = |k: &str| {
        e[k].as_str()
            .unwrap_or_else(|| panic!("missing {k} in {e}"))
            .to_owned()
    };
    assert_eq!(s("SYSLOG_IDENTIFIER"), "t1609-agent");
    assert_eq!(s("PRIORITY"), "3");
    assert_eq!(s("MESSAGE_ID").len(), 32);
    assert_eq!(
        s("MESSAGE_ID"),
        t1609_deliver::sink::journald::message_id("t1609.container_admin_command")
    );
    assert_eq!(
        s("MESSAGE"),
        "Container administration command: user=alice cmd=docker exec -it c1 /bin/sh container=c0ffee"
    );
    assert_eq!(s("T1609_RULE_ID"), "t1609.container_admin_command");
    assert_eq!(s("T1609_SEVERITY"), "high");
    assert_eq!(s("T1609_RISK_SCORE"), "73");
    assert_eq!(s("T1609_PROCESS_PID"), "4242");
    assert_eq!(s("T1609_PROCESS_EXECUTABLE"), "/usr/bin/docker");
    assert_eq!(s("T1609_COMMAND_LINE"), "docker exec -it c1 /bin/sh");
    assert_eq!(s("T1609_USER"), "alice");
    assert_eq!(s("T1609_CONTAINER_ID"), "c0ffee");
    assert_eq!(s("T1609_EVENT_ID"), id);
    let ecs: Value = serde_json::from_str(&s("T1609_ECS")).unwrap();
    assert_eq!(ecs, v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_hostile_values_and_memfd() {
    require!(ensure_journald());
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("jhostile");
    let d = Dispatcher::start(cfg(dir.path(), &["journald"]))
        .await
        .unwrap();
    let mut hostile = doc(&run, 1, &hostile_cmd());
    hostile["user"]["name"] = json!("bob\nT1609_USER=root");
    hostile["container"]["id"] = json!("\u{1b}]0;title\u{7}x");
    let mut big_cmd = String::from("docker exec -it c1 sh -c '");
    while big_cmd.len() < 1024 * 1024 {
        big_cmd.push_str("A\nPRIORITY=0\u{0}\u{1b}[2J");
    }
    big_cmd.push('\'');
    let big = doc(&run, 2, &big_cmd);
    d.submit(Arc::new(hostile.clone()));
    d.submit(Arc::new(big.clone()));
    d.shutdown(Duration::from_secs(5)).await;

    for (seq, v, cmd) in [(1, &hostile, hostile_cmd()), (2, &big, big_cmd.clone())] {
        let id = format!("{run}-{seq:06}");
        let e = journal_entries(&[format!("T1609_EVENT_ID={id}")], 1);
        assert_eq!(
            e.len(),
            1,
            "entry {id} missing (memfd path for the 1 MiB one)"
        );
        let e = &e[0];
        // Forged fields would show up as arrays of values or as wrong values.
        assert_eq!(e["PRIORITY"], "3", "PRIORITY forged");
        assert_eq!(e["T1609_RULE_ID"], "t1609.container_admin_command");
        assert_eq!(e["SYSLOG_IDENTIFIER"], "t1609-agent");
        assert!(e.get("X").is_none());
        let msg = e["MESSAGE"]
            .as_str()
            .expect("MESSAGE is one printable string");
        assert!(
            !msg.chars().any(char::is_control),
            "control chars in MESSAGE"
        );
        assert!(msg.len() < 4096);
        assert_eq!(field_bytes(&e["T1609_COMMAND_LINE"]), cmd.as_bytes());
        let ecs: Value = serde_json::from_slice(&field_bytes(&e["T1609_ECS"])).unwrap();
        assert_eq!(&ecs, v, "T1609_ECS does not round-trip");
        if seq == 1 {
            assert_eq!(field_bytes(&e["T1609_USER"]), b"bob\nT1609_USER=root");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_absent_is_down_then_spool_delivers() {
    // A private "journal socket" path: absent first, then a datagram reader appears.
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("journal.sock");
    let run = run_id("jabsent");
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("journald:{}", sock.display())],
    ))
    .await
    .unwrap();
    for i in 0..50 {
        d.submit(Arc::new(doc(&run, i, "kubectl exec -it p -- sh")));
    }
    assert!(
        wait_for(T, || {
            let s = d.stats();
            !s.sinks[0].healthy && s.sinks[0].spooled == 50
        })
        .await,
        "{:?}",
        d.stats()
    );
    let r = tokio::net::UnixDatagram::bind(&sock).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while got.len() < 50 {
        let n = tokio::time::timeout(T, r.recv(&mut buf))
            .await
            .expect("entries arrive")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("T1609_EVENT_ID="))
            .unwrap()
            .to_owned();
        got.push(id);
    }
    let want: Vec<String> = (0..50).map(|i| format!("{run}-{i:06}")).collect();
    assert_eq!(got, want);
    assert!(wait_for(T, || d.stats().sinks[0].healthy).await);
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_writer_uses_memfd_for_large_entries() {
    use std::os::unix::fs::FileExt;
    use t1609_deliver::sink::journald::JournaldSink;
    use t1609_deliver::{Alert, Sink};

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("journal.sock");
    let r = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    let mut sink = JournaldSink::new("journald".into(), sock.clone());
    let run = run_id("memfd");

    // Small entry: a plain datagram.
    let small = doc(&run, 0, &hostile_cmd());
    sink.deliver(&Alert::new(Arc::new(small.clone())))
        .await
        .unwrap();
    let (data, fd) = recv_with_fd(&r);
    assert!(fd.is_none() && !data.is_empty());
    let f = parse_native(&data);
    assert_eq!(f.iter().filter(|(k, _)| k == "PRIORITY").count(), 1);

    // 1 MiB command line: a sealed memfd passed with SCM_RIGHTS, no payload.
    let big_cmd = "B\nPRIORITY=0\u{0}\u{1b}[2J".repeat((1 << 20) / 16);
    let big = doc(&run, 1, &big_cmd);
    sink.deliver(&Alert::new(Arc::new(big.clone())))
        .await
        .unwrap();
    let (data, fd) = recv_with_fd(&r);
    assert!(data.is_empty(), "large entry sent inline");
    let fd = fd.expect("a memfd was passed");
    // SAFETY: F_GET_SEALS on a valid descriptor.
    let seals = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GET_SEALS) };
    assert_eq!(
        seals & libc::F_SEAL_WRITE,
        libc::F_SEAL_WRITE,
        "memfd is sealed"
    );
    let file = std::fs::File::from(fd);
    let len = file.metadata().unwrap().len() as usize;
    let mut content = vec![0u8; len];
    file.read_exact_at(&mut content, 0).unwrap();
    let f = parse_native(&content);
    let get = |k: &str| {
        f.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("PRIORITY"), vec![b"3".to_vec()]);
    assert_eq!(get("T1609_COMMAND_LINE"), vec![big_cmd.as_bytes().to_vec()]);
    let ecs: Value = serde_json::from_slice(&get("T1609_ECS")[0]).unwrap();
    assert_eq!(ecs, big);
}

// ---------------------------------------------------------------- socket server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_server_slow_subscriber_is_cut_others_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.sock");
    let mut c = cfg(
        &dir.path().join("spool"),
        &[&format!("socket-server:{}", path.display())],
    );
    c.subscriber_queue_len = 1024;
    c.queue_len = 8192;
    c.socket_group = Some("daemon".into());
    let d = Dispatcher::start(c).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let daemon_gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("daemon:x:")
                .and_then(|r| r.split(':').next()?.parse::<u32>().ok())
        })
        .expect("group daemon exists");
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), daemon_gid);

    let fast = UnixStream::connect(&path).await.unwrap();
    let slow = UnixStream::connect(&path).await.unwrap();
    assert!(wait_for(T, || d.stats().sinks[0].subscribers == 2).await);
    let fast_task = tokio::spawn(async move {
        // Only collect here (cheap); parse afterwards.
        let mut lines = tokio::io::BufReader::new(fast).lines();
        let mut raw = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            raw.push(l);
            if raw.len() == 6000 {
                break;
            }
        }
        raw.iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("fast subscriber was cut mid-line");
                seq_of(&v).unwrap()
            })
            .collect::<Vec<u64>>()
    });
    // The slow subscriber reads 10 lines, then stops reading.
    let mut slow = tokio::io::BufReader::new(slow);
    let mut slow_seqs = Vec::new();
    let run = run_id("srv");
    let pad = "x".repeat(1000);
    for i in 0..6000u64 {
        d.submit(Arc::new(doc(&run, i, &pad)));
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i == 20 {
            for _ in 0..10 {
                let mut l = String::new();
                slow.read_line(&mut l).await.unwrap();
                slow_seqs.push(seq_of(&serde_json::from_str(&l).unwrap()).unwrap());
            }
        }
    }
    let fast_seqs = tokio::time::timeout(T, fast_task)
        .await
        .expect("fast subscriber got everything")
        .unwrap();
    assert_in_order(&fast_seqs, 0..6000, "fast subscriber");
    let s = d.stats();
    assert_eq!(s.sinks[0].subscribers_disconnected, 1, "{s:?}");
    assert_eq!(s.sinks[0].subscribers, 1);
    assert_eq!(s.sinks[0].dropped, 0);
    // What the slow one got before being cut is an in-order prefix.
    let mut rest = Vec::new();
    tokio::time::timeout(
        T,
        tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut rest),
    )
    .await
    .expect("slow subscriber was disconnected")
    .ok();
    for l in rest.split(|&b| b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<Value>(l) {
            slow_seqs.push(seq_of(&v).unwrap());
        }
    }
    assert!(slow_seqs.len() < 6000, "slow subscriber was not cut");
    assert_in_order(&slow_seqs, 0..slow_seqs.len() as u64, "slow subscriber");
    d.shutdown(Duration::from_secs(2)).await;
    assert!(!path.exists(), "socket removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_server_replays_spool_to_first_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.sock");
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("socket-server:{}", path.display())],
    ))
    .await
    .unwrap();
    let run = run_id("replay");
    for i in 0..100 {
        d.submit(Arc::new(doc(&run, i, "crictl exec -it x sh")));
    }
    assert!(
        wait_for(T, || d.stats().sinks[0].spooled == 100).await,
        "{:?}",
        d.stats()
    );
    let s = UnixStream::connect(&path).await.unwrap();
    let mut lines = tokio::io::BufReader::new(s).lines();
    for i in 100..150 {
        d.submit(Arc::new(doc(&run, i, "crictl exec -it x sh")));
    }
    for want in 0..150 {
        let l = tokio::time::timeout(T, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(seq_of(&serde_json::from_str(&l).unwrap()), Some(want));
    }
    d.shutdown(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------- socket client

fn read_gen(path: &std::path::Path) -> Vec<Value> {
    // Complete lines only: a collector killed mid-read may leave a partial last line.
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut it = data.split(|&b| b == b'\n').peekable();
    while let Some(l) = it.next() {
        if it.peek().is_none() {
            break; // after the last '\n'
        }
        if let Ok(v) = serde_json::from_slice(l) {
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_client_collector_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("collector.sock");
    let out1 = dir.path().join("gen1.jsonl");
    let out2 = dir.path().join("gen2.jsonl");
    let start_collector = |out: &std::path::Path| {
        let mut ch = spawn_child(
            &format!("collector|{}|{}", sock.display(), out.display()),
            Stdio::piped(),
        );
        wait_ready(&mut ch);
        ChildGuard(ch)
    };
    let mut c1 = start_collector(&out1);
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:{}", sock.display())],
    ))
    .await
    .unwrap();
    let run = run_id("client");
    let n = 3000u64;
    let mut c2 = None;
    for i in 0..n {
        d.submit(Arc::new(doc(&run, i, "kubectl exec -it pod -- /bin/sh")));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i == 1000 {
            kill9(&mut c1.0);
        }
        if i == 2000 {
            assert!(d.stats().sinks[0].spooled > 0, "outage alerts were spooled");
            c2 = Some(start_collector(&out2));
        }
    }
    let done = wait_for(Duration::from_secs(12), || {
        let ids: HashSet<String> = read_gen(&out1)
            .into_iter()
            .chain(read_gen(&out2))
            .map(|v| v["event"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids.len() as u64 == n
    })
    .await;
    let all: Vec<Value> = read_gen(&out1).into_iter().chain(read_gen(&out2)).collect();
    let mut seen = HashSet::new();
    let dedup: Vec<u64> = all
        .iter()
        .filter(|v| seen.insert(v["event"]["id"].as_str().unwrap().to_owned()))
        .map(|v| seq_of(v).unwrap())
        .collect();
    let dups = all.len() - dedup.len();
    eprintln!(
        "socket-client: {} lines received, {dups} duplicates (resent after the kill)",
        all.len()
    );
    assert!(
        done,
        "not every alert arrived: {} of {n}; stats {:?}",
        dedup.len(),
        d.stats()
    );
    assert_in_order(
        &dedup,
        0..n,
        "socket-client: exactly once (after dedupe on event.id), in order",
    );
    let s = d.stats();
    assert_eq!(s.sinks[0].dropped, 0);
    assert!(s.sinks[0].spooled > 0);
    d.shutdown(Duration::from_secs(2)).await;
    drop(c2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_client_datagram_mode() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dgram.sock");
    let d = Dispatcher::start(cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:dgram:{}", sock.display())],
    ))
    .await
    .unwrap();
    let run = run_id("dgram");
    for i in 0..20 {
        d.submit(Arc::new(doc(&run, i, "nerdctl exec c sh")));
    }
    assert!(wait_for(T, || d.stats().sinks[0].spooled == 20).await);
    let r = tokio::net::UnixDatagram::bind(&sock).unwrap();
    // 1 MiB does not fit in a datagram: dropped and counted, the others flow.
    d.submit(Arc::new(doc(&run, 20, &"y".repeat(1 << 20))));
    for i in 21..40 {
        d.submit(Arc::new(doc(&run, i, "nerdctl exec c sh")));
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut seqs = Vec::new();
    let mut loss = 0;
    while seqs.len() < 39 || loss == 0 {
        let n = tokio::time::timeout(T, r.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf[n - 1], b'\n');
        let v: Value = serde_json::from_slice(&buf[..n - 1]).unwrap();
        if v["rule"]["id"] == "t1609.agent_alert_loss" {
            assert_eq!(v["t1609"]["loss"]["count"], 1);
            loss += 1;
        } else {
            seqs.push(seq_of(&v).unwrap());
        }
    }
    let want: Vec<u64> = (0..40).filter(|&i| i != 20).collect();
    assert_eq!(seqs, want);
    assert!(
        wait_for(T, || d.stats().sinks[0].dropped == 1).await,
        "{:?}",
        d.stats()
    );
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_socket_client_spools_while_healthy_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("slow.sock");
    let l = tokio::net::UnixListener::bind(&sock).unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let g = got.clone();
    let reader = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::with_capacity(4096, s).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line).unwrap();
            let n = {
                let mut g = g.lock().unwrap();
                g.push(seq_of(&v).unwrap_or_else(|| panic!("unexpected alert: {v}")));
                g.len()
            };
            if n < 1000 {
                tokio::time::sleep(Duration::from_millis(1)).await; // slow at first
            }
        }
    });
    let mut c = cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:{}", sock.display())],
    );
    c.queue_len = 512;
    let d = Dispatcher::start(c).await.unwrap();
    let run = run_id("slow");
    let pad = "s".repeat(1000);
    let n = 3000u64;
    for i in 0..n {
        d.submit(Arc::new(doc(&run, i, &pad)));
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(
        wait_for(Duration::from_secs(15), || got.lock().unwrap().len() as u64
            >= n)
        .await,
        "{:?}",
        d.stats()
    );
    let s = d.stats();
    assert!(
        s.sinks[0].spooled > 0,
        "a slow sink spills to the spool: {s:?}"
    );
    assert_eq!(s.sinks[0].dropped, 0);
    assert_in_order(&got.lock().unwrap(), 0..n, "slow collector");
    d.shutdown(Duration::from_secs(2)).await;
    reader.abort();
}

#[test]
fn stdout_sink_writes_one_json_line_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("stdout");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_main",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(
            "T1609_DELIVER_CHILD",
            format!("stdout|{}|{run}", dir.path().display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a whole alert per line"))
        .collect();
    let seqs: Vec<u64> = docs.iter().map(|v| seq_of(v).unwrap()).collect();
    assert_in_order(&seqs, 0..50, "stdout");
    assert_eq!(docs[0]["process"]["command_line"], hostile_cmd());
}

// ---------------------------------------------------------------- restart, cap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_kill9_of_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sock = dir.path().join("collector.sock");
    let run = run_id("kill9");
    let n = 500;
    let child = spawn_child(
        &format!("agent|{}|{}|{n}|{run}", spool.display(), sock.display()),
        Stdio::piped(),
    );
    let mut child = ChildGuard(child);
    wait_ready(&mut child.0);
    kill9(&mut child.0);

    let col = Collector::bind(&sock);
    let d = Dispatcher::start(cfg(&spool, &[&format!("socket-client:{}", sock.display())]))
        .await
        .unwrap();
    assert!(
        wait_for(T, || col.len() >= n).await,
        "got {} of {n}",
        col.len()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seqs: Vec<u64> = col.docs().iter().map(|v| seq_of(v).unwrap()).collect();
    assert_in_order(&seqs, 0..n as u64, "after kill -9 and restart");
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_drop_without_shutdown_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sock = dir.path().join("c.sock");
    let spec = format!("socket-client:{}", sock.display());
    let run = run_id("drop");
    {
        let d = Dispatcher::start(cfg(&spool, &[&spec])).await.unwrap();
        for i in 0..100 {
            d.submit(Arc::new(doc(&run, i, "x")));
        }
        assert!(wait_for(T, || d.stats().sinks[0].spooled == 100).await);
        drop(d); // crash: no shutdown
    }
    {
        let d = Dispatcher::start(cfg(&spool, &[&spec])).await.unwrap();
        for i in 100..200 {
            d.submit(Arc::new(doc(&run, i, "x")));
        }
        let t = Instant::now();
        d.shutdown(Duration::from_secs(1)).await; // sink down: persists at once
        assert!(t.elapsed() < Duration::from_millis(1500));
    }
    let col = Collector::bind(&sock);
    let d = Dispatcher::start(cfg(&spool, &[&spec])).await.unwrap();
    assert!(wait_for(T, || col.len() >= 200).await, "got {}", col.len());
    let seqs: Vec<u64> = col.docs().iter().map(|v| seq_of(v).unwrap()).collect();
    assert_in_order(&seqs, 0..200, "after drop and restart");
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_cap_drops_oldest_counts_and_emits_loss_alert() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let mut c = cfg(
        &dir.path().join("spool"),
        &[&format!("socket-client:{}", sock.display())],
    );
    c.spool_max_bytes = 64 * 1024;
    let d = Dispatcher::start(c).await.unwrap();
    let run = run_id("cap");
    let n = 400u64;
    let pad = "p".repeat(1000);
    for i in 0..n {
        d.submit(Arc::new(doc(&run, i, &pad)));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(wait_for(T, || d.stats().sinks[0].spooled == n).await);
    let s = d.stats();
    let dropped = s.sinks[0].dropped;
    assert!(dropped > 0, "{s:?}");
    assert!(s.sinks[0].spool_bytes <= 64 * 1024);
    let col = Collector::bind(&sock);
    assert!(
        wait_for(T, || col
            .docs()
            .iter()
            .any(|v| v["rule"]["id"] == "t1609.agent_alert_loss"))
        .await,
        "no loss alert"
    );
    let docs = col.docs();
    let (loss, alerts): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|v| v["rule"]["id"] == "t1609.agent_alert_loss");
    let seqs: Vec<u64> = alerts.iter().map(|v| seq_of(v).unwrap()).collect();
    // The newest survive, in order; the oldest were dropped.
    assert_in_order(&seqs, dropped..n, "spool cap: newest survive");
    let lost: u64 = loss
        .iter()
        .map(|v| v["t1609"]["loss"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(lost, dropped);
    assert_eq!(loss[0]["event"]["kind"], "alert");
    d.shutdown(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------- file, one line

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotates_and_hostile_json_stays_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.json");
    let mut c: DeliverConfig = cfg(
        &dir.path().join("spool"),
        &[&format!("file:{}", path.display())],
    );
    c.file_max_bytes = 16 * 1024;
    c.file_keep = 3;
    let d = Dispatcher::start(c).await.unwrap();
    let run = run_id("file");
    let mut sent = Vec::new();
    for i in 0..120u64 {
        let mut v = doc(&run, i, &format!("{}{}", hostile_cmd(), "z".repeat(200)));
        v["user"]["name"] = json!("\u{0}\n{\"event\":{\"id\":\"forged\"}}\n");
        d.submit(Arc::new(v.clone()));
        sent.push(v);
    }
    d.shutdown(Duration::from_secs(3)).await;
    let mut files = vec![path.clone()];
    for k in 1..=4 {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{k}"));
        files.push(p.into());
    }
    assert!(files[3].exists(), "rotated files kept");
    assert!(!files[4].exists(), "only file_keep rotated files kept");
    let mut got = Vec::new();
    for f in files[..4].iter().rev() {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() as u64 <= 16 * 1024);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            got.push(serde_json::from_str::<Value>(line).expect("each line is one whole alert"));
        }
    }
    // The newest alerts, in order, exactly as submitted.
    let k = got.len();
    assert!(k > 20);
    assert_eq!(got, sent[sent.len() - k..]);
}
