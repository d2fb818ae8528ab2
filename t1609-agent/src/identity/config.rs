//! `[identity]`: the identity stage's settings, each with its default and its check.

use std::path::PathBuf;

/// Settings of the identity stage (`[identity]` in the config file).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Off: the probe reads no file identity, and only names are watched.
    pub enabled: bool,
    /// Files and directories scanned whole for tools at start-up and reload, besides the
    /// usual install directories (which are looked up by tool name).
    pub dirs: Vec<PathBuf>,
    /// The operator's hash lists (t1609-identity/README.md), read at start-up.
    pub hash_lists: Vec<PathBuf>,
    /// Files waiting for classification; a new file past it is skipped (and counted),
    /// and reported again 10 s later.
    pub queue_capacity: usize,
    /// Verdicts kept, in the classifier and in the probe's `VERDICTS` map each.
    pub cache_entries: usize,
    /// Larger files are not hashed (their Go build info and build-id still count).
    pub max_hash_bytes: u64,
    /// How long the first exec of a file reported only for what it is waits for the
    /// verdict before it is evaluated by name and argument shape.
    pub hold_ms: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dirs: Vec::new(),
            hash_lists: Vec::new(),
            queue_capacity: 256,
            cache_entries: 4096,
            max_hash_bytes: 512 << 20,
            hold_ms: 500,
        }
    }
}

/// A value `Config::validate` refuses: key, value, what is allowed.
pub type Rejected = (&'static str, String, &'static str);

impl IdentityConfig {
    /// The first value out of range.
    pub fn check(&self) -> Result<(), Rejected> {
        let bad = |key, value: String, allowed| Err((key, value, allowed));
        if !(1..=65_536).contains(&self.queue_capacity) {
            return bad(
                "identity.queue_capacity",
                self.queue_capacity.to_string(),
                "1 to 65536 files",
            );
        }
        if !(64..=1 << 20).contains(&self.cache_entries) {
            return bad(
                "identity.cache_entries",
                self.cache_entries.to_string(),
                "64 to 1048576 verdicts",
            );
        }
        if !(1 << 20..=1 << 36).contains(&self.max_hash_bytes) {
            return bad(
                "identity.max_hash_bytes",
                self.max_hash_bytes.to_string(),
                "1048576 to 68719476736 bytes",
            );
        }
        if self.hold_ms > 5_000 {
            return bad(
                "identity.hold_ms",
                self.hold_ms.to_string(),
                "0 to 5000 milliseconds",
            );
        }
        for (key, paths) in [
            ("identity.dirs", &self.dirs),
            ("identity.hash_lists", &self.hash_lists),
        ] {
            if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
                return bad(key, p.display().to_string(), "absolute paths");
            }
        }
        Ok(())
    }

    /// Entries of the probe's `VERDICTS` map; `None` turns identity off in the kernel.
    pub fn kernel_entries(&self) -> Option<u32> {
        self.enabled
            .then(|| u32::try_from(self.cache_entries).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_name_the_key() {
        assert!(IdentityConfig::default().check().is_ok());
        for (cfg, key) in [
            (
                IdentityConfig {
                    queue_capacity: 0,
                    ..IdentityConfig::default()
                },
                "identity.queue_capacity",
            ),
            (
                IdentityConfig {
                    cache_entries: 10,
                    ..IdentityConfig::default()
                },
                "identity.cache_entries",
            ),
            (
                IdentityConfig {
                    max_hash_bytes: 1,
                    ..IdentityConfig::default()
                },
                "identity.max_hash_bytes",
            ),
            (
                IdentityConfig {
                    hold_ms: 60_000,
                    ..IdentityConfig::default()
                },
                "identity.hold_ms",
            ),
            (
                IdentityConfig {
                    hash_lists: vec!["hashes.toml".into()],
                    ..IdentityConfig::default()
                },
                "identity.hash_lists",
            ),
        ] {
            assert_eq!(cfg.check().unwrap_err().0, key);
        }
        let off = IdentityConfig {
            enabled: false,
            ..IdentityConfig::default()
        };
        assert_eq!(off.kernel_entries(), None);
        assert_eq!(IdentityConfig::default().kernel_entries(), Some(4096));
    }
}
