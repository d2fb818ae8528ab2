//! The journald sink against a real journald (started through `scripts/services.sh`,
//! read back with `journalctl`), and against a datagram socket of the test's own.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use serde_json::{Value, json};
use t1609_deliver::Dispatcher;

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

    use t1609_deliver::{Alert, Sink, sink::journald::JournaldSink};

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
    let len = usize::try_from(file.metadata().unwrap().len()).unwrap();
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
