//! The probe's mmapable arrays, mapped into the agent, so a hot-path update is one
//! atomic on shared memory instead of a `bpf()` call (which, with syscall auditing on,
//! costs microseconds).
//!
//! - `LAST_WAKEUP`: the reader stamps it on every poll that finds records, hundreds of
//!   times a second under load.
//! - `TRACKED_COUNT`: the agent uncounts the `TRACKED` entries it removes; the probes
//!   update the same slots with atomic adds.
//! - `QUIET`: the reader's quiet mode and the signatures of the repeats it replays,
//!   written once per replayed exec.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::Map;
use t1609_common::{QUIET_SIGNATURES, TRACKED_SLOTS, quiet_slot, tracked_keys, tracked_slot};

/// A shared mapping of an array map's values (an mmapable array's values start at
/// offset 0 of its fd).
struct MappedArray {
    /// The map the mapping shows; held for as long as the mapping.
    _map: Map,
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics, and unmapped once on drop.
unsafe impl Send for MappedArray {}

impl MappedArray {
    /// Maps the first `bytes` (rounded up to whole pages) of `map`, an array created
    /// with `BPF_F_MMAPABLE` whose values fill at least that much.
    fn new(map: Map, name: &str, bytes: usize) -> io::Result<Self> {
        let Map::Array(data) = &map else {
            return Err(io::Error::other(format!("{name} is not an array map")));
        };
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("cannot read the page size"))?;
        let len = bytes.div_ceil(page) * page;
        // SAFETY: a fresh shared mapping; the kernel checks the fd, length and flags.
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
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            _map: map,
            base,
            len,
        })
    }

    fn u64_at(&self, index: usize) -> &AtomicU64 {
        assert!(
            (index + 1) * 8 <= self.len,
            "index {index} outside the mapping"
        );
        // SAFETY: inside the live, page-aligned mapping, so aligned for a u64; the probe
        // accesses the same bytes, atomically or with plain aligned stores.
        unsafe { self.base.cast::<AtomicU64>().add(index).as_ref() }
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// `LAST_WAKEUP`, the probe's wake-up clock.
pub struct WakeupClock(MappedArray);

impl WakeupClock {
    /// `map`: a one-entry `u64` array created with `BPF_F_MMAPABLE`.
    pub fn new(map: Map) -> io::Result<Self> {
        MappedArray::new(map, "LAST_WAKEUP", 8).map(Self)
    }

    /// Tells the probe a wake-up just happened (`now_ns`: `CLOCK_BOOTTIME`, its clock).
    pub fn stamp(&self, now_ns: u64) {
        self.0.u64_at(0).store(now_ns, Ordering::Relaxed);
    }
}

/// `TRACKED_COUNT`, the counting filter in front of `TRACKED` (see the probe's
/// `tracked` module).
pub struct TrackedCount(MappedArray);

impl TrackedCount {
    /// `map`: the `TRACKED_SLOTS`-entry `u64` array created with `BPF_F_MMAPABLE`.
    pub fn new(map: Map) -> io::Result<Self> {
        MappedArray::new(map, "TRACKED_COUNT", TRACKED_SLOTS as usize * 8).map(Self)
    }

    /// Uncounts a `TRACKED` key the agent has just removed (and only then: a slot that
    /// fell below its keys would hide a tracked task from the probes).
    pub fn uncount(&self, key: u32) {
        self.0
            .u64_at(tracked_slot(key) as usize)
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// The count of one slot (its low half; the high half notes a reported process).
    pub fn slot(&self, slot: u32) -> u64 {
        u64::from(tracked_keys(
            self.0.u64_at(slot as usize).load(Ordering::Relaxed),
        ))
    }

    /// The sum over all slots: the number of `TRACKED` entries, plus any an LRU
    /// eviction removed behind the counts' back.
    pub fn total(&self) -> u64 {
        (0..TRACKED_SLOTS).map(|i| self.slot(i)).sum()
    }
}

/// `QUIET`: slot 0 the mode, then the signatures of replayed repeats (see the probe's
/// `QUIET` map).
pub struct QuietList(MappedArray);

impl QuietList {
    /// `map`: the `1 + QUIET_SIGNATURES`-entry `u64` array created with `BPF_F_MMAPABLE`.
    pub fn new(map: Map) -> io::Result<Self> {
        MappedArray::new(map, "QUIET", (1 + QUIET_SIGNATURES as usize) * 8).map(Self)
    }

    /// Turns the probe's quiet mode on or off. Off also forgets the signatures: a new quiet
    /// spell lists only what it replays.
    pub fn set_mode(&self, on: bool) {
        self.0.u64_at(0).store(u64::from(on), Ordering::Relaxed);
        if !on {
            for slot in 1..=QUIET_SIGNATURES as usize {
                self.0.u64_at(slot).store(0, Ordering::Relaxed);
            }
        }
    }

    /// Lists a replayed exec's signature (`t1609_common::quiet_signature`).
    pub fn list(&self, signature: u64) {
        let slot = self.0.u64_at(quiet_slot(signature) as usize);
        if slot.load(Ordering::Relaxed) != signature {
            slot.store(signature, Ordering::Relaxed);
        }
    }
}
