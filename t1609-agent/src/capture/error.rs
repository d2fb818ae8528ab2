//! What can stop the capture stage, each with what went wrong.

use std::path::PathBuf;

use t1609_common::UNIX_PATH_LEN;

use super::offsets::OffsetError;
use crate::privilege::PrivilegeError;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
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

impl CaptureError {
    /// A failed map operation on `name`.
    pub(super) fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map { name, source }
    }
}
