//! Classification: what an executable file is, decided from its content, and the bounded
//! cache of verdicts keyed by [`FileKey`].
//!
//! In order, the first that answers decides:
//! 1. the Go build info's main package (`github.com/docker/cli/cmd/docker` is docker);
//! 2. the ELF build-id, in the operator's hash list or learned from the installed tools;
//! 3. the sha256, likewise.
//!
//! The file's name plays no part: a copy, hard link or rename is the same content.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io,
    num::NonZeroUsize,
    os::unix::fs::{FileExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError, RwLock},
};

use lru::LruCache;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{
    elf::{self, ElfFacts},
    hashlist::{HashList, Origin},
    key::FileKey,
    tools::{self, ToolSpec},
};

/// Why a file could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a regular file", path.display())]
    NotRegular { path: PathBuf },
}

/// How the tool was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    GoBuildInfo,
    BuildId,
    Sha256,
    /// An installed file found under one of the tool's names in a system or configured
    /// directory, whose content names nothing (C tools).
    Installed,
}

/// A recognised container tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tool {
    /// Canonical name (`docker`, `kubectl`, `ctr`, …).
    pub name: &'static str,
    /// The Go main package (or module) that built it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub how: How,
    /// For a hash or build-id match: which list entry (`file:line`) or installed file
    /// (`installed:/usr/bin/nsenter`) it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Tool {
    /// The tool's table entry (its names, role and kernel id).
    pub fn spec(&self) -> Option<&'static ToolSpec> {
        tools::spec(self.name)
    }
}

/// What kind of file it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Elf,
    /// `#!` script; the interpreter line, as written.
    Script {
        interpreter: String,
    },
    Other,
}

/// Everything classification learnt about one state of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub key: FileKey,
    pub kind: FileKind,
    /// `None`: not a known tool.
    pub tool: Option<Tool>,
    /// Lower-case hex; `None` when the file is larger than the hashing limit.
    pub sha256: Option<String>,
    /// `gnu:<hex>` or `go:<id>`.
    pub build_id: Option<String>,
    /// The Go main package of any Go program, tool or not.
    pub go_path: Option<String>,
}

/// Limits that keep classification cheap whatever the file.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Larger files are not hashed (their build info and build-id still count).
    pub max_hash_bytes: u64,
    /// Verdicts kept (least recently used first out).
    pub cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_hash_bytes: 512 << 20,
            cache_entries: 4096,
        }
    }
}

/// Hashes and build-ids of the installed tools, learnt at start-up and reload.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    sha256: HashMap<String, (&'static ToolSpec, String)>,
    build_id: HashMap<String, (&'static ToolSpec, String)>,
    /// The sizes of the files behind `sha256`: a file of another size cannot match.
    sizes: std::collections::HashSet<u64>,
}

impl Learned {
    /// Remembers that an installed file (found under its tool name in a system or
    /// configured directory) is `spec`, so that copies of it are known by build-id and
    /// hash even when its content names nothing (C tools: nsenter, crun, conmon).
    pub(crate) fn add(&mut self, spec: &'static ToolSpec, v: &Verdict, path: &Path) {
        let source = format!("installed:{}", path.display());
        if let Some(h) = &v.sha256 {
            self.sha256.insert(h.clone(), (spec, source.clone()));
            self.sizes.insert(v.key.size);
        }
        if let Some(b) = &v.build_id {
            self.build_id.insert(b.clone(), (spec, source));
        }
    }
}

/// Classifies files; shared by the start-up scan and the classification worker.
#[derive(Debug)]
pub struct Classifier {
    list: HashList,
    learned: RwLock<Learned>,
    cache: Mutex<LruCache<FileKey, Verdict>>,
    limits: Limits,
}

/// What to classify: a path, or a file the caller opened (`/proc/<pid>/exe` of the
/// exec, which is the executed file even after a rename or unlink).
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Path(&'a Path),
    File { file: &'a File, label: &'a Path },
}

impl Classifier {
    pub fn new(list: HashList, limits: Limits) -> Classifier {
        let n = NonZeroUsize::new(limits.cache_entries).unwrap_or(NonZeroUsize::MIN);
        Classifier {
            list,
            learned: RwLock::default(),
            cache: Mutex::new(LruCache::new(n)),
            limits,
        }
    }

    /// The tool `target` is, if any.
    pub fn classify(&self, target: Target<'_>) -> Result<Option<Tool>, ClassifyError> {
        Ok(self.verdict(target)?.tool)
    }

    /// The full verdict, from the cache when the file has not changed since.
    pub fn verdict(&self, target: Target<'_>) -> Result<Verdict, ClassifyError> {
        self.verdict_hashed(target, true)
    }

    /// [`verdict`](Self::verdict), hashing the file only when `hash` is set: the
    /// start-up scan needs no hash of a tool its Go build info already names.
    pub(crate) fn verdict_hashed(
        &self,
        target: Target<'_>,
        hash: bool,
    ) -> Result<Verdict, ClassifyError> {
        match target {
            Target::Path(path) => {
                // Non-blocking: a FIFO put where a tool is expected must not hang us.
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|source| ClassifyError::Open {
                        path: path.to_path_buf(),
                        source,
                    })?;
                self.verdict_of(&file, path, hash)
            }
            Target::File { file, label } => self.verdict_of(file, label, hash),
        }
    }

    /// A cached verdict for `key`, without touching the file.
    pub fn cached(&self, key: &FileKey) -> Option<Verdict> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Number of verdicts cached.
    pub fn cache_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Replaces what was learnt from the installed tools (start-up, reload) and drops
    /// every cached verdict, which may rest on the old knowledge.
    pub(crate) fn set_learned(&self, learned: Learned) {
        *self.learned.write().unwrap_or_else(PoisonError::into_inner) = learned;
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn verdict_of(&self, file: &File, label: &Path, hash: bool) -> Result<Verdict, ClassifyError> {
        let read_err = |source| ClassifyError::Read {
            path: label.to_path_buf(),
            source,
        };
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(ClassifyError::NotRegular {
                path: label.to_path_buf(),
            });
        }
        let key = FileKey::of(&meta);
        let hash = hash && key.size <= self.limits.max_hash_bytes;
        let v = match self.cached(&key) {
            Some(v) if v.sha256.is_some() || !hash => return Ok(v),
            Some(v) if v.tool.is_none() && !self.hash_may_match(key.size) => return Ok(v),
            // Cached by the scan without its hash: add the hash (which may also
            // identify it).
            Some(mut v) => {
                v.sha256 = Some(sha256_of(file).map_err(read_err)?);
                if v.tool.is_none() {
                    v.tool = self.decide(&ElfFacts::default(), None, v.sha256.as_deref());
                }
                v
            }
            None => self.compute(file, key, hash).map_err(read_err)?,
        };
        // Written to while we read it: this verdict may mix two contents; return it but
        // do not keep it (the next exec of the new content is classified again).
        let after = file.metadata().map(|m| FileKey::of(&m)).map_err(read_err)?;
        if after == key {
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(key, v.clone());
        }
        Ok(v)
    }

    fn compute(&self, file: &File, key: FileKey, hash: bool) -> io::Result<Verdict> {
        let mut head = [0u8; 256];
        let n = read_some(file, &mut head)?;
        let head = &head[..n];
        let (kind, facts) = if head.starts_with(b"\x7fELF") {
            // A file that says ELF but does not parse is still hashed.
            let facts = elf::read(file).ok().flatten().unwrap_or_default();
            (FileKind::Elf, facts)
        } else if let Some(line) = head.strip_prefix(b"#!") {
            let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
            let interpreter = String::from_utf8_lossy(&line[..end]).trim().to_string();
            (FileKind::Script { interpreter }, ElfFacts::default())
        } else {
            (FileKind::Other, ElfFacts::default())
        };
        let build_id = facts.build_id();
        let go_path = facts
            .go
            .as_ref()
            .and_then(|g| g.path.clone().or(g.module.clone()));
        let mut tool = self.decide(&facts, build_id.as_deref(), None);
        // A tool is hashed for its alerts' `process.hash.sha256`; any other file only when
        // a hash could name it: new binaries of every size are common, hashing them is not
        // free.
        let sha256 = if hash && (tool.is_some() || self.hash_may_match(key.size)) {
            Some(sha256_of(file)?)
        } else {
            None
        };
        if tool.is_none() && sha256.is_some() {
            tool = self.decide(&facts, build_id.as_deref(), sha256.as_deref());
        }
        Ok(Verdict {
            key,
            kind,
            tool,
            sha256,
            build_id,
            go_path,
        })
    }

    /// Whether a file of `size` bytes could be named by its sha256: the operator's hash
    /// list (sizes unknown), or an installed tool's hash of that size.
    fn hash_may_match(&self, size: u64) -> bool {
        !self.list.sha256.is_empty()
            || self
                .learned
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .sizes
                .contains(&size)
    }

    fn decide(
        &self,
        facts: &ElfFacts,
        build_id: Option<&str>,
        sha256: Option<&str>,
    ) -> Option<Tool> {
        if let Some(go) = &facts.go {
            let spec = go
                .path
                .as_deref()
                .and_then(tools::spec_by_go_path)
                .or_else(|| go.module.as_deref().and_then(tools::spec_by_go_path));
            if let Some(spec) = spec {
                return Some(Tool {
                    name: spec.name,
                    module: go.path.clone().or(go.module.clone()),
                    version: go.module_version.clone().or(go.ldflags_version.clone()),
                    how: How::GoBuildInfo,
                    source: None,
                });
            }
        }
        let learned = self.learned.read().unwrap_or_else(PoisonError::into_inner);
        let listed = |map: &HashMap<String, (&'static ToolSpec, Origin)>, key: Option<&str>| {
            key.and_then(|k| map.get(k))
                .map(|(spec, origin)| (*spec, origin.to_string()))
        };
        let known = |map: &HashMap<String, (&'static ToolSpec, String)>, key: Option<&str>| {
            key.and_then(|k| map.get(k))
                .map(|(spec, s)| (*spec, s.clone()))
        };
        let tool = |how, (spec, source): (&'static ToolSpec, String)| Tool {
            name: spec.name,
            module: None,
            version: None,
            how,
            source: Some(source),
        };
        listed(&self.list.build_id, build_id)
            .or_else(|| known(&learned.build_id, build_id))
            .map(|hit| tool(How::BuildId, hit))
            .or_else(|| {
                listed(&self.list.sha256, sha256)
                    .or_else(|| known(&learned.sha256, sha256))
                    .map(|hit| tool(How::Sha256, hit))
            })
    }
}

fn read_some(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read_at(buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Streams the file through sha256 in fixed-size chunks (no whole-file buffer).
fn sha256_of(file: &File) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut off = 0u64;
    loop {
        let n = match file.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(crate::hex(&h.finalize()))
}
