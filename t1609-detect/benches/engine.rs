//! Rule-engine throughput with the built-in pack, on one core (this thread only).
//! `cargo bench -p t1609-detect` prints a table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use t1609_detect::Engine;
use t1609_detect::event::{Identity, ParentProcess, Process, ProcessEvent};

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
            })),
        },
        user: Identity { id: Some("0".into()), name: Some("root".into()) },
        group: Identity { id: Some("0".into()), name: Some("root".into()) },
        container_id: None,
        host_hostname: Some("node-1".into()),
        capture: Default::default(),
    }
}

/// Runs `f` over `events` repeatedly for about `dur`; returns events per second.
fn measure(events: &[ProcessEvent], dur: Duration, mut f: impl FnMut(&ProcessEvent) -> usize) -> (f64, usize) {
    let mut n = 0u64;
    let mut out = 0usize;
    let start = Instant::now();
    while start.elapsed() < dur {
        for e in events {
            out += f(black_box(e));
        }
        n += events.len() as u64;
    }
    (n as f64 / start.elapsed().as_secs_f64(), out)
}

fn main() {
    let engine = Engine::builtin().expect("builtin pack");
    let dur = Duration::from_millis(if std::env::args().any(|a| a == "--quick") { 200 } else { 1500 });

    // Typical host execs: names outside the watch set.
    let unwatched: Vec<ProcessEvent> = [
        "ls -la /tmp", "cat /etc/hosts", "grep -r foo /var/log", "git status", "make -j2", "systemctl status kubelet",
        "ps aux", "awk {print} x", "sed -n 1p f", "iptables -L -n", "find / -name x", "tar czf a.tgz b",
    ]
    .iter()
    .map(|c| ev(c, "bash"))
    .collect();
    // Watched tools doing read-only work: parsed and evaluated, no alert.
    let watched_benign: Vec<ProcessEvent> = [
        "docker ps -a", "kubectl get pods -A -o wide", "crictl ps", "podman images", "ctr -n k8s.io images ls",
        "curl -s https://example.com/install.sh", "kubectl logs -f deploy/web -c app", "sudo systemctl restart docker",
        "env LANG=C sort x", "nerdctl ps", "wget -q https://dl.k8s.io/v1/kubectl", "docker logs web",
    ]
    .iter()
    .map(|c| ev(c, "bash"))
    .collect();
    let matching: Vec<ProcessEvent> = [
        "docker exec -it web sh", "kubectl exec -it web-0 -n prod -- /bin/bash", "nsenter -t 1 -m -u -i -n -p -- bash",
        "docker run --privileged --pid=host -v /:/host alpine chroot /host", "crictl exec -it 4f2a sh",
        "curl -k -XPOST https://10.0.0.1:10250/run/kube-system/kube-proxy-x/kube-proxy -d cmd=id",
        "sudo docker exec web id", "runc exec -t 4f2a sh",
    ]
    .iter()
    .map(|c| ev(c, "bash"))
    .collect();
    for e in unwatched.iter().chain(&watched_benign) {
        assert!(engine.evaluate(e).is_empty(), "{:?} should not match", e.process.command_line);
    }
    for e in &matching {
        assert!(!engine.evaluate(e).is_empty(), "{:?} should match", e.process.command_line);
    }

    // `--profile-matching`: only the matching loop, for perf.
    if std::env::args().any(|a| a == "--profile-matching") {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        let (r, _) = measure(&matching, Duration::from_secs(3), |e| {
            let alerts = engine.evaluate(e);
            for a in &alerts {
                buf.clear();
                let _ = a.write_json(&mut buf);
            }
            alerts.len()
        });
        println!("matching incl. write_json: {r:.0}/s");
        return;
    }
    let (r1, _) = measure(&unwatched, dur, |e| engine.evaluate(e).len());
    let (r2, _) = measure(&watched_benign, dur, |e| engine.evaluate(e).len());
    let mut mixed: Vec<ProcessEvent> = Vec::new();
    for i in 0..100 {
        // 90 % unwatched, 10 % watched-benign: a busy node.
        mixed.push(if i % 10 == 0 { watched_benign[i / 10 % watched_benign.len()].clone() } else { unwatched[i % unwatched.len()].clone() });
    }
    let (r3, _) = measure(&mixed, dur, |e| engine.evaluate(e).len());
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
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
    let (r5, _) = measure(&matching, dur, |e| engine.evaluate(e).len());
    let pre: Vec<_> = matching.iter().flat_map(|e| engine.evaluate(e)).collect();
    let t = Instant::now();
    let mut k = 0usize;
    while t.elapsed() < dur {
        for a in &pre {
            k += black_box(a.to_ecs()).as_object().map_or(0, |m| m.len());
        }
    }
    let per_alert_to_ecs = t.elapsed().as_secs_f64() * 1e9 / (k as f64 / pre[0].to_ecs().as_object().map_or(1, |m| m.len()) as f64);
    let docs: Vec<_> = pre.iter().map(|a| a.to_ecs()).collect();
    let t = Instant::now();
    let mut k2 = 0usize;
    while t.elapsed() < dur {
        for d in &docs {
            buf.clear();
            let _ = serde_json::to_writer(&mut buf, d);
            k2 += 1;
        }
    }
    let per_doc_write = t.elapsed().as_secs_f64() * 1e9 / k2 as f64;
    println!("to_ecs ~{per_alert_to_ecs:.0} ns/alert, to_writer {per_doc_write:.0} ns/alert");
    println!();
    println!("t1609-detect engine throughput, built-in pack ({} rules), one core", engine.rule_count());
    println!("| workload                                             | events/s    |");
    println!("|------------------------------------------------------|-------------|");
    println!("| non-matching, unwatched names                        | {r1:>11.0} |");
    println!("| non-matching, watched tools (argv parsed)            | {r2:>11.0} |");
    println!("| non-matching, mix 90% unwatched / 10% watched        | {r3:>11.0} |");
    println!("| matching, evaluate only                              | {r5:>11.0} |");
    println!("| matching, incl. alert ECS JSON (write_json)          | {r4:>11.0} |");
    println!("(matching: {:.2} alerts per event; targets: >= 1,000,000/s non-matching, >= 200,000/s matching)", alerts as f64 / (r4 * dur.as_secs_f64()).max(1.0));
}
