//! How the hot-path thread sleeps. Between bursts: one `ppoll` on the ring buffer's fd and
//! a stop eventfd, with a timeout for the pipeline's timed work. During a burst the reader
//! drains on a tick and only needs to sleep until the next one: a plain `nanosleep`, then
//! a look at the stop flag, without the poll machinery (no fd lookups, no wait queues).
//! No async runtime, no timerfd: a tick costs the one syscall that sleeps.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

/// Tells the hot-path thread to drain what is left and stop. Cheap to fire from any thread:
/// a flag for the tick loop, and an eventfd that ends a `ppoll`.
#[derive(Debug)]
pub struct StopSignal {
    fd: OwnedFd,
    fired: AtomicBool,
}

impl StopSignal {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            fired: AtomicBool::new(false),
        })
    }

    /// Fires the signal; it stays fired (the counter is never read back).
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from an 8-byte buffer to an eventfd we own.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// What ended a [`wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The stop signal fired (checked first: stopping wins over records).
    Stop,
    /// The watched fd is readable.
    Readable,
    /// The timeout passed (or a signal interrupted the sleep).
    Timeout,
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()), // below 10^9: fits
    }
}

/// Sleeps until `fd` is readable, `stop` fires, or `timeout` passes.
pub fn wait(fd: RawFd, stop: &StopSignal, timeout: Duration) -> io::Result<Woken> {
    let mut fds = [
        libc::pollfd {
            fd: stop.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = fds.len() as libc::nfds_t;
    let ts = timespec(timeout);
    // SAFETY: `fds` holds `n` valid pollfd entries; `ts` outlives the call.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), n, &raw const ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(Woken::Timeout)
        } else {
            Err(e)
        };
    }
    let bad = libc::POLLERR | libc::POLLNVAL;
    if let Some(p) = fds.iter().find(|p| p.revents & bad != 0) {
        return Err(io::Error::other(format!(
            "poll reported an error on fd {}",
            p.fd
        )));
    }
    Ok(if fds[0].revents & libc::POLLIN != 0 {
        Woken::Stop
    } else if fds[1].revents & libc::POLLIN != 0 {
        Woken::Readable
    } else {
        Woken::Timeout
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn times_out_then_reports_readable_then_stop() {
        let stop = StopSignal::new().unwrap();
        let (r, w) = {
            let mut p = [0; 2];
            // SAFETY: a two-int array for pipe2.
            assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both fds were just created and are owned only here.
            unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
        };
        let start = Instant::now();
        let woke = wait(r.as_raw_fd(), &stop, Duration::from_millis(3)).unwrap();
        assert_eq!(woke, Woken::Timeout);
        assert!(
            start.elapsed() >= Duration::from_millis(3),
            "slept the timeout"
        );
        // SAFETY: one byte from a one-byte buffer to a pipe we own.
        assert_eq!(
            unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) },
            1
        );
        let woke = wait(r.as_raw_fd(), &stop, Duration::from_secs(5)).unwrap();
        assert_eq!(woke, Woken::Readable);
        assert!(!stop.is_fired());
        stop.fire();
        assert!(stop.is_fired());
        // Stop wins even when the fd is readable too.
        let woke = wait(r.as_raw_fd(), &stop, Duration::from_secs(5)).unwrap();
        assert_eq!(woke, Woken::Stop);
    }
}
