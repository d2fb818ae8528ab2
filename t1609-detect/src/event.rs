//! The process event the engine evaluates: the ECS fields of one exec.
//!
//! The live agent builds it from kernel records; `replay` parses it from the ECS JSON
//! lines that `run --record` writes. A field that is `None` is absent: a rule that needs
//! it does not match.

use serde::{Deserialize, Serialize};

/// One exec, as ECS fields. `None` means "not known", never "empty".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessEvent {
    /// RFC 3339 wall-clock time of the exec.
    pub timestamp: Option<String>,
    /// Unique id of this event (`event.id`).
    pub event_id: Option<String>,
    pub process: Process,
    pub user: Identity,
    pub group: Identity,
    pub container_id: Option<String>,
    pub host_hostname: Option<String>,
    /// Capture details of our own (`t1609.*` in ECS output).
    pub capture: CaptureInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    pub pid: Option<u32>,
    /// Basename of the executed file (not argv[0], so `exec -a` cannot spoof it).
    pub name: Option<String>,
    pub executable: Option<String>,
    /// argv, argv[0] included, lossily decoded as UTF-8.
    pub args: Option<Vec<String>>,
    pub args_count: Option<u64>,
    /// args joined by single spaces.
    pub command_line: Option<String>,
    pub working_directory: Option<String>,
    pub parent: Option<Box<ParentProcess>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParentProcess {
    pub pid: Option<u32>,
    pub name: Option<String>,
    pub executable: Option<String>,
    pub args: Option<Vec<String>>,
    pub command_line: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// ECS keeps ids as strings (`"0"`).
    pub id: Option<String>,
    pub name: Option<String>,
}

/// What the kernel told us beyond ECS, kept under `t1609.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    pub cgroup_id: Option<u64>,
    pub pid_ns: Option<u32>,
    pub mnt_ns: Option<u32>,
    pub tgid: Option<u32>,
    pub euid: Option<u32>,
    pub egid: Option<u32>,
    pub loginuid: Option<u32>,
    /// Name of the controlling terminal (`pts3`), when there is one.
    pub tty: Option<String>,
    /// argv length in the process, before any cap.
    pub argv_total_len: Option<u64>,
    /// argv was longer than the capture cap; its tail is missing.
    pub argv_truncated: bool,
    /// Some argv bytes were lost in transit (continuation record dropped).
    pub argv_incomplete: bool,
    /// Exact argv bytes, base64 per argument, present only when some argument was not
    /// valid UTF-8 (the `args` strings then hold U+FFFD in their place).
    pub args_b64: Option<Vec<String>>,
    /// Exact executable path bytes, base64, present only when not valid UTF-8.
    pub executable_b64: Option<String>,
}

use serde_json::{Map, Value};

/// Why an ECS document could not be read as a [`ProcessEvent`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("the event is not a JSON object")]
    NotObject,
    #[error("field `{field}`: expected {expected}")]
    Field {
        field: String,
        expected: &'static str,
    },
}

impl ProcessEvent {
    /// The `run --record` format: one nested ECS document; `None` fields are omitted.
    pub fn to_ecs(&self) -> Value {
        serde_json::to_value(self.ecs_doc(RecordMeta::new(self), NoExtra {}, NoExtra {}))
            .unwrap_or(Value::Null)
    }

    /// Writes the `run --record` line (without newline) straight to `w`, with no
    /// intermediate `Value`.
    pub fn write_ecs(&self, w: impl std::io::Write) -> serde_json::Result<()> {
        serde_json::to_writer(
            w,
            &self.ecs_doc(RecordMeta::new(self), NoExtra {}, NoExtra {}),
        )
    }

    /// The event's ECS fields, with a caller's `event` object, extra top-level objects and
    /// extra `t1609.*` fields (alerts add theirs).
    pub(crate) fn ecs_doc<E: Serialize, X: Serialize, T: Serialize>(
        &self,
        event: E,
        extra: X,
        t1609_extra: T,
    ) -> EcsDoc<'_, E, X, T> {
        let p = &self.process;
        let c = &self.capture;
        EcsDoc {
            ts: self.timestamp.as_deref(),
            event,
            extra,
            process: EcsProcess {
                pid: p.pid,
                name: p.name.as_deref(),
                executable: p.executable.as_deref(),
                args: p.args.as_deref(),
                args_count: p.args_count,
                command_line: p.command_line.as_deref(),
                working_directory: p.working_directory.as_deref(),
                parent: p.parent.as_deref().map(|pp| EcsParent {
                    pid: pp.pid,
                    name: pp.name.as_deref(),
                    executable: pp.executable.as_deref(),
                    args: pp.args.as_deref(),
                    command_line: pp.command_line.as_deref(),
                }),
            },
            user: EcsIdentity {
                id: self.user.id.as_deref(),
                name: self.user.name.as_deref(),
            },
            group: EcsIdentity {
                id: self.group.id.as_deref(),
                name: self.group.name.as_deref(),
            },
            container: EcsOne {
                id: self.container_id.as_deref(),
            },
            host: EcsHost {
                hostname: self.host_hostname.as_deref(),
            },
            t1609: EcsCapture {
                cgroup_id: c.cgroup_id,
                pid_ns: c.pid_ns,
                mnt_ns: c.mnt_ns,
                tgid: c.tgid,
                euid: c.euid,
                egid: c.egid,
                loginuid: c.loginuid,
                tty: c.tty.as_deref(),
                argv_total_len: c.argv_total_len,
                argv_truncated: c.argv_truncated,
                argv_incomplete: c.argv_incomplete,
                args_b64: c.args_b64.as_deref(),
                executable_b64: c.executable_b64.as_deref(),
                extra: t1609_extra,
            },
        }
    }

    /// Makes `self` equal to `src`, reusing `self`'s string and vector buffers (the
    /// derived `clone_from` would reallocate everything). The destructuring makes a new
    /// field a compile error here rather than a silently stale copy.
    pub(crate) fn assign_from(&mut self, src: &ProcessEvent) {
        let ProcessEvent {
            timestamp,
            event_id,
            process,
            user,
            group,
            container_id,
            host_hostname,
            capture,
        } = src;
        self.timestamp.clone_from(timestamp);
        self.event_id.clone_from(event_id);
        let Process {
            pid,
            name,
            executable,
            args,
            args_count,
            command_line,
            working_directory,
            parent,
        } = process;
        let p = &mut self.process;
        p.pid = *pid;
        p.name.clone_from(name);
        p.executable.clone_from(executable);
        p.args.clone_from(args);
        p.args_count = *args_count;
        p.command_line.clone_from(command_line);
        p.working_directory.clone_from(working_directory);
        match (&mut p.parent, parent) {
            (Some(dst), Some(src)) => {
                let ParentProcess {
                    pid,
                    name,
                    executable,
                    args,
                    command_line,
                } = &**src;
                dst.pid = *pid;
                dst.name.clone_from(name);
                dst.executable.clone_from(executable);
                dst.args.clone_from(args);
                dst.command_line.clone_from(command_line);
            }
            (dst, src) => dst.clone_from(src),
        }
        for (dst, src) in [(&mut self.user, user), (&mut self.group, group)] {
            let Identity { id, name } = src;
            dst.id.clone_from(id);
            dst.name.clone_from(name);
        }
        self.container_id.clone_from(container_id);
        self.host_hostname.clone_from(host_hostname);
        let CaptureInfo {
            cgroup_id,
            pid_ns,
            mnt_ns,
            tgid,
            euid,
            egid,
            loginuid,
            tty,
            argv_total_len,
            argv_truncated,
            argv_incomplete,
            args_b64,
            executable_b64,
        } = capture;
        let c = &mut self.capture;
        c.cgroup_id = *cgroup_id;
        c.pid_ns = *pid_ns;
        c.mnt_ns = *mnt_ns;
        c.tgid = *tgid;
        c.euid = *euid;
        c.egid = *egid;
        c.loginuid = *loginuid;
        c.tty.clone_from(tty);
        c.argv_total_len = *argv_total_len;
        c.argv_truncated = *argv_truncated;
        c.argv_incomplete = *argv_incomplete;
        c.args_b64.clone_from(args_b64);
        c.executable_b64.clone_from(executable_b64);
    }

    /// Reads an ECS document, nested objects and dotted keys mixed. Unknown fields are
    /// ignored (Elasticsearch documents carry many); known fields of the wrong type are
    /// errors naming the field.
    pub fn from_ecs(v: &Value) -> Result<ProcessEvent, EventError> {
        let Value::Object(obj) = v else {
            return Err(EventError::NotObject);
        };
        let mut flat: std::collections::HashMap<String, &Value> = std::collections::HashMap::new();
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
    out: &mut std::collections::HashMap<String, &'a Value>,
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
    flat: std::collections::HashMap<String, &'a Value>,
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

/// Borrowed ECS view of an event, serialised without building a `Value` first.
#[derive(Serialize)]
pub(crate) struct EcsDoc<'a, E, X, T> {
    #[serde(rename = "@timestamp", skip_serializing_if = "Option::is_none")]
    pub ts: Option<&'a str>,
    pub event: E,
    #[serde(flatten)]
    pub extra: X,
    #[serde(skip_serializing_if = "EcsProcess::is_empty")]
    pub process: EcsProcess<'a>,
    #[serde(skip_serializing_if = "EcsIdentity::is_empty")]
    pub user: EcsIdentity<'a>,
    #[serde(skip_serializing_if = "EcsIdentity::is_empty")]
    pub group: EcsIdentity<'a>,
    #[serde(skip_serializing_if = "EcsOne::is_empty")]
    pub container: EcsOne<'a>,
    #[serde(skip_serializing_if = "EcsHost::is_empty")]
    pub host: EcsHost<'a>,
    pub t1609: EcsCapture<'a, T>,
}

/// An empty object, for documents with nothing extra.
#[derive(Serialize)]
pub(crate) struct NoExtra {}

#[derive(Serialize)]
pub(crate) struct RecordMeta<'a> {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kind_type: [&'static str; 1],
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl<'a> RecordMeta<'a> {
    fn new(ev: &'a ProcessEvent) -> Self {
        RecordMeta {
            kind: "event",
            category: ["process"],
            kind_type: ["start"],
            action: "exec",
            id: ev.event_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct EcsProcess<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_directory: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<EcsParent<'a>>,
}

impl EcsProcess<'_> {
    fn is_empty(&self) -> bool {
        self.pid.is_none()
            && self.name.is_none()
            && self.executable.is_none()
            && self.args.is_none()
            && self.args_count.is_none()
            && self.command_line.is_none()
            && self.working_directory.is_none()
            && self.parent.is_none()
    }
}

#[derive(Serialize)]
pub(crate) struct EcsParent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct EcsIdentity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl EcsIdentity<'_> {
    fn is_empty(&self) -> bool {
        self.id.is_none() && self.name.is_none()
    }
}

#[derive(Serialize)]
pub(crate) struct EcsOne<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl EcsOne<'_> {
    fn is_empty(&self) -> bool {
        self.id.is_none()
    }
}

#[derive(Serialize)]
pub(crate) struct EcsHost<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
}

impl EcsHost<'_> {
    fn is_empty(&self) -> bool {
        self.hostname.is_none()
    }
}

#[derive(Serialize)]
pub(crate) struct EcsCapture<'a, T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid_ns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mnt_ns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tgid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    euid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loginuid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tty: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv_total_len: Option<u64>,
    argv_truncated: bool,
    argv_incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_b64: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    executable_b64: Option<&'a str>,
    #[serde(flatten)]
    extra: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> ProcessEvent {
        let s = |v: &str| Some(v.to_string());
        ProcessEvent {
            timestamp: s("2026-01-01T00:00:00Z"),
            event_id: s("e1"),
            process: Process {
                pid: Some(7),
                name: s("docker"),
                executable: s("/usr/bin/docker"),
                args: Some(vec!["docker".into(), "exec".into(), "web".into()]),
                args_count: Some(3),
                command_line: s("docker exec web"),
                working_directory: s("/root"),
                parent: Some(Box::new(ParentProcess {
                    pid: Some(1),
                    name: s("bash"),
                    executable: s("/bin/bash"),
                    args: Some(vec!["bash".into()]),
                    command_line: s("bash"),
                })),
            },
            user: Identity {
                id: s("0"),
                name: s("root"),
            },
            group: Identity {
                id: s("0"),
                name: None,
            },
            container_id: s("4f2a"),
            host_hostname: s("node-1"),
            capture: CaptureInfo {
                cgroup_id: Some(9),
                tty: s("pts1"),
                argv_truncated: true,
                args_b64: Some(vec!["ZG9ja2Vy".into()]),
                ..Default::default()
            },
        }
    }

    #[test]
    fn assign_from_copies_every_shape() {
        let mut no_parent = full();
        no_parent.process.parent = None;
        no_parent.process.args = Some(vec!["a".into()]);
        let mut other_parent = full();
        if let Some(p) = other_parent.process.parent.as_deref_mut() {
            p.args = None;
            p.name = Some("sudo".into());
        }
        let shapes = [ProcessEvent::default(), full(), no_parent, other_parent];
        for src in &shapes {
            for start in &shapes {
                let mut dst = start.clone();
                dst.assign_from(src);
                assert_eq!(&dst, src);
            }
        }
    }
}
