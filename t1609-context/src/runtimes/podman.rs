//! podman's containers from its state on disk: containers/storage keeps every container
//! (id, names, image) in `<root>/<driver>-containers/containers.json` and every image (id,
//! names, digest) in `<root>/<driver>-images/images.json`. Reading those needs no podman
//! service (on most hosts none runs: the API socket is socket-activated by systemd), and a
//! stat tells when they changed.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use serde::Deserialize;

use super::{
    RuntimesError,
    info::{ContainerInfo, RuntimeKind, some},
};

#[derive(Deserialize)]
struct StoredContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    /// libpod's JSON: `{"image-name": …, "image-id": …, "name": …}`.
    #[serde(default)]
    metadata: String,
}

#[derive(Deserialize, Default)]
struct ContainerMetadata {
    #[serde(rename = "image-name", default)]
    image_name: String,
    #[serde(default)]
    name: String,
    /// Set by CRI-O, which shares containers/storage: its containers are the CRI's.
    #[serde(rename = "pod-name", default)]
    pod_name: String,
}

#[derive(Deserialize)]
struct StoredImage {
    id: String,
    #[serde(default)]
    digest: String,
}

/// (modified, size, inode) of a file: changes when it is rewritten (by rename or not).
type Stamp = (SystemTime, u64, u64);

pub(crate) struct PodmanStorage {
    root: PathBuf,
    stamp: Option<Stamp>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

impl PodmanStorage {
    pub fn new(root: PathBuf) -> Self {
        Self { root, stamp: None }
    }

    /// The storage driver's containers file (`overlay-containers/containers.json`, `vfs-…`).
    fn containers_file(&self) -> Result<PathBuf, RuntimesError> {
        let entries = std::fs::read_dir(&self.root).map_err(|source| RuntimesError::Storage {
            path: self.root.clone(),
            source,
        })?;
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-containers"))
            })
            .map(|p| p.join("containers.json"))
            .find(|p| p.is_file())
            .ok_or_else(|| RuntimesError::Storage {
                path: self.root.join("<driver>-containers/containers.json"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }

    /// True when the containers file changed since the last [`PodmanStorage::list_all`].
    pub fn changed(&self) -> bool {
        let Ok(file) = self.containers_file() else {
            return self.stamp.is_some();
        };
        stamp(&file) != self.stamp
    }

    /// Every container podman (or CRI-O) keeps in this storage.
    pub fn list_all(&mut self) -> Result<Vec<ContainerInfo>, RuntimesError> {
        let file = self.containers_file()?;
        let before = stamp(&file);
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| RuntimesError::Storage {
                path: path.to_owned(),
                source,
            })
        };
        let containers: Vec<StoredContainer> =
            serde_json::from_slice(&read(&file)?).map_err(|source| RuntimesError::StorageJson {
                path: file.clone(),
                source,
            })?;
        // Image digests, when the images file is there (a missing one only costs them).
        let images_file = file
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix("-containers"))
            .map(|driver| self.root.join(format!("{driver}-images/images.json")));
        let digests: HashMap<String, String> = images_file
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Vec<StoredImage>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.id, i.digest))
            .collect();
        self.stamp = before;
        Ok(containers
            .iter()
            .filter_map(|c| {
                let meta: ContainerMetadata = serde_json::from_str(&c.metadata).unwrap_or_default();
                // CRI-O's containers are named through the CRI, with their pods.
                if !meta.pod_name.is_empty() {
                    return None;
                }
                let mut i = ContainerInfo::new(&c.id, RuntimeKind::Podman, "podman-storage");
                i.name = some(&meta.name).or_else(|| c.names.first().and_then(|n| some(n)));
                i.image = some(&meta.image_name);
                i.image_digest = digests
                    .get(&c.image)
                    .filter(|d| d.starts_with("sha256:"))
                    .map(|d| Arc::from(d.as_str()));
                Some(i)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containers_and_image_digests_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("overlay-containers")).unwrap();
        std::fs::create_dir_all(root.join("overlay-images")).unwrap();
        let cfile = root.join("overlay-containers/containers.json");
        std::fs::write(
            &cfile,
            r#"[{"id":"4927","names":["web"],"image":"270e","metadata":"{\"image-name\":\"localhost/x:1\",\"name\":\"web\"}"},
               {"id":"c2","names":["k8s_x"],"image":"270e","metadata":"{\"pod-name\":\"p\"}"},
               {"id":"c3","names":["bare"],"image":"zz","metadata":""}]"#,
        )
        .unwrap();
        std::fs::write(
            root.join("overlay-images/images.json"),
            r#"[{"id":"270e","digest":"sha256:6932","names":["localhost/x:1"]}]"#,
        )
        .unwrap();
        let mut s = PodmanStorage::new(root.to_owned());
        assert!(s.changed());
        let all = s.list_all().unwrap();
        assert_eq!(all.len(), 2, "CRI-O's container is left to the CRI");
        assert_eq!(all[0].name.as_deref(), Some("web"));
        assert_eq!(all[0].image.as_deref(), Some("localhost/x:1"));
        assert_eq!(all[0].image_digest.as_deref(), Some("sha256:6932"));
        assert_eq!(all[1].name.as_deref(), Some("bare"));
        assert_eq!(all[1].image_digest, None);
        assert!(!s.changed());
        std::fs::write(&cfile, "[]").unwrap();
        assert!(s.changed());
        assert!(s.list_all().unwrap().is_empty());
        // Hostile content: an error naming the file, never a panic.
        std::fs::write(&cfile, "{not json").unwrap();
        let e = s.list_all().unwrap_err().to_string();
        assert!(e.contains("containers.json"), "{e}");
        assert!(PodmanStorage::new(root.join("none")).list_all().is_err());
    }
}
