//! Fork and exit of processes in tracked (injected) sessions, and the exit of processes
//! whose exec was reported.
//!
//! Every fork and exit on the host pays one load from `TRACKED_COUNT` here (and a map
//! lookup when its slot is in use). Only tracked or reported processes produce records.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use t1609_common::{KIND_EXIT, KIND_FORK, RecordHeader, TaskRecord, counters};

use crate::{
    maps::{EVENTS, bump},
    tracked::{exit_lookup, tracked_get, tracked_insert, tracked_remove},
    wakeup,
};

/// `pid_t child_pid` of `sched_process_fork`.
const TP_FORK_CHILD_PID: usize = 20;

#[tracepoint]
#[expect(clippy::needless_pass_by_value, reason = "aya's macro signature")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    match try_fork(&ctx) {
        Ok(()) => 0,
        Err(c) => {
            bump(c);
            0
        }
    }
}

fn try_fork(ctx: &TracePointContext) -> Result<(), u32> {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Session 0: a reported process, not a session; its children are not tracked.
    let Some(session) = tracked_get(parent).filter(|s| *s != 0) else {
        return Ok(());
    };
    let child: i32 = unsafe { ctx.read_at(TP_FORK_CHILD_PID) }.map_err(|_| counters::READ_ERROR)?;
    let child = child.cast_unsigned();
    tracked_insert(child, session);
    emit(KIND_FORK, child, parent, session)
}

#[tracepoint]
#[expect(clippy::needless_pass_by_value, reason = "aya's macro signature")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    match try_exit(&ctx) {
        Ok(()) => 0,
        Err(c) => {
            bump(c);
            0
        }
    }
}

fn try_exit(_ctx: &TracePointContext) -> Result<(), u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, (pid_tgid & 0xFFFF_FFFF) as u32);
    // Session threads are keyed by thread id, processes reported for capture-all
    // (session 0) by tgid; processes reported by name are noted by tgid.
    let (reported, session) = exit_lookup(tgid, pid);
    let Some(session) = session else {
        if reported {
            emit(KIND_EXIT, tgid, 0, 0)?;
        }
        return Ok(());
    };
    tracked_remove(pid);
    // The leader's exit is the process's: the others follow an exit_group at once, and in
    // a Go CLI (docker, kubectl, crictl) the leader is often not the last thread to go,
    // so waiting for the last one (`group_dead`, which older kernels lack) missed
    // two exits in three.
    if pid == tgid {
        emit(KIND_EXIT, tgid, 0, session)?;
    }
    Ok(())
}

fn emit(kind: u16, tgid: u32, parent: u32, session: u64) -> Result<(), u32> {
    let Some(mut entry) = EVENTS.reserve::<TaskRecord>(0) else {
        return Err(counters::RINGBUF_FULL);
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let rec = entry.as_mut_ptr();
    unsafe {
        (*rec).header = RecordHeader::new(kind, now, tgid, tgid);
        (*rec).parent_tgid = parent;
        (*rec).pad = 0;
        (*rec).session = session;
        (*rec).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    entry.submit(wakeup::task_flag(session, now));
    Ok(())
}
