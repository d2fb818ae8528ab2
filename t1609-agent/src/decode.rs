//! Kernel records → typed events.
//!
//! Every record is checked for length and version before a field is read, and read with
//! `read_unaligned` (ring-buffer samples carry no alignment promise to Rust). Continuation
//! records are joined to their exec record by `(tgid, ktime_ns)`.

use std::{collections::HashMap, mem::offset_of};

use t1609_common::{
    ARGV_CHUNK_LEN, ARGV_MAX_CHUNKS, ARGV_MAX_TOTAL, AncestorSlot, ArgvChunkRecord, COMM_LEN,
    ExeKey, ExecRecord, KIND_ARGV_CHUNK, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_NET, MAX_ANCESTORS,
    NetRecord, PATH_LEN, RECORD_VERSION, RecordHeader, TTY_NAME_LEN, TaskRecord, flags, net_kind,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte {what}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("record version {found}, this agent decodes version {expected}")]
    Version { found: u16, expected: u16 },
    #[error("unknown record kind {kind}")]
    Kind { kind: u16 },
    #[error("{field} = {value} exceeds its buffer of {max} bytes")]
    Length {
        field: &'static str,
        value: u32,
        max: usize,
    },
    #[error("argv chunk {seq} at offset {offset} for tgid {tgid} has no pending exec record")]
    OrphanChunk { tgid: u32, seq: u32, offset: u32 },
}

/// A task's comm (at most 15 bytes) kept inline: an exec carries up to eight of them, and
/// a heap copy each cost as much as decoding the rest of the record.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm {
    bytes: [u8; COMM_LEN],
    len: u8,
}

impl Comm {
    /// Keeps the first [`COMM_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Self {
        let len = bytes.len().min(COMM_LEN);
        let mut c = Self::default();
        c.bytes[..len].copy_from_slice(&bytes[..len]);
        c.len = u8::try_from(len).expect("COMM_LEN fits a u8");
        c
    }
}

impl std::ops::Deref for Comm {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

/// One exec as the kernel reported it, argv joined from all its records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "the record's flags, each a named field the pipeline tests"
)]
pub struct CapturedExec {
    pub ktime_ns: u64,
    pub tgid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// `None` when unset (`(uid_t)-1`) or unknown.
    pub loginuid: Option<u32>,
    pub pid_ns: u32,
    pub mnt_ns: u32,
    pub cgroup_id: u64,
    /// Address of the task's `css_set` at the exec (an identity, never dereferenced).
    pub css_set: u64,
    /// The `css_set` was the parent's at the exec: same cgroups in every hierarchy.
    pub same_cgroups_as_parent: bool,
    /// (vfsmount, dentry) identity of the working directory at the exec, (0, 0) if unknown.
    pub pwd: (u64, u64),
    /// The working directory was the parent's at the exec.
    pub same_cwd_as_parent: bool,
    pub tty: Option<Tty>,
    pub comm: Comm,
    pub filename: Vec<u8>,
    /// argc read from the new image's stack; 0 when it could not be read.
    pub argc: u32,
    pub argv_total_len: u32,
    /// Raw argv bytes, NUL-separated, as captured (at most 32 KiB).
    pub argv: Vec<u8>,
    /// argv exceeded the capture cap.
    pub truncated: bool,
    /// Some captured argv bytes were lost (a continuation record was dropped or unreadable).
    pub incomplete: bool,
    pub argv_read_failed: bool,
    /// Injected-session id, 0 outside a session.
    pub session: u64,
    /// This exec (runc/crun/nsenter) started the session.
    pub session_root: bool,
    /// (tgid, comm) of the ancestors at exec time, parent first.
    pub ancestors: Vec<(u32, Comm)>,
    /// The executed file as the probe saw it; `None` when it read no identity.
    pub exe: Option<ExeSeen>,
}

/// The executed file (`mm->exe_file`: for a `#!` script, its interpreter) and what the
/// kernel's maps said about it at the exec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeSeen {
    pub key: ExeKey,
    /// The tool `VERDICTS` or `INODES` say it is (t1609-identity's tool id), 0 for none.
    pub tool: u32,
    /// The first report of a file with no verdict: the agent should classify it.
    pub first: bool,
    /// Reported only for what its file is, not for its name, a session or capture-all.
    pub by_identity: bool,
}

/// A `connect()` to a watched port or runtime socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedNet {
    pub ktime_ns: u64,
    pub tgid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub cgroup_id: u64,
    pub session: u64,
    pub comm: Vec<u8>,
    pub destination: Destination,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Tcp(std::net::SocketAddr),
    Unix(Vec<u8>),
}

/// Fork or exit of a process in a tracked session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    pub ktime_ns: u64,
    pub tgid: u32,
    pub parent_tgid: Option<u32>,
    pub session: u64,
    pub exited: bool,
    pub comm: Comm,
}

/// Everything the capture stage hands on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Captured {
    Exec(Box<CapturedExec>),
    Net(CapturedNet),
    Task(TaskEvent),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tty {
    pub index: u32,
    pub name: String,
}

impl CapturedExec {
    /// argv split on NUL. A trailing NUL ends the last argument; an argv cut by the cap
    /// keeps its partial last argument.
    pub fn args(&self) -> Vec<&[u8]> {
        if self.argv.is_empty() {
            return Vec::new();
        }
        let body = self.argv.strip_suffix(&[0]).unwrap_or(&self.argv);
        body.split(|b| *b == 0).collect()
    }
}

/// A decoded ring-buffer record.
#[derive(Debug)]
pub enum Record {
    Exec(Box<CapturedExec>, u32),
    Other(Captured),
    Chunk {
        tgid: u32,
        ktime_ns: u64,
        offset: u32,
        bytes: Vec<u8>,
        failed: bool,
    },
}

fn read<T: Copy>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let at = at::<T>(bytes, what)?;
    // SAFETY: `at` checked the length; T is a plain repr(C) type valid for any bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(at) })
}

/// A pointer to the `T` at the start of `bytes`, once `bytes` is known to hold one. Its
/// fields must be read with `read_unaligned`.
fn at<T>(bytes: &[u8], what: &'static str) -> Result<*const T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            need,
        });
    }
    Ok(bytes.as_ptr().cast::<T>())
}

/// Reads field `f` of the record at `rec` (a pointer from [`at`]) in place: copying a
/// whole 4.6 KiB record first cost more than the rest of its decode.
macro_rules! field {
    ($rec:ident . $($f:tt).+) => {
        // SAFETY: `at` checked that the sample holds the whole record; the field is read
        // unaligned, without forming a reference.
        unsafe { std::ptr::addr_of!((*$rec).$($f).+).read_unaligned() }
    };
}

/// `value` of length field `field`, if it fits its `max`-byte buffer.
fn bounded(field: &'static str, value: u32, max: usize) -> Result<u32, DecodeError> {
    if value as usize > max {
        return Err(DecodeError::Length { field, value, max });
    }
    Ok(value)
}

fn nul_trimmed(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    &buf[..end]
}

/// Decodes one ring-buffer sample.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode_reusing(bytes, &mut Vec::new())
}

/// `bytes` copied into `buf`, reusing its allocation.
fn refill<T: Clone>(mut buf: Vec<T>, bytes: &[T]) -> Vec<T> {
    buf.clear();
    buf.extend_from_slice(bytes);
    buf
}

/// An exec record (its argv's first chunk included), built into a spare when there is one.
#[expect(
    clippy::vec_box,
    reason = "the boxes are what is reused: Captured holds one"
)]
fn decode_exec(
    bytes: &[u8],
    header: &RecordHeader,
    spares: &mut Vec<Box<CapturedExec>>,
) -> Result<Record, DecodeError> {
    let rec = at::<ExecRecord>(bytes, "exec record")?;
    let argv_len = bounded("argv_len", field!(rec.argv_len), ARGV_CHUNK_LEN)?;
    let filename_len = bounded("filename_len", field!(rec.filename_len), PATH_LEN)?;
    let chunks = bounded("chunks", field!(rec.chunks), ARGV_MAX_CHUNKS)?;
    let f = header.flags;
    let tty = (f & flags::HAS_TTY != 0).then(|| {
        let name: [u8; TTY_NAME_LEN] = field!(rec.tty_name);
        Tty {
            index: field!(rec.tty_index),
            name: String::from_utf8_lossy(nul_trimmed(&name)).into_owned(),
        }
    });
    let loginuid: u32 = field!(rec.loginuid);
    let loginuid = (f & flags::NO_LOGINUID == 0 && loginuid != u32::MAX).then_some(loginuid);
    let comm: [u8; COMM_LEN] = field!(rec.comm);
    let ancestors: [AncestorSlot; MAX_ANCESTORS] = field!(rec.ancestors);
    let filename = &bytes[offset_of!(ExecRecord, filename)..][..filename_len as usize];
    let argv = &bytes[offset_of!(ExecRecord, argv)..][..argv_len as usize];
    let known = ancestors.iter().take_while(|a| a.tgid != 0).count();
    let mut ancestor_buf = [(0u32, Comm::default()); MAX_ANCESTORS];
    for (slot, a) in ancestor_buf.iter_mut().zip(&ancestors[..known]) {
        *slot = (a.tgid, Comm::new(nul_trimmed(&a.comm)));
    }
    let mut boxed = spares.pop().unwrap_or_default();
    let old = std::mem::take(&mut *boxed);
    *boxed = CapturedExec {
        ktime_ns: header.ktime_ns,
        tgid: header.tgid,
        pid: header.pid,
        ppid: field!(rec.ppid),
        uid: field!(rec.uid),
        gid: field!(rec.gid),
        euid: field!(rec.euid),
        egid: field!(rec.egid),
        loginuid,
        pid_ns: field!(rec.pid_ns),
        mnt_ns: field!(rec.mnt_ns),
        cgroup_id: field!(rec.cgroup_id),
        css_set: field!(rec.css_set),
        same_cgroups_as_parent: f & flags::SAME_CGROUPS_AS_PARENT != 0,
        pwd: (field!(rec.pwd_mnt), field!(rec.pwd_dentry)),
        same_cwd_as_parent: f & flags::SAME_CWD_AS_PARENT != 0,
        tty,
        comm: Comm::new(nul_trimmed(&comm)),
        filename: refill(old.filename, nul_trimmed(filename)),
        argc: field!(rec.argc),
        argv_total_len: field!(rec.argv_total_len),
        argv: refill(old.argv, argv),
        truncated: f & flags::ARGV_TRUNCATED != 0,
        incomplete: f & flags::ARGV_CHUNK_LOST != 0,
        argv_read_failed: f & flags::ARGV_READ_FAILED != 0,
        session: field!(rec.session),
        session_root: f & flags::SESSION_ROOT != 0,
        ancestors: refill(old.ancestors, &ancestor_buf[..known]),
        exe: (f & flags::EXE_UNREAD == 0).then(|| ExeSeen {
            key: field!(rec.exe),
            tool: field!(rec.exe_tool),
            first: f & flags::EXE_FIRST != 0,
            by_identity: f & flags::BY_IDENTITY != 0,
        }),
    };
    Ok(Record::Exec(boxed, chunks))
}

/// [`decode`], building an exec into one of `spares` (handled execs given back) instead
/// of new allocations: every field is rewritten, and the vectors keep only their capacity.
#[expect(
    clippy::vec_box,
    reason = "the boxes are what is reused: Captured holds one"
)]
fn decode_reusing(
    bytes: &[u8],
    spares: &mut Vec<Box<CapturedExec>>,
) -> Result<Record, DecodeError> {
    let header: RecordHeader = read(bytes, "record header")?;
    if header.version != RECORD_VERSION {
        return Err(DecodeError::Version {
            found: header.version,
            expected: RECORD_VERSION,
        });
    }
    match header.kind {
        KIND_EXEC => decode_exec(bytes, &header, spares),
        KIND_ARGV_CHUNK => {
            let rec = at::<ArgvChunkRecord>(bytes, "argv chunk record")?;
            let len = bounded("len", field!(rec.len), ARGV_CHUNK_LEN)?;
            Ok(Record::Chunk {
                tgid: header.tgid,
                ktime_ns: header.ktime_ns,
                offset: field!(rec.offset),
                bytes: bytes[offset_of!(ArgvChunkRecord, argv)..][..len as usize].to_vec(),
                failed: header.flags & flags::ARGV_READ_FAILED != 0,
            })
        }
        KIND_NET => {
            let rec: NetRecord = read(bytes, "net record")?;
            let destination = match rec.net_kind {
                net_kind::TCP4 => {
                    let ip = std::net::Ipv4Addr::new(
                        rec.daddr[0],
                        rec.daddr[1],
                        rec.daddr[2],
                        rec.daddr[3],
                    );
                    Destination::Tcp(std::net::SocketAddr::new(ip.into(), rec.dport))
                }
                net_kind::TCP6 => Destination::Tcp(std::net::SocketAddr::new(
                    std::net::Ipv6Addr::from(rec.daddr).into(),
                    rec.dport,
                )),
                net_kind::UNIX => Destination::Unix(nul_trimmed(&rec.path).to_vec()),
                other => return Err(DecodeError::Kind { kind: other }),
            };
            Ok(Record::Other(Captured::Net(CapturedNet {
                ktime_ns: rec.header.ktime_ns,
                tgid: rec.header.tgid,
                pid: rec.header.pid,
                ppid: rec.ppid,
                uid: rec.uid,
                cgroup_id: rec.cgroup_id,
                session: rec.session,
                comm: nul_trimmed(&rec.comm).to_vec(),
                destination,
            })))
        }
        KIND_FORK | KIND_EXIT => {
            let rec: TaskRecord = read(bytes, "task record")?;
            Ok(Record::Other(Captured::Task(TaskEvent {
                ktime_ns: rec.header.ktime_ns,
                tgid: rec.header.tgid,
                parent_tgid: (header.kind == KIND_FORK).then_some(rec.parent_tgid),
                session: rec.session,
                exited: header.kind == KIND_EXIT,
                comm: Comm::new(nul_trimmed(&rec.comm)),
            })))
        }
        kind => Err(DecodeError::Kind { kind }),
    }
}

struct Pending {
    exec: Box<CapturedExec>,
    remaining: u32,
}

/// Joins exec records with their continuation records. The kernel reserves the exec
/// record first, so it always precedes its chunks in the ring; other CPUs' records may
/// sit in between.
#[derive(Default)]
pub struct Assembler {
    pending: HashMap<(u32, u64), Pending>,
    /// Records that could not be decoded.
    pub decode_errors: u64,
    /// Chunks with no exec record (should not happen; counted, never silent).
    pub orphan_chunks: u64,
    /// Execs flushed incomplete because too many were waiting for their chunks.
    pub evicted_incomplete: u64,
    /// Handled execs given back by [`Assembler::recycle`], decoded into again: a watched
    /// exec then costs no allocation in the decoder.
    #[expect(
        clippy::vec_box,
        reason = "the boxes are what is reused: Captured holds one"
    )]
    spare: Vec<Box<CapturedExec>>,
}

/// Spare execs kept: more than a drain tick's worth at the highest exec rates.
const MAX_SPARE: usize = 64;
/// An argv buffer grown past this (a long command line) is not kept for reuse.
const SPARE_ARGV_CAPACITY: usize = 4096;

/// At most this many execs wait for their chunks; older ones are flushed as incomplete.
const MAX_PENDING: usize = 4096;

impl Assembler {
    /// Feeds one sample; returns what it completes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Captured>, DecodeError> {
        let record = match decode_reusing(bytes, &mut self.spare) {
            Ok(r) => r,
            Err(e) => {
                self.decode_errors += 1;
                return Err(e);
            }
        };
        match record {
            Record::Other(c) => Ok(Some(c)),
            Record::Exec(exec, 0) => Ok(Some(Captured::Exec(exec))),
            Record::Exec(exec, chunks) => {
                if self.pending.len() >= MAX_PENDING {
                    // Cannot happen with a well-behaved kernel side; bound memory anyway,
                    // dropping the oldest waiting exec and counting it.
                    if let Some(oldest) = self.pending.keys().min_by_key(|(_, t)| *t).copied() {
                        self.pending.remove(&oldest);
                        self.evicted_incomplete += 1;
                    }
                }
                self.pending.insert(
                    (exec.tgid, exec.ktime_ns),
                    Pending {
                        exec,
                        remaining: chunks,
                    },
                );
                Ok(None)
            }
            Record::Chunk {
                tgid,
                ktime_ns,
                offset,
                bytes,
                failed,
            } => {
                let Some(p) = self.pending.get_mut(&(tgid, ktime_ns)) else {
                    self.orphan_chunks += 1;
                    return Err(DecodeError::OrphanChunk {
                        tgid,
                        seq: 0,
                        offset,
                    });
                };
                // Chunks arrive in order; a gap means one was unreadable.
                if failed || offset as usize != p.exec.argv.len() {
                    p.exec.incomplete = true;
                }
                if !failed
                    && offset as usize == p.exec.argv.len()
                    && p.exec.argv.len() + bytes.len() <= ARGV_MAX_TOTAL
                {
                    p.exec.argv.extend_from_slice(&bytes);
                }
                p.remaining -= 1;
                if p.remaining == 0 {
                    let done = self.pending.remove(&(tgid, ktime_ns)).expect("present");
                    return Ok(Some(Captured::Exec(done.exec)));
                }
                Ok(None)
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Empties `handled`, keeping its exec records for the next decodes.
    pub fn recycle(&mut self, handled: &mut Vec<Captured>) {
        for c in handled.drain(..) {
            if let Captured::Exec(exec) = c
                && self.spare.len() < MAX_SPARE
                && exec.argv.capacity() <= SPARE_ARGV_CAPACITY
            {
                self.spare.push(exec);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn as_bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: test helper viewing a repr(C) value as bytes.
        unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref::<T>(v).cast::<u8>(), size_of::<T>())
        }
        .to_vec()
    }

    pub fn exec_record(tgid: u32, argv: &[u8], total: usize, chunks: u32) -> Vec<u8> {
        // SAFETY: all-zero is a valid ExecRecord.
        let mut rec: ExecRecord = unsafe { std::mem::zeroed() };
        rec.header = RecordHeader {
            version: RECORD_VERSION,
            kind: KIND_EXEC,
            flags: 0,
            ktime_ns: 42,
            tgid,
            pid: tgid,
        };
        rec.ppid = 1;
        rec.loginuid = u32::MAX;
        let n = argv.len().min(ARGV_CHUNK_LEN);
        rec.argv[..n].copy_from_slice(&argv[..n]);
        rec.argv_len = u32::try_from(n).unwrap();
        rec.argv_total_len = u32::try_from(total).unwrap();
        rec.chunks = chunks;
        let path = b"/usr/bin/docker";
        rec.filename[..path.len()].copy_from_slice(path);
        rec.filename_len = u32::try_from(path.len()).unwrap();
        rec.comm[..6].copy_from_slice(b"docker");
        as_bytes(&rec)
    }

    pub fn chunk_record(tgid: u32, seq: u32, bytes: &[u8]) -> Vec<u8> {
        // SAFETY: all-zero is a valid ArgvChunkRecord.
        let mut rec: ArgvChunkRecord = unsafe { std::mem::zeroed() };
        rec.header = RecordHeader {
            version: RECORD_VERSION,
            kind: KIND_ARGV_CHUNK,
            flags: 0,
            ktime_ns: 42,
            tgid,
            pid: tgid,
        };
        rec.seq = seq;
        rec.offset = seq * u32::try_from(ARGV_CHUNK_LEN).unwrap();
        rec.len = u32::try_from(bytes.len()).unwrap();
        rec.argv[..bytes.len()].copy_from_slice(bytes);
        as_bytes(&rec)
    }

    /// An exec decoded into a recycled one equals a fresh decode, field for field: a long
    /// argv, a tty and eight ancestors leave nothing behind in a short exec without them.
    #[test]
    fn recycled_exec_keeps_nothing_of_the_previous_one() {
        let rich = {
            let mut rec: ExecRecord = read(
                &exec_record(7, b"docker\0exec\0-it\0c1\0sh\0", 24, 0),
                "exec",
            )
            .unwrap();
            rec.header.flags = flags::HAS_TTY | flags::SAME_CWD_AS_PARENT | flags::ARGV_TRUNCATED;
            rec.tty_index = 3;
            rec.tty_name[..5].copy_from_slice(b"pts/3");
            for (i, slot) in rec.ancestors.iter_mut().enumerate() {
                slot.tgid = 100 + u32::try_from(i).unwrap();
                slot.comm[..4].copy_from_slice(b"bash");
            }
            rec.session = 99;
            as_bytes(&rec)
        };
        let plain = exec_record(8, b"ls\0", 3, 0);
        let fresh = match decode(&plain).unwrap() {
            Record::Exec(e, 0) => e,
            other => panic!("{other:?}"),
        };
        let mut asm = Assembler::default();
        let mut handled = vec![asm.push(&rich).unwrap().unwrap()];
        asm.recycle(&mut handled);
        assert!(handled.is_empty());
        assert_eq!(asm.spare.len(), 1);
        // Other records do not use up the spare.
        assert!(asm.push(&chunk_record(9, 1, b"x")).is_err());
        assert_eq!(asm.spare.len(), 1);
        let reused = match asm.push(&plain).unwrap() {
            Some(Captured::Exec(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(asm.spare.is_empty());
        assert_eq!(reused, fresh);
        assert!(reused.tty.is_none() && reused.ancestors.is_empty() && !reused.truncated);
        assert_eq!(reused.argv, b"ls\0");
        // Long argv buffers are not kept.
        let mut long = vec![Captured::Exec(Box::new(CapturedExec {
            argv: vec![b'a'; SPARE_ARGV_CAPACITY + 1],
            ..Default::default()
        }))];
        asm.recycle(&mut long);
        assert!(asm.spare.is_empty());
    }

    #[test]
    fn decodes_exec_and_splits_argv() {
        let argv = b"docker\0exec\0-it\0\0c1\0/bin/sh\0";
        let mut asm = Assembler::default();
        let Some(Captured::Exec(exec)) = asm.push(&exec_record(7, argv, argv.len(), 0)).unwrap()
        else {
            panic!()
        };
        assert_eq!(exec.filename, b"/usr/bin/docker");
        assert_eq!(exec.loginuid, None);
        let args: Vec<&[u8]> = exec.args();
        assert_eq!(
            args,
            vec![&b"docker"[..], b"exec", b"-it", b"", b"c1", b"/bin/sh"]
        );
    }

    #[test]
    fn the_executed_files_identity_decodes_unless_unread() {
        let mut rec: ExecRecord = read(&exec_record(7, b".x\0", 3, 0), "exec").unwrap();
        rec.header.flags = flags::EXE_FIRST | flags::BY_IDENTITY;
        rec.exe = ExeKey {
            dev: 254 << 20,
            ino: 42,
            ..ExeKey::default()
        };
        rec.exe_tool = 1;
        let Record::Exec(e, _) = decode(&as_bytes(&rec)).unwrap() else {
            panic!()
        };
        let seen = e.exe.unwrap();
        assert_eq!(
            (seen.key.ino, seen.tool, seen.first, seen.by_identity),
            (42, 1, true, true)
        );
        rec.header.flags = flags::EXE_UNREAD;
        let Record::Exec(e, _) = decode(&as_bytes(&rec)).unwrap() else {
            panic!()
        };
        assert_eq!(e.exe, None);
    }

    #[test]
    fn short_and_wrong_version_records_are_errors() {
        assert!(matches!(decode(&[0u8; 3]), Err(DecodeError::Short { .. })));
        let mut rec = exec_record(1, b"a\0", 2, 0);
        rec[0] = 99;
        assert_eq!(
            decode(&rec).unwrap_err(),
            DecodeError::Version {
                found: 99,
                expected: RECORD_VERSION
            }
        );
        let rec = exec_record(1, b"a\0", 2, 0);
        assert!(matches!(
            decode(&rec[..100]),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn oversized_lengths_are_rejected_not_trusted() {
        let mut rec = exec_record(1, b"a\0", 2, 0);
        let off = std::mem::offset_of!(ExecRecord, argv_len);
        rec[off..off + 4].copy_from_slice(&100_000u32.to_ne_bytes());
        assert!(matches!(
            decode(&rec),
            Err(DecodeError::Length {
                field: "argv_len",
                ..
            })
        ));
    }

    #[test]
    fn chunks_join_in_order() {
        let head = vec![b'a'; ARGV_CHUNK_LEN];
        let tail = b"bbb\0";
        let mut asm = Assembler::default();
        assert!(
            asm.push(&exec_record(9, &head, ARGV_CHUNK_LEN + 4, 1))
                .unwrap()
                .is_none()
        );
        assert_eq!(asm.pending(), 1);
        let Some(Captured::Exec(exec)) = asm.push(&chunk_record(9, 1, tail)).unwrap() else {
            panic!()
        };
        assert_eq!(exec.argv.len(), ARGV_CHUNK_LEN + 4);
        assert!(exec.argv.ends_with(b"bbb\0"));
        assert!(!exec.incomplete);
        assert_eq!(asm.pending(), 0);
    }

    #[test]
    fn chunk_count_beyond_the_kernel_cap_is_rejected() {
        let rec = exec_record(5, b"a\0", 2, u32::try_from(ARGV_MAX_CHUNKS + 1).unwrap());
        assert!(matches!(
            decode(&rec),
            Err(DecodeError::Length {
                field: "chunks",
                ..
            })
        ));
    }

    #[test]
    fn orphan_chunk_is_counted() {
        let mut asm = Assembler::default();
        assert!(asm.push(&chunk_record(3, 1, b"x")).is_err());
        assert_eq!(asm.orphan_chunks, 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut asm = Assembler::default();
        let mut seed = 0x1234_5678_u64;
        for len in [0usize, 1, 23, 24, 25, 100, 4471, 4472, 4473, 5000] {
            let mut buf = vec![0u8; len];
            for b in &mut buf {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                *b = seed.to_be_bytes()[0];
            }
            if len >= 4 {
                buf[0..2].copy_from_slice(&RECORD_VERSION.to_ne_bytes());
                buf[2..4].copy_from_slice(&u16::try_from(len % 3).unwrap().to_ne_bytes());
            }
            let _ = asm.push(&buf);
        }
    }
}
