//! The replay input parsers: ECS process events through `t1609_detect::replay` with the
//! built-in engine, and Kubernetes audit lines through `t1609_k8saudit::parse_event_line`
//! and the built-in audit rules (`AuditRules::evaluate_value`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use t1609_detect::Engine;
use t1609_k8saudit::AuditRules;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::builtin().expect("built-in rules load"))
}

fn audit_rules() -> &'static AuditRules {
    static RULES: OnceLock<AuditRules> = OnceLock::new();
    RULES.get_or_init(|| AuditRules::builtin().expect("built-in audit rules load"))
}

fuzz_target!(|data: &[u8]| {
    let summary = t1609_detect::replay(engine(), data, std::io::sink(), std::io::sink());
    assert!(summary.bad_lines <= summary.lines);

    let rules = audit_rules();
    for line in data.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        if let Ok(ev) = t1609_k8saudit::parse_event_line(line) {
            let _ = rules.evaluate(&ev);
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            let _ = t1609_k8saudit::looks_like_audit(&v);
            let _ = rules.evaluate_value(&v);
        }
    }
    let _ = t1609_k8saudit::parse_event_list(data);
});
