//! Evaluation, as Elasticsearch evaluates a single-event EQL query: an absent field
//! makes its predicate false (so its `not` true), array fields match when any element
//! does (so `!=`, parsed as `not ==`, holds when no element equals), and `length()` on
//! an absent field is null, which `not` keeps null.

use super::{
    ast::{Cmp, Node, Pattern, StrTest, Val},
    fields::{Attr, Field, Who},
};
use crate::{
    argv::Invocation,
    event::{Creds, Process, ProcessEvent, RelatedProcess},
};

/// What a condition is evaluated against: an event, and the parsed invocation a rule
/// is being tried against.
pub struct Ctx<'a> {
    pub ev: &'a ProcessEvent,
    /// The parsed invocation a rule is being tried against (None: no parse).
    pub inv: Option<&'a Invocation>,
}

/// Builds an evaluation context.
pub fn ctx<'a>(ev: &'a ProcessEvent, inv: Option<&'a Invocation>) -> Ctx<'a> {
    Ctx { ev, inv }
}

impl Node {
    pub fn eval(&self, ctx: &Ctx<'_>) -> bool {
        eval(self, ctx)
    }
}

fn s(o: Option<&str>) -> Val<'_> {
    o.map_or(Val::Missing, Val::Str)
}
fn n<T: Copy + Into<i64>>(o: Option<T>) -> Val<'static> {
    o.map_or(Val::Missing, |v| Val::Num(v.into()))
}
fn strs(v: &[String]) -> Val<'_> {
    Val::Strs(v)
}

impl<'a> Ctx<'a> {
    pub fn get(&self, f: Field) -> Val<'a> {
        let ev = self.ev;
        let p = &ev.process;
        match f {
            Field::Proc(Who::Process, a) => process_attr(p, a),
            Field::Proc(who, a) => {
                let r = match who {
                    Who::Parent => p.parent.as_deref(),
                    Who::EntryLeader => p.entry_leader.as_deref(),
                    Who::SessionLeader => p.session_leader.as_deref(),
                    Who::GroupLeader => p.group_leader.as_deref(),
                    Who::Process => None,
                };
                r.map_or(Val::Missing, |r| related_attr(r, a))
            }
            Field::EventType => Val::Str(ev.event_type.as_str()),
            Field::EventAction => s(ev.action()),
            Field::EventCategory => Val::Str("process"),
            Field::HostOsType => s(ev.host_os.kind.as_deref()),
            Field::HostOsName => s(ev.host_os.name.as_deref()),
            Field::HostOsKernel => s(ev.host_os.kernel.as_deref()),
            Field::HostHostname => s(ev.host_hostname.as_deref()),
            Field::UserId => s(ev.user.id.as_deref()),
            Field::UserName => s(ev.user.name.as_deref()),
            Field::GroupId => s(ev.group.id.as_deref()),
            Field::GroupName => s(ev.group.name.as_deref()),
            Field::ContainerId => s(ev.container_id.as_deref()),
            Field::ContainerPrivileged => ev.container_privileged.map_or(Val::Missing, Val::Bool),
            Field::CapArgvTruncated => Val::Bool(ev.capture.argv_truncated),
            Field::CapArgvIncomplete => Val::Bool(ev.capture.argv_incomplete),
            Field::CapTty => s(ev.capture.tty.as_deref()),
            Field::CapLoginUid => n(ev.capture.loginuid),
            Field::CapEuid => n(ev.capture.euid),
            _ => match self.inv {
                None => Val::Missing,
                Some(inv) => argv_field(inv, f),
            },
        }
    }
}

fn count(c: u64) -> Val<'static> {
    Val::Num(i64::try_from(c).unwrap_or(i64::MAX))
}

fn args_count(count_field: Option<u64>, args: Option<&[String]>) -> Val<'_> {
    // ECS defines args_count as the length of args: a producer that gives args only
    // still answers it.
    match (count_field, args) {
        (Some(c), _) => count(c),
        (None, Some(a)) => count(a.len() as u64),
        (None, None) => Val::Missing,
    }
}

fn creds_attr(c: &Creds, a: Attr) -> Val<'_> {
    match a {
        Attr::UserId => s(c.user.id.as_deref()),
        Attr::UserName => s(c.user.name.as_deref()),
        Attr::RealUserId => s(c.real_user.id.as_deref()),
        Attr::RealUserName => s(c.real_user.name.as_deref()),
        Attr::GroupId => s(c.group.id.as_deref()),
        Attr::GroupName => s(c.group.name.as_deref()),
        Attr::RealGroupId => s(c.real_group.id.as_deref()),
        Attr::RealGroupName => s(c.real_group.name.as_deref()),
        _ => Val::Missing,
    }
}

fn process_attr(p: &Process, a: Attr) -> Val<'_> {
    match a {
        Attr::Pid => n(p.pid),
        Attr::Name => s(p.name.as_deref()),
        Attr::Executable => s(p.executable.as_deref()),
        Attr::Args => p.args.as_deref().map_or(Val::Missing, strs),
        Attr::ArgsCount => p.args_count.map_or(Val::Missing, count),
        Attr::CommandLine => s(p.command_line.as_deref()),
        Attr::WorkingDirectory => s(p.working_directory.as_deref()),
        Attr::Interactive => p.interactive.map_or(Val::Missing, Val::Bool),
        Attr::EnvVars => p.env_vars.as_deref().map_or(Val::Missing, strs),
        Attr::ExitCode => p.exit_code.map_or(Val::Missing, Val::Num),
        Attr::TtyMajor => n(p.tty.char_device_major),
        Attr::TtyMinor => n(p.tty.char_device_minor),
        Attr::SameAsProcess | Attr::EntryMetaType => Val::Missing,
        _ => creds_attr(&p.creds, a),
    }
}

fn related_attr(r: &RelatedProcess, a: Attr) -> Val<'_> {
    match a {
        Attr::Pid => n(r.pid),
        Attr::Name => s(r.name.as_deref()),
        Attr::Executable => s(r.executable.as_deref()),
        Attr::Args => r.args.as_deref().map_or(Val::Missing, strs),
        Attr::ArgsCount => args_count(r.args_count, r.args.as_deref()),
        Attr::CommandLine => s(r.command_line.as_deref()),
        Attr::WorkingDirectory => s(r.working_directory.as_deref()),
        Attr::Interactive => r.interactive.map_or(Val::Missing, Val::Bool),
        Attr::SameAsProcess => r.same_as_process.map_or(Val::Missing, Val::Bool),
        Attr::EntryMetaType => s(r.entry_meta_type.as_deref()),
        Attr::EnvVars | Attr::ExitCode | Attr::TtyMajor | Attr::TtyMinor => Val::Missing,
        _ => creds_attr(&r.creds, a),
    }
}

fn b(v: bool) -> Val<'static> {
    Val::Bool(v)
}

fn argv_field(inv: &Invocation, f: Field) -> Val<'_> {
    match f {
        Field::ArgvTool => Val::Str(&inv.tool),
        Field::ArgvVerb => s(inv.verb.as_deref()),
        Field::ArgvContainer => s(inv.container.as_deref()),
        Field::ArgvPod => s(inv.pod.as_deref()),
        Field::ArgvNamespace => s(inv.namespace.as_deref()),
        Field::ArgvImage => s(inv.image.as_deref()),
        Field::ArgvInteractive => b(inv.interactive),
        Field::ArgvTtyFlag => b(inv.tty),
        Field::ArgvPrivileged => b(inv.privileged),
        Field::ArgvHostNamespaces => strs(&inv.host_namespaces),
        Field::ArgvMounts => strs(&inv.mounts),
        Field::ArgvHostRootMount => b(inv.host_root_mount),
        Field::ArgvRuntimeSocketMount => b(inv.runtime_socket_mount),
        Field::ArgvCapAdd => strs(&inv.cap_add),
        Field::ArgvSecurityUnconfined => b(inv.security_unconfined),
        Field::ArgvDevices => strs(&inv.devices),
        Field::ArgvCommand => strs(&inv.command),
        Field::ArgvCommandClass => inv.command_class.map_or(Val::Missing, Val::Str),
        Field::ArgvCommandIsShell => b(inv.command_is_shell()),
        Field::ArgvTargetPid => s(inv.target_pid.as_deref()),
        Field::ArgvHelp => b(inv.help),
        Field::ArgvUrl => s(inv.url.as_deref()),
        Field::ArgvUrlHost => s(inv.url_host.as_deref()),
        Field::ArgvUrlPort => n(inv.url_port),
        Field::ArgvUrlPath => s(inv.url_path.as_deref()),
        Field::ArgvApi => inv.api.map_or(Val::Missing, Val::Str),
        Field::ArgvApiAction => inv.api_action.map_or(Val::Missing, Val::Str),
        Field::ArgvUnixSocket => s(inv.unix_socket.as_deref()),
        Field::ArgvRuntimeSocket => b(inv.runtime_socket),
        Field::ArgvRemoteHost => s(inv.remote_host.as_deref()),
        Field::ArgvRemotePort => n(inv.remote_port),
        Field::ArgvWrappers => strs(&inv.wrappers),
        Field::ArgvShim => s(inv.shim.as_deref()),
        Field::ArgvRecognisedBy => inv.recognised_by.map_or(Val::Missing, Val::Str),
        Field::ArgvMasquerade => inv.masquerade.map_or(Val::Missing, Val::Str),
        Field::ArgvPlugin => s(inv.plugin.as_deref()),
        _ => Val::Missing,
    }
}

/// Whether `node` is a script-evaluated predicate whose field is missing: Elasticsearch
/// runs `length()` as a script, where a missing value is null and `not null` stays null
/// (no match), whereas a query on a missing field is false and its `not` true.
fn script_null(node: &Node, ctx: &Ctx<'_>) -> bool {
    match node {
        Node::Length(f, _, _) => matches!(ctx.get(*f), Val::Missing),
        Node::Not(n) => script_null(n, ctx),
        _ => false,
    }
}

fn eval(node: &Node, ctx: &Ctx<'_>) -> bool {
    match node {
        Node::And(v) => v.iter().all(|n| eval(n, ctx)),
        Node::Or(v) => v.iter().any(|n| eval(n, ctx)),
        Node::Not(n) => !script_null(n, ctx) && !eval(n, ctx),
        Node::Exists(f) => match ctx.get(*f) {
            Val::Missing => false,
            Val::Strs(v) => !v.is_empty(),
            _ => true,
        },
        Node::Const(c) => *c,
        Node::Str(f, t) => match ctx.get(*f) {
            Val::Str(x) => str_test(t, x),
            Val::Strs(xs) => xs.iter().any(|x| str_test(t, x)),
            _ => false,
        },
        Node::Num(f, c, want) => matches!(ctx.get(*f), Val::Num(x) if c.holds(x, *want)),
        Node::NumIn(f, set) => matches!(ctx.get(*f), Val::Num(x) if set.contains(&x)),
        Node::Bool(f, c, want) => matches!(ctx.get(*f), Val::Bool(x) if c.holds(x, *want)),
        Node::Length(f, c, want) => {
            let len = |x: &str| i64::try_from(x.chars().count()).unwrap_or(i64::MAX);
            match ctx.get(*f) {
                Val::Str(x) => c.holds(len(x), *want),
                Val::Strs(xs) => xs.iter().any(|x| c.holds(len(x), *want)),
                _ => false,
            }
        }
    }
}

/// `a == b`, rejecting on length and first byte before comparing the rest: `in` lists
/// are mostly same-length names (`docker`, `podman`, `crictl`), and the full comparison
/// is a library call.
fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.first() == b.first() && a == b
}

fn str_test(t: &StrTest, x: &str) -> bool {
    match t {
        StrTest::Cmp(Cmp::Eq, want) => str_eq(x, want),
        StrTest::Cmp(c, want) => c.holds(x, want.as_str()),
        StrTest::In(v) => v.iter().any(|w| str_eq(w, x)),
        StrTest::InCi(v) => {
            if x.is_ascii() {
                v.iter().any(|w| w.eq_ignore_ascii_case(x))
            } else {
                let l = x.to_lowercase();
                v.contains(&l)
            }
        }
        StrTest::Wild { pats, ci } => {
            if !*ci {
                return pats.iter().any(|p| pat_match(p, x, false));
            }
            if x.is_ascii() {
                pats.iter().any(|p| pat_match(p, x, true))
            } else {
                // Non-ASCII text: lowercase it fully once, then match exactly.
                let l = x.to_lowercase();
                pats.iter().any(|p| pat_match(p, &l, false))
            }
        }
        StrTest::Regex(re) => re.is_match(x),
        StrTest::Set(set) => set.matches(x),
        StrTest::StartsWith(w, ci) => fold(
            x,
            *ci,
            |x| x.starts_with(w.as_str()),
            |x| starts_ci(x.as_bytes(), w.as_bytes()),
        ),
        StrTest::EndsWith(w, ci) => fold(
            x,
            *ci,
            |x| x.ends_with(w.as_str()),
            |x| ends_ci(x.as_bytes(), w.as_bytes()),
        ),
        StrTest::Contains(w, ci) => fold(
            x,
            *ci,
            |x| x.contains(w.as_str()),
            |x| contains_ci(x.as_bytes(), w.as_bytes()),
        ),
    }
}

/// Runs the exact test, or the ASCII case-insensitive one, or lowercases non-ASCII text.
fn fold(x: &str, ci: bool, exact: impl Fn(&str) -> bool, ascii_ci: impl Fn(&str) -> bool) -> bool {
    if !ci {
        exact(x)
    } else if x.is_ascii() {
        ascii_ci(x)
    } else {
        exact(&x.to_lowercase())
    }
}

fn starts_ci(x: &[u8], p: &[u8]) -> bool {
    x.len() >= p.len() && x[..p.len()].eq_ignore_ascii_case(p)
}
fn ends_ci(x: &[u8], p: &[u8]) -> bool {
    x.len() >= p.len() && x[x.len() - p.len()..].eq_ignore_ascii_case(p)
}
fn contains_ci(x: &[u8], p: &[u8]) -> bool {
    if p.is_empty() {
        return true;
    }
    if x.len() < p.len() {
        return false;
    }
    let first = p[0];
    (0..=x.len() - p.len())
        .any(|i| x[i].to_ascii_lowercase() == first && x[i..i + p.len()].eq_ignore_ascii_case(p))
}

/// `ci` here means "compare ASCII case-insensitively" (pattern already lowercased).
pub(super) fn pat_match(p: &Pattern, x: &str, ci: bool) -> bool {
    match p {
        Pattern::Exact(w) => {
            if ci {
                x.eq_ignore_ascii_case(w)
            } else {
                x == w
            }
        }
        Pattern::Prefix(w) => {
            if ci {
                starts_ci(x.as_bytes(), w.as_bytes())
            } else {
                x.starts_with(w.as_str())
            }
        }
        Pattern::Suffix(w) => {
            if ci {
                ends_ci(x.as_bytes(), w.as_bytes())
            } else {
                x.ends_with(w.as_str())
            }
        }
        Pattern::Contains(w) => {
            if ci {
                contains_ci(x.as_bytes(), w.as_bytes())
            } else {
                x.contains(w.as_str())
            }
        }
        Pattern::Glob(g) => {
            if x.is_ascii() && g.iter().all(char::is_ascii) {
                glob(g, x.as_bytes(), |pc, b| {
                    if ci {
                        pc as u8 == b.to_ascii_lowercase()
                    } else {
                        pc as u8 == b
                    }
                })
            } else {
                let xs: Vec<char> = x.chars().collect();
                glob(g, &xs, |pc, c| pc == c)
            }
        }
    }
}

/// Whether wildcard pattern `p` (`*`, `?`) matches `x`, ignoring case.
pub(crate) fn glob_ci(p: &str, x: &str) -> bool {
    pat_match(
        &Pattern::compile(&p.to_lowercase()),
        &x.to_lowercase(),
        false,
    )
}

/// Iterative wildcard match with single-star backtracking: linear in practice, never
/// exponential.
fn glob<T: Copy>(p: &[char], x: &[T], eq: impl Fn(char, T) -> bool) -> bool {
    let (mut pi, mut xi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while xi < x.len() {
        if pi < p.len() && p[pi] != '*' && (p[pi] == '?' || eq(p[pi], x[xi])) {
            pi += 1;
            xi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = xi;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            xi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn glob_basics() {
        let g = |p: &str, x: &str| {
            glob(&p.chars().collect::<Vec<_>>(), x.as_bytes(), |a, b| {
                a as u8 == b
            })
        };
        assert!(g("*nsenter*pid*1*", "nsenter --pid -t 1"));
        assert!(!g("*nsenter*pid*1*", "nsenter --pid"));
        assert!(g("a?c", "abc"));
        assert!(g("*", ""));
        assert!(!g("a*b", "a"));
    }
}
