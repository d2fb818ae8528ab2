//! Capabilities: checked before loading the probes, dropped once they are attached.
//!
//! Loading and attaching eBPF needs `CAP_BPF` + `CAP_PERFMON` (or `CAP_SYS_ADMIN`), and mounting
//! tracefs `CAP_SYS_ADMIN`; after that, everything the agent does with the kernel objects
//! goes through file descriptors it already holds (ring buffer, map updates on reload,
//! program info), which needs no capability. What it keeps:
//! - `CAP_SYS_PTRACE`: `readlink /proc/<pid>/exe`, `/proc/<pid>/cwd` and `/proc/<pid>/ns/*`
//!   of other users' and more privileged processes (the kernel's ptrace read check);
//! - `CAP_DAC_READ_SEARCH`: reading `/proc/<pid>/` entries of processes whose files are
//!   not world-readable.
//!
//! Everything else leaves the effective, permitted, inheritable and ambient sets, and
//! the bounding set when `CAP_SETPCAP` allows it, so an exploited agent cannot regain it.

use caps::{CapSet, Capability, CapsHashSet};

pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "missing privilege: loading eBPF programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); \
         this process has effective capabilities {caps:#x}. Run as root or grant those capabilities"
    )]
    Missing { caps: u64 },
    #[error("dropping capabilities from the {set} set failed: {source}")]
    Drop {
        set: &'static str,
        source: caps::errors::CapsError,
    },
}

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("CapEff:")
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
        })
        .unwrap_or(0)
}

/// Checks the privilege before trying, so the error names what is missing.
pub fn check_privilege() -> Result<(), PrivilegeError> {
    let caps = effective_caps();
    if caps & CAP_SYS_ADMIN != 0 || (caps & CAP_BPF != 0 && caps & CAP_PERFMON != 0) {
        Ok(())
    } else {
        Err(PrivilegeError::Missing { caps })
    }
}

/// Drops every capability but [`KEPT`]; returns what remains effective.
pub fn drop_after_attach() -> Result<CapsHashSet, PrivilegeError> {
    let keep: CapsHashSet = KEPT.into_iter().collect();
    let failed = |set| move |source| PrivilegeError::Drop { set, source };
    // Bounding first: it needs CAP_SETPCAP, which the next steps remove.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                // Unknown-to-this-kernel capabilities fail with EINVAL: ignore those.
                let _ = caps::drop(None, CapSet::Bounding, cap);
            }
        }
    }
    let permitted_now = caps::read(None, CapSet::Permitted).map_err(failed("permitted"))?;
    let kept: CapsHashSet = permitted_now.intersection(&keep).copied().collect();
    caps::clear(None, CapSet::Ambient).map_err(failed("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(failed("inheritable"))?;
    caps::set(None, CapSet::Effective, &kept).map_err(failed("effective"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(failed("permitted"))?;
    Ok(kept)
}
