//! Rules in Elastic's detection-rules format, loaded unmodified by the live agent, see the
//! fields Elastic Defend writes: `host.os`, `event.type`/`event.action`, effective and
//! real ids, the environment variables they test, the session and group leaders. Real
//! execs of real binaries under the real eBPF program; each rule has an exec that must
//! match and one that must not.

mod common;

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

use common::{Agent, alerts_of, get, parse_alerts, privileged_or_skip, run_ok};
use serde_json::Value;

/// A rule file of Elastic's format (`[metadata]`, `[rule]`, `[[rule.threat]]`).
fn elastic_rule(id: &str, query: &str) -> String {
    format!(
        r#"[metadata]
creation_date = "2026/12/07"
maturity = "production"

[rule]
author = ["t1609-agent tests"]
description = "Test rule {id}."
from = "now-9m"
index = ["logs-endpoint.events.process*"]
language = "eql"
license = "Elastic License v2"
name = "Test rule {id}"
risk_score = 47
rule_id = "{id}"
severity = "medium"
tags = ["OS: Linux", "Data Source: Elastic Defend"]
type = "eql"
query = '''
{query}
'''

[[rule.threat]]
framework = "MITRE ATT&CK"

  [rule.threat.tactic]
  id = "TA0005"
  name = "Defense Evasion"
  reference = "https://attack.mitre.org/tactics/TA0005/"

  [[rule.threat.technique]]
  id = "T1574"
  name = "Hijack Execution Flow"
  reference = "https://attack.mitre.org/techniques/T1574/"
"#
    )
}

/// A copy of `src` named `name`, in a directory every user may enter (the credential
/// probe runs with euid 65534).
fn tool(dir: &Path, src: &str, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::copy(src, &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn os_release_name() -> Option<String> {
    std::fs::read_to_string("/etc/os-release")
        .ok()?
        .lines()
        .find_map(|l| Some(l.strip_prefix("NAME=")?.trim_matches('"').to_owned()))
}

fn with_pid(alerts: &[&Value], pid: u32) -> usize {
    alerts
        .iter()
        .filter(|a| get(a, "process.pid").as_u64() == Some(u64::from(pid)))
        .count()
}

#[test]
fn elastic_rules_see_host_os_creds_env_vars_and_leaders_live() {
    if !privileged_or_skip("elastic_rules_see_host_os_creds_env_vars_and_leaders_live") {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tools.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A sleep, so the process is still there when the agent reads its environment and
    // session from /proc (what a process that is already gone cannot give: see the docs).
    let envprobe = tool(tools.path(), "/bin/sleep", "t1609-envprobe");
    let credprobe = tool(tools.path(), "/bin/sleep", "t1609-credprobe");

    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("preload.toml"),
        elastic_rule(
            "t1609-live-preload",
            r#"process where event.type == "start" and event.action == "exec" and
  host.os.type == "linux" and process.name == "t1609-envprobe" and
  process.env_vars : "LD_PRELOAD=/tmp/*" and
  process.session_leader.same_as_process == true and process.group_leader.pid != null"#,
        ),
    )
    .unwrap();
    std::fs::write(
        rules.path().join("creds.toml"),
        elastic_rule(
            "t1609-live-creds",
            r#"process where event.type == "start" and process.name == "t1609-credprobe" and
  process.user.id == "65534" and process.real_user.id == "0" and
  process.group.id == "65534" and process.real_group.id == "0""#,
        ),
    )
    .unwrap();
    // One the engine cannot evaluate: the agent says so at the start, and still runs.
    std::fs::write(
        rules.path().join("sequence.toml"),
        elastic_rule(
            "t1609-live-sequence",
            r#"sequence by host.id with maxspan=1s
  [process where event.type == "start" and process.name == "a"]
  [process where event.type == "start" and process.name == "b"]"#,
        ),
    )
    .unwrap();

    // A field the live agent does not fill: the start says so (the rule still loads, for
    // replayed events that carry it).
    std::fs::write(
        rules.path().join("privileged.toml"),
        elastic_rule(
            "t1609-live-privileged",
            r#"process where event.type == "start" and process.name == "sh" and
  container.security_context.privileged == true"#,
        ),
    )
    .unwrap();

    let agent = Agent::start(&["--rules", rules.path().to_str().unwrap()]);
    // Matches: its own session and group (setsid), LD_PRELOAD under /tmp (ld.so warns
    // that the library does not exist, and runs the program).
    let hit = Command::new("setsid")
        .arg(&envprobe)
        .arg("0.5")
        .env("LD_PRELOAD", "/tmp/t1609-no-such-library.so")
        .env("HTTP_PROXY", "http://proxy.example:3128")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Not: the same without the preload.
    let miss = Command::new("setsid")
        .arg(&envprobe)
        .arg("0.5")
        .spawn()
        .unwrap();
    let (hit_pid, miss_pid) = (hit.id(), miss.id());
    for mut c in [hit, miss] {
        assert!(c.wait().unwrap().success());
    }
    // Matches: effective ids 65534, real ids 0.
    let cred_hit = run_ok(Command::new("setpriv").args([
        "--euid=65534",
        "--egid=65534",
        "--clear-groups",
        credprobe.to_str().unwrap(),
        "0.5",
    ]));
    // Not: root all along.
    let cred_miss = run_ok(Command::new(&credprobe).arg("0.5"));
    std::thread::sleep(Duration::from_secs(1));
    let (out, log) = agent.stop();
    let alerts = parse_alerts(&out);

    let preload = alerts_of(&alerts, "t1609-live-preload");
    // setsid execs the probe in the process it was started as: the same pid.
    assert_eq!(
        with_pid(&preload, hit_pid),
        1,
        "{preload:#?}\n{}",
        log.join("\n")
    );
    assert_eq!(
        with_pid(&preload, miss_pid),
        0,
        "no preload, no alert: {preload:#?}"
    );
    let a = preload[0];
    assert_eq!(get(a, "event.type"), &serde_json::json!(["start"]));
    assert_eq!(get(a, "event.action"), "exec");
    assert_eq!(get(a, "host.os.type"), "linux");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(get(a, "host.os.kernel"), kernel.trim());
    if let Some(name) = os_release_name() {
        assert_eq!(get(a, "host.os.name"), name.as_str());
    }
    let env: Vec<&str> = get(a, "process.env_vars")
        .as_array()
        .expect("process.env_vars")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"LD_PRELOAD=/tmp/t1609-no-such-library.so"),
        "{env:?}"
    );
    assert!(
        env.contains(&"HTTP_PROXY=http://proxy.example:3128"),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("PATH=")),
        "only the variables rules may test are captured: {env:?}"
    );
    assert_eq!(get(a, "process.session_leader.pid"), u64::from(hit_pid));
    assert_eq!(get(a, "process.session_leader.same_as_process"), true);
    assert_eq!(get(a, "process.group_leader.pid"), u64::from(hit_pid));
    assert_eq!(
        get(a, "process.session_leader.executable"),
        envprobe.to_str().unwrap()
    );
    assert!(get(a, "process.interactive").is_boolean(), "{a:#}");

    let creds = alerts_of(&alerts, "t1609-live-creds");
    assert_eq!(
        with_pid(&creds, cred_hit),
        1,
        "{creds:#?}\n{}",
        log.join("\n")
    );
    assert_eq!(with_pid(&creds, cred_miss), 0, "root all along: {creds:#?}");
    let c = creds[0];
    assert_eq!(get(c, "process.user.id"), "65534");
    assert_eq!(get(c, "process.real_user.id"), "0");
    assert_eq!(get(c, "process.real_user.name"), "root");
    assert_eq!(get(c, "process.group.id"), "65534");

    assert!(
        log.iter()
            .any(|l| l.contains("rules skipped") && l.contains("sequence")),
        "the start names the skipped rule's kind:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("does not fill")
                && l.contains("container.security_context.privileged")),
        "the start names a tested field the live agent does not fill:\n{}",
        log.join("\n")
    );
}

/// `rules check` on a directory of rules the engine cannot evaluate: success (they are
/// skipped, not errors), with the count by kind and each one at its file and line.
#[test]
fn rules_check_reports_skipped_rules_by_kind_and_location() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../t1609-detect/tests/rules-skipped");
    let out = Command::new(common::agent_bin())
        .args(["rules", "check", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = std::fs::read_dir(&dir).unwrap().count();
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("ok: ") && first.ends_with(&format!("{files} skipped")),
        "{stdout}"
    );
    assert!(stdout.contains("skipped: sequence or sample"), "{stdout}");
    assert!(
        stdout.contains("sequence.toml:") && stdout.contains("skipped rule `t1609-skip-sequence`"),
        "{stdout}"
    );
}
