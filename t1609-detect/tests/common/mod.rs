//! Helpers shared by the integration tests.
#![allow(dead_code)]

use t1609_detect::event::{ParentProcess, Process, ProcessEvent};

pub const SHARPER: &[&str] = &[
    "t1609.container_exec",
    "t1609.kubelet_api_exec",
    "t1613.kubelet_api_discovery",
    "t1609.host_namespace_escape",
    "t1609.runtime_api_direct",
    "t1609.runc_exec_direct",
    "t1609.argv_truncated",
];
pub const SEED: &str = "t1609.container_admin_command";

pub fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// An exec event as the agent builds it: name is the executable's basename.
pub fn event_named(name: Option<&str>, argv: &[&str], parent: Option<&str>) -> ProcessEvent {
    let args: Vec<String> = argv.iter().map(ToString::to_string).collect();
    let name = name
        .map(str::to_string)
        .or_else(|| argv.first().map(|a| basename(a).to_string()));
    ProcessEvent {
        timestamp: Some("2026-11-28T12:00:00Z".into()),
        event_id: Some("ev-1".into()),
        process: Process {
            pid: Some(4242),
            executable: name.as_ref().map(|n| format!("/usr/bin/{n}")),
            name,
            args_count: Some(args.len() as u64),
            command_line: Some(args.join(" ")),
            args: Some(args),
            working_directory: Some("/root".into()),
            parent: Some(Box::new(ParentProcess {
                pid: Some(4000),
                name: Some(parent.unwrap_or("bash").to_string()),
                executable: Some(format!("/usr/bin/{}", parent.unwrap_or("bash"))),
                args: Some(vec![parent.unwrap_or("bash").to_string()]),
                command_line: Some(parent.unwrap_or("bash").to_string()),
                ..Default::default()
            })),
            ..Default::default()
        },
        user: t1609_detect::event::Identity {
            id: Some("0".into()),
            name: Some("root".into()),
        },
        group: t1609_detect::event::Identity {
            id: Some("0".into()),
            name: Some("root".into()),
        },
        container_id: None,
        host_hostname: Some("node-1".into()),
        capture: t1609_detect::event::CaptureInfo::default(),
        ..Default::default()
    }
}

pub fn event(argv: &[&str]) -> ProcessEvent {
    event_named(None, argv, None)
}

/// Shell-like splitting for test convenience (single/double quotes, no escapes needed).
pub fn split(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in cmd.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

pub fn ids(engine: &t1609_detect::Engine, ev: &ProcessEvent) -> Vec<String> {
    let mut v: Vec<String> = engine.evaluate(ev).into_iter().map(|a| a.rule_id).collect();
    v.sort();
    v
}

/// Rule ids fired on a command line (split shell-like), sharper rules only.
pub fn fires(engine: &t1609_detect::Engine, cmd: &str) -> Vec<String> {
    let argv = split(cmd);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    ids(engine, &event(&refs))
        .into_iter()
        .filter(|r| r != SEED)
        .collect()
}

/// The event a labelled corpus line (`argv`, optional `name`, `parent`, `truncated`) stands for.
pub fn corpus_event(v: &serde_json::Value) -> ProcessEvent {
    let argv: Vec<&str> = v["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().expect("str"))
        .collect();
    let name = v.get("name").and_then(serde_json::Value::as_str);
    let parent = v.get("parent").and_then(serde_json::Value::as_str);
    let mut ev = event_named(name, &argv, parent);
    if argv.is_empty() {
        ev.process.name = name.map(str::to_string);
    }
    ev.capture.argv_truncated = v
        .get("truncated")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    ev
}
