//! Hostile strings through the argv parsers and the engine: no panic, bounded work.

mod common;

use t1609_detect::Engine;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

const PIECES: &[&str] = &[
    "docker",
    "kubectl",
    "exec",
    "run",
    "-it",
    "-t",
    "-",
    "--",
    "-c",
    "sh",
    "sh -c",
    "'",
    "\"",
    "$(",
    ")",
    "`",
    "\\",
    "=",
    "--privileged",
    "-v",
    "/:/h",
    "--mount",
    "type=bind,source=/",
    "nsenter",
    "-t",
    "1",
    "-at1",
    "-m",
    "/proc/1/ns/mnt",
    "curl",
    "https://",
    "[::1]:",
    ":10250",
    "/run/",
    "%",
    "%2",
    "%zz",
    "%72un",
    "//",
    "..",
    "?cmd=",
    "\n",
    "\0",
    "\u{1b}[31m",
    "\u{fffd}",
    "ä",
    "𝕏",
    "sudo",
    "env",
    "-S",
    "xargs",
    "busybox",
    "k3s",
    "--unix-socket",
    "/var/run/docker.sock",
    "/containers/create",
    "-H",
    "tcp://",
    ":2375",
    "&&",
    ";",
    "|",
    "--overrides",
    "{\"hostPID\":true}",
    "kubeletctl",
    "python3",
    "-e",
    "wscat",
    "node/",
    "pod/",
    "ns/p:/x",
    "lxc-attach",
    "-n",
];

#[test]
fn random_argv_never_panics() {
    let e = Engine::builtin().expect("builtin");
    let mut seed = 0x5eed_u64;
    for _ in 0..20_000 {
        let n = (lcg(&mut seed) % 12) as usize;
        let mut argv: Vec<String> = Vec::new();
        for _ in 0..n {
            let mut s = String::new();
            for _ in 0..=(lcg(&mut seed) % 3) {
                let i = usize::try_from(lcg(&mut seed)).expect("31-bit value");
                s.push_str(PIECES[i % PIECES.len()]);
            }
            argv.push(s);
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let name = refs.first().map(|a| common::basename(a));
        let ev = common::event_named(name, &refs, None);
        for a in e.evaluate(&ev) {
            let _ = a.to_ecs().to_string();
        }
    }
}

#[test]
fn deeply_nested_wrappers_are_bounded() {
    let e = Engine::builtin().expect("builtin");
    let mut cmd = "docker exec -it web sh".to_string();
    // Quoting doubles the escapes per level, so keep the test input itself small.
    for _ in 0..8 {
        cmd = format!("sh -c {cmd:?}");
    }
    assert!(cmd.len() < 100_000);
    let argv = common::split(&cmd);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let _ = e.evaluate(&common::event(&refs));
    let long: Vec<String> = std::iter::repeat_n("sudo".to_string(), 10_000)
        .chain(["docker".into(), "exec".into(), "w".into(), "id".into()])
        .collect();
    let refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let _ = e.evaluate(&common::event(&refs));
    let many = format!("sh -c '{}'", "docker exec w id;".repeat(5000));
    let argv = common::split(&many);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let t = std::time::Instant::now();
    let _ = e.evaluate(&common::event(&refs));
    assert!(t.elapsed().as_secs() < 5);
}

#[test]
fn control_characters_survive_into_alert_json() {
    let e = Engine::builtin().expect("builtin");
    let ev = common::event(&["docker", "exec", "-it", "we\nb\u{0}", "sh\u{1b}"]);
    let alerts = e.evaluate(&ev);
    assert!(!alerts.is_empty());
    let s = alerts[0].to_ecs().to_string();
    assert!(!s.contains('\n') && s.contains("\\n") && s.contains("\\u0000"));
}

/// Deep nesting in a query is refused with an error, not a stack overflow.
#[test]
fn deeply_nested_queries_are_refused() {
    for q in [
        format!(
            "process where {}process.name == \"a\"{}",
            "(".repeat(5000),
            ")".repeat(5000)
        ),
        format!(
            "process where {}process.name == \"a\"",
            "not ".repeat(20000)
        ),
    ] {
        let e = t1609_detect::eql::parse_query(&q).expect_err("too deep");
        assert!(e.message.contains("nested"), "{}", e.message);
    }
    let ok = format!(
        "process where {}process.name == \"a\"{}",
        "(".repeat(100),
        ")".repeat(100)
    );
    assert!(t1609_detect::eql::parse_query(&ok).is_ok());
}
