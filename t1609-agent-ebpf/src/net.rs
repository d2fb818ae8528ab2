//! Network side of T1609: connects to the kubelet or a runtime API.
//!
//! TCP: `sock:inet_sock_set_state` entering `SYN_SENT` runs in the connecting task's
//! context and carries kernel-side addresses (no user memory, nothing to race). Unix
//! sockets: the cgroup `connect_unix` hook (Linux >= 6.7) on the root cgroup, which runs
//! for `AF_UNIX` connects only and reads the kernel's copy of the address; elsewhere
//! `syscalls:sys_enter_connect`, reading the `sockaddr_un` the caller passed, at the
//! price of sending every syscall on the host through the slow syscall path. All
//! filter in the kernel: other ports and paths cost a compare and a map lookup.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_user, bpf_probe_read_user_str_bytes, generated,
    },
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use t1609_common::{
    KIND_NET, NetRecord, RecordHeader, UNIX_PATH_LEN, UnixPathKey, counters, net_kind,
};

use crate::{
    maps::{EVENTS, PORTS, UNIX_PATHS, bump, config, offsets, read_at},
    tracked::tracked_get,
    wakeup,
};

const TCP_SYN_SENT: i32 = 2;
const IPPROTO_TCP: u16 = 6;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;

// sock:inet_sock_set_state field offsets.
const TP_NEWSTATE: usize = 20;
const TP_DPORT: usize = 26;
const TP_FAMILY: usize = 28;
const TP_PROTOCOL: usize = 30;
const TP_DADDR: usize = 36;
const TP_DADDR_V6: usize = 56;
// syscalls:sys_enter_connect field offsets.
const TP_USERVADDR: usize = 24;

#[tracepoint]
#[expect(clippy::needless_pass_by_value, reason = "aya's macro signature")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    match try_inet(&ctx) {
        Ok(()) => 0,
        Err(c) => {
            bump(c);
            0
        }
    }
}

#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
fn try_inet(ctx: &TracePointContext) -> Result<(), u32> {
    let newstate: i32 = unsafe { ctx.read_at(TP_NEWSTATE) }.map_err(|_| counters::READ_ERROR)?;
    if newstate != TCP_SYN_SENT {
        return Ok(());
    }
    let dport: u16 = unsafe { ctx.read_at(TP_DPORT) }.map_err(|_| counters::READ_ERROR)?;
    if unsafe { PORTS.get(&dport) }.is_none() {
        return Ok(());
    }
    let protocol: u16 = unsafe { ctx.read_at(TP_PROTOCOL) }.map_err(|_| counters::READ_ERROR)?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let family: u16 = unsafe { ctx.read_at(TP_FAMILY) }.map_err(|_| counters::READ_ERROR)?;
    let mut daddr = [0u8; 16];
    let kind = if family == AF_INET {
        let v4: [u8; 4] = unsafe { ctx.read_at(TP_DADDR) }.map_err(|_| counters::READ_ERROR)?;
        daddr[..4].copy_from_slice(&v4);
        net_kind::TCP4
    } else {
        daddr = unsafe { ctx.read_at(TP_DADDR_V6) }.map_err(|_| counters::READ_ERROR)?;
        net_kind::TCP6
    };
    emit(kind, dport, &daddr, None)
}

#[tracepoint]
#[expect(clippy::needless_pass_by_value, reason = "aya's macro signature")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    match try_connect(&ctx) {
        Ok(()) => 0,
        Err(c) => {
            bump(c);
            0
        }
    }
}

#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
fn try_connect(ctx: &TracePointContext) -> Result<(), u32> {
    let addr: u64 = unsafe { ctx.read_at(TP_USERVADDR) }.map_err(|_| counters::READ_ERROR)?;
    let family: u16 = match unsafe { bpf_probe_read_user(addr as *const u16) } {
        Ok(f) => f,
        Err(_) => return Ok(()), // a bad pointer makes connect() fail with EFAULT anyway
    };
    if family != AF_UNIX {
        return Ok(());
    }
    let mut key: UnixPathKey = [0; UNIX_PATH_LEN];
    if unsafe { bpf_probe_read_user_str_bytes((addr + 2) as *const u8, &mut key) }.is_err() {
        return Ok(());
    }
    if unsafe { UNIX_PATHS.get(&key) }.is_none() {
        return Ok(());
    }
    emit(net_kind::UNIX, 0, &[0; 16], Some(&key))
}

/// The `cgroup/connect_unix` hook. aya 0.14 knows no such section, so this program is
/// declared as `connect4` for the object to parse, and the agent loads it itself with
/// the `connect_unix` attach type (`capture::unix_hook`); it is never attached as
/// `connect4`. It only watches: it always lets the connect proceed.
#[cgroup_sock_addr(connect4)]
#[expect(clippy::needless_pass_by_value, reason = "aya's macro signature")]
pub fn unix_connect(ctx: SockAddrContext) -> i32 {
    if let Err(c) = try_unix_connect(&ctx) {
        bump(c);
    }
    1
}

/// Where `uaddr` and `uaddrlen` sit in `struct bpf_sock_addr_kern` (the context behind
/// `bpf_sock_addr`), as indexes of its u64 words: bytes 8 and 32, which the agent checks
/// against the kernel's BTF before loading this program (`offsets::check_sock_addr_layout`).
const SOCK_ADDR_UADDR: usize = 1;
const SOCK_ADDR_UADDRLEN: usize = 4;
/// Longest path a `UnixPathKey` holds with its NUL.
#[expect(clippy::cast_possible_truncation, reason = "UNIX_PATH_LEN is 108")]
const MAX_PATH_LEN: u32 = UNIX_PATH_LEN as u32 - 1;

#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "by value, the key is copied to another stack slot"
)]
fn try_unix_connect(ctx: &SockAddrContext) -> Result<(), u32> {
    // The context's uaddr is the kernel's copy of the caller's address, addrlen bytes of
    // it valid, not NUL-terminated yet.
    let kern: [u64; 5] = unsafe { bpf_probe_read_kernel(ctx.sock_addr as *const [u64; 5]) }
        .map_err(|_| counters::READ_ERROR)?;
    let uaddr = kern[SOCK_ADDR_UADDR];
    // uaddrlen is an int: the low half of its word.
    let addrlen = (kern[SOCK_ADDR_UADDRLEN] & 0xFFFF_FFFF) as u32;
    if addrlen <= 2 {
        return Ok(()); // unnamed
    }
    let mut path_len = addrlen - 2;
    if path_len > MAX_PATH_LEN {
        path_len = MAX_PATH_LEN;
    }
    let mut key: UnixPathKey = [0; UNIX_PATH_LEN];
    // Reads at most path_len bytes of the path (and one more, which it overwrites with
    // the NUL): stops at a NUL the caller put in.
    let ret = unsafe {
        generated::bpf_probe_read_kernel_str(
            key.as_mut_ptr().cast(),
            path_len + 1,
            (uaddr + 2) as *const core::ffi::c_void,
        )
    };
    if ret < 0 {
        return Err(counters::READ_ERROR);
    }
    if unsafe { UNIX_PATHS.get(&key) }.is_none() {
        return Ok(());
    }
    emit(net_kind::UNIX, 0, &[0; 16], Some(&key))
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
fn emit(kind: u16, dport: u16, daddr: &[u8; 16], path: Option<&UnixPathKey>) -> Result<(), u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let config = config();
    if tgid == config.agent_tgid {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<NetRecord>(0) else {
        return Err(counters::RINGBUF_FULL);
    };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let rec = entry.as_mut_ptr();
    let uid_gid = bpf_get_current_uid_gid();
    let off = offsets();
    unsafe {
        (*rec).header = RecordHeader::new(KIND_NET, now, tgid, (pid_tgid & 0xFFFF_FFFF) as u32);
        let task = bpf_get_current_task();
        (*rec).ppid = match read_at::<u64>(task, off.task_real_parent) {
            Ok(parent) => read_at::<u32>(parent, off.task_tgid).unwrap_or(0),
            Err(_) => 0,
        };
        (*rec).uid = (uid_gid & 0xFFFF_FFFF) as u32;
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).session = tracked_get(tgid).unwrap_or(0);
        (*rec).net_kind = kind;
        (*rec).dport = dport;
        (*rec).pad = 0;
        (*rec).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*rec).daddr = *daddr;
        (*rec).path = match path {
            Some(p) => *p,
            None => [0; UNIX_PATH_LEN],
        };
        (*rec).tail_pad = [0; 4];
    }
    entry.submit(wakeup::rate_limited_flag(config.wakeup_interval_ns, now));
    Ok(())
}
