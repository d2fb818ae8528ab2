//! Sigma rules (`logsource: {product: linux, category: process_creation}`) through the
//! rsigma-parser and rsigma-eval crates.
//!
//! Field mapping (Sigma -> our event):
//!
//! | Sigma | ECS |
//! |---|---|
//! | `Image` | `process.executable` |
//! | `OriginalFileName` | `process.name` |
//! | `CommandLine` | `process.command_line` |
//! | `ParentImage` | `process.parent.executable` |
//! | `ParentCommandLine` | `process.parent.command_line` |
//! | `User` | `user.name` |
//! | `CurrentDirectory` | `process.working_directory` |
//! | `ProcessId` | `process.pid` |
//! | `ParentProcessId` | `process.parent.pid` |
//!
//! Any other field in a rule's detection is a load error (the crate's `load` module
//! reads Sigma files).

use rsigma_eval::{CompiledRule, JsonEvent, evaluate_rule};
use serde_json::{Map, Value};

use crate::event::ProcessEvent;

pub const SIGMA_FIELDS: &[&str] = &[
    "Image",
    "OriginalFileName",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "User",
    "CurrentDirectory",
    "ProcessId",
    "ParentProcessId",
];

/// A compiled Sigma rule.
#[derive(Debug)]
pub struct SigmaRule {
    compiled: CompiledRule,
}

impl SigmaRule {
    pub(crate) fn new(compiled: CompiledRule) -> Self {
        Self { compiled }
    }

    pub(crate) fn matches(&self, doc: &Value) -> bool {
        evaluate_rule(&self.compiled, &JsonEvent::borrow(doc)).is_some()
    }
}

/// The event as a Sigma `process_creation` document (absent fields omitted).
pub(crate) fn sigma_doc(ev: &ProcessEvent) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let p = &ev.process;
    let pp = p.parent.as_deref();
    put("Image", p.executable.clone().map(Value::String));
    put("OriginalFileName", p.name.clone().map(Value::String));
    put("CommandLine", p.command_line.clone().map(Value::String));
    put(
        "ParentImage",
        pp.and_then(|x| x.executable.clone()).map(Value::String),
    );
    put(
        "ParentCommandLine",
        pp.and_then(|x| x.command_line.clone()).map(Value::String),
    );
    put("User", ev.user.name.clone().map(Value::String));
    put(
        "CurrentDirectory",
        p.working_directory.clone().map(Value::String),
    );
    put("ProcessId", p.pid.map(Value::from));
    put("ParentProcessId", pp.and_then(|x| x.pid).map(Value::from));
    Value::Object(m)
}
