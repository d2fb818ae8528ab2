//! Loading the probes: privilege and kernel checks, the eBPF object with the kernel's
//! offsets and the agent's settings, the maps the agent keeps, the filters, and the
//! programs attached (the exec probe required, the others optional).

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use t1609_common::{ExeSettings, KernelOffsets, ProbeConfig, WATCH_FILTER_BITS, WatchKey};
use tracing::{debug, warn};

use super::{
    Capture, CaptureError, CaptureOptions, EXEC_PROGRAM, PROBES, UNIX_OFF, UNIX_VIA_CGROUP,
    UNIX_VIA_TRACEPOINT, UnixConnectHook,
    mapped::{QuietList, TrackedCount, WakeupClock},
    offsets,
    unix_hook::CgroupConnectHook,
};
use crate::{memory::release_free_heap, privilege::check_privilege};

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Programs beyond the exec probe; each may be missing on an older kernel, and the agent
/// then runs without it and says so.
const OPTIONAL_PROGRAMS: &[(&str, &str, &str)] = &[
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
];
/// Reports connects to the runtime sockets where the cgroup hook cannot
/// ([`super::unix_hook`]). Attached only when some are configured: a program on any
/// syscall tracepoint sends every syscall of every task on the host through the kernel's
/// slow syscall path (+20 ns a syscall measured on the build VM).
const UNIX_CONNECT_PROGRAM: (&str, &str, &str) =
    ("sys_enter_connect", "syscalls", "sys_enter_connect");

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

/// Takes map `name` out of the loaded object as a typed map.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, CaptureError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))?;
    T::try_from(map).map_err(CaptureError::map(name))
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

/// The eBPF object loaded with the kernel's offsets and the agent's settings.
fn load_object(
    opts: &CaptureOptions,
    offsets: &KernelOffsets,
    exe: &ExeSettings,
) -> Result<Ebpf, CaptureError> {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones ignore it.
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rlim) } != 0 {
        debug!("could not raise RLIMIT_MEMLOCK (fine on kernels >= 5.11)");
    }
    let config = ProbeConfig {
        agent_tgid: std::process::id(),
        capture_all: u32::from(opts.capture_all),
        wakeup_interval_ns: u64::try_from(opts.wakeup_interval.as_nanos()).unwrap_or(u64::MAX),
    };
    // The probes read kernel structures through the offsets, not CO-RE, so no BTF is
    // handed to the load. aya 0.14's `EbpfLoader::new()` still parses the kernel's BTF
    // when it is built (most of the start-up heap peak, VmHWM); it is dropped here and
    // the heap handed back after start-up.
    let mut loader = EbpfLoader::new();
    loader
        .btf(None)
        .override_global("OFFSETS", offsets, true)
        .override_global("EXE_SETTINGS", exe, true)
        .override_global("CONFIG", &config, true);
    if let Some(bytes) = opts.ring_buffer_bytes {
        loader.map_max_entries("EVENTS", bytes);
    }
    if let Some(entries) = opts.identity_entries {
        loader.map_max_entries("VERDICTS", entries);
    }
    let loaded = loader.load(PROBES);
    drop(loader);
    loaded.map_err(|e| match &e {
        aya::EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
            if io_error.raw_os_error() == Some(libc::EINVAL) =>
        {
            CaptureError::Feature {
                feature: "BPF ring buffer (Linux >= 5.8)",
                detail: e.to_string(),
            }
        }
        _ => CaptureError::Load(e),
    })
}

/// What the identity check reads, or why it stays off. File identity is worth having,
/// not worth refusing to start over.
fn exe_settings(opts: &CaptureOptions, btf: &offsets::KernelBtf) -> (ExeSettings, Option<String>) {
    if opts.identity_entries.is_none() {
        return (
            ExeSettings::default(),
            Some("identity.enabled = false".to_owned()),
        );
    }
    match offsets::exe_settings(btf, random_seed()) {
        Ok(o) => (o, None),
        Err(e) => {
            warn!(error = %e, "file identity off: the probe cannot read the executed file's inode here");
            (ExeSettings::default(), Some(e.to_string()))
        }
    }
}

/// The identity fingerprints' seed: random per start (`getrandom`), so that nobody can
/// make a file whose fingerprint matches a known one's; the clock's nanoseconds if the
/// kernel has no `getrandom` (before 3.17).
fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(seed)
    } else {
        t1609_ecs::boottime_ns() ^ u64::from(std::process::id()).rotate_left(32)
    }
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

impl Capture {
    /// Loads the probes, fills their filters and attaches them.
    pub fn start(opts: &CaptureOptions) -> Result<Self, CaptureError> {
        check_privilege()?;
        let btf = offsets::parse_file(&opts.btf_path)?;
        let offsets: KernelOffsets = offsets::from_parsed(&btf)?;
        let (exe_settings, identity_off) = exe_settings(opts, &btf);
        ensure_tracefs()?;
        if !Path::new(offsets::VMLINUX_BTF).exists()
            && opts.btf_path == Path::new(offsets::VMLINUX_BTF)
        {
            return Err(CaptureError::Feature {
                feature: "BTF",
                detail: "no /sys/kernel/btf/vmlinux".into(),
            });
        }
        let mut ebpf = load_object(opts, &offsets, &exe_settings)?;
        // Before any map is taken out of `ebpf`: the hook is relocated against them all.
        let unix_hook = if opts.unix_paths.is_empty() {
            None
        } else {
            unix_hook(&ebpf, &btf, opts.unix_connect_hook)?
        };
        drop(btf);

        let watch: BpfHashMap<MapData, WatchKey, u8> = take_map(&mut ebpf, "WATCH")?;
        let watch_bits: Array<MapData, u32> = take_map(&mut ebpf, "WATCH_BITS")?;
        let counters: PerCpuArray<MapData, u64> = take_map(&mut ebpf, "COUNTERS")?;
        let ring: RingBuf<MapData> = take_map(&mut ebpf, "EVENTS")?;
        let identity_maps = if identity_off.is_none() {
            Some((
                take_map(&mut ebpf, "INODES")?,
                take_map(&mut ebpf, "VERDICTS")?,
                take_map(&mut ebpf, "EXE_KNOWN")?,
            ))
        } else {
            None
        };
        let (inodes, verdicts, exe_known) = match identity_maps {
            Some((i, v, k)) => (Some(i), Some(v), Some(k)),
            None => (None, None, None),
        };
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
            watched: std::collections::BTreeSet::new(),
            wakeup_interval: opts.wakeup_interval,
            degraded: Vec::new(),
            unix_connects: if unix_hook.is_some() {
                UNIX_VIA_CGROUP
            } else {
                UNIX_OFF
            },
            unix_hook,
            inodes,
            inode_entries: std::collections::BTreeMap::new(),
            verdicts,
            exe_known,
            identity_off,
        };
        // Fill the filters before attaching, so the first event is already filtered.
        capture.set_watch(&opts.watch)?;
        capture.fill_filters(opts)?;
        capture.attach(EXEC_PROGRAM, "sched", "sched_process_exec")?;
        let unix = (!opts.unix_paths.is_empty() && capture.unix_hook.is_none())
            .then_some(&UNIX_CONNECT_PROGRAM);
        for (name, category, event) in OPTIONAL_PROGRAMS.iter().chain(unix) {
            match capture.attach(name, category, event) {
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

    /// Loads (through the verifier) and attaches tracepoint program `name`.
    fn attach(
        &mut self,
        name: &'static str,
        category: &str,
        event: &str,
    ) -> Result<(), CaptureError> {
        let step = |step: &'static str| move |source| CaptureError::Program { name, step, source };
        let program: &mut TracePoint = self
            .ebpf
            .program_mut(name)
            .ok_or(CaptureError::Feature {
                feature: "program",
                detail: name.into(),
            })?
            .try_into()
            .map_err(step("convert"))?;
        program.load().map_err(step("load (verifier)"))?;
        program.attach(category, event).map_err(step("attach"))?;
        Ok(())
    }
}
