//! The parsed form of a query (fields, operators, the condition tree) and the error a
//! query can have.

/// A syntax or schema error inside one query, positioned within the query text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct EqlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What a field holds, for type-checking operators at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    StrArray,
    Num,
    Bool,
}

macro_rules! fields {
    ($( $var:ident => $name:literal : $kind:ident ),* $(,)?) => {
        /// A field a query may reference.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field { $( $var ),* }
        impl Field {
            pub const ALL: &'static [Field] = &[ $( Field::$var ),* ];
            pub fn name(self) -> &'static str { match self { $( Field::$var => $name ),* } }
            pub fn kind(self) -> Kind { match self { $( Field::$var => Kind::$kind ),* } }
            pub fn from_name(n: &str) -> Option<Field> { match n { $( $name => Some(Field::$var), )* _ => None } }
        }
    };
}

fields! {
    ProcessName => "process.name": Str,
    ProcessExecutable => "process.executable": Str,
    ProcessArgs => "process.args": StrArray,
    ProcessArgsCount => "process.args_count": Num,
    ProcessCommandLine => "process.command_line": Str,
    ProcessWorkingDirectory => "process.working_directory": Str,
    ProcessPid => "process.pid": Num,
    ParentName => "process.parent.name": Str,
    ParentExecutable => "process.parent.executable": Str,
    ParentArgs => "process.parent.args": StrArray,
    ParentCommandLine => "process.parent.command_line": Str,
    ParentPid => "process.parent.pid": Num,
    UserId => "user.id": Str,
    UserName => "user.name": Str,
    GroupId => "group.id": Str,
    GroupName => "group.name": Str,
    ContainerId => "container.id": Str,
    HostHostname => "host.hostname": Str,
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

impl Field {
    /// Whether evaluating this field needs the structured argv parse.
    pub fn needs_argv(self) -> bool {
        self.name().starts_with("t1609.argv.")
    }
}

/// A field's value in one event.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Missing,
    Str(&'a str),
    Strs(&'a [String]),
    Num(i64),
    Bool(bool),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub(super) fn holds<T: PartialOrd + Copy>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// A wildcard pattern compiled once: most patterns are exact, prefix, suffix or contains,
/// which avoid the general matcher.
#[derive(Clone, Debug)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Glob(Vec<char>),
}

impl Pattern {
    /// Compiles a wildcard pattern (`*` any run, `?` one character).
    pub(crate) fn compile(p: &str) -> Pattern {
        let has_q = p.contains('?');
        let inner = p.trim_matches('*');
        if !has_q && !inner.contains('*') {
            return match (p.starts_with('*'), p.ends_with('*')) {
                // `*` alone (or `**`): anything, including "".
                _ if inner.is_empty() && p.contains('*') => Pattern::Prefix(String::new()),
                (false, false) => Pattern::Exact(p.to_string()),
                (false, true) => Pattern::Prefix(inner.to_string()),
                (true, false) => Pattern::Suffix(inner.to_string()),
                (true, true) => Pattern::Contains(inner.to_string()),
            };
        }
        Pattern::Glob(p.chars().collect())
    }
}

/// A string test applied to a string field, or to each element of an array field.
#[derive(Clone, Debug)]
pub enum StrTest {
    Cmp(Cmp, String),
    /// `in`: case-sensitive membership.
    In(Vec<String>),
    /// `in~`: case-insensitive membership (entries lowercased).
    InCi(Vec<String>),
    /// `:`, `like`, `like~`; `ci` says whether patterns were lowercased.
    Wild {
        pats: Vec<Pattern>,
        ci: bool,
    },
    Regex(regex::Regex),
    StartsWith(String, bool),
    EndsWith(String, bool),
    Contains(String, bool),
}

#[derive(Clone, Debug)]
pub enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Const(bool),
    Str(Field, StrTest),
    Num(Field, Cmp, i64),
    NumIn(Field, Vec<i64>),
    Bool(Field, Cmp, bool),
    /// `length(field) <op> n`.
    Length(Field, Cmp, i64),
}

impl Node {
    /// Visits every field the condition references.
    pub fn fields(&self, f: &mut dyn FnMut(Field)) {
        match self {
            Node::And(v) | Node::Or(v) => v.iter().for_each(|n| n.fields(f)),
            Node::Not(n) => n.fields(f),
            Node::Const(_) => {}
            Node::Str(x, _)
            | Node::Num(x, _, _)
            | Node::NumIn(x, _)
            | Node::Bool(x, _, _)
            | Node::Length(x, _, _) => f(*x),
        }
    }

    pub fn needs_argv(&self) -> bool {
        let mut needs = false;
        self.fields(&mut |f| needs |= f.needs_argv());
        needs
    }
}
