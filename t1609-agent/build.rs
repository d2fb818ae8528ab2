//! Builds the eBPF object (t1609-agent-ebpf) with aya-build, so `cargo build` builds
//! everything. Needs the nightly toolchain with rust-src and bpf-linker: run
//! `scripts/setup.sh` once.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    // scripts/setup.sh installs bpf-linker under this root; put it on PATH for the
    // nested eBPF build without asking every developer to change their shell.
    let tools = std::env::var("T1609_TOOLS_ROOT").unwrap_or_else(|_| "/opt/t1609-tools".into());
    println!("cargo:rerun-if-env-changed=T1609_TOOLS_ROOT");
    let bin = std::path::Path::new(&tools).join("bin");
    if bin.join("bpf-linker").exists() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin];
        paths.extend(std::env::split_paths(&path));
        let joined = std::env::join_paths(paths).context("joining PATH")?;
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { std::env::set_var("PATH", joined) };
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../t1609-agent-ebpf");
    let root = root
        .to_str()
        .context("non-UTF-8 path to t1609-agent-ebpf")?
        .to_owned();
    aya_build::build_ebpf(
        [aya_build::Package { name: "t1609-agent-ebpf", root_dir: &root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF object (run scripts/setup.sh if nightly, rust-src or bpf-linker is missing)")
}
