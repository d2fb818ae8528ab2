//! Writing an alert straight from the thread that submits it.
//!
//! Handing an alert to a sink's worker task wakes a thread: on a VM that costs 20–30 µs
//! of CPU before any work, more than building the alert. So while a sink is healthy and
//! its worker has nothing queued, the dispatcher writes each alert itself, without
//! blocking, through the sink's [`DirectWrite`]; the moment a write could block or fails,
//! that alert and the ones after it go to the worker as before (queue, spool, retry), and
//! the worker opens the direct lane again once it has caught up.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// What became of a direct write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// The whole line was handed over.
    Written,
    /// Nothing was written: it could block, or the sink is down. The worker takes it.
    Busy,
}

/// A sink's non-blocking writer of one JSON line (the alert's JSON plus `\n`).
pub trait DirectWrite: Send {
    fn try_write(&mut self, json: &[u8]) -> Direct;
}

/// How an fd can be written to without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file or `/dev/null`: a write never waits for a reader.
    Plain,
    /// A pipe: written through a non-blocking description of its own, in writes of at
    /// most `PIPE_BUF` bytes, which the kernel makes all-or-nothing.
    Pipe,
}

/// What kind of fd `fd` is, if lines can be written to it without blocking; `None` for a
/// terminal, a socket or anything else (those go through the worker).
pub fn fd_kind(fd: RawFd) -> Option<FdKind> {
    // SAFETY: fstat fills the struct on success; it is read only then.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &raw mut st) } != 0 {
        return None;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Some(FdKind::Plain),
        // /dev/null (major 1, minor 3): what a service's discarded stdout usually is.
        libc::S_IFCHR if st.st_rdev == libc::makedev(1, 3) => Some(FdKind::Plain),
        libc::S_IFIFO => Some(FdKind::Pipe),
        _ => None,
    }
}

/// A new open file description of the pipe behind `fd`, non-blocking: the original
/// stays blocking for whoever else writes through it.
fn nonblocking_reopen(fd: RawFd) -> Option<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    // SAFETY: a valid C string; the result is checked and owned below.
    let new = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    // SAFETY: `new` is a fresh fd owned only here.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}

/// `json` and a newline, as two iovecs over live buffers the kernel only reads.
fn line_iov(json: &[u8]) -> [libc::iovec; 2] {
    [
        libc::iovec {
            iov_base: json.as_ptr().cast_mut().cast(),
            iov_len: json.len(),
        },
        libc::iovec {
            iov_base: b"\n".as_ptr().cast_mut().cast(),
            iov_len: 1,
        },
    ]
}

/// Writes `json` and a newline to `fd` with one `writev`; the bytes written.
pub fn write_line(fd: RawFd, json: &[u8]) -> io::Result<usize> {
    let iov = line_iov(json);
    // SAFETY: two iovecs over live buffers; the kernel only reads them.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Sends `json` and a newline on a stream socket without blocking; the bytes sent.
pub fn send_line(fd: RawFd, json: &[u8]) -> io::Result<usize> {
    let mut iov = line_iov(json);
    // SAFETY: a zeroed msghdr with only the iovecs set, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 2;
    // SAFETY: as above; MSG_NOSIGNAL turns a closed peer into EPIPE, not SIGPIPE.
    let n = unsafe { libc::sendmsg(fd, &raw const msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A direct writer for an fd the sink owns (stdout, a file).
pub struct FdWriter<F: AsRawFd + Send> {
    fd: F,
    /// For a pipe: its own non-blocking description.
    pipe: Option<OwnedFd>,
}

impl<F: AsRawFd + Send> FdWriter<F> {
    /// `None` when `fd` is not something [`fd_kind`] accepts.
    pub fn new(fd: F) -> Option<Self> {
        let pipe = match fd_kind(fd.as_raw_fd())? {
            FdKind::Plain => None,
            FdKind::Pipe => Some(nonblocking_reopen(fd.as_raw_fd())?),
        };
        Some(Self { fd, pipe })
    }
}

impl<F: AsRawFd + Send> DirectWrite for FdWriter<F> {
    fn try_write(&mut self, json: &[u8]) -> Direct {
        let len = json.len() + 1;
        let fd = match &self.pipe {
            // Longer writes to a non-blocking pipe may go out in part.
            Some(_) if len > libc::PIPE_BUF => return Direct::Busy,
            Some(p) => p.as_raw_fd(),
            None => self.fd.as_raw_fd(),
        };
        match write_line(fd, json) {
            Ok(n) if n == len => Direct::Written,
            // Nothing written (a full pipe), or a short write to a plain file (a full
            // disk): the worker writes it whole or reports the sink down.
            _ => Direct::Busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut p = [0; 2];
        // SAFETY: a two-int array for pipe2.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds were just created and are owned only here.
        unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
    }

    #[test]
    fn a_full_pipe_is_busy_and_never_blocks_and_long_lines_go_to_the_worker() {
        let (r, w) = pipe();
        let mut writer = FdWriter::new(w).expect("a pipe is accepted");
        let line = vec![b'x'; 1000];
        let mut written = 0usize;
        while writer.try_write(&line) == Direct::Written {
            written += 1;
            assert!(written < 10_000, "a 64 KiB pipe cannot take that much");
        }
        assert!(written > 10, "a pipe takes some lines: {written}");
        // Read it all: lines fit again; one longer than PIPE_BUF never goes directly.
        let mut buf = vec![0u8; 1 << 20];
        // SAFETY: reads into a live buffer of that length.
        let got = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(
            usize::try_from(got).unwrap(),
            written * 1001,
            "every line whole"
        );
        assert_eq!(writer.try_write(&line), Direct::Written);
        assert_eq!(writer.try_write(&vec![b'y'; libc::PIPE_BUF]), Direct::Busy);
    }

    #[test]
    fn files_and_dev_null_are_plain_and_sockets_are_not_accepted() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(fd_kind(f.as_raw_fd()), Some(FdKind::Plain));
        let null = std::fs::File::options()
            .write(true)
            .open("/dev/null")
            .unwrap();
        assert_eq!(fd_kind(null.as_raw_fd()), Some(FdKind::Plain));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(fd_kind(a.as_raw_fd()), None);
        let mut w = FdWriter::new(f.try_clone().unwrap()).unwrap();
        assert_eq!(w.try_write(b"{\"a\":1}"), Direct::Written);
        assert_eq!(
            std::fs::read_to_string(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap(),
            "{\"a\":1}\n"
        );
    }
}
