//! Capture stage: loads the probes ([`load`]), keeps their filters ([`filters`]) and the
//! tracked-task map ([`tracked`]), and hands the ring buffer to the hot-path thread's
//! [`Reader`], which drains it, quietly during streams of repeats ([`quiet`]).

mod error;
mod filters;
mod identity;
mod load;
mod mapped;
pub mod offsets;
mod quiet;
mod reader;
mod tracked;
mod unix_hook;
mod wait;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
pub use error::CaptureError;
pub use filters::{unix_path_key, watch_key};
pub use load::{TRACEFS, ensure_tracefs};
use mapped::{QuietList, TrackedCount, WakeupClock};
pub use reader::{Handled, Reader};
use serde::{Deserialize, Serialize};
use t1609_common::{ExeKey, ExeVerdict, InodeKey, WatchKey, counters};
use tracing::warn;
pub use tracked::TrackedCheck;
pub use wait::StopSignal;

use crate::stats::Counters;

const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/t1609-probes"));
const EXEC_PROGRAM: &str = "sched_process_exec";
/// Longest drain tick while records keep coming: a record that got no wake-up waits at
/// most one tick, and the exec → alert p99 target is 5 ms.
const MAX_TICK: Duration = Duration::from_millis(3);

/// What `Capture::unix_connects` names.
pub const UNIX_VIA_CGROUP: &str = "cgroup/connect_unix";
pub const UNIX_VIA_TRACEPOINT: &str = "syscalls:sys_enter_connect";
pub const UNIX_OFF: &str = "off";

/// Where Unix-socket connects are caught.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnixConnectHook {
    /// The cgroup hook where the kernel, the capabilities and the mounts allow it, else
    /// the syscall tracepoint.
    #[default]
    Auto,
    /// The cgroup `connect_unix` hook on the root cgroup (Linux >= 6.7, `CAP_NET_ADMIN`, a
    /// mount of the host's root cgroup v2): `AF_UNIX` connects only. Start-up fails without it.
    Cgroup,
    /// `syscalls:sys_enter_connect`: any kernel, but every syscall on the host pays for it.
    Tracepoint,
}

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub capture_all: bool,
    pub watch: BTreeSet<String>,
    pub btf_path: PathBuf,
    pub ring_buffer_bytes: Option<u32>,
    /// Least time between two ring-buffer wake-ups forced by the probe; 0 = every record.
    pub wakeup_interval: Duration,
    /// TCP destination ports whose connects are reported (kubelet, Docker API).
    pub ports: BTreeSet<u16>,
    /// Unix socket paths whose connects are reported (container runtime APIs).
    pub unix_paths: BTreeSet<PathBuf>,
    /// Executables whose exec starts a tracked (injected) session.
    pub session_seeds: BTreeSet<String>,
    /// Where Unix connects to `unix_paths` are caught.
    pub unix_connect_hook: UnixConnectHook,
    /// Entries of the probe's `VERDICTS` map; `None` turns file identity off (the probe
    /// then reads no executed file's identity).
    pub identity_entries: Option<u32>,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub chunk_ringbuf_full: u64,
    pub read_errors: u64,
    pub matched: u64,
    pub exe_unread: u64,
    pub exe_first: u64,
    pub exe_tool: u64,
    pub exe_pending_failed: u64,
}

/// The loaded and attached probes. Dropping it detaches everything.
pub struct Capture {
    ebpf: Ebpf,
    watch: BpfHashMap<MapData, WatchKey, u8>,
    /// The probe's prefilter of `watch`: one bit per name (`watch_filter_bit`).
    watch_bits: Array<MapData, u32>,
    /// What `watch_bits` holds.
    watch_words: Vec<u32>,
    counters: PerCpuArray<MapData, u64>,
    ring: Option<RingBuf<MapData>>,
    /// When the probe last forced a wake-up (`CLOCK_BOOTTIME` ns); handed to the reader.
    /// `None` when it could not be mapped: the probe then forces its periodic wake-ups.
    last_wakeup: Option<WakeupClock>,
    /// The counting filter in front of `TRACKED`. `None` when it could not be mapped:
    /// the sessions the agent ends then stay counted, so their slots keep costing the
    /// probes a lookup, but no tracked task is missed.
    tracked_count: Option<TrackedCount>,
    /// The probe's quiet mode, handed to the reader. `None` when it could not be mapped:
    /// a stream of repeats is then drained on the burst's tick.
    quiet: Option<QuietList>,
    watched: BTreeSet<WatchKey>,
    wakeup_interval: Duration,
    /// Optional programs that could not be attached, with the reason.
    pub degraded: Vec<String>,
    /// Where Unix connects are caught: [`UNIX_VIA_CGROUP`], [`UNIX_VIA_TRACEPOINT`] or
    /// [`UNIX_OFF`].
    pub unix_connects: &'static str,
    /// Held for as long as the hook should stay linked.
    unix_hook: Option<unix_hook::CgroupConnectHook>,
    /// `INODES` (`None` with identity off) and what it holds.
    inodes: Option<BpfHashMap<MapData, InodeKey, u32>>,
    inode_entries: BTreeMap<InodeKey, u32>,
    /// `VERDICTS`, until the identity stage takes it.
    verdicts: Option<BpfHashMap<MapData, ExeKey, ExeVerdict>>,
    /// `EXE_KNOWN`, the probe's fingerprints of files that are not tools.
    exe_known: Option<Array<MapData, u64>>,
    /// Why the probe reads no file identity, if it does not.
    identity_off: Option<String>,
}

impl Capture {
    /// Hands the ring buffer to the hot-path thread's reader. Can be called once.
    pub fn take_reader(&mut self, stats: Arc<Counters>) -> Option<Reader> {
        let ring = self.ring.take()?;
        // Shorter than the probe's interval, so it forces no wake-up between two ticks.
        let tick = (self.wakeup_interval * 3 / 5).clamp(Duration::from_micros(100), MAX_TICK);
        let last_wakeup = self.last_wakeup.take();
        // Quiet mode needs the clock: entering it resets the probe's wake-up limit.
        let quiet = self
            .quiet
            .take()
            .filter(|_| last_wakeup.is_some() && !self.wakeup_interval.is_zero())
            .map(quiet::QuietMode::new);
        Some(Reader::new(
            ring,
            last_wakeup,
            quiet,
            self.wakeup_interval,
            tick,
            stats,
        ))
    }

    pub fn kernel_counters(&self) -> KernelCounters {
        let sum = |idx: u32| -> u64 { self.counters.get(&idx, 0).map_or(0, |v| v.iter().sum()) };
        KernelCounters {
            ringbuf_full: sum(counters::RINGBUF_FULL),
            chunk_ringbuf_full: sum(counters::CHUNK_RINGBUF_FULL),
            read_errors: sum(counters::READ_ERROR),
            matched: sum(counters::MATCHED),
            exe_unread: sum(counters::EXE_UNREAD),
            exe_first: sum(counters::EXE_FIRST),
            exe_tool: sum(counters::EXE_TOOL),
            exe_pending_failed: sum(counters::EXE_PENDING_FAILED),
        }
    }

    /// In-kernel run time and run count of the exec program (non-zero only while
    /// `kernel.bpf_stats_enabled` is on).
    pub fn program_stats(&self) -> Option<(Duration, u64)> {
        let info = self.ebpf.program(EXEC_PROGRAM)?.info().ok()?;
        Some((info.run_time(), info.run_count()))
    }

    /// (name, in-kernel run time ns, run count) of every loaded program.
    pub fn all_program_stats(&self) -> Vec<(String, u64, u64)> {
        self.ebpf
            .programs()
            .filter_map(|(name, prog)| {
                let info = prog.info().ok()?;
                Some((
                    name.to_owned(),
                    u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                    info.run_count(),
                ))
            })
            .collect()
    }

    /// Detaches every program, so the maps stop changing (the stop path).
    pub fn detach(&mut self) {
        self.unix_hook = None;
        for (name, prog) in self.ebpf.programs_mut() {
            // Programs never loaded (the fallback Unix probe, or the cgroup hook's copy
            // that aya holds) have nothing to detach.
            if let Ok(tp) = <&mut TracePoint>::try_from(prog)
                && let Err(e) = tp.unload()
                && !matches!(e, aya::programs::ProgramError::NotLoaded)
            {
                warn!(program = name, error = %e, "detaching failed");
            }
        }
    }
}
