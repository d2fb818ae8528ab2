//! The field registry: every field a query may name, its type, and whether and when the
//! live agent provides it; and, for ECS fields it never provides, why.
//!
//! A rule naming a field outside the registry is a load error that says why (a field of
//! another event category, an Elastic Defend extension the agent does not capture...),
//! so a rule never loads only to be silently false.

use std::fmt;

/// What a field holds, for type-checking operators at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    StrArray,
    Num,
    Bool,
}

/// Which process a `process.*` field is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    Process,
    Parent,
    EntryLeader,
    SessionLeader,
    GroupLeader,
}

impl Who {
    pub const ALL: [Who; 5] = [
        Who::Process,
        Who::Parent,
        Who::EntryLeader,
        Who::SessionLeader,
        Who::GroupLeader,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Who::Process => "process.",
            Who::Parent => "process.parent.",
            Who::EntryLeader => "process.entry_leader.",
            Who::SessionLeader => "process.session_leader.",
            Who::GroupLeader => "process.group_leader.",
        }
    }
}

/// An attribute of a process (the event's own, its parent or a leader).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    Pid,
    Name,
    Executable,
    Args,
    ArgsCount,
    CommandLine,
    WorkingDirectory,
    Interactive,
    UserId,
    UserName,
    RealUserId,
    RealUserName,
    GroupId,
    GroupName,
    RealGroupId,
    RealGroupName,
    SameAsProcess,
    EntryMetaType,
    EnvVars,
    ExitCode,
    TtyMajor,
    TtyMinor,
}

/// Name suffix and type of each attribute.
const ATTRS: &[(Attr, &str, Kind)] = &[
    (Attr::Pid, "pid", Kind::Num),
    (Attr::Name, "name", Kind::Str),
    (Attr::Executable, "executable", Kind::Str),
    (Attr::Args, "args", Kind::StrArray),
    (Attr::ArgsCount, "args_count", Kind::Num),
    (Attr::CommandLine, "command_line", Kind::Str),
    (Attr::WorkingDirectory, "working_directory", Kind::Str),
    (Attr::Interactive, "interactive", Kind::Bool),
    (Attr::UserId, "user.id", Kind::Str),
    (Attr::UserName, "user.name", Kind::Str),
    (Attr::RealUserId, "real_user.id", Kind::Str),
    (Attr::RealUserName, "real_user.name", Kind::Str),
    (Attr::GroupId, "group.id", Kind::Str),
    (Attr::GroupName, "group.name", Kind::Str),
    (Attr::RealGroupId, "real_group.id", Kind::Str),
    (Attr::RealGroupName, "real_group.name", Kind::Str),
    (Attr::SameAsProcess, "same_as_process", Kind::Bool),
    (Attr::EntryMetaType, "entry_meta.type", Kind::Str),
    (Attr::EnvVars, "env_vars", Kind::StrArray),
    (Attr::ExitCode, "exit_code", Kind::Num),
    (Attr::TtyMajor, "tty.char_device.major", Kind::Num),
    (Attr::TtyMinor, "tty.char_device.minor", Kind::Num),
];

impl Attr {
    fn entry(self) -> (&'static str, Kind) {
        ATTRS
            .iter()
            .find(|(a, _, _)| *a == self)
            .map_or(("", Kind::Str), |(_, n, k)| (*n, *k))
    }

    /// Whether `who` has this attribute.
    fn valid_for(self, who: Who) -> bool {
        match self {
            Attr::SameAsProcess => !matches!(who, Who::Process | Who::Parent),
            Attr::EntryMetaType => who == Who::EntryLeader,
            Attr::EnvVars | Attr::ExitCode | Attr::TtyMajor | Attr::TtyMinor => who == Who::Process,
            _ => true,
        }
    }
}

macro_rules! simple_fields {
    ($( $var:ident => $name:literal : $kind:ident ),* $(,)?) => {
        /// A field a query may reference.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field {
            /// `process.*`, `process.parent.*`, `process.{entry,session,group}_leader.*`.
            Proc(Who, Attr),
            $( $var ),*
        }
        const SIMPLE: &[(Field, &str, Kind)] = &[ $( (Field::$var, $name, Kind::$kind) ),* ];
    };
}

simple_fields! {
    EventType => "event.type": Str,
    EventAction => "event.action": Str,
    EventCategory => "event.category": Str,
    HostOsType => "host.os.type": Str,
    HostOsName => "host.os.name": Str,
    HostOsKernel => "host.os.kernel": Str,
    HostHostname => "host.hostname": Str,
    UserId => "user.id": Str,
    UserName => "user.name": Str,
    GroupId => "group.id": Str,
    GroupName => "group.name": Str,
    ContainerId => "container.id": Str,
    ContainerPrivileged => "container.security_context.privileged": Bool,
    CapArgvTruncated => "t1609.argv_truncated": Bool,
    CapArgvIncomplete => "t1609.argv_incomplete": Bool,
    CapTty => "t1609.tty": Str,
    CapLoginUid => "t1609.loginuid": Num,
    CapEuid => "t1609.euid": Num,
    ArgvTool => "t1609.argv.tool": Str,
    ArgvVerb => "t1609.argv.verb": Str,
    ArgvContainer => "t1609.argv.container": Str,
    ArgvPod => "t1609.argv.pod": Str,
    ArgvNamespace => "t1609.argv.namespace": Str,
    ArgvImage => "t1609.argv.image": Str,
    ArgvInteractive => "t1609.argv.interactive": Bool,
    ArgvTtyFlag => "t1609.argv.tty": Bool,
    ArgvPrivileged => "t1609.argv.privileged": Bool,
    ArgvHostNamespaces => "t1609.argv.host_namespaces": StrArray,
    ArgvMounts => "t1609.argv.mounts": StrArray,
    ArgvHostRootMount => "t1609.argv.host_root_mount": Bool,
    ArgvRuntimeSocketMount => "t1609.argv.runtime_socket_mount": Bool,
    ArgvCapAdd => "t1609.argv.cap_add": StrArray,
    ArgvSecurityUnconfined => "t1609.argv.security_unconfined": Bool,
    ArgvDevices => "t1609.argv.devices": StrArray,
    ArgvCommand => "t1609.argv.command": StrArray,
    ArgvCommandClass => "t1609.argv.command_class": Str,
    ArgvCommandIsShell => "t1609.argv.command_is_shell": Bool,
    ArgvTargetPid => "t1609.argv.target_pid": Str,
    ArgvHelp => "t1609.argv.help": Bool,
    ArgvUrl => "t1609.argv.url": Str,
    ArgvUrlHost => "t1609.argv.url_host": Str,
    ArgvUrlPort => "t1609.argv.url_port": Num,
    ArgvUrlPath => "t1609.argv.url_path": Str,
    ArgvApi => "t1609.argv.api": Str,
    ArgvApiAction => "t1609.argv.api_action": Str,
    ArgvUnixSocket => "t1609.argv.unix_socket": Str,
    ArgvRuntimeSocket => "t1609.argv.runtime_socket": Bool,
    ArgvRemoteHost => "t1609.argv.remote_host": Str,
    ArgvRemotePort => "t1609.argv.remote_port": Num,
    ArgvWrappers => "t1609.argv.wrappers": StrArray,
    ArgvShim => "t1609.argv.shim": Str,
    ArgvRecognisedBy => "t1609.argv.recognised_by": Str,
    ArgvMasquerade => "t1609.argv.masquerade": Str,
    ArgvPlugin => "t1609.argv.plugin": Str,
}

/// Other names of registry fields: Elastic Defend keeps the real ids of the process
/// under `user.Ext.real` and `group.Ext.real`.
const ALIASES: &[(&str, Field)] = &[
    (
        "user.Ext.real.id",
        Field::Proc(Who::Process, Attr::RealUserId),
    ),
    (
        "user.Ext.real.name",
        Field::Proc(Who::Process, Attr::RealUserName),
    ),
    (
        "group.Ext.real.id",
        Field::Proc(Who::Process, Attr::RealGroupId),
    ),
    (
        "group.Ext.real.name",
        Field::Proc(Who::Process, Attr::RealGroupName),
    ),
];

/// Whether and when the live agent fills a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provision {
    /// On every exec event (and exit event).
    Always,
    /// Filled when known; the text says when.
    WhenKnown(&'static str),
    /// Only on exit events (`event.type: end`).
    OnExit,
    /// Only what the agent is configured to capture; the text says what.
    OptIn(&'static str),
}

impl fmt::Display for Provision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provision::Always => f.write_str("every event"),
            Provision::WhenKnown(w) => write!(f, "when known: {w}"),
            Provision::OnExit => f.write_str("exit events only"),
            Provision::OptIn(w) => write!(f, "opt-in: {w}"),
        }
    }
}

/// One row of the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    pub field: Field,
    pub name: String,
    pub kind: Kind,
    pub provision: Provision,
}

impl Field {
    /// Every field, in registry order.
    pub fn all() -> Vec<Field> {
        let mut v: Vec<Field> = Vec::new();
        for who in Who::ALL {
            for (a, _, _) in ATTRS {
                if a.valid_for(who) {
                    v.push(Field::Proc(who, *a));
                }
            }
        }
        v.extend(SIMPLE.iter().map(|(f, _, _)| *f));
        v
    }

    /// The field's ECS (or `t1609.*`) name.
    pub fn name(self) -> String {
        self.to_string()
    }

    pub fn kind(self) -> Kind {
        match self {
            Field::Proc(_, a) => a.entry().1,
            f => SIMPLE
                .iter()
                .find(|(x, _, _)| *x == f)
                .map_or(Kind::Str, |(_, _, k)| *k),
        }
    }

    /// The registry field `n` names (canonical name or alias; a leading `?`, EQL's
    /// optional-field mark, is stripped), or `None`.
    pub fn from_name(n: &str) -> Option<Field> {
        let n = n.strip_prefix('?').unwrap_or(n);
        if let Some((_, f)) = ALIASES.iter().find(|(a, _)| *a == n) {
            return Some(*f);
        }
        if let Some((f, _, _)) = SIMPLE.iter().find(|(_, x, _)| *x == n) {
            return Some(*f);
        }
        // Longest prefix first: `process.parent.` before `process.`.
        for who in [
            Who::Parent,
            Who::EntryLeader,
            Who::SessionLeader,
            Who::GroupLeader,
            Who::Process,
        ] {
            if let Some(rest) = n.strip_prefix(who.prefix())
                && let Some((a, _, _)) = ATTRS.iter().find(|(_, s, _)| *s == rest)
                && a.valid_for(who)
            {
                return Some(Field::Proc(who, *a));
            }
        }
        None
    }

    /// Whether evaluating this field needs the structured argv parse.
    pub fn needs_argv(self) -> bool {
        matches!(
            self,
            Field::ArgvTool
                | Field::ArgvVerb
                | Field::ArgvContainer
                | Field::ArgvPod
                | Field::ArgvNamespace
                | Field::ArgvImage
                | Field::ArgvInteractive
                | Field::ArgvTtyFlag
                | Field::ArgvPrivileged
                | Field::ArgvHostNamespaces
                | Field::ArgvMounts
                | Field::ArgvHostRootMount
                | Field::ArgvRuntimeSocketMount
                | Field::ArgvCapAdd
                | Field::ArgvSecurityUnconfined
                | Field::ArgvDevices
                | Field::ArgvCommand
                | Field::ArgvCommandClass
                | Field::ArgvCommandIsShell
                | Field::ArgvTargetPid
                | Field::ArgvHelp
                | Field::ArgvUrl
                | Field::ArgvUrlHost
                | Field::ArgvUrlPort
                | Field::ArgvUrlPath
                | Field::ArgvApi
                | Field::ArgvApiAction
                | Field::ArgvUnixSocket
                | Field::ArgvRuntimeSocket
                | Field::ArgvRemoteHost
                | Field::ArgvRemotePort
                | Field::ArgvWrappers
                | Field::ArgvShim
                | Field::ArgvRecognisedBy
                | Field::ArgvMasquerade
                | Field::ArgvPlugin
        )
    }

    /// Whether and when the live agent provides the field: the contract between the
    /// rules and the capture side (the agent fills exactly these).
    pub fn provision(self) -> Provision {
        match self {
            Field::Proc(_, Attr::EnvVars) => Provision::OptIn(
                "the variables of event::ENV_VARS_CAPTURED, when the agent captures environments",
            ),
            Field::Proc(_, Attr::ExitCode) => Provision::OnExit,
            Field::Proc(Who::EntryLeader | Who::SessionLeader | Who::GroupLeader, _) => {
                Provision::WhenKnown("the leader was seen exec'ing, or read from /proc")
            }
            Field::Proc(Who::Parent, _) => {
                Provision::WhenKnown("the parent is alive or was seen exec'ing")
            }
            Field::Proc(_, Attr::WorkingDirectory) => {
                Provision::WhenKnown("the kernel's or /proc's directory path resolves")
            }
            Field::Proc(
                _,
                Attr::UserName | Attr::GroupName | Attr::RealUserName | Attr::RealGroupName,
            )
            | Field::UserName
            | Field::GroupName => Provision::WhenKnown("the id has a name on the host"),
            Field::Proc(_, Attr::TtyMajor | Attr::TtyMinor) | Field::CapTty => {
                Provision::WhenKnown("the process has a controlling terminal")
            }
            Field::ContainerId => Provision::WhenKnown("the process runs in a container"),
            Field::ContainerPrivileged => Provision::WhenKnown(
                "events from other sources (replay): the live agent does not fill it yet",
            ),
            Field::CapLoginUid => Provision::WhenKnown("the kernel has audit login ids"),
            _ => Provision::Always,
        }
    }

    /// Why the agent never provides the ECS field `name` (not in the registry), when
    /// that is known.
    pub fn unavailable(name: &str) -> Option<&'static str> {
        let n = name.strip_prefix('?').unwrap_or(name);
        if n.ends_with(".entity_id") {
            return Some(
                "entity ids identify processes across events, for sequences, which the engine does not run",
            );
        }
        UNAVAILABLE
            .iter()
            .find(|(p, _)| n.starts_with(p) || n == p.trim_end_matches('.'))
            .map(|(_, why)| *why)
    }
}

/// ECS fields (by prefix) the agent never fills, and why.
const UNAVAILABLE: &[(&str, &str)] = &[
    (
        "process.Ext.",
        "Elastic Defend's own extension fields (memory regions, tokens, load module flags) are not captured",
    ),
    (
        "process.parent.Ext.",
        "Elastic Defend's own extension fields are not captured",
    ),
    ("process.thread.", "thread capabilities are not captured"),
    ("process.hash.", "executables are not hashed"),
    ("process.pe.", "Windows PE metadata does not exist on Linux"),
    ("process.code_signature.", "code signatures are not checked"),
    ("process.io.", "terminal input and output are not captured"),
    (
        "process.start",
        "process start times are not part of the event",
    ),
    ("process.end", "process end times are not part of the event"),
    (
        "process.previous.",
        "previous images of a process are not tracked",
    ),
    (
        "file.",
        "file events are not captured: the agent sees execs and exits",
    ),
    ("dll.", "library loads are not captured"),
    ("network.", "network events are not part of process events"),
    (
        "destination.",
        "network events are not part of process events",
    ),
    ("source.", "network events are not part of process events"),
    ("dns.", "DNS events are not captured"),
    ("url.", "network events are not part of process events"),
    (
        "auditd.",
        "Auditbeat's auditd fields: the agent is not an audit log reader",
    ),
    (
        "event.outcome",
        "exec events have no outcome: only successful execs are seen",
    ),
    ("registry.", "Windows registry events do not exist on Linux"),
    (
        "user.Ext.",
        "Elastic Defend's own extension fields are not captured",
    ),
    (
        "group.Ext.",
        "Elastic Defend's own extension fields are not captured",
    ),
    (
        "container.image.",
        "container images are resolved only for the exec'd target, not the event's own container",
    ),
    ("orchestrator.", "pod metadata is not looked up for rules"),
    ("cloud.", "cloud metadata is not collected"),
    ("host.id", "host ids are not collected"),
    (
        "host.name",
        "the event carries host.hostname, not host.name",
    ),
    ("host.ip", "host addresses are not collected"),
    ("agent.", "Elastic Agent metadata does not exist here"),
    (
        "data_stream.",
        "Elasticsearch data streams do not exist here",
    ),
];

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Field::Proc(who, a) => {
                f.write_str(who.prefix())?;
                f.write_str(a.entry().0)
            }
            x => f.write_str(
                SIMPLE
                    .iter()
                    .find(|(y, _, _)| *y == x)
                    .map_or("", |(_, n, _)| *n),
            ),
        }
    }
}

/// The whole registry, for documentation and tools.
pub fn registry() -> Vec<FieldInfo> {
    Field::all()
        .into_iter()
        .map(|field| FieldInfo {
            field,
            name: field.name(),
            kind: field.kind(),
            provision: field.provision(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_resolve() {
        for f in Field::all() {
            assert_eq!(Field::from_name(&f.name()), Some(f), "{f}");
            assert!(Field::unavailable(&f.name()).is_none(), "{f}");
        }
        assert_eq!(
            Field::from_name("?user.Ext.real.id"),
            Some(Field::Proc(Who::Process, Attr::RealUserId))
        );
        assert_eq!(
            Field::from_name("process.entry_leader.entry_meta.type"),
            Some(Field::Proc(Who::EntryLeader, Attr::EntryMetaType))
        );
        assert_eq!(Field::from_name("process.parent.entry_meta.type"), None);
        assert_eq!(Field::from_name("process.parent.env_vars"), None);
        assert!(Field::unavailable("process.Ext.api.name").is_some());
        assert!(Field::unavailable("process.entry_leader.entity_id").is_some());
        assert!(Field::unavailable("file.path").is_some());
        assert!(Field::unavailable("process.whatever").is_none());
    }
}
