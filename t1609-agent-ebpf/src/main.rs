//! eBPF side of t1609-agent, one module per hook family:
//! - `exec`: `sched:sched_process_exec`, the exec records and their argv chunks;
//! - `identity`: what the executed file is (`VERDICTS`, `INODES`), for execs of
//!   unwatched names;
//! - `task`: fork and exit of tracked and reported processes;
//! - `net`: connects to the kubelet or a runtime API (TCP and Unix sockets);
//! - `tracked`: the tracked-task map behind its counting filter;
//! - `wakeup`: when a record wakes the reader (rate limit and quiet mode);
//! - `maps`: the maps and globals the agent fills and reads, and shared helpers.
#![no_std]
#![no_main]
#![expect(
    internal_features,
    reason = "`atomic_xadd`: the eBPF target lacks `AtomicU64::fetch_add` (see `tracked::count`)"
)]
#![feature(core_intrinsics)]

mod exec;
mod identity;
mod maps;
mod net;
mod task;
mod tracked;
mod wakeup;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
