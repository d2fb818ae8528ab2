#!/usr/bin/env bash
# Idempotent machine set-up for building and testing t1609-agent.
# Installs: nightly rust-src, bpf-linker (linked against the nightly's own LLVM),
# and the Debian packages the tests use. A second run only checks and returns.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

TOOLS_ROOT="${T1609_TOOLS_ROOT:-/opt/t1609-tools}"
export PATH="$TOOLS_ROOT/bin:$HOME/.cargo/bin:$PATH"

# --- Rust: nightly with rust-src (eBPF needs -Z build-std=core) -------------
if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
# rust-src: the eBPF build's -Z build-std. rustfmt and clippy on nightly: the lint step
# formats imports with nightly-only options and lints the eBPF crate for its target;
# clippy on stable lints the rest of the workspace.
for comp in rust-src rustfmt clippy; do
    if ! rustup component list --toolchain nightly --installed | grep -q "^$comp"; then
        log "adding $comp to nightly"
        rustup component add "$comp" --toolchain nightly
    fi
done
for comp in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$comp"; then
        log "adding $comp to the default toolchain"
        rustup component add "$comp"
    fi
done

# --- bpf-linker, built against the nightly's libLLVM ------------------------
# The default bpf-linker build wants a system LLVM that Debian does not ship at the
# nightly's version; linking to the nightly's own libLLVM keeps both in step.
llvm_major="$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[ -n "$llvm_major" ] || { log "cannot read the LLVM version of the nightly toolchain"; exit 1; }
nightly_lib="$(rustc +nightly --print sysroot)/lib"
llvm_so="$(ls "$nightly_lib"/libLLVM.so.*-rust-* 2>/dev/null | head -n1 || true)"
[ -n "$llvm_so" ] || { log "no libLLVM in $nightly_lib"; exit 1; }
stamp="$TOOLS_ROOT/.bpf-linker-$(basename "$llvm_so")"
if [ ! -x "$TOOLS_ROOT/bin/bpf-linker" ] || [ ! -e "$stamp" ]; then
    log "building bpf-linker against $(basename "$llvm_so") (LLVM $llvm_major)"
    pfx="$TOOLS_ROOT/llvm"
    mkdir -p "$pfx/lib"
    ln -sf "$llvm_so" "$pfx/lib/"
    ln -sf "$llvm_so" "$pfx/lib/libLLVM.so"
    LLVM_PREFIX="$pfx" RUSTFLAGS="-C link-arg=-Wl,-rpath,$pfx/lib" \
        cargo +stable install bpf-linker --version 0.13.0 --locked \
        --no-default-features --features "llvm-$llvm_major" --root "$TOOLS_ROOT" --force
    rm -f "$TOOLS_ROOT"/.bpf-linker-*
    touch "$stamp"
fi
bpf-linker --version >/dev/null

# --- Debian packages the build needs -------------------------------------------
# protoc: t1609-context's gRPC bindings (k8s-cri, containerd-client) are generated at
# build time. Installed even with T1609_SKIP_APT=1 (which skips the tests' packages), so
# the container image's builder stage has it too.
if ! command -v protoc >/dev/null 2>&1; then
    log "apt-get install protobuf-compiler"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null
fi

# --- Debian packages used by the tests ---------------------------------------
# (The container runtimes the t1609-context tests drive are installed by
# scripts/runtimes.sh.)
if [ "${T1609_SKIP_APT:-0}" != 1 ]; then
    need=()
    # podman brings crun and conmon: t1609-identity classifies the real binaries.
    for pkg in docker.io busybox-static systemd iproute2 util-linux curl openssl python3 podman; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
    done
    # docker.io may be replaced by a preinstalled docker binary; accept either.
    if command -v dockerd >/dev/null 2>&1; then
        need=("${need[@]/docker.io}")
    fi
    pkgs=()
    for p in "${need[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
    if [ "${#pkgs[@]}" -gt 0 ]; then
        log "apt-get install ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    fi
fi

# --- Kernel file systems the agent and tests use ------------------------------
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true

log "ok (bpf-linker in $TOOLS_ROOT/bin, LLVM $llvm_major)"
