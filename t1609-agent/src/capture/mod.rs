//! Capture stage: loads the exec probe, keeps its watch set, drains its ring buffer.

mod mapped;
pub mod offsets;
mod unix_hook;
mod wait;

use std::{
    collections::BTreeSet,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use t1609_common::{
    COMM_LEN, KernelOffsets, ProbeConfig, UNIX_PATH_LEN, UnixPathKey, WATCH_FILTER_BITS, WatchKey,
    counters, tracked_slot, watch_filter_bit,
};
use tracing::{debug, warn};

use crate::decode::{Assembler, Captured};
use mapped::{QuietList, TrackedCount, WakeupClock};
use unix_hook::CgroupConnectHook;

use crate::config::UnixConnectHook;
pub use wait::StopSignal;
use wait::Woken;

const PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/t1609-probes"));
pub const TRACEFS: &str = "/sys/kernel/tracing";
const PROGRAM: &str = "sched_process_exec";
/// Longest drain tick during a burst: a record that got no wake-up waits at most one
/// tick, and the exec → alert p99 target is 5 ms.
const MAX_TICK: Duration = Duration::from_millis(2);
/// In quiet mode (see [`Reader::pace`]) the reader drains at least this often. A drain
/// costs the agent 45–60 µs of CPU however few records it finds (a sleep, a wake-up and
/// caches gone cold in between; a bare nanosleep loop costs 20–40 µs a wake on this VM),
/// several times what a replayed repeat costs. What the probe lets wait is
/// listed repeats and reported exits, whose handling only counts and tidies. Anything
/// else wakes it at once. The ring holds ~900 exec records and forces a wake-up when
/// half full, so at the storm ceiling (~7,000 exec/s) the ring, not this, sets the pace.
const QUIET_DRAIN: Duration = Duration::from_millis(50);
/// An alerting exec the quiet timer found this long after it ran counts as delayed by
/// the quiet mode (`quiet_late_alerts`).
const QUIET_LATE_NS: u64 = 5_000_000;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetError),
    #[error(
        "missing privilege: loading eBPF programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); \
         this process has effective capabilities {caps:#x}. Run as root or grant those capabilities"
    )]
    Privilege { caps: u64 },
    #[error(
        "tracefs is not mounted at {path} and mounting it failed: {source} (needs CAP_SYS_ADMIN, or mount it beforehand: mount -t tracefs nodev {path})"
    )]
    Tracefs {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel feature missing: {feature} ({detail})")]
    Feature {
        feature: &'static str,
        detail: String,
    },
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program `{name}` failed to {step}: {source}")]
    Program {
        name: &'static str,
        step: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("eBPF map `{0}` missing from the object")]
    MissingMap(&'static str),
    #[error("watch-set name {name:?} is empty or contains NUL or '/'")]
    BadWatchName { name: String },
    #[error("runtime socket path {path:?} is empty or longer than {UNIX_PATH_LEN} bytes")]
    BadSocketPath { path: PathBuf },
    #[error("reading the ring buffer: {0}")]
    Io(#[from] std::io::Error),
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
}

/// Programs beyond the exec probe; each may be missing on an older kernel, and the agent
/// then runs without it and says so.
const OPTIONAL_PROGRAMS: &[(&str, &str, &str)] = &[
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
];
/// Reports connects to the runtime sockets where the cgroup hook cannot
/// ([`unix_hook`]). Attached only when some are configured: a program on any syscall
/// tracepoint sends every syscall of every task on the host through the kernel's slow
/// syscall path (+20 ns a syscall measured on the build VM).
const UNIX_CONNECT_PROGRAM: (&str, &str, &str) =
    ("sys_enter_connect", "syscalls", "sys_enter_connect");
/// What `Capture::unix_connects` names.
pub const UNIX_VIA_CGROUP: &str = "cgroup/connect_unix";
pub const UNIX_VIA_TRACEPOINT: &str = "syscalls:sys_enter_connect";
pub const UNIX_OFF: &str = "off";

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub chunk_ringbuf_full: u64,
    pub read_errors: u64,
    pub matched: u64,
}

/// Userspace-side counters of the reader.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub decode_errors: AtomicU64,
    pub orphan_chunks: AtomicU64,
    /// Wake-ups on the ring buffer's fd outside a burst: the probe forced one, or records
    /// were already waiting when the reader went to sleep.
    pub ring_wakeups: AtomicU64,
    /// Drains on the reader's own tick while a burst lasts.
    pub poll_ticks: AtomicU64,
    /// Drains on the quiet mode's timer ([`QUIET_DRAIN`]) instead of a wake-up.
    pub quiet_drains: AtomicU64,
    /// Alerts from execs such a drain found more than 5 ms after they ran: what the quiet
    /// mode delayed. Only a signature collision (a new command with a listed repeat's
    /// parent and argv) should put one there.
    pub quiet_late_alerts: AtomicU64,
}

/// The loaded and attached probe. Dropping it detaches everything.
pub struct Capture {
    ebpf: Ebpf,
    watch: BpfHashMap<MapData, WatchKey, u8>,
    /// The probe's prefilter of `watch`: one bit per name (`watch_filter_bit`).
    watch_bits: Array<MapData, u32>,
    /// What `watch_bits` holds.
    watch_words: Vec<u32>,
    counters: PerCpuArray<MapData, u64>,
    ring: Option<RingBuf<MapData>>,
    /// When the probe last forced a wake-up (CLOCK_BOOTTIME ns); handed to the reader.
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
    unix_hook: Option<CgroupConnectHook>,
}

/// Takes map `name` out of the loaded object as a typed map.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, CaptureError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))?;
    T::try_from(map).map_err(|source| CaptureError::Map { name, source })
}

/// Takes an mmapable map out of `ebpf` and maps it into the agent. A failed mapping
/// costs speed, not correctness (`without` says what), so it is a warning.
fn take_mapped<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    map: impl FnOnce(aya::maps::Map) -> std::io::Result<T>,
    without: &str,
) -> Result<Option<T>, CaptureError> {
    let taken = ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))?;
    Ok(map(taken)
        .inspect_err(|e| warn!(map = name, error = %e, "cannot map it into the agent; {without}"))
        .ok())
}

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("CapEff:")
                        .map(|v| u64::from_str_radix(v.trim(), 16).ok())
                })
                .flatten()
        })
        .unwrap_or(0)
}

const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

/// Checks the privilege before trying, so the error names what is missing.
pub fn check_privilege() -> Result<(), CaptureError> {
    let caps = effective_caps();
    if caps & CAP_SYS_ADMIN != 0 || (caps & CAP_BPF != 0 && caps & CAP_PERFMON != 0) {
        Ok(())
    } else {
        Err(CaptureError::Privilege { caps })
    }
}

/// Mounts tracefs when it is missing: tracepoint attachment needs it, and some hosts
/// (and this project's build machine) boot without it.
pub fn ensure_tracefs() -> Result<(), CaptureError> {
    let events = Path::new(TRACEFS).join("events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS).expect("no NUL");
    let fstype = std::ffi::CString::new("tracefs").expect("no NUL");
    let source = std::ffi::CString::new("nodev").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(CaptureError::Tracefs {
            path: TRACEFS.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    debug!("mounted tracefs at {TRACEFS}");
    Ok(())
}

pub fn unix_path_key(path: &Path) -> Result<UnixPathKey, CaptureError> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= UNIX_PATH_LEN || bytes.contains(&0) {
        return Err(CaptureError::BadSocketPath {
            path: path.to_owned(),
        });
    }
    let mut key = [0u8; UNIX_PATH_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Ok(key)
}

/// The probe's prefilter words for a set of names: bit `watch_filter_bit(name)` of each.
fn watch_bits(keys: &BTreeSet<WatchKey>) -> Vec<u32> {
    let mut words = vec![0u32; (WATCH_FILTER_BITS / 32) as usize];
    for key in keys {
        let bit = watch_filter_bit(key);
        words[(bit / 32) as usize] |= 1 << (bit % 32);
    }
    words
}

/// `TRACKED` against its counting filter, from [`Capture::tracked_check`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedCheck {
    /// Keys in `TRACKED`.
    pub entries: u64,
    /// The counts' sum: `entries` unless an LRU eviction (all 16,384 entries in use) left
    /// some counted (harmless: those slots just keep asking `TRACKED`).
    pub counted: u64,
    /// Slots counting fewer keys than `TRACKED` holds (must be 0: those keys' tasks would
    /// be invisible to the probes).
    pub short_slots: u64,
}

pub fn watch_key(name: &str) -> Result<WatchKey, CaptureError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(CaptureError::BadWatchName {
            name: name.to_owned(),
        });
    }
    // The kernel's comm keeps the first 15 bytes; the agent re-checks the full name.
    let mut key = [0u8; COMM_LEN];
    let n = bytes.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    Ok(key)
}

impl Capture {
    pub fn start(opts: &CaptureOptions) -> Result<Self, CaptureError> {
        check_privilege()?;
        let btf = offsets::parse_file(&opts.btf_path)?;
        let offsets: KernelOffsets = offsets::from_parsed(&btf)?;
        ensure_tracefs()?;
        if !Path::new("/sys/kernel/btf/vmlinux").exists()
            && opts.btf_path == Path::new(offsets::VMLINUX_BTF)
        {
            return Err(CaptureError::Feature {
                feature: "BTF",
                detail: "no /sys/kernel/btf/vmlinux".into(),
            });
        }
        // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones ignore it.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain syscall with a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
            debug!("could not raise RLIMIT_MEMLOCK (fine on kernels >= 5.11)");
        }
        let config = ProbeConfig {
            agent_tgid: std::process::id(),
            capture_all: u32::from(opts.capture_all),
            wakeup_interval_ns: u64::try_from(opts.wakeup_interval.as_nanos()).unwrap_or(u64::MAX),
        };
        // The probes read kernel structures through the offsets above, not CO-RE, so no
        // BTF is handed to the load. aya 0.14's `EbpfLoader::new()` still parses the
        // kernel's BTF when it is built (most of the start-up heap peak, VmHWM); it is
        // dropped here and the heap handed back after start-up.
        let mut loader = EbpfLoader::new();
        loader
            .btf(None)
            .override_global("OFFSETS", &offsets, true)
            .override_global("CONFIG", &config, true);
        if let Some(bytes) = opts.ring_buffer_bytes {
            loader.map_max_entries("EVENTS", bytes);
        }
        let loaded = loader.load(PROBES);
        drop(loader);
        let mut ebpf = loaded.map_err(|e| match &e {
            aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EINVAL) =>
            {
                CaptureError::Feature {
                    feature: "BPF ring buffer (Linux >= 5.8)",
                    detail: e.to_string(),
                }
            }
            _ => CaptureError::Load(e),
        })?;
        // Before any map is taken out of `ebpf`: the hook is relocated against them all.
        let unix_hook = if opts.unix_paths.is_empty() {
            None
        } else {
            Self::unix_hook(&ebpf, &btf, opts.unix_connect_hook)?
        };
        drop(btf);

        let watch: BpfHashMap<MapData, WatchKey, u8> = take_map(&mut ebpf, "WATCH")?;
        let watch_bits: Array<MapData, u32> = take_map(&mut ebpf, "WATCH_BITS")?;
        let counters: PerCpuArray<MapData, u64> = take_map(&mut ebpf, "COUNTERS")?;
        let ring: RingBuf<MapData> = take_map(&mut ebpf, "EVENTS")?;
        let last_wakeup = take_mapped(
            &mut ebpf,
            "LAST_WAKEUP",
            WakeupClock::new,
            "the probe keeps forcing wake-ups",
        )?;
        let tracked_count = take_mapped(
            &mut ebpf,
            "TRACKED_COUNT",
            TrackedCount::new,
            "sessions the agent ends keep their slots busy",
        )?;
        let quiet = take_mapped(
            &mut ebpf,
            "QUIET",
            QuietList::new,
            "a stream of repeats is drained on the burst's 2 ms tick",
        )?;
        let mut capture = Self {
            ebpf,
            watch,
            watch_bits,
            watch_words: vec![0; (WATCH_FILTER_BITS / 32) as usize],
            counters,
            ring: Some(ring),
            last_wakeup,
            tracked_count,
            quiet,
            watched: BTreeSet::new(),
            wakeup_interval: opts.wakeup_interval,
            degraded: Vec::new(),
            unix_connects: if unix_hook.is_some() {
                UNIX_VIA_CGROUP
            } else {
                UNIX_OFF
            },
            unix_hook,
        };
        // Fill the filters before attaching, so the first event is already filtered.
        capture.set_watch(&opts.watch)?;
        capture.fill_filters(opts)?;

        let program: &mut TracePoint = capture
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(CaptureError::Feature {
                feature: "program",
                detail: PROGRAM.into(),
            })?
            .try_into()
            .map_err(|source| CaptureError::Program {
                name: PROGRAM,
                step: "convert",
                source,
            })?;
        program.load().map_err(|source| CaptureError::Program {
            name: PROGRAM,
            step: "load (verifier)",
            source,
        })?;
        program
            .attach("sched", "sched_process_exec")
            .map_err(|source| CaptureError::Program {
                name: PROGRAM,
                step: "attach to sched:sched_process_exec",
                source,
            })?;
        let unix = (!opts.unix_paths.is_empty() && capture.unix_hook.is_none())
            .then_some(&UNIX_CONNECT_PROGRAM);
        for (name, category, event) in OPTIONAL_PROGRAMS.iter().chain(unix) {
            match capture.attach_optional(name, category, event) {
                Ok(()) if *name == UNIX_CONNECT_PROGRAM.0 => {
                    capture.unix_connects = UNIX_VIA_TRACEPOINT;
                }
                Ok(()) => {}
                Err(e) => {
                    warn!(program = name, error = %e, "optional probe not attached; running without it");
                    capture.degraded.push(format!("{name}: {e}"));
                }
            }
        }
        release_free_heap();
        Ok(capture)
    }

    /// The cgroup Unix-connect hook, or `None` for the syscall tracepoint.
    fn unix_hook(
        ebpf: &Ebpf,
        btf: &offsets::KernelBtf,
        choice: UnixConnectHook,
    ) -> Result<Option<CgroupConnectHook>, CaptureError> {
        if choice == UnixConnectHook::Tracepoint {
            return Ok(None);
        }
        let attached = offsets::check_sock_addr_layout(btf)
            .map_err(|e| e.to_string())
            .and_then(|()| CgroupConnectHook::attach(ebpf, PROBES).map_err(|e| e.to_string()));
        match (attached, choice) {
            (Ok(hook), _) => Ok(Some(hook)),
            (Err(detail), UnixConnectHook::Cgroup) => Err(CaptureError::Feature {
                feature: "cgroup connect_unix hook (network.unix_connect_hook = \"cgroup\")",
                detail,
            }),
            (Err(detail), _) => {
                warn!(reason = %detail, "Unix connects hooked at the syscall instead of the cgroup hook: every syscall on the host pays ~20 ns");
                Ok(None)
            }
        }
    }

    fn attach_optional(
        &mut self,
        name: &'static str,
        category: &str,
        event: &str,
    ) -> Result<(), CaptureError> {
        let program: &mut TracePoint = self
            .ebpf
            .program_mut(name)
            .ok_or(CaptureError::Feature {
                feature: "program",
                detail: name.into(),
            })?
            .try_into()
            .map_err(|source| CaptureError::Program {
                name,
                step: "convert",
                source,
            })?;
        program.load().map_err(|source| CaptureError::Program {
            name,
            step: "load (verifier)",
            source,
        })?;
        program
            .attach(category, event)
            .map_err(|source| CaptureError::Program {
                name,
                step: "attach",
                source,
            })?;
        Ok(())
    }

    fn fill_filters(&mut self, opts: &CaptureOptions) -> Result<(), CaptureError> {
        let map = self
            .ebpf
            .map_mut("PORTS")
            .ok_or(CaptureError::MissingMap("PORTS"))?;
        let mut ports: BpfHashMap<_, u16, u8> =
            BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
                name: "PORTS",
                source,
            })?;
        for port in &opts.ports {
            ports
                .insert(port, 1, 0)
                .map_err(|source| CaptureError::Map {
                    name: "PORTS",
                    source,
                })?;
        }
        let map = self
            .ebpf
            .map_mut("UNIX_PATHS")
            .ok_or(CaptureError::MissingMap("UNIX_PATHS"))?;
        let mut paths: BpfHashMap<_, UnixPathKey, u8> =
            BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
                name: "UNIX_PATHS",
                source,
            })?;
        for path in &opts.unix_paths {
            paths
                .insert(unix_path_key(path)?, 1, 0)
                .map_err(|source| CaptureError::Map {
                    name: "UNIX_PATHS",
                    source,
                })?;
        }
        let map = self
            .ebpf
            .map_mut("SESSION_SEEDS")
            .ok_or(CaptureError::MissingMap("SESSION_SEEDS"))?;
        let mut seeds: BpfHashMap<_, WatchKey, u8> =
            BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
                name: "SESSION_SEEDS",
                source,
            })?;
        for name in &opts.session_seeds {
            seeds
                .insert(watch_key(name)?, 1, 0)
                .map_err(|source| CaptureError::Map {
                    name: "SESSION_SEEDS",
                    source,
                })?;
        }
        Ok(())
    }

    /// Ends a session the kernel started for an exec that turned out not to inject
    /// anything (runc create/start/state...): the root and whatever it forked since.
    pub fn end_session(&mut self, session: u64) {
        let Some(map) = self.ebpf.map_mut("TRACKED") else {
            return;
        };
        let Ok(mut tracked) = aya::maps::HashMap::<_, u32, u64>::try_from(map) else {
            return;
        };
        let members: Vec<u32> = tracked
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| *s == session)
            .map(|(k, _)| k)
            .collect();
        for tgid in members {
            // Uncounted only if this removal took it out: the probe's exit may have.
            if tracked.remove(&tgid).is_ok()
                && let Some(counts) = &self.tracked_count
            {
                counts.uncount(tgid);
            }
        }
    }

    /// Tasks the probes track (sessions and reported processes), as their counting
    /// filter has it: the `TRACKED` entries, plus any an LRU eviction took out behind
    /// the counts' back.
    pub fn tracked_tasks(&self) -> Option<u64> {
        self.tracked_count.as_ref().map(TrackedCount::total)
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

    /// Compares `TRACKED` with its counting filter: a slot counting fewer keys than it
    /// holds would hide tracked tasks from the probes. Exact once detached.
    pub fn tracked_check(&self) -> Option<TrackedCheck> {
        let counts = self.tracked_count.as_ref()?;
        let map = self.ebpf.map("TRACKED")?;
        let tracked = aya::maps::HashMap::<_, u32, u64>::try_from(map).ok()?;
        let mut per_slot = std::collections::HashMap::<u32, u32>::new();
        for key in tracked.keys().filter_map(Result::ok) {
            *per_slot.entry(tracked_slot(key)).or_default() += 1;
        }
        Some(TrackedCheck {
            entries: per_slot.values().map(|&n| u64::from(n)).sum(),
            counted: counts.total(),
            short_slots: per_slot
                .iter()
                .filter(|&(&slot, &keys)| counts.slot(slot) < u64::from(keys))
                .count() as u64,
        })
    }

    /// Replaces the watch set in place: adds new names first, then removes old ones, so
    /// a name present in both sets is never missing, and nothing is detached. A name's
    /// prefilter bit is set before it is added and cleared only after it is removed.
    pub fn set_watch(&mut self, names: &BTreeSet<String>) -> Result<(), CaptureError> {
        let keys = names
            .iter()
            .map(|n| watch_key(n))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let new_bits = watch_bits(&keys);
        let both: Vec<u32> = (self.watch_words.iter().zip(&new_bits))
            .map(|(held, new)| held | new)
            .collect();
        self.write_watch_bits(&both)?;
        for key in keys.difference(&self.watched) {
            self.watch
                .insert(key, 1, 0)
                .map_err(|source| CaptureError::Map {
                    name: "WATCH",
                    source,
                })?;
        }
        for key in self.watched.difference(&keys) {
            self.watch.remove(key).map_err(|source| CaptureError::Map {
                name: "WATCH",
                source,
            })?;
        }
        self.watched = keys;
        self.write_watch_bits(&new_bits)
    }

    /// Writes the prefilter words that differ from what the map holds.
    fn write_watch_bits(&mut self, to: &[u32]) -> Result<(), CaptureError> {
        for (index, (held, new)) in (0u32..).zip(self.watch_words.iter_mut().zip(to)) {
            if *held != *new {
                self.watch_bits
                    .set(index, *new, 0)
                    .map_err(|source| CaptureError::Map {
                        name: "WATCH_BITS",
                        source,
                    })?;
                *held = *new;
            }
        }
        Ok(())
    }

    pub fn kernel_counters(&self) -> KernelCounters {
        let sum = |idx: u32| -> u64 {
            self.counters
                .get(&idx, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            ringbuf_full: sum(counters::RINGBUF_FULL),
            chunk_ringbuf_full: sum(counters::CHUNK_RINGBUF_FULL),
            read_errors: sum(counters::READ_ERROR),
            matched: sum(counters::MATCHED),
        }
    }

    /// In-kernel run time and run count of the exec program (non-zero only while
    /// `kernel.bpf_stats_enabled` is on).
    pub fn program_stats(&self) -> Option<(Duration, u64)> {
        let prog = self.ebpf.program(PROGRAM)?;
        let info = prog.info().ok()?;
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

    /// Hands the ring buffer to the hot-path thread's reader. Can be called once.
    pub fn take_reader(&mut self) -> Option<Reader> {
        let ring = self.ring.take()?;
        let tick = (self.wakeup_interval / 2).clamp(Duration::from_micros(100), MAX_TICK);
        let last_wakeup = self.last_wakeup.take();
        // Quiet mode needs the clock: entering it resets the probe's wake-up limit.
        let quiet = self
            .quiet
            .take()
            .filter(|_| last_wakeup.is_some() && !self.wakeup_interval.is_zero());
        Some(Reader {
            ring,
            last_wakeup,
            quiet,
            quiet_timer_drain: false,
            assembler: Assembler::default(),
            stats: Arc::new(ReaderStats::default()),
            wakeup_interval: self.wakeup_interval,
            tick,
            relaxed: false,
            linger_until: None,
            next_tick: Instant::now(),
        })
    }
}

/// Drains the ring buffer and joins records into execs.
pub struct Reader {
    ring: RingBuf<MapData>,
    last_wakeup: Option<WakeupClock>,
    /// The probe's quiet mode, on while `relaxed` (see [`Reader::pace`]).
    quiet: Option<QuietList>,
    /// The last drain was on the quiet timer, not a wake-up.
    quiet_timer_drain: bool,
    assembler: Assembler,
    pub stats: Arc<ReaderStats>,
    wakeup_interval: Duration,
    /// Drain period during a burst: faster than the probe's wake-up interval, so a
    /// record that got no wake-up waits at most one tick (2 ms by default).
    tick: Duration,
    /// The pipeline reports a stream of nothing but exact repeats, and the probe's quiet
    /// mode is on.
    relaxed: bool,
    /// While a burst lasts, drain every tick until this instant.
    linger_until: Option<Instant>,
    next_tick: Instant,
}

impl Reader {
    /// Empties a handled batch; its exec records are decoded into again.
    pub fn recycle(&mut self, handled: &mut Vec<Captured>) {
        self.assembler.recycle(handled);
    }

    /// Sets the pace from what the last batch held. Only alerts need a prompt read: a
    /// batch of nothing but exact repeats (replayed, their alerts already raised and
    /// counted in an open dedup window) relaxes it, anything new (an exec taking the full
    /// path, a connect) brings back the burst's short tick at once.
    ///
    /// Relaxed, the reader goes quiet: it turns on the probe's quiet mode, in which the
    /// listed repeats ([`Reader::list_repeat`]) and reported exits force no wake-up while
    /// any other record does, and sleeps on the ring for up to [`QUIET_DRAIN`]. A stream
    /// of repeats then costs 20–40 drains a second instead of a tick every 2 ms, and a
    /// new command in it still wakes the reader at once. Without the quiet map the reader
    /// keeps the burst's tick.
    pub fn pace(&mut self, relaxed: bool) {
        let Some(quiet) = &self.quiet else {
            return;
        };
        if relaxed == self.relaxed {
            return;
        }
        self.relaxed = relaxed;
        quiet.set_mode(relaxed);
        if relaxed {
            self.linger_until = None;
        } else {
            let now = Instant::now();
            self.linger_until = Some(now + 3 * self.wakeup_interval);
            self.next_tick = now + self.tick;
        }
    }

    /// Lists a replayed repeat's quiet signature for the probe.
    pub fn list_repeat(&self, signature: u64) {
        if let Some(quiet) = &self.quiet {
            quiet.list(signature);
        }
    }

    /// Counts the `alerts` an exec of the last drain raised as late if the quiet timer
    /// found the exec long after it ran (a forced wake-up racing the timer is not late).
    pub fn note_alerts(&self, exec_ktime_ns: u64, alerts: u64) {
        if alerts > 0
            && self.quiet_timer_drain
            && boottime_ns().saturating_sub(exec_ktime_ns) > QUIET_LATE_NS
        {
            self.stats
                .quiet_late_alerts
                .fetch_add(alerts, Ordering::Relaxed);
        }
    }

    /// Reads everything available now into `out`.
    fn drain(&mut self, out: &mut Vec<Captured>) {
        while let Some(item) = self.ring.next() {
            match self.assembler.push(&item) {
                Ok(Some(exec)) => out.push(exec),
                Ok(None) => {}
                Err(e) => {
                    let stats = &self.stats;
                    stats
                        .decode_errors
                        .store(self.assembler.decode_errors, Ordering::Relaxed);
                    stats
                        .orphan_chunks
                        .store(self.assembler.orphan_chunks, Ordering::Relaxed);
                    warn!(error = %e, "dropping undecodable ring-buffer record");
                }
            }
        }
    }

    /// Sleeps until there is something to read, `until` passes, or `stop` fires, and drains
    /// the ring into `out`. Returns `false` once `stop` has fired (after a last drain).
    ///
    /// The probe suppresses wake-ups for `wakeup_interval` after forcing one, so after each
    /// wake-up the reader drains on a 2 ms tick for three intervals: a record submitted
    /// without a wake-up waits at most one tick. (While the batches hold nothing but exact
    /// repeats, it goes quiet instead: [`Reader::pace`].) While those ticks find records
    /// the reader stamps the probe's clock, so a steady stream is read on ticks alone and
    /// the probe forces no wake-up. Between ticks the thread just sleeps: the ring's fd is
    /// level-triggered and would end every sleep early while records trickle in, and
    /// `stop` is looked at after each tick.
    pub fn wait_and_drain(
        &mut self,
        out: &mut Vec<Captured>,
        until: Instant,
        stop: &StopSignal,
    ) -> Result<bool, CaptureError> {
        let now = Instant::now();
        self.quiet_timer_drain = false;
        if self.relaxed && self.quiet.is_some() {
            // Quiet: let whatever is not a listed repeat wake us at once, whenever the
            // last forced wake-up was.
            if let Some(clock) = &self.last_wakeup {
                clock.stamp(0);
            }
            let timeout = QUIET_DRAIN.min(until.saturating_duration_since(now));
            let woken = wait::wait(self.ring.as_raw_fd(), stop, timeout)?;
            // The fd is level-triggered: at the timeout, ppoll reports the records that
            // waited as readable. A wake-up the probe forced ends the sleep early.
            let timer =
                woken == Woken::Timeout || (woken == Woken::Readable && now.elapsed() >= timeout);
            if timer {
                self.quiet_timer_drain = true;
                self.stats.quiet_drains.fetch_add(1, Ordering::Relaxed);
            } else if woken == Woken::Readable {
                self.stats.ring_wakeups.fetch_add(1, Ordering::Relaxed);
            }
            self.drain(out);
            return Ok(woken != Woken::Stop);
        }
        let Some(linger_until) = self.linger_until else {
            let woken = wait::wait(
                self.ring.as_raw_fd(),
                stop,
                until.saturating_duration_since(now),
            )?;
            if woken == Woken::Readable {
                self.stats.ring_wakeups.fetch_add(1, Ordering::Relaxed);
                if !self.wakeup_interval.is_zero() {
                    let now = Instant::now();
                    self.linger_until = Some(now + 3 * self.wakeup_interval);
                    self.next_tick = now + self.tick;
                }
            }
            if woken != Woken::Timeout {
                self.drain(out);
            }
            return Ok(woken != Woken::Stop);
        };
        std::thread::sleep(self.next_tick.min(until).saturating_duration_since(now));
        if stop.is_fired() {
            self.drain(out);
            return Ok(false);
        }
        let now = Instant::now();
        if now < self.next_tick {
            return Ok(true); // woke for `until`, or a signal
        }
        let tick = self.tick;
        self.next_tick += tick;
        if self.next_tick <= now {
            self.next_tick = now + tick; // a late tick does not cause a burst of them
        }
        self.stats.poll_ticks.fetch_add(1, Ordering::Relaxed);
        let before = out.len();
        self.drain(out);
        if out.len() > before {
            // Records are still flowing and we are polling for them: tell the probe a
            // wake-up just happened, so it forces none while we poll. Polling continues
            // for three intervals after this, longer than the probe then stays quiet.
            if let Some(clock) = &self.last_wakeup {
                clock.stamp(boottime_ns());
            }
            self.linger_until = Some(now + 3 * self.wakeup_interval);
        } else if now >= linger_until {
            self.linger_until = None;
        }
        Ok(true)
    }
}

/// CLOCK_BOOTTIME in ns: the probe's clock (`bpf_ktime_get_boot_ns`).
fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Gives freed heap pages back to the kernel. glibc keeps them after a peak (the BTF parse
/// at start-up, a burst of events), which would otherwise count in the agent's RSS for
/// good. Called after start-up and from the daemon's housekeeping.
pub fn release_free_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_keys_truncate_like_comm() {
        let k = watch_key("containerd-shim-runc-v2").unwrap();
        assert_eq!(&k[..15], b"containerd-shim");
        assert_eq!(k[15], 0);
        assert_eq!(&watch_key("docker").unwrap()[..7], b"docker\0");
        assert!(watch_key("").is_err());
        assert!(watch_key("a/b").is_err());
    }
}
