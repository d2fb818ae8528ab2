//! Dropping privilege once the probes are attached.
//!
//! Loading and attaching eBPF needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN), and mounting
//! tracefs CAP_SYS_ADMIN; after that, everything the agent does with the kernel objects
//! goes through file descriptors it already holds (ring buffer, map updates on reload,
//! program info), which needs no capability. What it keeps:
//! - CAP_SYS_PTRACE: `readlink /proc/<pid>/exe`, `/proc/<pid>/cwd` and `/proc/<pid>/ns/*`
//!   of other users' and more privileged processes (the kernel's ptrace read check);
//! - CAP_DAC_READ_SEARCH: reading `/proc/<pid>/` entries of processes whose files are
//!   not world-readable.
//!
//! Everything else leaves the effective, permitted, inheritable and ambient sets, and
//! the bounding set when CAP_SETPCAP allows it, so an exploited agent cannot regain it.

use caps::{CapSet, Capability, CapsHashSet};

pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("dropping capabilities from the {set} set failed: {source}")]
    Drop {
        set: &'static str,
        source: caps::errors::CapsError,
    },
}

/// Drops every capability but [`KEPT`]; returns what remains effective.
pub fn drop_after_attach() -> Result<CapsHashSet, PrivilegeError> {
    let keep: CapsHashSet = KEPT.into_iter().collect();
    // Bounding first: it needs CAP_SETPCAP, which the next steps remove.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            if !keep.contains(&cap) {
                // Unknown-to-this-kernel capabilities fail with EINVAL: ignore those.
                let _ = caps::drop(None, CapSet::Bounding, cap);
            }
        }
    }
    let permitted_now =
        caps::read(None, CapSet::Permitted).map_err(|source| PrivilegeError::Drop {
            set: "permitted",
            source,
        })?;
    let kept: CapsHashSet = permitted_now.intersection(&keep).copied().collect();
    caps::clear(None, CapSet::Ambient).map_err(|source| PrivilegeError::Drop {
        set: "ambient",
        source,
    })?;
    caps::clear(None, CapSet::Inheritable).map_err(|source| PrivilegeError::Drop {
        set: "inheritable",
        source,
    })?;
    caps::set(None, CapSet::Effective, &kept).map_err(|source| PrivilegeError::Drop {
        set: "effective",
        source,
    })?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|source| PrivilegeError::Drop {
        set: "permitted",
        source,
    })?;
    Ok(kept)
}
