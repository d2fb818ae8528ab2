//! Reading a [`ProcessEvent`] back from an ECS document (`replay`'s input).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{
    CaptureInfo, Creds, EventError, EventType, HostOs, Identity, Process, ProcessEvent,
    RelatedProcess, Tty,
};

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
        let event_type = r.event_type()?;
        let event_action = r
            .string("event.action")?
            .filter(|a| Some(a.as_str()) != event_type.default_action());
        let parent = r.related("process.parent", false)?;
        let process = Process {
            pid: r.u32("process.pid")?,
            name: r.string("process.name")?,
            executable: r.string("process.executable")?,
            args: r.strings("process.args")?,
            args_count: r.u64("process.args_count")?,
            command_line: r.string("process.command_line")?,
            working_directory: r.string("process.working_directory")?,
            parent,
            interactive: r.bool("process.interactive")?,
            tty: Tty {
                char_device_major: r.u32("process.tty.char_device.major")?,
                char_device_minor: r.u32("process.tty.char_device.minor")?,
            },
            creds: r.creds("process", true)?,
            env_vars: r.strings("process.env_vars")?,
            exit_code: r.i64("process.exit_code")?,
            hash_sha256: r.string("process.hash.sha256")?,
            entry_leader: r.related("process.entry_leader", true)?,
            session_leader: r.related("process.session_leader", false)?,
            group_leader: r.related("process.group_leader", false)?,
        };
        Ok(ProcessEvent {
            timestamp: r.string("@timestamp")?,
            event_id: r.string("event.id")?,
            event_type,
            event_action,
            process,
            user: r.identity("user")?,
            group: r.identity("group")?,
            container_id: r.string("container.id")?,
            container_privileged: r.bool("container.security_context.privileged")?,
            host_hostname: r.string("host.hostname")?,
            host_os: HostOs {
                kind: r.string("host.os.type")?,
                name: r.string("host.os.name")?,
                kernel: r.string("host.os.kernel")?,
            },
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
    fn i64(&self, f: &str) -> Result<Option<i64>, EventError> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Self::err(f, "an integer")),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| Self::err(f, "an integer")),
            Some(_) => Err(Self::err(f, "an integer")),
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

    /// `event.type`: a string or an array (ECS); `start` wins, then `end`, then the
    /// first value. Absent: `start`, since the agent records execs.
    fn event_type(&self) -> Result<EventType, EventError> {
        const WANT: &str = "ECS event.type values (start, end, change, info, ...)";
        let Some(v) = self.strings("event.type")? else {
            return Ok(EventType::Start);
        };
        let mut types = Vec::with_capacity(v.len());
        for t in &v {
            types.push(EventType::from_name(t).ok_or_else(|| Self::err("event.type", WANT))?);
        }
        Ok([EventType::Start, EventType::End]
            .into_iter()
            .find(|t| types.contains(t))
            .or_else(|| types.first().copied())
            .unwrap_or_default())
    }
    /// `<prefix>.id`, `<prefix>.name`.
    fn identity(&self, prefix: &str) -> Result<Identity, EventError> {
        Ok(Identity {
            id: self.id(&format!("{prefix}.id"))?,
            name: self.string(&format!("{prefix}.name"))?,
        })
    }
    /// `<prefix>.{user, real_user, group, real_group}`. For the event's own process
    /// (`top`), Elastic Defend's `user.Ext.real` and `group.Ext.real` stand in for
    /// absent real ids.
    fn creds(&self, prefix: &str, top: bool) -> Result<Creds, EventError> {
        let mut c = Creds {
            user: self.identity(&format!("{prefix}.user"))?,
            real_user: self.identity(&format!("{prefix}.real_user"))?,
            group: self.identity(&format!("{prefix}.group"))?,
            real_group: self.identity(&format!("{prefix}.real_group"))?,
        };
        if top && prefix == "process" {
            if c.real_user.is_empty() {
                c.real_user = self.identity("user.Ext.real")?;
            }
            if c.real_group.is_empty() {
                c.real_group = self.identity("group.Ext.real")?;
            }
        }
        Ok(c)
    }
    /// The parent or a leader at `prefix`; `entry` reads `entry_meta.type` too.
    fn related(
        &self,
        prefix: &str,
        entry: bool,
    ) -> Result<Option<Box<RelatedProcess>>, EventError> {
        let f = |name: &str| format!("{prefix}.{name}");
        let r = RelatedProcess {
            pid: self.u32(&f("pid"))?,
            name: self.string(&f("name"))?,
            executable: self.string(&f("executable"))?,
            args: self.strings(&f("args"))?,
            command_line: self.string(&f("command_line"))?,
            args_count: self.u64(&f("args_count"))?,
            working_directory: self.string(&f("working_directory"))?,
            interactive: self.bool(&f("interactive"))?,
            creds: self.creds(prefix, false)?,
            same_as_process: self.bool(&f("same_as_process"))?,
            entry_meta_type: if entry {
                self.string(&f("entry_meta.type"))?
            } else {
                None
            },
        };
        Ok((!r.is_empty()).then(|| Box::new(r)))
    }
}
