//! Classification of the real container tools Debian installs here (`scripts/setup.sh`:
//! docker.io brings docker, dockerd, containerd, ctr, containerd-shim-runc-v2, runc and
//! docker-proxy; podman brings podman and crun; util-linux nsenter; curl), copied,
//! hard-linked and renamed in a temporary directory. No mock: a missing binary fails
//! the test with the package to install.

use std::{
    ffi::OsStr,
    fs,
    os::unix::{
        ffi::OsStrExt as _,
        fs::{PermissionsExt as _, symlink},
    },
    path::{Path, PathBuf},
    sync::Arc,
};

use t1609_identity::{
    Classifier, FileKind, HashList, How, Inventory, Limits, NameCheck, Target, Tool, check_name,
    tools,
};

fn real(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} is missing: install the Debian package `{package}` (scripts/setup.sh does)"
    );
    p
}

fn classifier() -> Classifier {
    Classifier::new(HashList::default(), Limits::default())
}

/// Without hashing: what the Go build info decides needs no sha256 (and debug-build
/// sha256 of 40 MiB clients is most of these tests' time).
fn unhashed() -> Classifier {
    Classifier::new(
        HashList::default(),
        Limits {
            max_hash_bytes: 0,
            ..Limits::default()
        },
    )
}

fn tool_of(c: &Classifier, p: &Path) -> Option<Tool> {
    c.classify(Target::Path(p)).unwrap()
}

/// Copies `src` to `dir/name` (name as raw bytes), executable.
fn copy_as(src: &Path, dir: &Path, name: &[u8]) -> PathBuf {
    let dst = dir.join(OsStr::from_bytes(name));
    fs::copy(src, &dst).unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

/// The names attackers use: hidden, upper case, trailing space, a non-UTF-8 byte.
const DISGUISES: &[(&[u8], NameCheck)] = &[
    (b".x", NameCheck::Renamed),
    (b".docker", NameCheck::Renamed),
    (b"kworker", NameCheck::Renamed),
    (b"DOCKER", NameCheck::Variant),
    (b"docker ", NameCheck::Variant),
    (b"dock\xffer", NameCheck::Renamed),
];

#[test]
fn docker_clients_are_docker_under_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = unhashed();
    let mut clients = vec![real("/usr/bin/docker", "docker.io")];
    // A second, statically linked client where one is installed (not from Debian).
    if Path::new("/usr/local/bin/docker").is_file() {
        clients.push(PathBuf::from("/usr/local/bin/docker"));
    }
    for (i, client) in clients.iter().enumerate() {
        let sub = dir.path().join(i.to_string());
        fs::create_dir(&sub).unwrap();
        let t = tool_of(&c, client).expect("the docker client is a tool");
        assert_eq!(t.name, "docker");
        assert_eq!(t.how, How::GoBuildInfo);
        assert_eq!(
            t.module.as_deref(),
            Some("github.com/docker/cli/cmd/docker")
        );
        let spec = t.spec().unwrap();
        assert_eq!(check_name(spec, b"docker"), NameCheck::Own);
        for (name, check) in DISGUISES {
            let p = copy_as(client, &sub, name);
            let got = tool_of(&c, &p).unwrap_or_else(|| panic!("{} not known", p.display()));
            assert_eq!(got.name, "docker", "{}", p.display());
            assert_eq!(check_name(spec, name), *check, "{}", p.display());
            assert!(check.is_masquerade());
        }
        // A hard link (of the copy: /usr may be another file system) and a symlink.
        let copy = sub.join(".x");
        fs::hard_link(&copy, sub.join("kthreadd")).unwrap();
        assert_eq!(tool_of(&c, &sub.join("kthreadd")).unwrap().name, "docker");
        symlink(client, sub.join("ls")).unwrap();
        assert_eq!(tool_of(&c, &sub.join("ls")).unwrap().name, "docker");
    }
}

#[test]
fn runtime_tools_are_known_by_their_go_build_info() {
    let dir = tempfile::tempdir().unwrap();
    let c = unhashed();
    for (path, package, tool, module) in [
        (
            "/usr/bin/ctr",
            "containerd",
            "ctr",
            "github.com/containerd/containerd/cmd/ctr",
        ),
        (
            "/usr/sbin/runc",
            "runc",
            "runc",
            "github.com/opencontainers/runc",
        ),
        (
            "/usr/bin/containerd-shim-runc-v2",
            "containerd",
            "containerd-shim",
            "github.com/containerd/containerd/cmd/containerd-shim-runc-v2",
        ),
        (
            "/usr/bin/containerd",
            "containerd",
            "containerd",
            "github.com/containerd/containerd/cmd/containerd",
        ),
        (
            "/usr/sbin/dockerd",
            "docker.io",
            "dockerd",
            "github.com/docker/docker/cmd/dockerd",
        ),
        (
            "/usr/bin/podman",
            "podman",
            "podman",
            "github.com/containers/podman/cmd/podman",
        ),
    ] {
        let src = real(path, package);
        for name in [&b"x"[..], b".hidden", b"CTR ", b"\xfe"] {
            let p = copy_as(&src, dir.path(), name);
            let t = tool_of(&c, &p).unwrap_or_else(|| panic!("{path} as {}", p.display()));
            assert_eq!((t.name, t.how), (tool, How::GoBuildInfo), "{path}");
            assert_eq!(t.module.as_deref(), Some(module), "{path}");
            fs::remove_file(&p).unwrap();
        }
    }
}

#[test]
fn kubectl_when_installed() {
    // kubectl is not a Debian package; the build machine has one. Without it this test
    // has nothing to check.
    let Some(k) = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
    else {
        eprintln!("skipping: no kubectl installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = copy_as(k, dir.path(), b"k");
    let t = tool_of(&unhashed(), &p).unwrap();
    assert_eq!((t.name, t.how), ("kubectl", How::GoBuildInfo));
}

#[test]
fn other_programs_are_not_tools() {
    let c = classifier();
    // A Go program from the same project as docker, and C programs.
    let proxy = real("/usr/sbin/docker-proxy", "docker.io");
    let v = c.verdict(Target::Path(&proxy)).unwrap();
    assert_eq!(v.tool, None);
    assert_eq!(v.kind, FileKind::Elf);
    assert!(
        v.go_path
            .as_deref()
            .is_some_and(|p| p.contains("libnetwork")),
        "{v:?}"
    );
    for (path, package) in [
        ("/usr/bin/curl", "curl"),
        ("/usr/bin/nsenter", "util-linux"),
    ] {
        let v = c.verdict(Target::Path(&real(path, package))).unwrap();
        assert_eq!(v.tool, None, "{path}");
        assert_eq!(v.go_path, None, "{path}");
        assert!(
            v.build_id.as_deref().is_some_and(|b| b.starts_with("gnu:")),
            "{v:?}"
        );
        // No hash list, and no installed tool of that size: not worth hashing.
        assert_eq!(v.sha256, None, "{path}");
    }
    // A script and an empty file.
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("kubectl-foo");
    fs::write(&s, "#!/bin/sh\nexec kubectl exec -it \"$1\" -- sh\n").unwrap();
    let v = c.verdict(Target::Path(&s)).unwrap();
    assert_eq!(
        v.kind,
        FileKind::Script {
            interpreter: "/bin/sh".into()
        }
    );
    assert_eq!(v.tool, None);
    let e = dir.path().join("empty");
    fs::write(&e, b"").unwrap();
    assert_eq!(c.verdict(Target::Path(&e)).unwrap().kind, FileKind::Other);
}

#[test]
fn copies_of_installed_c_tools_are_known_after_the_scan() {
    let cl = classifier();
    let nsenter = real("/usr/bin/nsenter", "util-linux");
    let crun = real("/usr/bin/crun", "podman");
    let dir = tempfile::tempdir().unwrap();
    let ns_copy = copy_as(&nsenter, dir.path(), b".n");
    let crun_copy = copy_as(&crun, dir.path(), b"CRUN");
    assert_eq!(
        tool_of(&cl, &ns_copy),
        None,
        "nothing in nsenter names it before the scan"
    );
    let inv = Inventory::scan(&cl, &[]);
    let installed = |name: &str| {
        inv.installed
            .iter()
            .find(|i| i.tool.name == name)
            .unwrap_or_else(|| panic!("{name} not in {:#?}", inv.installed))
    };
    assert_eq!(installed("nsenter").tool.how, How::Installed);
    assert_eq!(installed("docker").tool.how, How::GoBuildInfo);
    installed("runc");
    installed("ctr");
    installed("crun");
    // The copies: by build-id, naming the installed file they match.
    let t = tool_of(&cl, &ns_copy).unwrap();
    assert_eq!((t.name, t.how), ("nsenter", How::BuildId));
    assert!(
        t.source
            .as_deref()
            .is_some_and(|s| s.starts_with("installed:") && s.ends_with("/nsenter")),
        "{t:?}"
    );
    assert_eq!(tool_of(&cl, &crun_copy).unwrap().name, "crun");
    // The inode watch list has the clients and runtimes, not the daemons.
    let watch = inv.watch_entries();
    let key = |p: &str| {
        let k = t1609_identity::FileKey::of(&fs::metadata(p).unwrap());
        (k.dev, k.ino)
    };
    for (p, tool) in [
        ("/usr/bin/docker", "docker"),
        ("/usr/sbin/runc", "runc"),
        ("/usr/bin/nsenter", "nsenter"),
    ] {
        let (d, i) = key(p);
        let id = tools::spec(tool).unwrap().id();
        assert!(watch.contains(&(d, i, id)), "{p} not watched: {watch:?}");
    }
    let (d, i) = key("/usr/sbin/dockerd");
    assert!(!inv.dev_inos().contains(&(d, i)), "daemons are not watched");
    // A reload keeps what it learnt.
    let again = Inventory::scan(&cl, &[]);
    assert_eq!(again.watch_entries(), watch);
    assert_eq!(tool_of(&cl, &ns_copy).unwrap().name, "nsenter");
}

#[test]
fn configured_directories_are_read_whole() {
    let c = classifier();
    let dir = tempfile::tempdir().unwrap();
    let x = copy_as(&real("/usr/bin/docker", "docker.io"), dir.path(), b".x");
    copy_as(&real("/usr/bin/curl", "curl"), dir.path(), b"curl");
    fs::write(dir.path().join("notes.txt"), "not executable").unwrap();
    let inv = Inventory::scan(
        &c,
        &[
            dir.path().to_path_buf(),
            PathBuf::from("/nonexistent/t1609"),
        ],
    );
    let mine: Vec<_> = inv
        .installed
        .iter()
        .filter(|i| i.path.starts_with(dir.path()))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].path, x);
    assert_eq!(mine[0].tool.name, "docker");
    assert_eq!(mine[0].name_check, NameCheck::Renamed);
    assert!(
        inv.problems
            .iter()
            .any(|p| p.to_string().starts_with("/nonexistent/t1609: cannot open")),
        "{:?}",
        inv.problems
    );
}

#[test]
fn operator_hash_list_names_what_content_does_not() {
    let dir = tempfile::tempdir().unwrap();
    // A docker client whose Go build info was wiped (as packers and garblers do).
    let mut bytes = fs::read(real("/usr/bin/docker", "docker.io")).unwrap();
    let magic = b"\xff Go buildinf:";
    let at = bytes.windows(magic.len()).position(|w| w == magic).unwrap();
    bytes[at] = 0;
    let wiped = dir.path().join(".d");
    fs::write(&wiped, &bytes).unwrap();
    assert_eq!(tool_of(&classifier(), &wiped), None);
    // Nothing could name it by hash yet, so it was not hashed.
    assert_eq!(
        classifier().verdict(Target::Path(&wiped)).unwrap().sha256,
        None
    );
    let out = std::process::Command::new("sha256sum")
        .arg(&wiped)
        .output()
        .unwrap();
    let sha = String::from_utf8(out.stdout).unwrap()[..64].to_string();
    let list_file = dir.path().join("hashes.toml");
    fs::write(
        &list_file,
        format!(
            "# drops\n\n[[hash]]\nsha256 = \"{sha}\"\ntool = \"docker\"\ncomment = \"packed\"\n"
        ),
    )
    .unwrap();
    let c = Classifier::new(
        HashList::load(std::slice::from_ref(&list_file)).unwrap(),
        Limits::default(),
    );
    let t = tool_of(&c, &wiped).unwrap();
    assert_eq!((t.name, t.how), ("docker", How::Sha256));
    assert_eq!(t.source, Some(format!("{}:4", list_file.display())));
}

#[test]
fn a_verdict_follows_the_file_content() {
    let dir = tempfile::tempdir().unwrap();
    let c = classifier();
    let p = copy_as(&real("/usr/bin/docker", "docker.io"), dir.path(), b".x");
    let before = c.verdict(Target::Path(&p)).unwrap();
    assert_eq!(before.tool.as_ref().map(|t| t.name), Some("docker"));
    assert_eq!(c.cached(&before.key).as_ref(), Some(&before));
    // Same file (inode), new content: another verdict.
    let runc = fs::read(real("/usr/sbin/runc", "runc")).unwrap();
    fs::write(&p, &runc).unwrap();
    let after = c.verdict(Target::Path(&p)).unwrap();
    assert_eq!(after.key.dev_ino(), before.key.dev_ino());
    assert_eq!(after.tool.map(|t| t.name), Some("runc"));
    // Same size, mtime put back: ctime still tells.
    let meta = fs::metadata(&p).unwrap();
    let mut flipped = runc.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&p, &flipped).unwrap();
    let f = fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);
    let third = c.verdict(Target::Path(&p)).unwrap();
    assert_eq!(third.key.size, after.key.size);
    assert_eq!(third.key.mtime_ns, after.key.mtime_ns);
    assert_ne!(third.sha256, after.sha256);
}

#[test]
fn an_open_file_is_classified_after_unlink() {
    // What the agent does with /proc/<pid>/exe: the file the process runs, whatever
    // happened to its name since.
    let dir = tempfile::tempdir().unwrap();
    let p = copy_as(&real("/usr/bin/ctr", "containerd"), dir.path(), b"gone");
    let file = fs::File::open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    let c = Arc::new(unhashed());
    let t = c
        .classify(Target::File {
            file: &file,
            label: Path::new("/proc/1234/exe"),
        })
        .unwrap()
        .unwrap();
    assert_eq!(t.name, "ctr");
    // Not a regular file: named in the error, nothing read.
    let e = c.verdict(Target::Path(Path::new("/dev/null"))).unwrap_err();
    assert_eq!(e.to_string(), "/dev/null: not a regular file");
}
