//! The reader's drain timer: a periodic timerfd, polled through the same epoll instance as
//! the ring buffer. A tokio timer re-armed every millisecond from the pipeline's thread
//! unparks that thread's driver at each re-arm (an eventfd write and an extra epoll round
//! per tick); a timerfd is armed once per burst and only costs the wake-up itself.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

pub struct PollTimer {
    fd: OwnedFd,
    armed: bool,
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

impl PollTimer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, armed: false })
    }

    fn set(&mut self, period: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(period),
            it_value: timespec(period),
        };
        // SAFETY: valid fd and pointer; a zero period disarms.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        self.armed = !period.is_zero();
        Ok(())
    }

    /// Ticks every `period` from now on; no-op when already ticking.
    pub fn start(&mut self, period: Duration) -> io::Result<()> {
        if self.armed {
            return Ok(());
        }
        self.set(period)
    }

    pub fn stop(&mut self) -> io::Result<()> {
        if !self.armed {
            return Ok(());
        }
        self.set(Duration::ZERO)
    }

    /// Consumes the expirations counted so far (none is fine).
    pub fn acknowledge(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer; EAGAIN when nothing expired.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    }
}

impl AsRawFd for PollTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn expirations(t: &PollTimer) -> u64 {
        let mut count = [0u8; 8];
        // SAFETY: as in `acknowledge`.
        let n = unsafe { libc::read(t.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        if n == 8 { u64::from_ne_bytes(count) } else { 0 }
    }

    #[test]
    fn ticks_while_started_and_not_after_stop() {
        let mut t = PollTimer::new().unwrap();
        assert_eq!(expirations(&t), 0, "not armed yet");
        t.start(Duration::from_millis(1)).unwrap();
        assert!(t.armed);
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let n = expirations(&t);
        let most = start.elapsed().as_millis() as u64 + 1;
        assert!((5..=most).contains(&n), "{n} ticks in ~20 ms");
        t.stop().unwrap();
        assert!(!t.armed);
        t.acknowledge();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(expirations(&t), 0, "stopped");
    }
}
