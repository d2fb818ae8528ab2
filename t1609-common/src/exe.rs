//! The executed file's identity, as the exec probe reads it (`mm->exe_file->f_inode`), and
//! the two maps that say which files are container tools: `INODES` (the installed tools,
//! by device and inode, filled at start-up and reload) and `VERDICTS` (every file the
//! agent classified, by device, inode, size and times, LRU-bounded).
//!
//! A renamed, copied or hard-linked tool has a name the watch set does not know; its file
//! is still the tool. The probe reports the first exec of a file it has no verdict for
//! ([`ExeVerdict::pending`]), the agent classifies that file off the hot path and writes
//! the verdict back, and from then on the file's execs are reported (a tool) or skipped
//! (anything else) at the cost of one map lookup.

/// Key of `VERDICTS`: which file, in which state. Any write to the file or `touch` moves
/// its ctime, so a verdict no longer applies once the content may have changed.
///
/// `dev` is the kernel's own encoding of the file system's device (`sb->s_dev`,
/// `major << 20 | minor`), not the `st_dev` that `stat` returns ([`dev_from_kernel`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExeKey {
    pub dev: u32,
    /// Explicit padding, zeroed by the probe (part of the map key's bytes).
    pub pad: u32,
    pub ino: u64,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Nanoseconds since the epoch.
    pub ctime_ns: i64,
}

const _: () = assert!(size_of::<ExeKey>() == 40);

/// Key of `INODES`: which file, whatever its content (an installed tool updated in place
/// is still that tool).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeKey {
    /// `sb->s_dev`, as in [`ExeKey`].
    pub dev: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    pub ino: u64,
}

const _: () = assert!(size_of::<InodeKey>() == 16);

/// Value of `VERDICTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeVerdict {
    /// [`EXE_NOT_A_TOOL`], [`EXE_PENDING`], or a tool id (t1609-identity's
    /// `ToolSpec::id`, 1..=254).
    pub state: u32,
    /// Explicit padding, zero.
    pub pad: u32,
    /// For [`EXE_PENDING`]: when the probe reported the file (`bpf_ktime_get_boot_ns`).
    pub since_ns: u64,
}

const _: () = assert!(size_of::<ExeVerdict>() == 16);

/// Classified, and not a tool: its execs are not reported for their identity.
pub const EXE_NOT_A_TOOL: u32 = 0;
/// Reported to the agent, verdict not written yet: not reported again until
/// [`EXE_PENDING_RETRY_NS`] has passed.
pub const EXE_PENDING: u32 = u32::MAX;
/// A pending entry older than this is treated as absent: the file is reported again. This
/// covers a report the agent never saw (ring buffer full), a job its queue skipped and a
/// process gone before the agent could open its file, without the agent having to clear
/// anything.
pub const EXE_PENDING_RETRY_NS: u64 = 10_000_000_000;

impl ExeVerdict {
    /// A verdict the agent writes: a tool id, or [`EXE_NOT_A_TOOL`].
    pub const fn known(state: u32) -> Self {
        Self {
            state,
            pad: 0,
            since_ns: 0,
        }
    }

    /// What the probe writes when it reports a file at `now_ns`.
    pub const fn pending(now_ns: u64) -> Self {
        Self {
            state: EXE_PENDING,
            pad: 0,
            since_ns: now_ns,
        }
    }

    /// Whether a pending entry has waited long enough for the file to be reported again.
    #[inline(always)]
    #[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
    pub const fn pending_expired(&self, now_ns: u64) -> bool {
        self.state == EXE_PENDING && now_ns.saturating_sub(self.since_ns) > EXE_PENDING_RETRY_NS
    }
}

// SAFETY: plain-old-data with explicit padding fields, no pointers.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ExeKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for InodeKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ExeVerdict {}

/// Slots of `EXE_KNOWN`, the probe's first answer for files classified as not tools: a
/// direct-mapped array of their [`exe_fingerprint`]s, 32 KiB, small enough for the kernel
/// to allocate it in its linear map. Every exec on the host asks it, and a `VERDICTS`
/// lookup (a hash bucket and an element in vmalloc'ed memory, cold after an exec: two TLB
/// and cache misses, ~300 ns on the build VM) is paid only when it does not answer.
pub const EXE_KNOWN_SLOTS: u32 = 4096;

const _: () = assert!(EXE_KNOWN_SLOTS.is_power_of_two());

/// A keyed 64-bit fingerprint of a file's identity, never 0 (an empty `EXE_KNOWN` slot):
/// inode, size and both times, in nanoseconds. The device is left out: loading `s_dev`
/// would read another cache line on every exec, and two files that share the other four
/// (down to the nanosecond of a ctime nobody can set) are the same copy. The seed is
/// random per agent start, so a file cannot be made to share another's fingerprint on
/// purpose; by chance, two of the few thousand files a host runs share one with odds near
/// 2^-40.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn exe_fingerprint(words: [u64; 4], seed: u64) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < words.len() {
        h = (h ^ words[i]).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 29;
        i += 1;
    }
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    (h ^ (h >> 32)) | 1
}

/// The `EXE_KNOWN` slot of a fingerprint (its top bits).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
#[expect(clippy::cast_possible_truncation, reason = "the top 12 bits")]
pub const fn exe_known_slot(fingerprint: u64) -> u32 {
    (fingerprint >> (64 - EXE_KNOWN_SLOTS.trailing_zeros())) as u32
}

/// The first word of a comm starting with `kubectl-` (a kubectl plugin: `kubectl-<name>`
/// on PATH, often a script, reported whatever the watch set says).
pub const PLUGIN_KUBECTL_WORD: u64 = u64::from_le_bytes(*b"kubectl-");
/// The first seven bytes of a comm starting with `docker-` (a docker CLI plugin), in the
/// first word masked with [`PLUGIN_DOCKER_MASK`].
pub const PLUGIN_DOCKER_WORD: u64 = u64::from_le_bytes(*b"docker-\0");
pub const PLUGIN_DOCKER_MASK: u64 = 0x00FF_FFFF_FFFF_FFFF;

/// Whether a comm (first word, little-endian) names a kubectl or docker CLI plugin.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: inlined, no bpf-to-bpf call")]
pub const fn plugin_comm(first_word: u64) -> bool {
    first_word == PLUGIN_KUBECTL_WORD || first_word & PLUGIN_DOCKER_MASK == PLUGIN_DOCKER_WORD
}

/// The kernel's `dev_t` (`MAJOR << 20 | MINOR`, 12 + 20 bits) as `stat` encodes it
/// (glibc's `makedev`).
pub fn dev_from_kernel(kdev: u32) -> u64 {
    let (major, minor) = (u64::from(kdev >> 20), u64::from(kdev & 0xF_FFFF));
    ((major & 0xFFF) << 8) | (minor & 0xFF) | ((minor & !0xFF) << 12)
}

/// `stat`'s `st_dev` in the kernel's encoding; `None` when its major or minor do not fit
/// the kernel's 12 and 20 bits (no such device exists).
pub fn dev_to_kernel(dev: u64) -> Option<u32> {
    let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & !0xFFF);
    let minor = (dev & 0xFF) | ((dev >> 12) & !0xFF);
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    u32::try_from((major << 20) | minor).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_encodings_round_trip() {
        // /dev/vda (254:0), an anonymous device (0:35), a large minor, the limits.
        for (major, minor) in [
            (254u32, 0u32),
            (0, 35),
            (8, 300),
            (259, 65_537),
            (4095, 0xF_FFFF),
        ] {
            let kdev = (major << 20) | minor;
            let dev = dev_from_kernel(kdev);
            // glibc's gnu_dev_makedev, written out.
            let (ma, mi) = (u64::from(major), u64::from(minor));
            let want =
                ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
            assert_eq!(dev, want, "{major}:{minor}");
            assert_eq!(dev_to_kernel(dev), Some(kdev), "{major}:{minor}");
        }
        assert_eq!(dev_from_kernel(254 << 20), 0xFE00);
        assert_eq!(dev_to_kernel(1 << 44), None, "major past 12 bits");
    }

    #[test]
    fn plugin_names_by_their_first_word() {
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            let n = s.len().min(8);
            w[..n].copy_from_slice(&s[..n]);
            u64::from_le_bytes(w)
        };
        assert!(plugin_comm(word(b"kubectl-node_sh")));
        assert!(plugin_comm(word(b"docker-debug")));
        assert!(plugin_comm(word(b"docker-")));
        assert!(!plugin_comm(word(b"kubectl")));
        assert!(!plugin_comm(word(b"docker")));
        assert!(!plugin_comm(word(b"dockerd")));
        assert!(!plugin_comm(word(b"Docker-x")));
    }

    #[test]
    fn fingerprints_depend_on_every_field_and_the_seed() {
        let k = [42, 7, 1, 2];
        let f = exe_fingerprint(k, 5);
        assert_ne!(f, 0);
        assert!(exe_known_slot(f) < EXE_KNOWN_SLOTS);
        for i in 0..k.len() {
            let mut other = k;
            other[i] ^= 1;
            assert_ne!(exe_fingerprint(other, 5), f, "{other:?}");
        }
        assert_ne!(exe_fingerprint(k, 6), f);
        assert_eq!(exe_fingerprint(k, 5), f);
    }

    #[test]
    fn pending_entries_expire() {
        let p = ExeVerdict::pending(1_000);
        assert!(!p.pending_expired(1_000 + EXE_PENDING_RETRY_NS));
        assert!(p.pending_expired(1_001 + EXE_PENDING_RETRY_NS));
        assert!(!ExeVerdict::known(3).pending_expired(u64::MAX));
        assert!(
            !p.pending_expired(0),
            "a clock before the stamp is not expiry"
        );
    }
}
