#!/usr/bin/env bash
# Idempotent set-up for `cargo xtask bench`: the peer monitors it compares against.
# Installs the Debian packages auditd and bpftrace with apt-get, only those missing.
# A second run only checks and returns. Set T1609_SKIP_APT=1 to never call apt-get.
set -euo pipefail

log() { printf '[bench-setup] %s\n' "$*" >&2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

need=()
for pkg in auditd bpftrace; do
    installed "$pkg" || need+=("$pkg")
done

if [ "${#need[@]}" -gt 0 ]; then
    if [ "${T1609_SKIP_APT:-0}" = 1 ]; then
        log "missing ${need[*]} (T1609_SKIP_APT=1: not installing)"
        exit 1
    fi
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends: no systemd units pulled in beyond what the package needs;
    # policy-rc.d-style start attempts are harmless here (PID 1 is not systemd).
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Kernel file systems bpftrace and the agent use.
mountpoint -q /sys/kernel/tracing 2>/dev/null || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/kernel/debug 2>/dev/null || mount -t debugfs nodev /sys/kernel/debug 2>/dev/null || true
mountpoint -q /sys/fs/bpf 2>/dev/null || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true

for bin in auditd auditctl bpftrace; do
    command -v "$bin" >/dev/null 2>&1 || { log "$bin not on PATH after install"; exit 1; }
done
log "ok ($(bpftrace --version 2>/dev/null | head -n1); auditd $(dpkg-query -W -f='${Version}' auditd))"
