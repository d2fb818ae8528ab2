//! The labelled corpus (tests/corpus/commands.jsonl): precision and recall of the sharper
//! rules, and agreement of the seed rule with an independent reading of EQL semantics.

mod common;

use std::collections::BTreeSet;

use common::{SEED, SHARPER};
use serde_json::Value;
use t1609_detect::{Engine, event::ProcessEvent};

struct Case {
    line: usize,
    ev: ProcessEvent,
    expect: BTreeSet<String>,
}

fn load() -> Vec<Case> {
    let text = include_str!("corpus/commands.jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1));
        let ev = common::corpus_event(&v);
        let expect = v["expect"]
            .as_array()
            .expect("expect")
            .iter()
            .map(|x| x.as_str().expect("str").to_string())
            .collect();
        out.push(Case {
            line: i + 1,
            ev,
            expect,
        });
    }
    out
}

#[test]
fn sharper_rules_precision_and_recall() {
    let engine = Engine::builtin().expect("builtin");
    let cases = load();
    let (mut tp, mut fp, mut fnn) = (0usize, 0usize, 0usize);
    let mut per_rule: std::collections::BTreeMap<&str, (u32, u32, u32)> =
        SHARPER.iter().map(|r| (*r, (0, 0, 0))).collect();
    let mut report = Vec::new();
    for c in &cases {
        let got: BTreeSet<String> = engine
            .evaluate(&c.ev)
            .into_iter()
            .map(|a| a.rule_id)
            .filter(|r| r != SEED)
            .collect();
        for r in SHARPER {
            let (g, e) = (got.contains(*r), c.expect.contains(*r));
            let s = per_rule.get_mut(r).expect("rule");
            match (g, e) {
                (true, true) => s.0 += 1,
                (true, false) => s.1 += 1,
                (false, true) => s.2 += 1,
                _ => {}
            }
        }
        let inter = got.intersection(&c.expect).count();
        tp += inter;
        fp += got.len() - inter;
        fnn += c.expect.len() - inter;
        if got != c.expect {
            report.push(format!(
                "line {}: {:?}\n    expected {:?}\n    got      {:?}",
                c.line, c.ev.process.command_line, c.expect, got
            ));
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fnn).max(1) as f64;
    println!(
        "corpus: {} cases, {} labelled rule hits",
        cases.len(),
        tp + fnn
    );
    println!("{:<32} {:>4} {:>4} {:>4}", "rule", "TP", "FP", "FN");
    for (r, (a, b, c)) in &per_rule {
        println!("{r:<32} {a:>4} {b:>4} {c:>4}");
    }
    println!("sharper rules: TP={tp} FP={fp} FN={fnn} precision={precision:.4} recall={recall:.4}");
    for r in &report {
        println!("MISMATCH {r}");
    }
    assert!(precision >= 0.95, "precision {precision:.4} < 0.95");
    assert!(recall >= 0.95, "recall {recall:.4} < 0.95");
}

/// The seed rule, read straight from EQL's documented semantics: `in` is exact and
/// case-sensitive; `:` is case-insensitive and any element of args may match; `*`
/// wildcards in `command_line`.
fn seed_oracle(ev: &ProcessEvent) -> bool {
    let Some(name) = ev.process.name.as_deref() else {
        return false;
    };
    if ![
        "docker", "kubectl", "crictl", "ctr", "podman", "nsenter", "runc",
    ]
    .contains(&name)
    {
        return false;
    }
    let words = [
        "exec",
        "run",
        "create",
        "deploy",
        "--privileged",
        "--pid=host",
        "--net=host",
        "--cap-add",
        "sys_admin",
        "nsenter",
    ];
    let args_hit = ev
        .process
        .args
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| words.contains(&x.to_lowercase().as_str())));
    let cl_hit = ev.process.command_line.as_ref().is_some_and(|cl| {
        let l = cl.to_lowercase();
        l.contains("--privileged")
            || l.contains("--pid=host")
            || l.contains("--cap-add=sys_admin")
            || {
                // *nsenter*pid*1*
                l.find("nsenter")
                    .and_then(|i| l[i + 7..].find("pid").map(|j| i + 7 + j + 3))
                    .is_some_and(|k| l[k..].contains('1'))
            }
    });
    args_hit || cl_hit
}

#[test]
fn seed_rule_agrees_with_eql_semantics_on_every_case() {
    let engine = Engine::builtin().expect("builtin");
    let mut fired = 0;
    let cases = load();
    for c in &cases {
        let got = engine.evaluate(&c.ev).iter().any(|a| a.rule_id == SEED);
        assert_eq!(
            got,
            seed_oracle(&c.ev),
            "seed rule disagrees with EQL semantics on corpus line {}: {:?}",
            c.line,
            c.ev.process.args
        );
        fired += usize::from(got);
    }
    println!("seed rule fired on {fired} of {} corpus cases", cases.len());
    assert!(fired > 50);
}
