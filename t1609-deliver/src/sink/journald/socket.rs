//! Sending an entry to journald's socket: one datagram, or, when it is too large for one,
//! a sealed memfd passed with `SCM_RIGHTS`. The errors say whether journald is absent.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use tokio::{io::Interest, net::UnixDatagram};

/// Errors of the journald sink.
#[derive(Debug, thiserror::Error)]
pub enum JournaldError {
    #[error("journald: cannot create a datagram socket: {source}")]
    Socket {
        #[source]
        source: io::Error,
    },
    #[error("journald: {socket} is not reachable (journald not running?): {source}")]
    Absent {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journald: sending a {bytes}-byte entry to {socket} failed: {source}")]
    Send {
        socket: PathBuf,
        bytes: usize,
        #[source]
        source: io::Error,
    },
    #[error("journald: memfd for a {bytes}-byte entry: {op} failed: {source}")]
    Memfd {
        op: &'static str,
        bytes: usize,
        #[source]
        source: io::Error,
    },
}

impl JournaldError {
    /// No journald error is permanent: a missing journald is waited for.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        false
    }
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    reason = "AF_UNIX, path bytes and the address length fit their C types"
)]
fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_os_str().as_bytes();
    if b.len() >= sa.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + b.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn memfd_with(data: &[u8]) -> Result<OwnedFd, JournaldError> {
    let err = |op| {
        move |source| JournaldError::Memfd {
            op,
            bytes: data.len(),
            source,
        }
    };
    let name = CString::new("t1609-journal-entry").expect("no NUL");
    // SAFETY: valid C string; flags are constants.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(err("memfd_create")(io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, data).map_err(err("write"))?;
    let fd = OwnedFd::from(file);
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a valid descriptor.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(err("seal")(io::Error::last_os_error()));
    }
    Ok(fd)
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "the size of one C int and its cmsg header fit in u32"
)]
/// Sends no payload and one descriptor (`SCM_RIGHTS`) to `path`.
fn send_fd(sock: libc::c_int, path: &Path, fd: libc::c_int) -> io::Result<()> {
    let (mut sa, salen) = sockaddr(path)?;
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut sa).cast();
    msg.msg_namelen = salen;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
    // SAFETY: msg_control points to a buffer of at least msg_controllen bytes, so
    // CMSG_FIRSTHDR returns a valid, aligned header inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
    }
    // SAFETY: msg is fully initialised and points to live buffers.
    let r = unsafe { libc::sendmsg(sock, &raw const msg, libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR | libc::EACCES)
    )
}

/// The sink's socket, created on first use.
pub(super) fn socket(slot: &mut Option<UnixDatagram>) -> Result<&UnixDatagram, JournaldError> {
    if slot.is_none() {
        let s = UnixDatagram::unbound().map_err(|source| JournaldError::Socket { source })?;
        *slot = Some(s);
    }
    Ok(slot.as_ref().expect("socket set"))
}

/// Sends the encoded entry `buf` to journald's socket at `path`.
pub(super) async fn send(
    sock: &UnixDatagram,
    path: &Path,
    buf: &[u8],
) -> Result<(), JournaldError> {
    let bytes = buf.len();
    let sent_to = |source: io::Error| {
        if is_absent(&source) {
            JournaldError::Absent {
                socket: path.to_path_buf(),
                source,
            }
        } else {
            JournaldError::Send {
                socket: path.to_path_buf(),
                bytes,
                source,
            }
        }
    };
    match sock.send_to(buf, path).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMSGSIZE | libc::ENOBUFS)) => {
            let fd = memfd_with(buf)?;
            let raw = sock.as_raw_fd();
            sock.async_io(Interest::WRITABLE, || send_fd(raw, path, fd.as_raw_fd()))
                .await
                .map_err(sent_to)
        }
        Err(source) => Err(sent_to(source)),
    }
}
