//! The probe's wake-up clock (`LAST_WAKEUP`), mapped into the agent. The reader stamps
//! it on every poll that finds records; through the mapping that is one store instead of
//! a bpf() call, which with syscall auditing on costs microseconds, hundreds of times a
//! second under load.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::Map;

pub struct WakeupClock {
    /// The map the mapping shows; held for as long as the mapping.
    _map: Map,
    slot: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is only written through an atomic, and unmapped once on drop.
unsafe impl Send for WakeupClock {}

impl WakeupClock {
    /// Maps slot 0 of `map`, a one-entry `u64` array created with `BPF_F_MMAPABLE`.
    pub fn new(map: Map) -> io::Result<Self> {
        let Map::Array(data) = &map else {
            return Err(io::Error::other("LAST_WAKEUP is not an array map"));
        };
        // SAFETY: sysconf has no preconditions.
        let len = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("cannot read the page size"))?;
        // SAFETY: a fresh shared mapping of the map's first page (an mmapable array's
        // values start at offset 0); the kernel checks the fd, length and flags.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let slot = NonNull::new(addr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            _map: map,
            slot,
            len,
        })
    }

    /// Tells the probe a wake-up just happened (`now_ns`: CLOCK_BOOTTIME, its clock).
    pub fn stamp(&self, now_ns: u64) {
        // SAFETY: the mapping is live for self's lifetime and page-aligned, so aligned
        // for a u64; the probe reads and writes the same 8 bytes.
        unsafe { self.slot.as_ref() }.store(now_ns, Ordering::Relaxed);
    }
}

impl Drop for WakeupClock {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe { libc::munmap(self.slot.as_ptr().cast(), self.len) };
    }
}
