//! The EQL parser of t1609-detect (`t1609_detect::eql::parse_query` /
//! `parse_condition`), the pure in-memory entry points rule loading uses. Queries that
//! parse are also evaluated against a few events, as the engine would.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use t1609_detect::{ProcessEvent, argv, eql};

fn events() -> &'static [(ProcessEvent, Vec<argv::Invocation>)] {
    static EVENTS: OnceLock<Vec<(ProcessEvent, Vec<argv::Invocation>)>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let docs = [
            serde_json::json!({}),
            serde_json::json!({
                "process": {
                    "name": "docker", "executable": "/usr/bin/docker", "pid": 4242,
                    "args": ["docker", "exec", "-it", "web", "/bin/sh"],
                    "command_line": "docker exec -it web /bin/sh",
                    "parent": {"name": "bash", "pid": 1000, "args": ["-bash"]}
                },
                "user": {"id": "0", "name": "root"}
            }),
            serde_json::json!({
                "process.name": "kubectl",
                "process.args": ["kubectl", "-n", "kube-system", "exec", "-ti", "etcd-0", "--", "sh", "-c", "id"],
                "process.command_line": "kubectl -n kube-system exec -ti etcd-0 -- sh -c id"
            }),
        ];
        docs.iter()
            .map(|d| {
                let ev = ProcessEvent::from_ecs(d).expect("seed event");
                let invs = match &ev.process.args {
                    Some(args) => argv::parse(ev.process.name.as_deref(), args),
                    None => Vec::new(),
                };
                (ev, invs)
            })
            .collect()
    })
}

fn exercise(node: &eql::Node) {
    let _ = node.needs_argv();
    node.fields(&mut |f| {
        let _ = (f.name(), f.kind());
    });
    for (ev, invs) in events() {
        let _ = node.eval(&eql::ctx(ev, None));
        for inv in invs {
            let _ = node.eval(&eql::ctx(ev, Some(inv)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    for result in [
        eql::parse_query(src),
        eql::parse_condition(src),
        // Most inputs fail at the `process where` prefix; this reaches the condition
        // grammar through the query entry point too.
        eql::parse_query(&format!("process where {src}")),
    ] {
        match result {
            Ok(node) => exercise(&node),
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1, "error position must be 1-based: {e:?}");
                let _ = e.to_string();
            }
        }
    }
});
