//! Conformance against the real rule sets, kept out of the repository: Elastic's
//! detection-rules (`rules/linux`, `rules/integrations/cloud_defend`) and `SigmaHQ`'s
//! `rules/linux/process_creation`, from checkouts named by environment variables:
//!
//! ```sh
//! T1609_DETECTION_RULES=/path/to/detection-rules T1609_SIGMA_RULES=/path/to/sigma \
//!   cargo test -p t1609-detect --test conformance -- --ignored --nocapture
//! ```
//!
//! It prints how many single-event process rules load unmodified, the reasons for the
//! rest by kind, and whether each loaded rule fires on an event built from its own
//! literals (through the literal index); it fails if a loaded rule's own example does
//! not fire.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use t1609_detect::{Engine, check_rules_report};

/// The `process where` rules of a detection-rules directory (file, `rule_id`).
fn elastic_process_rules(dirs: &[PathBuf]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let Ok(v) = toml::from_str::<toml::Value>(&text) else {
                    continue;
                };
                let r = &v["rule"];
                let q = r.get("query").and_then(toml::Value::as_str).unwrap_or("");
                if r.get("language").and_then(toml::Value::as_str) == Some("eql")
                    && q.trim_start().starts_with("process where")
                {
                    let id = r["rule_id"].as_str().unwrap_or("").to_string();
                    out.push((p.display().to_string(), id));
                }
            }
        }
    }
    out
}

struct Outcome {
    loaded: usize,
    fired: usize,
    no_example: Vec<String>,
    not_fired: Vec<String>,
}

impl Outcome {
    /// Prints how many rules fired on their own example; returns those that did not.
    fn print_firing(self) -> Vec<String> {
        println!(
            " fire on an event built from their own literals: {} of {} (no example built: {})",
            self.fired,
            self.loaded,
            self.no_example.len()
        );
        for n in &self.no_example {
            println!("   no example: {n}");
        }
        self.not_fired
    }
}

/// Loads `paths`, then tries each loaded rule (not the built-in pack) on its example.
fn run(label: &str, paths: &[PathBuf]) -> (Outcome, t1609_detect::RuleReport) {
    let report = check_rules_report(paths).unwrap_or_else(|e| {
        panic!(
            "{label}: {}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let engine = Engine::load(paths).expect("load");
    let mut o = Outcome {
        loaded: 0,
        fired: 0,
        no_example: Vec::new(),
        not_fired: Vec::new(),
    };
    for (src, id) in &report.loaded_ids {
        if src.starts_with("builtin:") {
            continue;
        }
        o.loaded += 1;
        match engine.example_event(id) {
            None => o.no_example.push(format!("{id} ({src})")),
            Some(ev) => {
                if engine.evaluate(&ev).iter().any(|a| &a.rule_id == id) {
                    o.fired += 1;
                } else {
                    o.not_fired.push(format!("{id} ({src}): {ev:?}"));
                }
            }
        }
    }
    (o, report)
}

fn print_skipped(report: &t1609_detect::RuleReport, only: Option<&[(String, String)]>) {
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &report.skipped {
        if let Some(only) = only
            && !only.iter().any(|(_, id)| *id == s.id)
        {
            continue;
        }
        by_kind
            .entry(s.kind.describe().to_string())
            .or_default()
            .push(format!("{}: {}", short(&s.file), s.reason));
    }
    let mut v: Vec<_> = by_kind.into_iter().collect();
    v.sort_by_key(|(_, x)| std::cmp::Reverse(x.len()));
    for (kind, items) in v {
        println!("  {:>4}  {kind}", items.len());
        for i in items.iter().take(3) {
            println!("          e.g. {i}");
        }
    }
}

fn short(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map_or_else(|| p.to_string(), |f| f.to_string_lossy().into_owned())
}

/// Every loaded Sigma rule against every loaded rule's example event (and that event
/// with its command line dropped): the engine's translation and rsigma-eval must agree.
fn sigma_cross_check(dir: &Path, report: &t1609_detect::RuleReport) -> Vec<String> {
    let engine = Engine::load(&[dir.to_owned()]).expect("load");
    let mut events = Vec::new();
    for (src, id) in &report.loaded_ids {
        if !src.starts_with("builtin:")
            && let Some(ev) = engine.example_event(id)
        {
            let mut bare = ev.clone();
            bare.process.command_line = None;
            events.push(ev);
            events.push(bare);
        }
    }
    let mut mismatches = Vec::new();
    let mut compared = 0usize;
    for (src, id) in &report.loaded_ids {
        if src.starts_with("builtin:") {
            continue;
        }
        let text = std::fs::read_to_string(src).expect("read");
        let coll = rsigma_parser::parse_sigma_yaml(&text).expect("parse");
        let Ok(rule) = rsigma_eval::compile_rule(&coll.rules[0]) else {
            continue;
        };
        for ev in &events {
            let doc = t1609_detect::sigma::sigma_doc(ev);
            let theirs =
                rsigma_eval::evaluate_rule(&rule, &rsigma_eval::JsonEvent::borrow(&doc)).is_some();
            let ours = engine.evaluate(ev).iter().any(|a| &a.rule_id == id);
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{id} ({}): ours {ours}, rsigma {theirs} on {ev:?}",
                    short(src)
                ));
            }
        }
    }
    println!(
        " translation vs rsigma-eval: {compared} comparisons, {} disagreements",
        mismatches.len()
    );
    mismatches
}

#[test]
#[ignore = "needs checkouts of detection-rules and sigma (T1609_DETECTION_RULES, T1609_SIGMA_RULES)"]
fn real_rule_sets() {
    let mut failures = Vec::new();
    if let Ok(root) = std::env::var("T1609_DETECTION_RULES") {
        let root = PathBuf::from(root);
        let paths = vec![
            root.join("rules/linux"),
            root.join("rules/integrations/cloud_defend"),
        ];
        let process = elastic_process_rules(&paths);
        let (o, report) = run("detection-rules", &paths);
        let loaded_process = process
            .iter()
            .filter(|(_, id)| report.loaded_ids.iter().any(|(_, l)| l == id))
            .count();
        println!(
            "detection-rules: {} rules loaded, {} skipped; single-event `process where` rules: {} of {} load unmodified",
            o.loaded,
            report.skipped.len(),
            loaded_process,
            process.len()
        );
        println!(" the other `process where` rules, by reason:");
        print_skipped(&report, Some(&process));
        println!(" all skipped rules, by reason:");
        print_skipped(&report, None);
        failures.extend(o.print_firing());
    } else {
        println!("skipped: set T1609_DETECTION_RULES to a detection-rules checkout");
    }
    if let Ok(root) = std::env::var("T1609_SIGMA_RULES") {
        let paths = vec![PathBuf::from(root).join("rules/linux/process_creation")];
        let (o, report) = run("sigma", &paths);
        failures.extend(sigma_cross_check(&paths[0], &report));
        println!(
            "sigma: {} of {} rules load ({} skipped)",
            o.loaded,
            o.loaded + report.skipped.len(),
            report.skipped.len()
        );
        print_skipped(&report, None);
        failures.extend(o.print_firing());
    } else {
        println!("skipped: set T1609_SIGMA_RULES to a sigma checkout");
    }
    assert!(
        failures.is_empty(),
        "rules that do not fire on their own example:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "prints the literal index of the full rule sets"]
fn index_stats() {
    let (Ok(dr), Ok(sg)) = (
        std::env::var("T1609_DETECTION_RULES"),
        std::env::var("T1609_SIGMA_RULES"),
    ) else {
        println!("skipped: set T1609_DETECTION_RULES and T1609_SIGMA_RULES");
        return;
    };
    let paths = vec![
        PathBuf::from(&dr).join("rules/linux"),
        PathBuf::from(&dr).join("rules/integrations/cloud_defend"),
        PathBuf::from(&sg).join("rules/linux/process_creation"),
    ];
    let e = Engine::load(&paths).expect("load");
    println!("{e:#?}");
    let w = e.watch_set();
    println!(
        "watch: {} names, {} name prefixes, {} exe prefixes, needs every exec: {}, capture-all reasons: {}",
        w.names.len(),
        w.name_prefixes.len(),
        w.exe_prefixes.len(),
        w.needs_every_exec,
        w.capture_all_reasons.len()
    );
    for r in &w.capture_all_reasons {
        println!("  {r}");
    }
}
