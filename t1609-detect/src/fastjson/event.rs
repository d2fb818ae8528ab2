//! The event's part of an alert document: process (with its parent and leaders), user,
//! group, container, host and the capture fields, in the order and with the omissions of
//! the `Serialize` impls (`crate::event`).

use std::ops::Range;

use super::{AlertFields, Members, Obj, push_u64};
use crate::event::{Creds, Identity, Process, ProcessEvent, RelatedProcess};

/// The event's part of an alert, from `"process"` through the capture fields of
/// `"t1609"` (its object left open). The same for every alert of one event. Returns
/// where the `container` member lies in what it wrote (an empty range where it would go
/// when the event has none), so that writers of container fields can replace it.
pub(super) fn write_event_part(out: &mut Vec<u8>, ev: &ProcessEvent) -> Range<usize> {
    let start = out.len();
    let p = &ev.process;
    // Leading comma: the document's `event`, `rule` and `threat` members precede it.
    let mut doc = Obj::resume(out, false);
    let process_empty = p.pid.is_none()
        && p.name.is_none()
        && p.executable.is_none()
        && p.args.is_none()
        && p.args_count.is_none()
        && p.command_line.is_none()
        && p.working_directory.is_none()
        && p.parent.is_none()
        && p.interactive.is_none()
        && p.tty.char_device_major.is_none()
        && p.tty.char_device_minor.is_none()
        && creds_empty(&p.creds)
        && p.env_vars.is_none()
        && p.exit_code.is_none()
        && p.hash_sha256.is_none()
        && p.entry_leader.is_none()
        && p.session_leader.is_none()
        && p.group_leader.is_none();
    if !process_empty {
        write_process(doc.key(k!("process")), p);
    }
    for (k, id) in [(k!("user"), &ev.user), (k!("group"), &ev.group)] {
        write_identity(&mut doc, k, id);
    }
    let container_at = doc.out.len() - start;
    write_container(doc.out, ev, None);
    let container = container_at..doc.out.len() - start;
    let os = &ev.host_os;
    let os_empty = os.kind.is_none() && os.name.is_none() && os.kernel.is_none();
    if ev.host_hostname.is_some() || !os_empty {
        let mut o = Obj::open(doc.key(k!("host")));
        o.opt_str(k!("hostname"), ev.host_hostname.as_deref());
        if !os_empty {
            let mut q = Obj::open(o.key(k!("os")));
            q.opt_str(k!("type"), os.kind.as_deref());
            q.opt_str(k!("name"), os.name.as_deref());
            q.opt_str(k!("kernel"), os.kernel.as_deref());
            q.close();
        }
        o.close();
    }
    let c = &ev.capture;
    let mut o = Obj::open(doc.key(k!("t1609")));
    o.opt_num(k!("cgroup_id"), c.cgroup_id);
    o.opt_num(k!("pid_ns"), c.pid_ns);
    o.opt_num(k!("mnt_ns"), c.mnt_ns);
    o.opt_num(k!("tgid"), c.tgid);
    o.opt_num(k!("euid"), c.euid);
    o.opt_num(k!("egid"), c.egid);
    o.opt_num(k!("loginuid"), c.loginuid);
    o.opt_str(k!("tty"), c.tty.as_deref());
    o.opt_num(k!("argv_total_len"), c.argv_total_len);
    o.bool(k!("argv_truncated"), c.argv_truncated);
    o.bool(k!("argv_incomplete"), c.argv_incomplete);
    o.opt_strs(k!("args_b64"), c.args_b64.as_deref());
    o.opt_str(k!("executable_b64"), c.executable_b64.as_deref());
    // Left open: the alert's own t1609 members follow.
    container
}

/// The `container` member (with its leading comma): the event's id and security context,
/// and what `fields` adds; omitted when empty.
pub(super) fn write_container(
    out: &mut Vec<u8>,
    ev: &ProcessEvent,
    fields: Option<&dyn AlertFields>,
) {
    let mut c = Members::lazy(out, b",\"container\":{");
    let mut id = ev.container_id.as_deref();
    if let Some(f) = fields {
        f.container(&mut c);
        id = f.container_id().or(id);
    }
    c.opt_str("id", id);
    if let Some(privileged) = ev.container_privileged {
        c.object("security_context", |sc| sc.bool("privileged", privileged));
    }
    c.close();
}

/// The `process` object.
fn write_process(out: &mut Vec<u8>, p: &Process) {
    let mut o = Obj::open(out);
    o.opt_num(k!("pid"), p.pid);
    o.opt_str(k!("name"), p.name.as_deref());
    o.opt_str(k!("executable"), p.executable.as_deref());
    o.opt_strs(k!("args"), p.args.as_deref());
    o.opt_num(k!("args_count"), p.args_count);
    o.opt_str(k!("command_line"), p.command_line.as_deref());
    o.opt_str(k!("working_directory"), p.working_directory.as_deref());
    if let Some(pp) = p.parent.as_deref() {
        write_related(o.key(k!("parent")), pp);
    }
    o.opt_bool(k!("interactive"), p.interactive);
    let t = p.tty;
    if t.char_device_major.is_some() || t.char_device_minor.is_some() {
        let mut tty = Obj::open(o.key(k!("tty")));
        let mut cd = Obj::open(tty.key(k!("char_device")));
        cd.opt_num(k!("major"), t.char_device_major);
        cd.opt_num(k!("minor"), t.char_device_minor);
        cd.close();
        tty.close();
    }
    write_creds(&mut o, &p.creds);
    o.opt_strs(k!("env_vars"), p.env_vars.as_deref());
    if let Some(c) = p.exit_code {
        let out = o.key(k!("exit_code"));
        if c < 0 {
            out.push(b'-');
        }
        push_u64(out, c.unsigned_abs());
    }
    if let Some(h) = p.hash_sha256.as_deref() {
        let mut hash = Obj::open(o.key(k!("hash")));
        hash.str(k!("sha256"), h);
        hash.close();
    }
    for (k, r) in [
        (k!("entry_leader"), &p.entry_leader),
        (k!("session_leader"), &p.session_leader),
        (k!("group_leader"), &p.group_leader),
    ] {
        if let Some(r) = r.as_deref() {
            write_related(o.key(k), r);
        }
    }
    o.close();
}

fn creds_empty(c: &Creds) -> bool {
    [&c.user, &c.real_user, &c.group, &c.real_group]
        .iter()
        .all(|i| i.id.is_none() && i.name.is_none())
}

/// `"key":{"id":..,"name":..}`, omitted when both are unknown.
fn write_identity(o: &mut Obj<'_>, k: &str, id: &Identity) {
    if id.id.is_some() || id.name.is_some() {
        let mut q = Obj::open(o.key(k));
        q.opt_str(k!("id"), id.id.as_deref());
        q.opt_str(k!("name"), id.name.as_deref());
        q.close();
    }
}

fn write_creds(o: &mut Obj<'_>, c: &Creds) {
    write_identity(o, k!("user"), &c.user);
    write_identity(o, k!("real_user"), &c.real_user);
    write_identity(o, k!("group"), &c.group);
    write_identity(o, k!("real_group"), &c.real_group);
}

/// The parent or a leader, as an object.
fn write_related(out: &mut Vec<u8>, r: &RelatedProcess) {
    let mut q = Obj::open(out);
    q.opt_num(k!("pid"), r.pid);
    q.opt_str(k!("name"), r.name.as_deref());
    q.opt_str(k!("executable"), r.executable.as_deref());
    q.opt_strs(k!("args"), r.args.as_deref());
    q.opt_str(k!("command_line"), r.command_line.as_deref());
    q.opt_num(k!("args_count"), r.args_count);
    q.opt_str(k!("working_directory"), r.working_directory.as_deref());
    q.opt_bool(k!("interactive"), r.interactive);
    write_creds(&mut q, &r.creds);
    q.opt_bool(k!("same_as_process"), r.same_as_process);
    if let Some(t) = r.entry_meta_type.as_deref() {
        let mut m = Obj::open(q.key(k!("entry_meta")));
        m.str(k!("type"), t);
        m.close();
    }
    q.close();
}
