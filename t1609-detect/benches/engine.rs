//! Rule-engine throughput with the built-in pack, on one core (this thread only).
//! `cargo bench -p t1609-detect` prints a table.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use t1609_detect::{
    Engine,
    event::{CaptureInfo, HostOs, Identity, ParentProcess, Process, ProcessEvent},
};

fn ev(cmd: &str, parent: &str) -> ProcessEvent {
    let args: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    let name = args[0].rsplit('/').next().unwrap_or("").to_string();
    ProcessEvent {
        timestamp: Some("2026-11-28T12:00:00.123456Z".into()),
        event_id: Some("0123456789abcdef".into()),
        process: Process {
            pid: Some(31337),
            executable: Some(format!("/usr/bin/{name}")),
            name: Some(name),
            args_count: Some(args.len() as u64),
            command_line: Some(cmd.to_string()),
            args: Some(args),
            working_directory: Some("/root".into()),
            parent: Some(Box::new(ParentProcess {
                pid: Some(31000),
                name: Some(parent.into()),
                executable: Some(format!("/usr/bin/{parent}")),
                args: Some(vec![parent.into()]),
                command_line: Some(parent.into()),
                ..Default::default()
            })),
            ..Default::default()
        },
        user: Identity {
            id: Some("0".into()),
            name: Some("root".into()),
        },
        group: Identity {
            id: Some("0".into()),
            name: Some("root".into()),
        },
        container_id: None,
        host_hostname: Some("node-1".into()),
        // As the live agent fills them: rules of Elastic's test host.os.type first.
        host_os: HostOs {
            kind: Some("linux".into()),
            name: Some("Debian GNU/Linux".into()),
            kernel: Some("6.12.0-1-amd64".into()),
        },
        capture: CaptureInfo::default(),
        ..Default::default()
    }
}

/// On-CPU time of this thread (Linux schedstat), so rates are comparable on a busy machine.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Events per second of wall time, and per second of this thread's CPU time.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

/// Runs `f` over `events` repeatedly for about `dur`; returns events per second.
fn measure(
    events: &[ProcessEvent],
    dur: Duration,
    mut f: impl FnMut(&ProcessEvent) -> usize,
) -> (Rate, usize) {
    let mut n = 0u64;
    let mut out = 0usize;
    let cpu0 = thread_cpu();
    let start = Instant::now();
    while start.elapsed() < dur {
        for e in events {
            out += f(black_box(e));
        }
        n += events.len() as u64;
    }
    let wall = start.elapsed();
    let cpu = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) if b > a => b.saturating_sub(a),
        _ => wall,
    };
    let rate = Rate {
        wall: n as f64 / wall.as_secs_f64(),
        cpu: n as f64 / cpu.as_secs_f64(),
    };
    (rate, out)
}

/// The three workloads: typical host execs (names outside the watch set), watched tools
/// doing read-only work (parsed and evaluated, no alert), and execs that alert.
fn workloads() -> [Vec<ProcessEvent>; 3] {
    let events =
        |cmds: &[&str]| -> Vec<ProcessEvent> { cmds.iter().map(|c| ev(c, "bash")).collect() };
    [
        events(&[
            "ls -la /tmp",
            "cat /etc/hosts",
            "grep -r foo /var/log",
            "git status",
            "make -j2",
            "systemctl status kubelet",
            "ps aux",
            "awk {print} x",
            "sed -n 1p f",
            "iptables -L -n",
            "find / -name x",
            "tar czf a.tgz b",
        ]),
        events(&[
            "docker ps -a",
            "kubectl get pods -A -o wide",
            "crictl ps",
            "podman images",
            "ctr -n k8s.io images ls",
            "curl -s https://example.com/install.sh",
            "kubectl logs -f deploy/web -c app",
            "sudo systemctl restart docker",
            "env LANG=C sort x",
            "nerdctl ps",
            "wget -q https://dl.k8s.io/v1/kubectl",
            "docker logs web",
        ]),
        events(&[
            "docker exec -it web sh",
            "kubectl exec -it web-0 -n prod -- /bin/bash",
            "nsenter -t 1 -m -u -i -n -p -- bash",
            "docker run --privileged --pid=host -v /:/host alpine chroot /host",
            "crictl exec -it 4f2a sh",
            "curl -k -XPOST https://10.0.0.1:10250/run/kube-system/kube-proxy-x/kube-proxy -d cmd=id",
            "sudo docker exec web id",
            "runc exec -t 4f2a sh",
        ]),
    ]
}

/// Nanoseconds per alert of `write_json` and of `to_ecs` + `to_writer`, on alerts
/// evaluated beforehand, and the average document size.
fn per_alert_costs(engine: &Engine, matching: &[ProcessEvent], dur: Duration) -> (f64, f64, usize) {
    let pre: Vec<_> = matching.iter().flat_map(|e| engine.evaluate(e)).collect();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut per_alert = |f: &mut dyn FnMut(&t1609_detect::Alert, &mut Vec<u8>)| {
        let t = Instant::now();
        let mut k = 0u64;
        while t.elapsed() < dur / 2 {
            for a in &pre {
                f(a, &mut buf);
            }
            k += pre.len() as u64;
        }
        t.elapsed().as_secs_f64() * 1e9 / k as f64
    };
    let ns_write = per_alert(&mut |a, buf| {
        buf.clear();
        let _ = a.write_json(&mut *buf);
        black_box(&buf);
    });
    let ns_to_ecs = per_alert(&mut |a, buf| {
        buf.clear();
        let _ = serde_json::to_writer(&mut *buf, &a.to_ecs());
        black_box(&buf);
    });
    let mut bytes = 0usize;
    for a in &pre {
        buf.clear();
        let _ = a.write_json(&mut buf);
        bytes += buf.len();
    }
    (ns_write, ns_to_ecs, bytes / pre.len().max(1))
}

/// The rule sets of the extra tables: in-repo test rules always; the snapshots of
/// Elastic's detection-rules and `SigmaHQ` when their checkouts are named.
fn extra_sets() -> Vec<(String, Vec<std::path::PathBuf>)> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sets = vec![(
        "built-in pack + this crate's test rules (tests/rules: detection-rules TOML and Sigma)"
            .to_string(),
        vec![here.join("tests/rules")],
    )];
    let dr = std::env::var_os("T1609_DETECTION_RULES").map(std::path::PathBuf::from);
    let sg = std::env::var_os("T1609_SIGMA_RULES").map(std::path::PathBuf::from);
    match (&dr, &sg) {
        (Some(dr), Some(sg)) => sets.push((
            "built-in pack + Elastic detection-rules (rules/linux, cloud_defend) + SigmaHQ linux/process_creation"
                .to_string(),
            vec![
                dr.join("rules/linux"),
                dr.join("rules/integrations/cloud_defend"),
                sg.join("rules/linux/process_creation"),
            ],
        )),
        _ => println!(
            "skipped: set T1609_DETECTION_RULES and T1609_SIGMA_RULES to checkouts of elastic/detection-rules and SigmaHQ/sigma for the full rule set's table"
        ),
    }
    sets
}

/// One table for `engine`: the non-matching workloads (events the engine alerts on are
/// left out and counted) and the matching one.
fn table(label: &str, engine: &Engine, dur: Duration) {
    let [unwatched, watched_benign, matching] = workloads();
    let quiet = |v: Vec<ProcessEvent>| -> (Vec<ProcessEvent>, usize) {
        let n = v.len();
        let kept: Vec<ProcessEvent> = v
            .into_iter()
            .filter(|e| engine.evaluate(e).is_empty())
            .collect();
        let dropped = n - kept.len();
        (kept, dropped)
    };
    let (unwatched, d1) = quiet(unwatched);
    let (watched_benign, d2) = quiet(watched_benign);
    let matching: Vec<ProcessEvent> = matching
        .into_iter()
        .filter(|e| !engine.evaluate(e).is_empty())
        .collect();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let (r1, _) = measure(&unwatched, dur, |e| engine.evaluate(e).len());
    let (r2, _) = measure(&watched_benign, dur, |e| engine.evaluate(e).len());
    let (r4, alerts) = measure(&matching, dur, |e| {
        let alerts = engine.evaluate(e);
        for a in &alerts {
            buf.clear();
            let _ = a.write_json(&mut buf);
            buf.push(b'\n');
        }
        black_box(&buf);
        alerts.len()
    });
    println!();
    println!("{label} ({} rules), one core", engine.rule_count());
    println!(
        "| workload                                             | events/s wall | events/s CPU |"
    );
    println!(
        "|------------------------------------------------------|---------------|--------------|"
    );
    for (l, r) in [
        ("non-matching, common host commands", r1),
        ("non-matching, container tools (argv parsed)", r2),
        ("matching, evaluate + Alert::write_json (fast path)", r4),
    ] {
        println!("| {l:<52} | {:>13.0} | {:>12.0} |", r.wall, r.cpu);
    }
    println!(
        "({} of the non-matching events alert with this rule set and were left out; matching: {:.2} alerts per event)",
        d1 + d2,
        alerts as f64 / (r4.wall * dur.as_secs_f64()).max(1.0)
    );
}

/// The full rule set's non-matching loop alone, with how many rules each event tried.
fn profile_full() {
    if let Some((label, paths)) = extra_sets().pop() {
        let e = Engine::load(&paths).expect("load");
        let [unwatched, watched, _] = workloads();
        let events: Vec<ProcessEvent> = unwatched
            .into_iter()
            .chain(watched)
            .filter(|ev| e.evaluate(ev).is_empty())
            .collect();
        for ev in &events {
            println!(
                "{:?}: {} rules tried",
                ev.process.command_line.as_deref().unwrap_or(""),
                e.candidates(ev).len()
            );
        }
        let (r, _) = measure(&events, Duration::from_secs(4), |ev| e.evaluate(ev).len());
        println!("{label}: non-matching {:.0}/s CPU", r.cpu);
    }
}

fn main() {
    let engine = Engine::builtin().expect("builtin pack");
    let dur = Duration::from_millis(if std::env::args().any(|a| a == "--quick") {
        200
    } else {
        1500
    });
    let [unwatched, watched_benign, matching] = workloads();
    for e in unwatched.iter().chain(&watched_benign) {
        assert!(
            engine.evaluate(e).is_empty(),
            "{:?} should not match",
            e.process.command_line
        );
    }
    for e in &matching {
        assert!(
            !engine.evaluate(e).is_empty(),
            "{:?} should match",
            e.process.command_line
        );
    }

    // The documented alert path: evaluate, then each alert's ECS JSON through the fast
    // writer `Alert::write_json` into a reused buffer, one line per alert.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut eval_and_write = |e: &ProcessEvent| {
        let alerts = engine.evaluate(e);
        for a in &alerts {
            buf.clear();
            let _ = a.write_json(&mut buf);
            buf.push(b'\n');
        }
        black_box(&buf);
        alerts.len()
    };

    if std::env::args().any(|a| a == "--profile-full") {
        profile_full();
        return;
    }
    // `--profile-matching`: only the matching loop, for perf.
    if std::env::args().any(|a| a == "--profile-matching") {
        let (r, _) = measure(&matching, Duration::from_secs(3), &mut eval_and_write);
        println!(
            "matching, evaluate + Alert::write_json: {:.0}/s wall, {:.0}/s CPU",
            r.wall, r.cpu
        );
        return;
    }
    let (r1, _) = measure(&unwatched, dur, |e| engine.evaluate(e).len());
    let (r2, _) = measure(&watched_benign, dur, |e| engine.evaluate(e).len());
    let mut mixed: Vec<ProcessEvent> = Vec::new();
    for i in 0..100 {
        // 90 % unwatched, 10 % watched-benign: a busy node.
        mixed.push(if i % 10 == 0 {
            watched_benign[i / 10 % watched_benign.len()].clone()
        } else {
            unwatched[i % unwatched.len()].clone()
        });
    }
    let (r3, _) = measure(&mixed, dur, |e| engine.evaluate(e).len());
    let (r4, alerts) = measure(&matching, dur, &mut eval_and_write);
    let (r5, _) = measure(&matching, dur, |e| engine.evaluate(e).len());
    // The slow path, for comparison: `Alert::to_ecs` (a serde_json::Value) then written.
    let mut buf2: Vec<u8> = Vec::with_capacity(1 << 16);
    let (r6, _) = measure(&matching, dur, |e| {
        let alerts = engine.evaluate(e);
        for a in &alerts {
            buf2.clear();
            let _ = serde_json::to_writer(&mut buf2, &a.to_ecs());
        }
        black_box(&buf2);
        alerts.len()
    });
    let (ns_write, ns_to_ecs, avg_bytes) = per_alert_costs(&engine, &matching, dur);
    println!(
        "per alert ({avg_bytes} bytes avg): write_json {ns_write:.0} ns, to_ecs + to_writer {ns_to_ecs:.0} ns (wall)"
    );
    println!();
    println!(
        "t1609-detect engine throughput, built-in pack ({} rules), one core",
        engine.rule_count()
    );
    println!(
        "| workload                                             | events/s wall | events/s CPU |"
    );
    println!(
        "|------------------------------------------------------|---------------|--------------|"
    );
    for (label, r) in [
        ("non-matching, unwatched names", r1),
        ("non-matching, watched tools (argv parsed)", r2),
        ("non-matching, mix 90% unwatched / 10% watched", r3),
        ("matching, evaluate only", r5),
        ("matching, evaluate + Alert::write_json (fast path)", r4),
        ("matching, evaluate + to_ecs() Value + to_writer", r6),
    ] {
        println!("| {label:<52} | {:>13.0} | {:>12.0} |", r.wall, r.cpu);
    }
    println!(
        "(matching: {:.2} alerts per event; the matching target row is `evaluate + Alert::write_json`;",
        alerts as f64 / (r4.wall * dur.as_secs_f64()).max(1.0)
    );
    println!(
        " targets: >= 1,000,000/s non-matching, >= 200,000/s matching; CPU = per second of this thread's on-CPU time)"
    );
    extra_tables(dur);
}

/// The tables of [`extra_sets`].
fn extra_tables(dur: Duration) {
    for (label, paths) in extra_sets() {
        match Engine::load(&paths) {
            Ok(e) => table(&label, &e, dur),
            Err(err) => println!("{label}: cannot load: {err}"),
        }
    }
}
