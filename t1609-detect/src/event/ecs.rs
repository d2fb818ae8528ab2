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
                parent: p.parent.as_deref().map(EcsRelated::new),
                interactive: p.interactive,
                tty: EcsTty::new(p.tty),
                creds: EcsCreds::new(&p.creds),
                env_vars: p.env_vars.as_deref(),
                exit_code: p.exit_code,
                hash: p.hash_sha256.as_deref().map(|sha256| EcsHash { sha256 }),
                entry_leader: p.entry_leader.as_deref().map(EcsRelated::new),
                session_leader: p.session_leader.as_deref().map(EcsRelated::new),
                group_leader: p.group_leader.as_deref().map(EcsRelated::new),
            },
            user: EcsIdentity::new(&self.user),
            group: EcsIdentity::new(&self.group),
            container: EcsContainer {
                id: self.container_id.as_deref(),
                security_context: self
                    .container_privileged
                    .map(|privileged| EcsSecurityContext { privileged }),
            },
            host: EcsHost {
                hostname: self.host_hostname.as_deref(),
                os: EcsOs {
                    kind: self.host_os.kind.as_deref(),
                    name: self.host_os.name.as_deref(),
                    kernel: self.host_os.kernel.as_deref(),
                },
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
    #[serde(skip_serializing_if = "EcsContainer::is_empty")]
    pub container: EcsContainer<'a>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

impl<'a> RecordMeta<'a> {
    fn new(ev: &'a ProcessEvent) -> Self {
        RecordMeta {
            kind: "event",
            category: ["process"],
            kind_type: [ev.event_type.as_str()],
            action: ev.action(),
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
    parent: Option<EcsRelated<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interactive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tty: Option<EcsTty>,
    #[serde(flatten)]
    creds: EcsCreds<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env_vars: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<EcsHash<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_leader: Option<EcsRelated<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_leader: Option<EcsRelated<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_leader: Option<EcsRelated<'a>>,
}

/// `process.hash`.
#[derive(Serialize)]
struct EcsHash<'a> {
    sha256: &'a str,
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
            && self.interactive.is_none()
            && self.tty.is_none()
            && self.creds.is_empty()
            && self.env_vars.is_none()
            && self.exit_code.is_none()
            && self.hash.is_none()
            && self.entry_leader.is_none()
            && self.session_leader.is_none()
            && self.group_leader.is_none()
    }
}

/// `process.tty`.
#[derive(Serialize)]
pub(crate) struct EcsTty {
    char_device: EcsCharDevice,
}

#[derive(Serialize)]
struct EcsCharDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    major: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minor: Option<u32>,
}

impl EcsTty {
    fn new(t: super::Tty) -> Option<Self> {
        (t.char_device_major.is_some() || t.char_device_minor.is_some()).then_some(EcsTty {
            char_device: EcsCharDevice {
                major: t.char_device_major,
                minor: t.char_device_minor,
            },
        })
    }
}

/// `user`, `real_user`, `group`, `real_group` of a process, each omitted when empty.
#[derive(Serialize)]
pub(crate) struct EcsCreds<'a> {
    #[serde(skip_serializing_if = "EcsIdentity::is_empty")]
    user: EcsIdentity<'a>,
    #[serde(skip_serializing_if = "EcsIdentity::is_empty")]
    real_user: EcsIdentity<'a>,
    #[serde(skip_serializing_if = "EcsIdentity::is_empty")]
    group: EcsIdentity<'a>,
    #[serde(skip_serializing_if = "EcsIdentity::is_empty")]
    real_group: EcsIdentity<'a>,
}

impl<'a> EcsCreds<'a> {
    fn new(c: &'a super::Creds) -> Self {
        EcsCreds {
            user: EcsIdentity::new(&c.user),
            real_user: EcsIdentity::new(&c.real_user),
            group: EcsIdentity::new(&c.group),
            real_group: EcsIdentity::new(&c.real_group),
        }
    }
    fn is_empty(&self) -> bool {
        self.user.is_empty()
            && self.real_user.is_empty()
            && self.group.is_empty()
            && self.real_group.is_empty()
    }
}

/// The parent or a leader.
#[derive(Serialize)]
pub(crate) struct EcsRelated<'a> {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    args_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_directory: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interactive: Option<bool>,
    #[serde(flatten)]
    creds: EcsCreds<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    same_as_process: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_meta: Option<EcsEntryMeta<'a>>,
}

#[derive(Serialize)]
struct EcsEntryMeta<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

impl<'a> EcsRelated<'a> {
    fn new(r: &'a super::RelatedProcess) -> Self {
        EcsRelated {
            pid: r.pid,
            name: r.name.as_deref(),
            executable: r.executable.as_deref(),
            args: r.args.as_deref(),
            command_line: r.command_line.as_deref(),
            args_count: r.args_count,
            working_directory: r.working_directory.as_deref(),
            interactive: r.interactive,
            creds: EcsCreds::new(&r.creds),
            same_as_process: r.same_as_process,
            entry_meta: r
                .entry_meta_type
                .as_deref()
                .map(|kind| EcsEntryMeta { kind }),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct EcsIdentity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl<'a> EcsIdentity<'a> {
    fn new(i: &'a super::Identity) -> Self {
        EcsIdentity {
            id: i.id.as_deref(),
            name: i.name.as_deref(),
        }
    }
    fn is_empty(&self) -> bool {
        self.id.is_none() && self.name.is_none()
    }
}

#[derive(Serialize)]
pub(crate) struct EcsContainer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_context: Option<EcsSecurityContext>,
}

#[derive(Serialize)]
struct EcsSecurityContext {
    privileged: bool,
}

impl EcsContainer<'_> {
    fn is_empty(&self) -> bool {
        self.id.is_none() && self.security_context.is_none()
    }
}

#[derive(Serialize)]
pub(crate) struct EcsHost<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "EcsOs::is_empty")]
    os: EcsOs<'a>,
}

impl EcsHost<'_> {
    fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.os.is_empty()
    }
}

#[derive(Serialize)]
struct EcsOs<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<&'a str>,
}

impl EcsOs<'_> {
    fn is_empty(&self) -> bool {
        self.kind.is_none() && self.name.is_none() && self.kernel.is_none()
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
