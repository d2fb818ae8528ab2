//! `ProcessTable` against the real `/proc` and against synthetic fork/exec/exit events.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use t1609_context::{ProcInfo, ProcessTable};

fn proc_root() -> &'static Path {
    Path::new("/proc")
}

fn me() -> u32 {
    std::process::id()
}

#[test]
fn seed_finds_this_process_and_its_parent() {
    let mut t = ProcessTable::new(proc_root(), 100_000, Duration::from_secs(30));
    let n = t.seed_from_proc();
    assert!(n >= 2, "seeded {n}");
    assert_eq!(t.len(), n);
    let self_exe = std::fs::read_link("/proc/self/exe")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mine = t.get(me()).expect("test process in table").clone();
    assert_eq!(mine.executable.as_deref(), Some(self_exe.as_str()));
    let args = mine.args.clone().expect("args");
    assert_eq!(*args, *std::env::args().collect::<Vec<_>>());
    assert!(mine.start_ns.is_some());
    assert_eq!(mine.uid, Some(unsafe { libc::getuid() }));
    assert!(mine.session_leader.is_some());
    assert!(mine.cgroup.is_some());
    assert!(!mine.exited);
    let parent = t.get(mine.ppid).expect("parent (cargo) in table");
    assert!(parent.executable.is_some(), "{parent:?}");
    assert!(parent.args.as_ref().is_some_and(|a| !a.is_empty()));
    let anc = t.ancestry(me(), 8);
    assert_eq!(anc[0].pid, mine.ppid);
    assert_eq!(anc[0].name, parent.name);
}

fn info(pid: u32, ppid: u32, name: &str, exe: &str, args: &[&str]) -> ProcInfo {
    ProcInfo {
        pid,
        ppid,
        name: name.into(),
        executable: Some(exe.into()),
        args: Some(args.iter().map(ToString::to_string).collect()),
        ..Default::default()
    }
}

#[test]
fn fork_exec_exit_sequence_and_grace() {
    // A proc root with no processes: only events feed the table.
    let empty = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(5);
    let mut t = ProcessTable::new(empty.path(), 100, grace);
    let t0 = Instant::now();

    let mut bash = info(100, 1, "bash", "/usr/bin/bash", &["-bash"]);
    bash.uid = Some(1000);
    bash.session_leader = Some(100);
    bash.cgroup = Some("0::/user.slice/user-1000.slice/session-3.scope".into());
    t.on_exec(bash);

    // bash forks 200: the child inherits exe/args/uid/session/cgroup until it execs.
    t.on_fork(100, 200, 42_000);
    let c = t.get(200).unwrap();
    assert_eq!(
        (c.ppid, c.name.as_str(), c.executable.as_deref()),
        (100, "bash", Some("/usr/bin/bash"))
    );
    assert_eq!(c.start_ns, Some(42_000));
    assert_eq!(c.uid, Some(1000));

    // 200 execs docker; the event has no uid/session/cgroup → kept from the fork.
    t.on_exec(ProcInfo {
        ppid: 0,
        ..info(
            200,
            0,
            "docker",
            "/usr/bin/docker",
            &["docker", "exec", "-it", "c1", "sh"],
        )
    });
    let d = t.get(200).unwrap();
    assert_eq!(d.executable.as_deref(), Some("/usr/bin/docker"));
    assert_eq!(d.ppid, 100);
    assert_eq!(d.uid, Some(1000));
    assert_eq!(d.session_leader, Some(100));
    assert_eq!(d.start_ns, Some(42_000));
    assert!(d.cgroup.as_deref().unwrap().contains("session-3"));

    // A thread "fork" (same tgid) does nothing.
    t.on_fork(200, 200, 1);
    assert_eq!(t.len(), 2);

    // docker forks a helper 300; then the parent (200) exits before the helper's alert.
    t.on_fork(200, 300, 43_000);
    t.on_exit(200, t0);
    assert!(t.get(200).unwrap().exited);
    let anc = t.ancestry(300, 8);
    assert_eq!(
        anc.iter().map(|a| a.pid).collect::<Vec<_>>(),
        vec![200, 100]
    );
    assert_eq!(anc[0].executable.as_deref(), Some("/usr/bin/docker"));

    // Within grace: still resolvable. After: evicted, live ones kept.
    assert_eq!(t.evict(t0 + Duration::from_secs(4)), 0);
    assert!(t.get(200).is_some());
    assert_eq!(t.evict(t0 + grace + Duration::from_millis(1)), 1);
    assert!(t.get(200).is_none());
    assert!(t.get(100).is_some() && t.get(300).is_some());
    // The chain now stops at the unknown parent.
    assert!(t.ancestry(300, 8).is_empty());

    // Unknown pid exit is ignored; unknown parent fork yields a minimal child.
    t.on_exit(999, t0);
    t.on_fork(4242, 4243, 7);
    assert_eq!(t.get(4243).map(|c| c.ppid), Some(4242));
}

#[test]
fn max_entries_bound_holds_and_evicts_exited_first() {
    let empty = tempfile::tempdir().unwrap();
    let mut t = ProcessTable::new(empty.path(), 10, Duration::from_mins(1));
    let now = Instant::now();
    for pid in 1..=10 {
        t.on_exec(info(pid, pid.saturating_sub(1), "p", "/bin/p", &["p"]));
    }
    t.on_exit(3, now);
    t.on_exit(7, now + Duration::from_millis(1));
    for pid in 11..=12 {
        t.on_exec(info(pid, 1, "q", "/bin/q", &["q"]));
        assert!(t.len() <= 10);
    }
    // The two exited entries went first, oldest exit first.
    assert!(t.get(3).is_none() && t.get(7).is_none());
    assert!(
        (1..=12)
            .filter(|p| *p != 3 && *p != 7)
            .all(|p| t.get(p).is_some())
    );
    // Then the least recently updated live entries.
    for pid in 13..=200 {
        t.on_fork(1, pid, u64::from(pid));
        assert!(t.len() <= 10, "len {} at {pid}", t.len());
    }
    assert!(t.get(200).is_some());
    // A real seed into a tiny table also respects the bound.
    let mut small = ProcessTable::new(Path::new("/proc"), 3, Duration::from_secs(1));
    small.seed_from_proc();
    assert!(small.len() <= 3);
    assert_eq!(small.evict(Instant::now()), 0);
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
fn ancestry_of_a_real_spawned_tree_via_refresh() {
    // test → sh -c 'sh -c "sleep 5; true"; true' → sh -c 'sleep 5; true' → sleep 5
    // (the trailing `; true` keeps each shell from exec'ing its last command).
    let mut outer = Command::new("/bin/sh")
        .args(["-c", "/bin/sh -c 'sleep 5; true'; true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let outer_pid = outer.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (inner, sleep) = loop {
        let inner = children_of(outer_pid).first().copied();
        let sleep = inner.and_then(|i| children_of(i).first().copied());
        if let (Some(i), Some(s)) = (inner, sleep)
            && std::fs::read_to_string(format!("/proc/{s}/comm")).is_ok_and(|c| c.trim() == "sleep")
        {
            break (i, s);
        }
        assert!(Instant::now() < deadline, "process tree did not appear");
        std::thread::sleep(Duration::from_millis(20));
    };

    let mut t = ProcessTable::new(Path::new("/proc"), 1000, Duration::from_secs(30));
    // refresh_from_proc one by one (leaf to root), then ancestry from the cache.
    for pid in [sleep, inner, outer_pid, me()] {
        assert!(t.refresh_from_proc(pid).is_some(), "pid {pid}");
    }
    let leaf = t.get(sleep).unwrap();
    assert_eq!(leaf.name, "sleep");
    assert_eq!(
        leaf.args.as_deref(),
        Some(&["sleep".to_string(), "5".to_string()][..])
    );
    let anc = t.ancestry(sleep, 8);
    let pids: Vec<u32> = anc.iter().map(|a| a.pid).collect();
    assert_eq!(&pids[..3], &[inner, outer_pid, me()], "{anc:?}");
    assert_eq!(anc[0].name, "sh");
    assert!(
        anc[0]
            .executable
            .as_deref()
            .is_some_and(|e| e.ends_with("sh") || e.contains("dash") || e.contains("bash"))
    );
    assert!(anc.len() <= 8);
    assert_eq!(t.ancestry(sleep, 2).len(), 2);

    // refresh_ancestry fills the whole chain from a cold table in one call.
    let mut cold = ProcessTable::new(Path::new("/proc"), 1000, Duration::from_secs(30));
    let anc2 = cold.refresh_ancestry(sleep, 8);
    assert_eq!(
        anc2[..3].iter().map(|a| a.pid).collect::<Vec<_>>(),
        vec![inner, outer_pid, me()]
    );

    // Once the tree is gone, refresh keeps the cached entries (no process to read).
    outer.kill().ok();
    let _ = outer.wait();
    let _ = Command::new("kill").arg(sleep.to_string()).status();
    let _ = Command::new("kill").arg(inner.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(format!("/proc/{sleep}")).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cached = t.refresh_from_proc(sleep).cloned();
    assert_eq!(cached.map(|c| c.name), Some("sleep".to_string()));
}

#[test]
fn exited_entries_are_capped_oldest_exit_first_and_live_ones_stay() {
    let empty = tempfile::tempdir().unwrap();
    let mut t = ProcessTable::new(empty.path(), 10_000, Duration::from_mins(1)).with_max_exited(5);
    let now = Instant::now();
    for pid in 1..=100 {
        t.on_exec(info(pid, 1, "p", "/bin/p", &["p"]));
    }
    // An exec storm: 90 processes exit within their grace period.
    for pid in 11..=100 {
        t.on_exit(pid, now + Duration::from_millis(u64::from(pid)));
    }
    assert_eq!(t.len(), 10 + 5, "10 live + the 5 most recent exits");
    assert!((1..=10).all(|p| t.get(p).is_some_and(|i| !i.exited)));
    assert!((96..=100).all(|p| t.get(p).is_some_and(|i| i.exited)));
    assert!(t.get(95).is_none());
    // A pid reused by a new exec is live again and no longer counts as exited.
    t.on_exec(info(100, 1, "again", "/bin/again", &["again"]));
    t.on_exit(3, now + Duration::from_secs(1));
    assert!(t.get(100).is_some_and(|i| !i.exited));
    assert!(t.get(96).is_some() && t.get(3).is_some_and(|i| i.exited));
    assert_eq!(t.len(), 15, "10 live, and 5 exited: 96..=99 and 3");
}

#[test]
fn table_keeps_a_bounded_argv_and_shares_cgroup_text() {
    let empty = tempfile::tempdir().unwrap();
    let mut t = ProcessTable::new(empty.path(), 100, Duration::from_mins(1));
    let pad = "P".repeat(1000);
    let args: Vec<&str> = std::iter::once("docker")
        .chain(std::iter::repeat_n(pad.as_str(), 30))
        .collect();
    t.on_exec(info(1, 0, "docker", "/usr/bin/docker", &args));
    let kept = t.get(1).unwrap().args.clone().unwrap();
    let bytes: usize = kept.iter().map(|a| a.len() + 1).sum();
    assert!(
        bytes <= t1609_context::MAX_TABLE_ARGV_BYTES,
        "{bytes} bytes kept"
    );
    assert_eq!(kept[0], "docker");
    assert!(kept.len() > 1, "leading arguments kept");
    // One huge argument is cut, not dropped.
    let huge = "H".repeat(100_000);
    t.on_exec(info(2, 0, "x", "/bin/x", &[&huge]));
    assert_eq!(
        t.get(2).unwrap().args.as_ref().unwrap()[0].len(),
        t1609_context::MAX_TABLE_ARGV_BYTES
    );
    // Identical cgroup texts share one allocation.
    for pid in [3, 4] {
        let mut i = info(pid, 0, "sh", "/bin/sh", &["sh"]);
        i.cgroup = Some(String::from("0::/system.slice/docker-abc.scope").into());
        t.on_exec(i);
    }
    let (a, b) = (t.get(3).unwrap(), t.get(4).unwrap());
    assert!(std::sync::Arc::ptr_eq(
        a.cgroup.as_ref().unwrap(),
        b.cgroup.as_ref().unwrap()
    ));
}

#[test]
fn prune_dead_marks_vanished_processes_a_slice_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    let mut t = ProcessTable::new(root.path(), 100, Duration::from_mins(1));
    for pid in 1..=10 {
        if pid % 2 == 0 {
            std::fs::create_dir(root.path().join(pid.to_string())).unwrap();
        }
        t.on_exec(info(pid, 1, "p", "/bin/p", &["p"]));
    }
    let now = Instant::now();
    // Four checks a call: the odd pids are gone and found in three calls, wrapping round.
    assert_eq!(t.prune_dead(4, now), 2);
    assert_eq!(t.prune_dead(4, now), 2);
    assert_eq!(t.prune_dead(4, now), 1);
    assert!((1..=10).all(|p| t.get(p).unwrap().exited == (p % 2 == 1)));
    // Only live entries are checked again; nothing is marked twice.
    assert_eq!(t.prune_dead(100, now), 0);
}
