//! Reading a [`ProcessEvent`] back from an ECS document (`replay`'s input).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{CaptureInfo, EventError, Identity, ParentProcess, Process, ProcessEvent};

impl ProcessEvent {
    /// Reads an ECS document, nested objects and dotted keys mixed. Unknown fields are
    /// ignored (Elasticsearch documents carry many); known fields of the wrong type are
    /// errors naming the field.
    pub fn from_ecs(v: &Value) -> Result<ProcessEvent, EventError> {
        let Value::Object(obj) = v else {
            return Err(EventError::NotObject);
        };
        let mut flat: HashMap<String, &Value> = HashMap::new();
        flatten("", obj, &mut flat, 0);
        let r = Reader { flat };
        let parent = ParentProcess {
            pid: r.u32("process.parent.pid")?,
            name: r.string("process.parent.name")?,
            executable: r.string("process.parent.executable")?,
            args: r.strings("process.parent.args")?,
            command_line: r.string("process.parent.command_line")?,
        };
        let has_parent = parent != ParentProcess::default();
        Ok(ProcessEvent {
            timestamp: r.string("@timestamp")?,
            event_id: r.string("event.id")?,
            process: Process {
                pid: r.u32("process.pid")?,
                name: r.string("process.name")?,
                executable: r.string("process.executable")?,
                args: r.strings("process.args")?,
                args_count: r.u64("process.args_count")?,
                command_line: r.string("process.command_line")?,
                working_directory: r.string("process.working_directory")?,
                parent: has_parent.then(|| Box::new(parent)),
            },
            user: Identity {
                id: r.id("user.id")?,
                name: r.string("user.name")?,
            },
            group: Identity {
                id: r.id("group.id")?,
                name: r.string("group.name")?,
            },
            container_id: r.string("container.id")?,
            host_hostname: r.string("host.hostname")?,
            capture: CaptureInfo {
                cgroup_id: r.u64("t1609.cgroup_id")?,
                pid_ns: r.u32("t1609.pid_ns")?,
                mnt_ns: r.u32("t1609.mnt_ns")?,
                tgid: r.u32("t1609.tgid")?,
                euid: r.u32("t1609.euid")?,
                egid: r.u32("t1609.egid")?,
                loginuid: r.u32("t1609.loginuid")?,
                tty: r.string("t1609.tty")?,
                argv_total_len: r.u64("t1609.argv_total_len")?,
                argv_truncated: r.bool("t1609.argv_truncated")?.unwrap_or(false),
                argv_incomplete: r.bool("t1609.argv_incomplete")?.unwrap_or(false),
                args_b64: r.strings("t1609.args_b64")?,
                executable_b64: r.string("t1609.executable_b64")?,
            },
        })
    }
}

/// Depth cap so a hostile, deeply nested line cannot exhaust the stack.
const MAX_DEPTH: usize = 16;

fn flatten<'a>(
    prefix: &str,
    obj: &'a Map<String, Value>,
    out: &mut HashMap<String, &'a Value>,
    depth: usize,
) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) if depth < MAX_DEPTH => flatten(&key, inner, out, depth + 1),
            _ => {
                out.insert(key, v);
            }
        }
    }
}

struct Reader<'a> {
    flat: HashMap<String, &'a Value>,
}

impl Reader<'_> {
    fn get(&self, f: &str) -> Option<&Value> {
        match self.flat.get(f) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }
    fn err(f: &str, expected: &'static str) -> EventError {
        EventError::Field {
            field: f.to_string(),
            expected,
        }
    }
    fn string(&self, f: &str) -> Result<Option<String>, EventError> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Self::err(f, "a string")),
        }
    }
    /// ECS ids are strings, but some producers write numbers.
    fn id(&self, f: &str) -> Result<Option<String>, EventError> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Self::err(f, "a string or number")),
        }
    }
    fn u64(&self, f: &str) -> Result<Option<u64>, EventError> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| Self::err(f, "an unsigned integer")),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| Self::err(f, "an unsigned integer")),
            Some(_) => Err(Self::err(f, "an unsigned integer")),
        }
    }
    fn u32(&self, f: &str) -> Result<Option<u32>, EventError> {
        match self.u64(f)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| Self::err(f, "a 32-bit unsigned integer")),
        }
    }
    fn bool(&self, f: &str) -> Result<Option<bool>, EventError> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Self::err(f, "a boolean")),
        }
    }
    fn strings(&self, f: &str) -> Result<Option<Vec<String>>, EventError> {
        match self.get(f) {
            None => Ok(None),
            // A single value is a one-element array in Elasticsearch.
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(Self::err(f, "an array of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Self::err(f, "an array of strings")),
        }
    }
}
