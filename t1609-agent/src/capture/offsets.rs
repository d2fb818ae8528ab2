//! Kernel struct member offsets, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE field relocations yet, so instead of baking offsets for one
//! kernel build into the object we resolve them here at start-up and hand them to the
//! program as a global. Any kernel with `/sys/kernel/btf/vmlinux` works.

use std::path::{Path, PathBuf};

use btfparse::{Offset, Readable, TypeInformation};
use t1609_common::KernelOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "kernel BTF not found at {path}: t1609-agent needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux >= 5.8 with BTF, as on current Debian, Ubuntu, RHEL and Fedora kernels)"
    )]
    NoBtf { path: PathBuf },
    #[error("cannot read kernel BTF {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse kernel BTF {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("kernel BTF has no type `{type_name}`")]
    NoType { type_name: &'static str },
    #[error("kernel BTF: cannot resolve `{type_name}.{member}`: {message}")]
    NoMember {
        type_name: &'static str,
        member: &'static str,
        message: String,
    },
    #[error("kernel BTF: `{type_name}.{member}` is a bitfield, not a readable member")]
    Bitfield {
        type_name: &'static str,
        member: &'static str,
    },
}

struct BtfBytes(Vec<u8>);

impl Readable for BtfBytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buffer.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(src) => {
                buffer.copy_from_slice(src);
                Ok(())
            }
            None => Err(btfparse::Error::new(
                btfparse::ErrorKind::IOError,
                "read past the end of the BTF data",
            )),
        }
    }
}

/// Resolves every offset the exec program needs from the BTF file at `path`.
pub fn from_btf(path: &Path) -> Result<KernelOffsets, OffsetError> {
    if !path.exists() {
        return Err(OffsetError::NoBtf {
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| OffsetError::Read {
        path: path.to_owned(),
        source,
    })?;
    let info = TypeInformation::new(&BtfBytes(bytes)).map_err(|e| OffsetError::Parse {
        path: path.to_owned(),
        message: format!("{e:?}"),
    })?;
    let of = |type_name: &'static str, member: &'static str| -> Result<u32, OffsetError> {
        let tid = info
            .id_of(type_name)
            .ok_or(OffsetError::NoType { type_name })?;
        match info.offset_of(tid, member) {
            Ok((_, Offset::ByteOffset(off))) => Ok(off),
            Ok((_, Offset::BitOffsetAndSize(..))) => {
                Err(OffsetError::Bitfield { type_name, member })
            }
            Err(e) => Err(OffsetError::NoMember {
                type_name,
                member,
                message: format!("{e:?}"),
            }),
        }
    };
    // loginuid exists only with CONFIG_AUDIT; its absence is reported per event.
    let loginuid = of("task_struct", "loginuid").ok();
    Ok(KernelOffsets {
        task_mm: of("task_struct", "mm")?,
        task_real_parent: of("task_struct", "real_parent")?,
        task_tgid: of("task_struct", "tgid")?,
        task_cred: of("task_struct", "cred")?,
        task_loginuid: loginuid.unwrap_or(0),
        task_signal: of("task_struct", "signal")?,
        task_nsproxy: of("task_struct", "nsproxy")?,
        task_comm: of("task_struct", "comm")?,
        mm_arg_start: of("mm_struct", "arg_start")?,
        mm_arg_end: of("mm_struct", "arg_end")?,
        mm_start_stack: of("mm_struct", "start_stack")?,
        cred_euid: of("cred", "euid")?,
        cred_egid: of("cred", "egid")?,
        signal_tty: of("signal_struct", "tty")?,
        tty_index: of("tty_struct", "index")?,
        tty_name: of("tty_struct", "name")?,
        nsproxy_mnt_ns: of("nsproxy", "mnt_ns")?,
        nsproxy_pid_ns: of("nsproxy", "pid_ns_for_children")?,
        mnt_ns_inum: of("mnt_namespace", "ns.inum")?,
        pid_ns_inum: of("pid_namespace", "ns.inum")?,
        valid: 1,
        has_loginuid: u32::from(loginuid.is_some()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = from_btf(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn garbage_btf_is_a_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinux");
        std::fs::write(&p, b"not btf at all").unwrap();
        assert!(matches!(from_btf(&p), Err(OffsetError::Parse { .. })));
    }

    /// Runs wherever the kernel exposes BTF (no privilege needed to read it).
    #[test]
    fn running_kernel_offsets_resolve() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipping: {VMLINUX_BTF} absent");
            return;
        }
        let off = from_btf(Path::new(VMLINUX_BTF)).unwrap();
        assert_eq!(off.valid, 1);
        assert!(off.mm_arg_end == off.mm_arg_start + 8, "{off:?}");
        assert!(off.task_mm > 0 && off.task_real_parent > 0 && off.task_cred > 0);
    }
}
