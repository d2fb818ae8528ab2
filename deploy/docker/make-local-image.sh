#!/usr/bin/env bash
# Builds the t1609-agent container image WITHOUT a registry: a minimal root file system
# holding a locally built binary, its shared libraries, /etc/passwd and the config,
# imported with `docker import`. This is what CI and this build machine use (no base
# image can be pulled here); deploy/docker/Dockerfile is the registry-based build.
#
# Usage: deploy/docker/make-local-image.sh TARGET_BINARY
#   TARGET_BINARY   e.g. target/release/t1609-agent (from `cargo build --release -p t1609-agent`)
# Environment:
#   IMAGE           image name to create (default local/t1609-agent:dev)
#   CONFIG          config file to bake in (default deploy/docker/config.toml)
# Prints the image name on stdout when done.
set -euo pipefail

log() { printf '[make-local-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: $0 TARGET_BINARY"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$1"
image="${IMAGE:-local/t1609-agent:dev}"
config="${CONFIG:-$here/config.toml}"

{ [ -f "$bin" ] && [ -x "$bin" ]; } || die "$bin is not an executable file"
[ -f "$config" ] || die "config $config not found"
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach dockerd (start it: scripts/services.sh docker)"
head -c 4 "$bin" | grep -q 'ELF' || die "$bin is not an ELF binary"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

install -d -m 0755 "$root/usr/local/bin" "$root/etc/t1609-agent" "$root/run" "$root/var/lib" \
    "$root/proc" "$root/sys" "$root/dev"
install -d -m 0755 "$root/run/t1609-agent"
install -d -m 0700 "$root/var/lib/t1609-agent"
install -d -m 1777 "$root/tmp"
install -m 0755 "$bin" "$root/usr/local/bin/t1609-agent"
install -m 0644 "$config" "$root/etc/t1609-agent/config.toml"

# Shared libraries, at the paths the dynamic loader resolved them to on this machine
# (libc, libgcc_s, libm, ld-linux ...), with symlinks dereferenced. A static binary
# needs none.
if ldd_out="$(ldd "$bin" 2>&1)"; then
    libs="$(printf '%s\n' "$ldd_out" | awk '
        $2 == "=>" && $3 ~ /^\// { print $3 }      # libfoo.so.1 => /path (0x...)
        $1 ~ /^\// { print $1 }                    # /lib64/ld-linux-x86-64.so.2 (0x...)
    ' | sort -u)"
    if printf '%s\n' "$ldd_out" | grep -q 'not found'; then
        die "unresolved libraries: $(printf '%s\n' "$ldd_out" | grep 'not found' | tr -s ' \t' ' ')"
    fi
    for lib in $libs; do
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        log "library $lib"
    done
else
    log "no dynamic dependencies ($(printf '%s' "$ldd_out" | head -n1 | tr -s ' \t' ' '))"
fi

# Identity and name-service files for UID 0 (the agent runs as root with a reduced
# capability set); "files" only, no network lookups.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files\n' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf" "$root/etc/hosts"

# Same metadata as the Dockerfile's runtime stage (SIGTERM, the default stop signal,
# cannot be set by docker import): exec-form ENTRYPOINT (no shell in
# the image), the config path as CMD.
tar -C "$root" --numeric-owner --owner=0 --group=0 -c . \
    | docker import \
        --change 'ENTRYPOINT ["/usr/local/bin/t1609-agent"]' \
        --change 'CMD ["run", "--config", "/etc/t1609-agent/config.toml"]' \
        --change 'WORKDIR /' \
        --change 'USER 0:0' \
        --change 'EXPOSE 9609' \
        --change 'LABEL org.opencontainers.image.title=t1609-agent' \
        - "$image" >/dev/null

# The loader inside the image must resolve every library of the binary.
if [ -n "${libs:-}" ]; then
    interp="$(printf '%s\n' "$libs" | grep -m1 '/ld-linux' || true)"
    if [ -n "$interp" ]; then
        docker run --rm --network none --entrypoint "$interp" "$image" \
            --list /usr/local/bin/t1609-agent >/dev/null \
            || die "the image's loader cannot resolve the binary's libraries"
    fi
fi
log "imported $image ($(du -sh "$root" | cut -f1) root file system)"
printf '%s\n' "$image"
