//! Example events: an event a condition matches, built from the condition's own
//! literals. Rule authors see what a rule catches; the conformance tests check that
//! every loaded rule fires on an event made of its literals, through the literal index
//! (a rule the index hid from its own example would be a bug).
//!
//! The search is a bounded walk over the condition's alternatives: `or` branches are
//! tried in order, `and` terms all applied, negations kept by leaving fields absent.
//! It gives up (`None`) rather than guess when the bounds are hit.

use crate::{
    eql::{Attr, Cmp, Field, Node, StrTest, Who, ctx},
    event::{EventType, ProcessEvent, RelatedProcess},
};

/// At most this many conjunctions are tried.
const MAX_TRIES: usize = 64;

/// An event of `event_type` (with the type's own action) that `node` matches, or `None`.
/// Conditions on `t1609.argv.*` fields are not solved (those come from parsing argv).
pub fn example(node: &Node, event_type: EventType) -> Option<ProcessEvent> {
    let mut conjunctions = Vec::new();
    expand(node, true, Vec::new(), &mut conjunctions);
    for terms in conjunctions.into_iter().take(MAX_TRIES) {
        let mut ev = ProcessEvent {
            event_type,
            ..Default::default()
        };
        for (leaf, positive) in &terms {
            if *positive {
                satisfy(&mut ev, leaf);
            }
        }
        finish(&mut ev);
        if node.eval(&ctx(&ev, None)) {
            return Some(ev);
        }
    }
    None
}

/// Conjunctions of (leaf, polarity) that imply `n` (or its negation when `!pos`),
/// appended to `out` until there are `MAX_TRIES`.
fn expand<'a>(
    n: &'a Node,
    pos: bool,
    acc: Vec<(&'a Node, bool)>,
    out: &mut Vec<Vec<(&'a Node, bool)>>,
) {
    expand_all(&[(n, pos)], acc, out);
}

fn expand_all<'a>(
    todo: &[(&'a Node, bool)],
    acc: Vec<(&'a Node, bool)>,
    out: &mut Vec<Vec<(&'a Node, bool)>>,
) {
    if out.len() >= MAX_TRIES {
        return;
    }
    let Some(((n, pos), rest)) = todo.split_first() else {
        out.push(acc);
        return;
    };
    let (n, pos) = (*n, *pos);
    match (n, pos) {
        (Node::And(v), true) | (Node::Or(v), false) => {
            let mut next: Vec<(&Node, bool)> = v.iter().map(|c| (c, pos)).collect();
            next.extend_from_slice(rest);
            expand_all(&next, acc, out);
        }
        (Node::Or(v), true) | (Node::And(v), false) => {
            for c in v {
                let mut next = vec![(c, pos)];
                next.extend_from_slice(rest);
                expand_all(&next, acc.clone(), out);
            }
        }
        (Node::Not(c), _) => {
            let mut next = vec![(&**c, !pos)];
            next.extend_from_slice(rest);
            expand_all(&next, acc, out);
        }
        (Node::Const(b), _) if *b != pos => {}
        (Node::Const(_), _) => expand_all(rest, acc, out),
        _ => {
            let mut acc = acc;
            acc.push((n, pos));
            expand_all(rest, acc, out);
        }
    }
}

/// A string the test accepts.
fn sample(t: &StrTest) -> Option<String> {
    Some(match t {
        StrTest::Cmp(Cmp::Eq | Cmp::Le | Cmp::Ge, s)
        | StrTest::StartsWith(s, _)
        | StrTest::EndsWith(s, _)
        | StrTest::Contains(s, _) => s.clone(),
        StrTest::Cmp(Cmp::Gt, s) => format!("{s}~"),
        StrTest::Cmp(Cmp::Lt, s) => s.get(..s.len().saturating_sub(1))?.to_owned(),
        StrTest::Cmp(Cmp::Ne, s) => format!("{s}x"),
        StrTest::In(v) | StrTest::InCi(v) => v.first()?.clone(),
        StrTest::Wild { pats, .. } => pats.first()?.example(),
        StrTest::Regex(re) => crate::witness_regex::sample(re.as_str())?,
        StrTest::Set(set) => set.sample.clone(),
    })
}

fn satisfy(ev: &mut ProcessEvent, leaf: &Node) {
    match leaf {
        Node::Str(f, t) => {
            if let Some(v) = sample(t) {
                set_str(ev, *f, &v);
            }
        }
        Node::Num(f, c, n) => {
            let v = match c {
                Cmp::Gt => n.saturating_add(1),
                Cmp::Lt => n.saturating_sub(1),
                Cmp::Ne => n.saturating_add(7),
                _ => *n,
            };
            set_num(ev, *f, v);
        }
        Node::NumIn(f, v) => {
            if let Some(n) = v.first() {
                set_num(ev, *f, *n);
            }
        }
        Node::Bool(f, c, b) => set_bool(ev, *f, if *c == Cmp::Ne { !b } else { *b }),
        Node::Exists(f) => match f.kind() {
            crate::eql::Kind::Num => set_num(ev, *f, 1),
            crate::eql::Kind::Bool => set_bool(ev, *f, true),
            _ => set_str(ev, *f, "x"),
        },
        Node::Length(f, c, n) => {
            let len = match c {
                Cmp::Gt => n.saturating_add(1),
                Cmp::Lt => n.saturating_sub(1).max(0),
                _ => *n,
            };
            let v = "a".repeat(usize::try_from(len.clamp(0, 4096)).unwrap_or(0));
            set_str(ev, *f, &v);
        }
        _ => {}
    }
}

/// Sets string field `f` to `v`: arrays gain an element; a scalar already holding a
/// value gets `v` appended (for `a*` and `*b` on one field).
fn set_str(ev: &mut ProcessEvent, f: Field, v: &str) {
    let Some(slot) = str_slot(ev, f) else { return };
    match slot {
        Slot::One(s) => match s {
            None => *s = Some(v.to_owned()),
            Some(old) => old.push_str(v),
        },
        Slot::Many(a) => a.get_or_insert_with(Vec::new).push(v.to_owned()),
    }
}

enum Slot<'a> {
    One(&'a mut Option<String>),
    Many(&'a mut Option<Vec<String>>),
}

fn related(ev: &mut ProcessEvent, who: Who) -> &mut RelatedProcess {
    let p = &mut ev.process;
    let r = match who {
        Who::Parent => &mut p.parent,
        Who::EntryLeader => &mut p.entry_leader,
        Who::SessionLeader => &mut p.session_leader,
        _ => &mut p.group_leader,
    };
    r.get_or_insert_with(Box::default)
}

fn str_slot(ev: &mut ProcessEvent, f: Field) -> Option<Slot<'_>> {
    Some(match f {
        Field::Proc(Who::Process, a) => {
            let p = &mut ev.process;
            match a {
                Attr::Name => Slot::One(&mut p.name),
                Attr::Executable => Slot::One(&mut p.executable),
                Attr::Args => Slot::Many(&mut p.args),
                Attr::CommandLine => Slot::One(&mut p.command_line),
                Attr::WorkingDirectory => Slot::One(&mut p.working_directory),
                Attr::EnvVars => Slot::Many(&mut p.env_vars),
                _ => return creds_slot(&mut p.creds, a),
            }
        }
        Field::Proc(who, a) => {
            let r = related(ev, who);
            match a {
                Attr::Name => Slot::One(&mut r.name),
                Attr::Executable => Slot::One(&mut r.executable),
                Attr::Args => Slot::Many(&mut r.args),
                Attr::CommandLine => Slot::One(&mut r.command_line),
                Attr::WorkingDirectory => Slot::One(&mut r.working_directory),
                Attr::EntryMetaType => Slot::One(&mut r.entry_meta_type),
                _ => return creds_slot(&mut r.creds, a),
            }
        }
        Field::HostOsType => Slot::One(&mut ev.host_os.kind),
        Field::HostOsName => Slot::One(&mut ev.host_os.name),
        Field::HostOsKernel => Slot::One(&mut ev.host_os.kernel),
        Field::HostHostname => Slot::One(&mut ev.host_hostname),
        Field::UserId => Slot::One(&mut ev.user.id),
        Field::UserName => Slot::One(&mut ev.user.name),
        Field::GroupId => Slot::One(&mut ev.group.id),
        Field::GroupName => Slot::One(&mut ev.group.name),
        Field::ContainerId => Slot::One(&mut ev.container_id),
        Field::CapTty => Slot::One(&mut ev.capture.tty),
        _ => return None,
    })
}

fn creds_slot(c: &mut crate::event::Creds, a: Attr) -> Option<Slot<'_>> {
    Some(Slot::One(match a {
        Attr::UserId => &mut c.user.id,
        Attr::UserName => &mut c.user.name,
        Attr::RealUserId => &mut c.real_user.id,
        Attr::RealUserName => &mut c.real_user.name,
        Attr::GroupId => &mut c.group.id,
        Attr::GroupName => &mut c.group.name,
        Attr::RealGroupId => &mut c.real_group.id,
        Attr::RealGroupName => &mut c.real_group.name,
        _ => return None,
    }))
}

fn set_num(ev: &mut ProcessEvent, f: Field, n: i64) {
    let u32v = u32::try_from(n).ok();
    let u64v = u64::try_from(n).ok();
    match f {
        Field::Proc(Who::Process, Attr::Pid) => ev.process.pid = u32v,
        Field::Proc(Who::Process, Attr::ArgsCount) => ev.process.args_count = u64v,
        Field::Proc(Who::Process, Attr::ExitCode) => ev.process.exit_code = Some(n),
        Field::Proc(Who::Process, Attr::TtyMajor) => ev.process.tty.char_device_major = u32v,
        Field::Proc(Who::Process, Attr::TtyMinor) => ev.process.tty.char_device_minor = u32v,
        Field::Proc(who, Attr::Pid) => related(ev, who).pid = u32v,
        Field::Proc(who, Attr::ArgsCount) => related(ev, who).args_count = u64v,
        Field::CapLoginUid => ev.capture.loginuid = u32v,
        Field::CapEuid => ev.capture.euid = u32v,
        _ => {}
    }
}

fn set_bool(ev: &mut ProcessEvent, f: Field, b: bool) {
    match f {
        Field::Proc(Who::Process, Attr::Interactive) => ev.process.interactive = Some(b),
        Field::Proc(who, Attr::Interactive) => related(ev, who).interactive = Some(b),
        Field::Proc(who, Attr::SameAsProcess) => related(ev, who).same_as_process = Some(b),
        Field::ContainerPrivileged => ev.container_privileged = Some(b),
        Field::CapArgvTruncated => ev.capture.argv_truncated = b,
        Field::CapArgvIncomplete => ev.capture.argv_incomplete = b,
        _ => {}
    }
}

/// Makes the event look like one the agent records: the name is the executable's
/// basename, the command line the arguments joined, the count their number.
fn finish(ev: &mut ProcessEvent) {
    let p = &mut ev.process;
    if p.name.is_none()
        && let Some(exe) = p.executable.as_deref()
    {
        p.name = Some(exe.rsplit('/').next().unwrap_or(exe).to_owned());
    }
    if let Some(args) = p.args.as_deref() {
        if p.command_line.is_none() {
            p.command_line = Some(args.join(" "));
        }
        if p.args_count.is_none() {
            p.args_count = Some(args.len() as u64);
        }
    }
}
