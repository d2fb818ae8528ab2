//! The installed container tools: found at start-up and on reload under their names in
//! the usual directories, and every executable in the directories the operator
//! configures. Their (device, inode) pairs fill the kernel's inode watch map; their
//! build-ids and hashes let a copy be known for what it is.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    classify::{Classifier, ClassifyError, How, Learned, Target, Tool},
    key::FileKey,
    tools::{self, NameCheck, TOOLS},
};

/// Where container tools are installed by packages and installers. Only the tools'
/// own names are looked up here (a few dozen `stat`s), not every file.
pub const USUAL_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/opt/bin",
    "/snap/bin",
    "/usr/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/local/lib/docker/cli-plugins",
    "/usr/libexec/podman",
    "/var/lib/rancher/k3s/data/current/bin",
];

/// A configured directory is read whole, up to this many entries.
pub const MAX_DIR_ENTRIES: usize = 10_000;

/// One installed tool file.
#[derive(Clone, Debug, Serialize)]
pub struct Installed {
    /// The path it was found at (a symlink is followed; `key` is its target's).
    pub path: PathBuf,
    pub key: FileKey,
    pub tool: Tool,
    /// How the name it was found under compares with the tool's names (an installed
    /// `kubectl` that is k3s is `Renamed`: a multi-call applet link is `Own`).
    pub name_check: NameCheck,
}

/// The result of one scan.
#[derive(Debug, Default)]
pub struct Inventory {
    pub installed: Vec<Installed>,
    /// Files that could not be classified (named, with why).
    pub problems: Vec<ClassifyError>,
}

impl Inventory {
    /// Scans `USUAL_DIRS` (by tool name) and `configured` paths (a file: classified; a
    /// directory: every executable regular file in it), classifies each file found, and
    /// teaches `classifier` the build-ids and hashes of the installed tools.
    pub fn scan(classifier: &Classifier, configured: &[PathBuf]) -> Inventory {
        let mut inv = Inventory::default();
        let mut learned = Learned::default();
        let mut seen = BTreeSet::new();
        for dir in USUAL_DIRS {
            for spec in TOOLS {
                for name in spec.names {
                    let p = Path::new(dir).join(name);
                    if fs::symlink_metadata(&p).is_ok() {
                        inv.add(classifier, &mut learned, &mut seen, &p);
                    }
                }
            }
        }
        for c in configured {
            match fs::metadata(c) {
                Ok(m) if m.is_dir() => match fs::read_dir(c) {
                    Ok(rd) => {
                        for e in rd.flatten().take(MAX_DIR_ENTRIES) {
                            let p = e.path();
                            let exec = fs::metadata(&p)
                                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                            if exec {
                                inv.add(classifier, &mut learned, &mut seen, &p);
                            }
                        }
                    }
                    Err(source) => inv.problems.push(ClassifyError::Open {
                        path: c.clone(),
                        source,
                    }),
                },
                Ok(_) => inv.add(classifier, &mut learned, &mut seen, c),
                Err(source) => inv.problems.push(ClassifyError::Open {
                    path: c.clone(),
                    source,
                }),
            }
        }
        classifier.set_learned(learned);
        inv
    }

    fn add(
        &mut self,
        classifier: &Classifier,
        learned: &mut Learned,
        seen: &mut BTreeSet<FileKey>,
        path: &Path,
    ) {
        // Hashing a tool its Go build info names would teach nothing (a changed copy
        // has another hash): hash only the others.
        let v = classifier
            .verdict_hashed(Target::Path(path), false)
            .and_then(|v| match &v.tool {
                Some(t) if t.how == How::GoBuildInfo => Ok(v),
                _ => classifier.verdict_hashed(Target::Path(path), true),
            });
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                self.problems.push(e);
                return;
            }
        };
        let file_name = path.file_name().map_or(&[][..], |n| n.as_bytes());
        let by_name = tools::spec_by_file_name(file_name);
        // Content decides (Go build info, the operator's list). A hash learnt from an
        // installed file on an earlier scan is learnt again, so a reload keeps it.
        let learnt_earlier = |t: &Tool| {
            t.source
                .as_deref()
                .is_some_and(|s| s.starts_with("installed:"))
        };
        let content = v.tool.clone().filter(|t| !learnt_earlier(t));
        let tool = match (content, by_name) {
            (Some(t), _) => t,
            (None, Some(spec)) => {
                learned.add(spec, &v, path);
                Tool {
                    name: spec.name,
                    module: None,
                    version: None,
                    how: How::Installed,
                    source: Some(format!("installed:{}", path.display())),
                }
            }
            // A configured directory may hold anything: only tools are listed.
            (None, None) => match v.tool {
                Some(t) => t,
                None => return,
            },
        };
        if !seen.insert(v.key) {
            return;
        }
        let name_check = tool
            .spec()
            .map_or(NameCheck::Renamed, |s| tools::check_name(s, file_name));
        self.installed.push(Installed {
            path: path.to_path_buf(),
            key: v.key,
            tool,
            name_check,
        });
    }

    /// The (device, inode) of every installed tool whose execs the kernel should
    /// report (clients and runtimes), with the tool's id, for the inode watch map.
    pub fn watch_entries(&self) -> Vec<(u64, u64, u8)> {
        let mut out: Vec<(u64, u64, u8)> = self
            .installed
            .iter()
            .filter_map(|i| {
                let spec = i.tool.spec()?;
                spec.watched().then(|| (i.key.dev, i.key.ino, spec.id()))
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The (device, inode) pairs of [`watch_entries`](Self::watch_entries).
    pub fn dev_inos(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .watch_entries()
            .iter()
            .map(|&(d, i, _)| (d, i))
            .collect();
        v.dedup();
        v
    }
}
