//! Cached uid → user name and gid → group name from `<host_root>/etc/passwd` and
//! `<host_root>/etc/group`, reloaded when a file's mtime, size or inode changes.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
struct NameFile {
    path: PathBuf,
    /// (mtime ns, size, inode) of the loaded version; `None` = never loaded / missing.
    stamp: Option<(i128, u64, u64)>,
    names: HashMap<u32, String>,
}

impl NameFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            ..Default::default()
        }
    }

    fn lookup(&mut self, id: u32) -> Option<String> {
        self.reload_if_changed();
        self.names.get(&id).cloned()
    }

    fn reload_if_changed(&mut self) {
        let stamp = fs::metadata(&self.path).ok().map(|m| {
            (
                m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
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
/// mounted when the agent runs in a container (e.g. `/host`).
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

    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        self.passwd.lookup(uid)
    }

    pub fn group_name(&mut self, gid: u32) -> Option<String> {
        self.group.lookup(gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\ndevops:x:2000:alice\n",
        )
        .unwrap();
        let mut u = Users::new(dir.path());
        assert_eq!(u.user_name(0).as_deref(), Some("root"));
        assert_eq!(u.user_name(1000).as_deref(), Some("alice"));
        assert_eq!(u.user_name(1001), None);
        assert_eq!(u.group_name(2000).as_deref(), Some("devops"));
        // Rewrite with a new user (size changes, so the reload is certain even with coarse mtime).
        fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n").unwrap();
        assert_eq!(u.user_name(1001).as_deref(), Some("bob"));
        // Missing files → None, no panic.
        let mut none = Users::new(&dir.path().join("nope"));
        assert_eq!(none.user_name(0), None);
    }

    #[test]
    fn real_host_root() {
        let mut u = Users::new(Path::new("/"));
        assert_eq!(u.user_name(0).as_deref(), Some("root"));
        assert_eq!(u.group_name(0).as_deref(), Some("root"));
    }
}
