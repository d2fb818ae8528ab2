//! The execs the bench measures: static busybox run as `true` under an unwatched name and
//! under a watched one (`docker`), with a short argv and with a 4 KiB one, and a tiny ELF
//! for the storm and paced phases.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

pub struct Workload {
    pub unwatched: PathBuf,
    pub watched: PathBuf,
    /// What the storm mode execs: named `docker` too, and as cheap to exec as possible
    /// so the machine can reach the rates under test.
    pub storm_exe: PathBuf,
    /// How `storm_exe` is described in the report.
    pub storm_exe_note: &'static str,
    pub small_args: Vec<String>,
    pub big_args: Vec<String>,
}

/// A complete x86-64 Linux executable that calls exit(0): ELF header, one `PT_LOAD` program
/// header, and `mov eax, 60; xor edi, edi; syscall` right after them. Exec'ing it costs a
/// fraction of static busybox (no 1 MiB image, no applet dispatch), which is what lets a
/// 2-core machine issue thousands of watched execs a second.
#[cfg(target_arch = "x86_64")]
fn exit0_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: usize = 64 + 56;
    const CODE: [u8; 9] = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
    const SIZE: usize = HEADERS + CODE.len();
    let mut b = Vec::with_capacity(SIZE);
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // 64-bit, LE
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    b.extend_from_slice(&1u32.to_le_bytes()); // version
    b.extend_from_slice(&(BASE + HEADERS as u64).to_le_bytes()); // entry: the code
    b.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this one
    b.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        // header size, program header size and count, section header size, count, names
        b.extend_from_slice(&half.to_le_bytes());
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R + X
    b.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    b.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    b.extend_from_slice(&BASE.to_le_bytes()); // paddr
    b.extend_from_slice(&(SIZE as u64).to_le_bytes()); // filesz
    b.extend_from_slice(&(SIZE as u64).to_le_bytes()); // memsz
    b.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    b.extend_from_slice(&CODE);
    b
}

impl Workload {
    /// Copies of static busybox run as `true`: one under an unwatched name, one named
    /// `docker` (watched: the kernel matches the task's comm, the file's basename).
    pub fn prepare() -> anyhow::Result<Self> {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("busybox-static is needed (scripts/setup.sh installs it)")?;
        let dir = std::env::temp_dir().join("t1609-bench");
        std::fs::create_dir_all(&dir)?;
        let unwatched = dir.join("t1609-bench-true");
        let watched = dir.join("docker");
        for p in [&unwatched, &watched] {
            if !p.exists() {
                std::fs::copy(&busybox, p)?;
            }
        }
        let small_args = ["exec", "-it", "atomic-test-container", "/bin/sh"]
            .map(String::from)
            .to_vec();
        let mut big_args = small_args.clone();
        big_args.push("P".repeat(4096 - 64));
        #[cfg(target_arch = "x86_64")]
        let (storm_exe, storm_exe_note) = {
            use std::os::unix::fs::PermissionsExt as _;
            let tiny = dir.join("exit0");
            std::fs::create_dir_all(&tiny)?;
            let exe = tiny.join("docker");
            std::fs::write(&exe, exit0_elf())?;
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
            (exe, "a 129-byte static ELF that exits 0")
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (storm_exe, storm_exe_note) = (watched.clone(), "static busybox");
        Ok(Self {
            unwatched,
            watched,
            storm_exe,
            storm_exe_note,
            small_args,
            big_args,
        })
    }
}

/// Sequential fork+exec+wait of `exe` `n` times; returns the µs of each exec.
pub fn timed_batch(exe: &Path, args: &[String], n: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        spawn_wait(exe, args)?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

/// One fork+exec+wait of `exe` as `true`; an error if it fails to start or exits non-zero.
pub fn spawn_wait(exe: &Path, args: &[String]) -> anyhow::Result<()> {
    let status = Command::new(exe)
        .arg0("true")
        .args(args)
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("{} failed: {status}", exe.display());
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn exit0_elf_runs_and_exits_zero_under_a_watched_name() {
        let elf = super::exit0_elf();
        assert_eq!(elf.len(), 129);
        let dir = std::env::temp_dir().join(format!("t1609-exit0-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("docker");
        std::fs::write(&exe, &elf).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A malformed image fails with ENOEXEC here; a wrong code would crash or hang.
        let out = std::process::Command::new(&exe)
            .args(["exec", "-it", "c", "sh"])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "{:?}", out.status);
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
    }
}
