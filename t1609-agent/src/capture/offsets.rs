//! Kernel struct member offsets, read from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE field relocations yet, so instead of baking offsets for one
//! kernel build into the object we resolve them here at start-up and hand them to the
//! program as a global. Any kernel with `/sys/kernel/btf/vmlinux` works.

use std::path::{Path, PathBuf};

use t1609_common::{ExeSettings, KernelOffsets};

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

// BTF kinds (include/uapi/linux/btf.h) that the resolver needs by name.
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// Just enough of a BTF reader to find member offsets: the raw file plus one index entry
/// per type. A general BTF library builds every type of vmlinux in memory (about 40 MB
/// of heap at start-up, counted against a `DaemonSet`'s memory limit); this keeps ~6 MB.
struct Btf {
    raw: Vec<u8>,
    /// Start of the type section in `raw`.
    types: usize,
    strings: std::ops::Range<usize>,
    /// Byte position (relative to `types`) of each type; index = type id (0 = void).
    index: Vec<u32>,
}

struct TypeHeader {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    body: usize,
}

impl Btf {
    fn parse(raw: Vec<u8>) -> Result<Self, String> {
        let u32_at = |raw: &[u8], at: usize| -> Result<u32, String> {
            raw.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("truncated at byte {at}"))
        };
        match raw.get(0..2) {
            Some([0x9f, 0xeb]) => {}
            Some([0xeb, 0x9f]) => return Err("big-endian BTF is not supported".into()),
            _ => return Err("not BTF (bad magic)".into()),
        }
        let hdr_len = u32_at(&raw, 4)? as usize;
        let (type_off, type_len) = (u32_at(&raw, 8)? as usize, u32_at(&raw, 12)? as usize);
        let (str_off, str_len) = (u32_at(&raw, 16)? as usize, u32_at(&raw, 20)? as usize);
        let section = |off: usize, len: usize| {
            hdr_len
                .checked_add(off)
                .and_then(|a| a.checked_add(len).map(|b| a..b))
                .filter(|r| r.end <= raw.len())
                .ok_or_else(|| "section outside the file".to_string())
        };
        let types = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut index = vec![0u32];
        let mut pos = 0usize;
        while pos < types.len() {
            index.push(u32::try_from(pos).map_err(|_| "type section too large")?);
            let info = u32_at(&raw, types.start + pos + 4)?;
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                // INT, VAR, DECL_TAG
                1 | 14 | 17 => 4,
                3 => 12, // ARRAY
                // STRUCT, UNION: members; DATASEC: variables; ENUM64: values
                4 | 5 | 15 | 19 => 12 * vlen,
                // ENUM: values; FUNC_PROTO: params
                6 | 13 => 8 * vlen,
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                k => return Err(format!("unknown BTF kind {k} at type {}", index.len() - 1)),
            };
            pos += 12 + extra;
        }
        if pos != types.len() {
            return Err("type section ends inside a type".into());
        }
        Ok(Self {
            types: types.start,
            strings,
            index,
            raw,
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.raw
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = &self.raw[self.strings.clone()];
        let tail = s.get(off as usize..).unwrap_or_default();
        &tail[..tail.iter().position(|&b| b == 0).unwrap_or(tail.len())]
    }

    fn header(&self, id: u32) -> Option<TypeHeader> {
        let at = self.types + *self.index.get(id as usize).filter(|_| id != 0)? as usize;
        let info = self.u32(at + 4)?;
        Some(TypeHeader {
            name_off: self.u32(at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 != 0,
            size_or_type: self.u32(at + 8)?,
            body: at + 12,
        })
    }

    /// The first struct with this name that has members (a forward declaration has none).
    fn struct_id(&self, name: &str) -> Option<u32> {
        let count = u32::try_from(self.index.len()).unwrap_or(u32::MAX);
        (1..count).find(|&id| {
            self.header(id).is_some_and(|h| {
                h.kind == KIND_STRUCT && h.vlen > 0 && self.name(h.name_off) == name.as_bytes()
            })
        })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<TypeHeader> {
        for _ in 0..32 {
            let h = self.header(id)?;
            match h.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = h.size_or_type;
                }
                _ => return Some(h),
            }
        }
        None
    }

    /// Finds `name` in a struct or union, descending into anonymous members. Returns the
    /// member's type id and bit offset, or `Err` for a bitfield.
    fn member(
        &self,
        outer: &TypeHeader,
        name: &[u8],
        depth: u32,
    ) -> Option<Result<(u32, u32), ()>> {
        if depth > 8 || !matches!(outer.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for i in 0..outer.vlen {
            let at = outer.body + 12 * i;
            let (m_name, m_type, m_off) = (self.u32(at)?, self.u32(at + 4)?, self.u32(at + 8)?);
            let (bits, bitfield) = if outer.kind_flag {
                (m_off & 0x00ff_ffff, m_off >> 24 != 0)
            } else {
                (m_off, false)
            };
            let m_name = self.name(m_name);
            if m_name == name {
                return Some(if bitfield {
                    Err(())
                } else {
                    Ok((m_type, bits))
                });
            }
            if m_name.is_empty() {
                let inner = self.resolve(m_type)?;
                if let Some(found) = self.member(&inner, name, depth + 1) {
                    return Some(found.map(|(t, b)| (t, b + bits)));
                }
            }
        }
        None
    }
}

/// Byte offset of `member` (a dotted path through nested members) in `struct type_name`.
fn member_offset(
    btf: &Btf,
    type_name: &'static str,
    member: &'static str,
) -> Result<u32, OffsetError> {
    let no_member = |message: &str| OffsetError::NoMember {
        type_name,
        member,
        message: message.to_owned(),
    };
    let mut cur = btf
        .struct_id(type_name)
        .and_then(|id| btf.header(id))
        .ok_or(OffsetError::NoType { type_name })?;
    let mut bits = 0u32;
    let parts: Vec<&str> = member.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (ty, off) = match btf.member(&cur, part.as_bytes(), 0) {
            Some(Ok(found)) => found,
            Some(Err(())) => return Err(OffsetError::Bitfield { type_name, member }),
            None => return Err(no_member(&format!("no member `{part}`"))),
        };
        bits += off;
        if i + 1 < parts.len() {
            cur = btf
                .resolve(ty)
                .ok_or_else(|| no_member(&format!("`{part}` has no resolvable type")))?;
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(OffsetError::Bitfield { type_name, member });
    }
    Ok(bits / 8)
}

/// Resolves every offset the exec program needs from the BTF file at `path`.
#[cfg(test)]
fn from_btf(path: &Path) -> Result<KernelOffsets, OffsetError> {
    from_parsed(&parse_file(path)?)
}

/// The running kernel's BTF, parsed once for everything start-up asks of it.
pub struct KernelBtf(Btf);

pub fn parse_file(path: &Path) -> Result<KernelBtf, OffsetError> {
    if !path.exists() {
        return Err(OffsetError::NoBtf {
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| OffsetError::Read {
        path: path.to_owned(),
        source,
    })?;
    Btf::parse(bytes)
        .map(KernelBtf)
        .map_err(|message| OffsetError::Parse {
            path: path.to_owned(),
            message,
        })
}

/// The layout the `connect_unix` program assumes for `struct bpf_sock_addr_kern`: the
/// address pointer at byte 8, its length at byte 32 (Linux >= 6.7). An error says what
/// differs; the agent then hooks Unix connects at the syscall instead.
pub fn check_sock_addr_layout(btf: &KernelBtf) -> Result<(), OffsetError> {
    for (member, want) in [("uaddr", 8), ("uaddrlen", 32)] {
        let got = member_offset(&btf.0, "bpf_sock_addr_kern", member)?;
        if got != want {
            return Err(OffsetError::NoMember {
                type_name: "bpf_sock_addr_kern",
                member,
                message: format!("at byte {got}, the program reads byte {want}"),
            });
        }
    }
    Ok(())
}

/// Resolves every offset the exec program needs from parsed BTF.
pub fn from_parsed(btf: &KernelBtf) -> Result<KernelOffsets, OffsetError> {
    let btf = &btf.0;
    let of = |type_name, member| member_offset(btf, type_name, member);
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
        task_cgroups: of("task_struct", "cgroups")?,
        task_fs: of("task_struct", "fs")?,
        fs_pwd_mnt: of("fs_struct", "pwd.mnt")?,
        fs_pwd_dentry: of("fs_struct", "pwd.dentry")?,
    })
}

/// The first of `names` (alternative spellings across kernel versions) that resolves.
fn first_offset(
    btf: &Btf,
    type_name: &'static str,
    names: &[&'static str],
) -> Result<u32, OffsetError> {
    let mut last = None;
    for name in names {
        match member_offset(btf, type_name, name) {
            Ok(o) => return Ok(o),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(OffsetError::NoType { type_name }))
}

/// What the identity check reads of the executed file (`mm->exe_file->f_inode`). Inode
/// times moved across kernels: `i_mtime` (`timespec64`, before 6.6), `__i_mtime` (6.6 to
/// 6.10), then `i_mtime_sec` and `i_mtime_nsec` (6.11); ctime likewise. `seed` is the
/// fingerprint seed, `enabled` 1.
pub fn exe_settings(btf: &KernelBtf, seed: u64) -> Result<ExeSettings, OffsetError> {
    let btf = &btf.0;
    let of = |type_name, member| member_offset(btf, type_name, member);
    let inode = |names: &[&'static str]| first_offset(btf, "inode", names);
    let split_times = member_offset(btf, "inode", "i_ctime_nsec").is_ok();
    Ok(ExeSettings {
        enabled: 1,
        task_mm: of("task_struct", "mm")?,
        mm_exe_file: of("mm_struct", "exe_file")?,
        file_inode: of("file", "f_inode")?,
        inode_sb: of("inode", "i_sb")?,
        sb_dev: of("super_block", "s_dev")?,
        inode_ino: of("inode", "i_ino")?,
        inode_size: of("inode", "i_size")?,
        inode_mtime_sec: inode(&["i_mtime_sec", "__i_mtime.tv_sec", "i_mtime.tv_sec"])?,
        inode_mtime_nsec: inode(&["i_mtime_nsec", "__i_mtime.tv_nsec", "i_mtime.tv_nsec"])?,
        inode_ctime_sec: inode(&["i_ctime_sec", "__i_ctime.tv_sec", "i_ctime.tv_sec"])?,
        inode_ctime_nsec: inode(&["i_ctime_nsec", "__i_ctime.tv_nsec", "i_ctime.tv_nsec"])?,
        nsec_long: u32::from(!split_times),
        pad: 0,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel has every member the identity check reads (6.11+: split times).
    #[test]
    fn running_kernel_exe_settings_resolve() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipping: {VMLINUX_BTF} absent");
            return;
        }
        let btf = parse_file(Path::new(VMLINUX_BTF)).unwrap();
        let e = exe_settings(&btf, 7).unwrap();
        assert_eq!((e.enabled, e.seed), (1, 7));
        assert_eq!(e.task_mm, from_parsed(&btf).unwrap().task_mm);
        assert!(e.inode_ctime_sec > e.inode_mtime_sec, "{e:?}");
        assert!(e.inode_ino < e.inode_size, "{e:?}");
        assert_eq!(e.nsec_long, 0, "{e:?}");
    }

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

    /// Our small resolver against a general BTF library on the running kernel's BTF,
    /// member by member, including nested (`ns.inum`) and anonymous-union members.
    #[test]
    fn resolver_agrees_with_btfparse_on_the_running_kernel() {
        use btfparse::{Offset, Readable, TypeInformation};
        struct Bytes(Vec<u8>);
        impl Readable for Bytes {
            fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
                let start = usize::try_from(offset).map_err(|_| {
                    btfparse::Error::new(btfparse::ErrorKind::IOError, "offset too large")
                })?;
                let src = self.0.get(start..start + buffer.len()).ok_or_else(|| {
                    btfparse::Error::new(btfparse::ErrorKind::IOError, "past the end")
                })?;
                buffer.copy_from_slice(src);
                Ok(())
            }
        }
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipping: {VMLINUX_BTF} absent");
            return;
        }
        let raw = std::fs::read(VMLINUX_BTF).unwrap();
        let oracle = TypeInformation::new(&Bytes(raw.clone())).unwrap();
        let ours = Btf::parse(raw).unwrap();
        let cases: &[(&'static str, &'static str)] = &[
            ("task_struct", "mm"),
            ("task_struct", "real_parent"),
            ("task_struct", "tgid"),
            ("task_struct", "cred"),
            ("task_struct", "signal"),
            ("task_struct", "nsproxy"),
            ("task_struct", "comm"),
            ("task_struct", "pid"),
            ("task_struct", "cgroups"),
            ("task_struct", "fs"),
            ("fs_struct", "pwd.mnt"),
            ("fs_struct", "pwd.dentry"),
            ("mm_struct", "arg_start"),
            ("mm_struct", "arg_end"),
            ("mm_struct", "start_stack"),
            ("cred", "euid"),
            ("cred", "egid"),
            ("signal_struct", "tty"),
            ("tty_struct", "index"),
            ("tty_struct", "name"),
            ("nsproxy", "mnt_ns"),
            ("nsproxy", "pid_ns_for_children"),
            ("mnt_namespace", "ns.inum"),
            ("pid_namespace", "ns.inum"),
            ("sock_common", "skc_dport"),
            ("sock", "__sk_common.skc_family"),
            ("mm_struct", "exe_file"),
            ("file", "f_inode"),
            ("inode", "i_sb"),
            ("inode", "i_ino"),
            ("inode", "i_size"),
            ("super_block", "s_dev"),
        ];
        for &(ty, member) in cases {
            let want = match oracle.offset_of(oracle.id_of(ty).unwrap(), member) {
                Ok((_, Offset::ByteOffset(o))) => o,
                other => panic!("{ty}.{member}: oracle says {other:?}"),
            };
            assert_eq!(
                member_offset(&ours, ty, member).unwrap(),
                want,
                "{ty}.{member}"
            );
        }
        assert!(matches!(
            member_offset(&ours, "task_struct", "no_such_member"),
            Err(OffsetError::NoMember { .. })
        ));
        assert!(matches!(
            member_offset(&ours, "no_such_struct_t1609", "x"),
            Err(OffsetError::NoType { .. })
        ));
    }

    #[test]
    fn truncated_btf_is_a_parse_error_not_a_panic() {
        let raw = std::fs::read(VMLINUX_BTF).unwrap_or_default();
        if raw.len() < 4096 {
            eprintln!("skipping: {VMLINUX_BTF} absent");
            return;
        }
        for cut in [3, 24, 100, 4097, raw.len() / 2, raw.len() - 1] {
            assert!(Btf::parse(raw[..cut].to_vec()).is_err(), "cut at {cut}");
        }
    }
}
