//! The event's ECS documents: the `run --record` line, and the borrowed view an alert
//! adds its own members to.

use serde::Serialize;
use serde_json::Value;

use super::ProcessEvent;

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
