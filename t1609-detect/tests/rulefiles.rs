//! Rule files: format errors with file/line/column, directories, Sigma.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use t1609_detect::{Engine, RuleError, check_rules};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> Scratch {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "t1609-detect-test-{tag}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    Scratch(d)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write");
    p
}

const GOOD: &str = r#"
[[rule]]
id = "local.kubectl_exec_prod"
name = "kubectl exec into prod"
description = "x"
severity = "critical"
confidence = "high"
risk_score = 99
techniques = ["T1609"]
query = '''
process where t1609.argv.tool == "kubectl" and t1609.argv.namespace == "prod"
'''
"#;

#[test]
fn builtin_pack_is_valid() {
    let n = check_rules(&[]).expect("valid");
    assert_eq!(n, 9);
    assert_eq!(Engine::builtin().expect("builtin").rule_count(), 9);
}

#[test]
fn extra_rules_load_and_fire() {
    let d = tmpdir("good");
    write(&d, "local.toml", GOOD);
    write(&d, "README.md", "not a rule");
    assert_eq!(check_rules(std::slice::from_ref(&*d)).expect("valid"), 10);
    let e = Engine::load(&[d.to_path_buf()]).expect("load");
    let ev = t1609_detect::event::ProcessEvent {
        process: t1609_detect::event::Process {
            name: Some("kubectl".into()),
            args: Some(
                ["kubectl", "-n", "prod", "exec", "p", "--", "id"]
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        e.evaluate(&ev)
            .iter()
            .any(|a| a.rule_id == "local.kubectl_exec_prod")
    );
}

fn first_err(text: &str) -> (String, usize, usize, String) {
    let d = tmpdir("bad");
    let p = write(&d, "bad.toml", text);
    let errs = check_rules(&[p]).expect_err("invalid");
    match &errs[0] {
        RuleError::Invalid {
            file,
            line,
            column,
            message,
        } => (file.clone(), *line, *column, message.clone()),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn unknown_field_in_query_names_file_line_column() {
    let bad = GOOD.replace("t1609.argv.namespace", "t1609.argv.namespaec");
    let (file, line, col, msg) = first_err(&bad);
    assert!(file.ends_with("bad.toml"));
    assert_eq!(line, 11, "{msg}");
    assert_eq!(col, 48, "{msg}");
    assert!(
        msg.contains("unknown field `t1609.argv.namespaec`"),
        "{msg}"
    );
    assert!(msg.contains("local.kubectl_exec_prod"), "{msg}");
}

#[test]
fn bad_syntax_names_file_line_column() {
    let bad = GOOD.replace("== \"prod\"", "= \"prod\"");
    let (_, line, col, msg) = first_err(&bad);
    assert_eq!((line, col), (11, 69), "{msg}");
    assert!(msg.contains("expected `==`"), "{msg}");
}

#[test]
fn unknown_rule_key_is_refused() {
    let bad = GOOD.replace("risk_score = 99", "risk_score = 99\nseverty = \"low\"");
    let (_, line, _, msg) = first_err(&bad);
    assert_eq!(line, 9, "{msg}");
    assert!(msg.contains("severty"), "{msg}");
}

#[test]
fn bad_values_are_refused() {
    let (_, _, _, m) = first_err(&GOOD.replace("\"critical\"", "\"urgent\""));
    assert!(m.contains("urgent") || m.contains("variant"), "{m}");
    // Any syntactically valid ATT&CK id is accepted; a malformed one is not.
    let (_, _, _, m) = first_err(&GOOD.replace("[\"T1609\"]", "[\"T99\"]"));
    assert!(
        m.contains("T99") && m.contains("ATT&CK technique id"),
        "{m}"
    );
    let (_, _, _, m) =
        first_err(&GOOD.replace("techniques = [", "tactics = [\"TAX\"]\ntechniques = ["));
    assert!(m.contains("TAX"), "{m}");
    let d = tmpdir("mitre");
    let p = write(
        &d,
        "new.toml",
        &GOOD
            .replace("[\"T1609\"]", "[\"T9999.001\"]")
            .replace("techniques = [", "tactics = [\"TA0099\"]\ntechniques = ["),
    );
    let builtin = check_rules(&[]).expect("the built-in pack loads");
    assert_eq!(check_rules(&[p]).expect("valid ids"), builtin + 1);
    let (_, _, _, m) = first_err(&GOOD.replace("\"kubectl\"", "\"kubctl\""));
    assert!(m.contains("kubctl"), "{m}");
    let (_, _, _, m) = first_err(&GOOD.replace("risk_score = 99", "risk_score = 101"));
    assert!(m.contains("risk_score"), "{m}");
    let (_, line, _, m) = first_err("[[rule]\nid = 1");
    assert_eq!(line, 1, "{m}");
}

#[test]
fn duplicate_ids_and_other_files_are_refused() {
    let d = tmpdir("dup");
    write(&d, "a.toml", GOOD);
    write(&d, "b.toml", GOOD);
    let errs = check_rules(&[d.to_path_buf()]).expect_err("dup");
    assert!(
        errs.iter()
            .any(|e| matches!(e, RuleError::Duplicate { .. })),
        "{errs:?}"
    );
    let d = tmpdir("txt");
    let p = write(&d, "rule.txt", "x");
    let errs = check_rules(&[p]).expect_err("ext");
    assert!(
        errs[0].to_string().contains("expected a .toml"),
        "{}",
        errs[0]
    );
    let errs = check_rules(&[PathBuf::from("/nonexistent/t1609/rule.toml")]).expect_err("io");
    assert!(matches!(errs[0], RuleError::Io { .. }));
}

#[test]
fn capture_all_rule_sets_watch_flag_with_reason() {
    let d = tmpdir("any");
    write(
        &d,
        "any.toml",
        &GOOD.replace(
            "t1609.argv.tool == \"kubectl\" and ",
            "process.command_line : \"*kubelet*\" and ",
        ),
    );
    let w = Engine::load(&[d.to_path_buf()]).expect("load").watch_set();
    assert!(w.capture_all);
    assert!(
        w.capture_all_reasons
            .iter()
            .any(|r| r.contains("local.kubectl_exec_prod"))
    );
}

const SIGMA: &str = r"
title: Docker exec from a web server
id: 5b0c3c9e-2f4b-4a0e-9c56-000000000001
status: experimental
description: docker exec launched by nginx
references:
  - https://attack.mitre.org/techniques/T1609/
tags:
  - attack.execution
  - attack.t1609
logsource:
  product: linux
  category: process_creation
detection:
  selection:
    Image|endswith: '/docker'
    CommandLine|contains: ' exec '
    ParentImage|endswith: '/nginx'
  condition: selection
level: high
";

#[test]
fn sigma_linux_process_creation_rules_work() {
    let d = tmpdir("sigma");
    write(&d, "docker_exec.yml", SIGMA);
    let e = Engine::load(&[d.to_path_buf()]).expect("load");
    // Translated into the engine's conditions, the rule is indexed by the executable
    // name its `Image|endswith: /docker` implies: no capture-all.
    let w = e.watch_set();
    assert!(!w.capture_all, "{:?}", w.capture_all_reasons);
    assert!(w.names.contains("docker"));
    let mut ev = t1609_detect::event::ProcessEvent::default();
    ev.process.executable = Some("/usr/bin/docker".into());
    ev.process.name = Some("docker".into());
    ev.process.command_line = Some("docker exec web id".into());
    ev.process.args = Some(vec![
        "docker".into(),
        "exec".into(),
        "web".into(),
        "id".into(),
    ]);
    ev.process.parent = Some(Box::new(t1609_detect::event::ParentProcess {
        executable: Some("/usr/sbin/nginx".into()),
        ..Default::default()
    }));
    let alerts = e.evaluate(&ev);
    let a = alerts
        .iter()
        .find(|a| a.rule_id == "5b0c3c9e-2f4b-4a0e-9c56-000000000001")
        .expect("sigma alert");
    assert_eq!(a.severity, t1609_detect::Severity::High);
    assert_eq!(a.to_ecs()["threat"]["technique"]["id"][0], "T1609");
    ev.process.parent = None;
    assert!(
        !e.evaluate(&ev)
            .iter()
            .any(|a| a.rule_id.starts_with("5b0c"))
    );
}

#[test]
fn sigma_other_logsources_and_unknown_fields_are_refused() {
    let d = tmpdir("sigma-bad");
    let p = write(
        &d,
        "win.yml",
        &SIGMA.replace("product: linux", "product: windows"),
    );
    let errs = check_rules(&[p]).expect_err("refused");
    assert!(
        errs[0]
            .to_string()
            .contains("only product `linux`, category `process_creation`"),
        "{}",
        errs[0]
    );
    let p = write(&d, "field.yml", &SIGMA.replace("ParentImage", "ParentUser"));
    let errs = check_rules(&[p]).expect_err("refused");
    assert!(
        errs[0].to_string().contains("unknown field `ParentUser`"),
        "{}",
        errs[0]
    );
    let p = write(&d, "broken.yml", "title: x\n  bad: [\n");
    assert!(check_rules(&[p]).is_err());
}

fn own_rule(id: &str, query: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\nname = \"{id}\"\ndescription = \"x\"\nseverity = \"high\"\nconfidence = \"medium\"\nrisk_score = 70\ntechniques = [\"T1609\"]\nquery = '''\n{query}\n'''\n"
    )
}

fn exec_named(name: &str) -> t1609_detect::ProcessEvent {
    let mut ev = t1609_detect::ProcessEvent::default();
    ev.process.name = Some(name.into());
    ev.process.executable = Some(format!("/usr/bin/{name}"));
    ev.process.args = Some(vec![name.into()]);
    ev
}

/// The agent reads leaders and environment variables from /proc for an exec only when a
/// rule that may match it tests them: the leader rule's candidates only; an
/// environment-only rule, which the index cannot select before the variables are read,
/// every exec.
#[test]
fn extras_are_needed_only_by_the_candidates_that_test_them() {
    let d = tmpdir("extras");
    write(
        &d,
        "leader.toml",
        &own_rule(
            "local.leader",
            r#"process where process.name == "leadtool" and process.session_leader.name == "sshd""#,
        ),
    );
    let e = Engine::load(&[d.to_path_buf()]).expect("load");
    let x = e.extras_needed(&exec_named("leadtool"));
    assert!(x.session_leader && !x.group_leader && !x.env_vars, "{x:?}");
    assert!(!e.extras_needed(&exec_named("ls")).any());
    // The built-in pack alone needs none.
    let builtin = Engine::builtin().expect("builtin");
    assert!(!builtin.extras_needed(&exec_named("docker")).any());

    write(
        &d,
        "env.toml",
        &own_rule(
            "local.preload",
            r#"process where process.env_vars : "LD_PRELOAD=/tmp/*""#,
        ),
    );
    let e = Engine::load(&[d.to_path_buf()]).expect("load");
    let x = e.extras_needed(&exec_named("ls"));
    assert!(x.env_vars && !x.session_leader, "{x:?}");
}
