//! Cached uid → user name and gid → group name from `<host_root>/etc/passwd` and
//! `<host_root>/etc/group`, reloaded when a file's mtime, size or inode changes.
//!
//! Lookups run once per exec, so a file is `stat`ed at most once per [`RECHECK`]; a
//! change is seen on the first lookup after that.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// How long a loaded file is trusted without a `stat`.
pub const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct NameFile {
    path: PathBuf,
    /// (mtime ns, size, inode) of the loaded version; `None` = never loaded / missing.
    stamp: Option<(i128, u64, u64)>,
    /// When `stamp` was last compared with the file; `None` before the first lookup.
    checked: Option<Instant>,
    names: HashMap<u32, String>,
}

impl NameFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            ..Default::default()
        }
    }

    fn lookup(&mut self, id: u32, now: Instant) -> Option<String> {
        if self
            .checked
            .is_none_or(|t| now.saturating_duration_since(t) >= RECHECK)
        {
            self.checked = Some(now);
            self.reload_if_changed();
        }
        self.names.get(&id).cloned()
    }

    fn reload_if_changed(&mut self) {
        let stamp = fs::metadata(&self.path).ok().map(|m| {
            (
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                m.size(),
                m.ino(),
            )
        });
        if stamp == self.stamp && stamp.is_some() {
            return;
        }
        self.stamp = stamp;
        self.names = match fs::read_to_string(&self.path) {
            Ok(text) => parse_id_file(&text),
            Err(_) => HashMap::new(),
        };
    }
}

/// Parses passwd/group style lines `name:x:id:…`; the first name for an id wins.
pub fn parse_id_file(text: &str) -> HashMap<u32, String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>() {
            map.entry(id).or_insert_with(|| name.to_string());
        }
    }
    map
}

/// Host user and group names. `host_root` is `/` on the host, or where the host's root is
/// mounted when the agent runs in a container (e.g. `/host`). Nothing is read until the
/// first lookup.
#[derive(Debug)]
pub struct Users {
    passwd: NameFile,
    group: NameFile,
}

impl Users {
    pub fn new(host_root: &Path) -> Self {
        Self {
            passwd: NameFile::new(host_root.join("etc/passwd")),
            group: NameFile::new(host_root.join("etc/group")),
        }
    }

    /// The name of user `uid`, or `None` when `/etc/passwd` has no such user or is
    /// missing.
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        self.passwd.lookup(uid, Instant::now())
    }

    /// The name of group `gid`, or `None` when `/etc/group` has no such group or is
    /// missing.
    pub fn group_name(&mut self, gid: u32) -> Option<String> {
        self.group.lookup(gid, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";

    fn host_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\ndevops:x:2000:alice\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn reloads_on_change() {
        let dir = host_root();
        let mut u = Users::new(dir.path());
        let t0 = Instant::now();
        assert_eq!(u.passwd.lookup(0, t0).as_deref(), Some("root"));
        assert_eq!(u.passwd.lookup(1000, t0).as_deref(), Some("alice"));
        assert_eq!(u.passwd.lookup(1001, t0), None);
        assert_eq!(u.group.lookup(2000, t0).as_deref(), Some("devops"));
        // Rewrite with a new user (size changes, so the reload is certain even with coarse mtime).
        fs::write(
            dir.path().join("etc/passwd"),
            format!("{PASSWD}bob:x:1001:1001::/home/bob:/bin/sh\n"),
        )
        .unwrap();
        assert_eq!(u.passwd.lookup(1001, t0 + RECHECK).as_deref(), Some("bob"));
        // Missing files → None, no panic.
        let mut none = Users::new(&dir.path().join("nope"));
        assert_eq!(none.user_name(0), None);
    }

    #[test]
    fn checks_the_file_at_most_once_per_recheck() {
        let dir = host_root();
        let mut u = Users::new(dir.path());
        let t0 = Instant::now();
        assert_eq!(u.passwd.lookup(1001, t0), None);
        fs::write(
            dir.path().join("etc/passwd"),
            format!("{PASSWD}bob:x:1001:1001::/home/bob:/bin/sh\n"),
        )
        .unwrap();
        // Within RECHECK of the last check: the cache answers, the file is not looked at.
        let soon = t0 + RECHECK.saturating_sub(Duration::from_millis(1));
        assert_eq!(u.passwd.lookup(1001, soon), None);
        assert_eq!(u.passwd.checked, Some(t0));
        // Once RECHECK has passed, the change is seen, and the check time moves on.
        let later = t0 + RECHECK;
        assert_eq!(u.passwd.lookup(1001, later).as_deref(), Some("bob"));
        assert_eq!(u.passwd.checked, Some(later));
        // A file that appears later is picked up the same way.
        let mut late = Users::new(&dir.path().join("late"));
        assert_eq!(late.group.lookup(0, t0), None);
        fs::create_dir_all(dir.path().join("late/etc")).unwrap();
        fs::write(dir.path().join("late/etc/group"), "root:x:0:\n").unwrap();
        assert_eq!(late.group.lookup(0, soon), None);
        assert_eq!(late.group.lookup(0, later).as_deref(), Some("root"));
    }

    #[test]
    fn real_host_root() {
        let mut u = Users::new(Path::new("/"));
        assert_eq!(u.user_name(0).as_deref(), Some("root"));
        assert_eq!(u.group_name(0).as_deref(), Some("root"));
    }
}
