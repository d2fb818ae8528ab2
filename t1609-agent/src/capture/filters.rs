//! The kernel-side filters the agent fills: the watch set (`WATCH`, and its prefilter
//! bitmap `WATCH_BITS`), the ports (`PORTS`), the runtime socket paths (`UNIX_PATHS`) and
//! the session seeds (`SESSION_SEEDS`), and the keys they are indexed by.

use std::{collections::BTreeSet, path::Path};

use aya::maps::HashMap as BpfHashMap;
use t1609_common::{
    COMM_LEN, UNIX_PATH_LEN, UnixPathKey, WATCH_FILTER_BITS, WatchKey, watch_filter_bit,
};

use super::{Capture, CaptureError, CaptureOptions};

/// The key of an executable name in `WATCH` and `SESSION_SEEDS`: the kernel's comm, which
/// keeps the first 15 bytes (the agent re-checks the full name).
pub fn watch_key(name: &str) -> Result<WatchKey, CaptureError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(CaptureError::BadWatchName {
            name: name.to_owned(),
        });
    }
    let mut key = [0u8; COMM_LEN];
    let n = bytes.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    Ok(key)
}

/// The key of a socket path in `UNIX_PATHS`.
pub fn unix_path_key(path: &Path) -> Result<UnixPathKey, CaptureError> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= UNIX_PATH_LEN || bytes.contains(&0) {
        return Err(CaptureError::BadSocketPath {
            path: path.to_owned(),
        });
    }
    let mut key = [0u8; UNIX_PATH_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Ok(key)
}

/// The probe's prefilter words for a set of names: bit `watch_filter_bit(name)` of each.
fn watch_bits(keys: &BTreeSet<WatchKey>) -> Vec<u32> {
    let mut words = vec![0u32; (WATCH_FILTER_BITS / 32) as usize];
    for key in keys {
        let bit = watch_filter_bit(key);
        words[(bit / 32) as usize] |= 1 << (bit % 32);
    }
    words
}

/// Inserts every key of `keys` into the hash map `name` with value 1.
fn fill<K: aya::Pod>(
    capture: &mut Capture,
    name: &'static str,
    keys: impl IntoIterator<Item = Result<K, CaptureError>>,
) -> Result<(), CaptureError> {
    let map = capture
        .ebpf
        .map_mut(name)
        .ok_or(CaptureError::MissingMap(name))?;
    let mut map: BpfHashMap<_, K, u8> =
        BpfHashMap::try_from(map).map_err(CaptureError::map(name))?;
    for key in keys {
        map.insert(key?, 1, 0).map_err(CaptureError::map(name))?;
    }
    Ok(())
}

impl Capture {
    /// Fills the ports, socket paths and session seeds (before attaching, so the first
    /// event is already filtered).
    pub(super) fn fill_filters(&mut self, opts: &CaptureOptions) -> Result<(), CaptureError> {
        fill(self, "PORTS", opts.ports.iter().map(|p| Ok(*p)))?;
        fill(
            self,
            "UNIX_PATHS",
            opts.unix_paths.iter().map(|p| unix_path_key(p)),
        )?;
        fill(
            self,
            "SESSION_SEEDS",
            opts.session_seeds.iter().map(|n| watch_key(n)),
        )
    }

    /// Replaces the watch set in place: adds new names first, then removes old ones, so
    /// a name present in both sets is never missing, and nothing is detached. A name's
    /// prefilter bit is set before it is added and cleared only after it is removed.
    pub fn set_watch(&mut self, names: &BTreeSet<String>) -> Result<(), CaptureError> {
        let keys = names
            .iter()
            .map(|n| watch_key(n))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let new_bits = watch_bits(&keys);
        let both: Vec<u32> = (self.watch_words.iter().zip(&new_bits))
            .map(|(held, new)| held | new)
            .collect();
        self.write_watch_bits(&both)?;
        for key in keys.difference(&self.watched) {
            self.watch
                .insert(key, 1, 0)
                .map_err(CaptureError::map("WATCH"))?;
        }
        for key in self.watched.difference(&keys) {
            self.watch.remove(key).map_err(CaptureError::map("WATCH"))?;
        }
        self.watched = keys;
        self.write_watch_bits(&new_bits)
    }

    /// Writes the prefilter words that differ from what the map holds.
    fn write_watch_bits(&mut self, to: &[u32]) -> Result<(), CaptureError> {
        for (index, (held, new)) in (0u32..).zip(self.watch_words.iter_mut().zip(to)) {
            if *held != *new {
                self.watch_bits
                    .set(index, *new, 0)
                    .map_err(CaptureError::map("WATCH_BITS"))?;
                *held = *new;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_keys_truncate_like_comm() {
        let k = watch_key("containerd-shim-runc-v2").unwrap();
        assert_eq!(&k[..15], b"containerd-shim");
        assert_eq!(k[15], 0);
        assert_eq!(&watch_key("docker").unwrap()[..7], b"docker\0");
        assert!(watch_key("").is_err());
        assert!(watch_key("a/b").is_err());
    }

    #[test]
    fn socket_path_keys_are_bounded() {
        assert_eq!(
            &unix_path_key(Path::new("/run/x.sock")).unwrap()[..12],
            b"/run/x.sock\0"
        );
        assert!(unix_path_key(Path::new("")).is_err());
        assert!(unix_path_key(Path::new(&"/a".repeat(60))).is_err());
    }

    #[test]
    fn each_name_sets_its_prefilter_bit() {
        let keys: BTreeSet<WatchKey> = ["docker", "kubectl"]
            .iter()
            .map(|n| watch_key(n).unwrap())
            .collect();
        let words = watch_bits(&keys);
        for k in &keys {
            let bit = watch_filter_bit(k);
            assert_ne!(words[(bit / 32) as usize] & (1 << (bit % 32)), 0);
        }
        assert!(words.iter().map(|w| w.count_ones()).sum::<u32>() <= 2);
    }
}
