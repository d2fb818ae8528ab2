#!/usr/bin/env bash
# Starts, idempotently, the real services the tests use: systemd-journald (standalone,
# PID 1 is not systemd here) and dockerd, and imports the tests' busybox image
# as t1609-test/busybox:1 (no registry is reachable). Usage: scripts/services.sh [journald] [docker] (default: both).
set -euo pipefail
log() { printf '[services] %s\n' "$*" >&2; }
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(journald docker)

start_journald() {
    if [ -S /run/systemd/journal/socket ] && pgrep -x systemd-journal >/dev/null 2>&1; then
        return 0
    fi
    local bin
    bin="$(command -v systemd-journald || true)"
    [ -n "$bin" ] || bin=/lib/systemd/systemd-journald
    [ -x "$bin" ] || { log "systemd-journald not installed (run scripts/setup.sh)"; return 1; }
    mkdir -p /run/systemd/journal /var/log/journal
    log "starting $bin"
    setsid "$bin" </dev/null >/tmp/t1609-journald.log 2>&1 &
    for _ in $(seq 1 100); do
        [ -S /run/systemd/journal/socket ] && return 0
        sleep 0.1
    done
    log "journald did not create /run/systemd/journal/socket; see /tmp/t1609-journald.log"
    return 1
}

FIXTURE_IMAGE=t1609-test/busybox:1
FIXTURE_LABEL=org.t1609.test-fixture
# Applets the tests run inside the fixture's containers.
FIXTURE_APPLETS="sh sleep id echo cat true"

# The fixture image is there, is ours (label), and holds every applet the tests use.
fixture_ok() {
    [ "$(docker image inspect -f "{{index .Config.Labels \"$FIXTURE_LABEL\"}}" "$FIXTURE_IMAGE" 2>/dev/null)" = busybox ] || return 1
    local have
    have="$(docker run --rm --network none --entrypoint /bin/busybox "$FIXTURE_IMAGE" --list 2>/dev/null)" || return 1
    for app in $FIXTURE_APPLETS; do
        grep -qx "$app" <<<"$have" || { log "$FIXTURE_IMAGE has no $app applet"; return 1; }
    done
}

start_docker() {
    if ! docker info >/dev/null 2>&1; then
        command -v dockerd >/dev/null || { log "dockerd not installed (run scripts/setup.sh)"; return 1; }
        log "starting dockerd"
        setsid dockerd >/tmp/t1609-dockerd.log 2>&1 </dev/null &
        for _ in $(seq 1 300); do
            docker info >/dev/null 2>&1 && break
            sleep 0.2
        done
        docker info >/dev/null 2>&1 || { log "dockerd did not start; see /tmp/t1609-dockerd.log"; return 1; }
    fi
    # The tests' own fixture, under a name no user image shares, marked with a label, and
    # checked for the applets the tests run before it is trusted.
    if ! fixture_ok; then
        local root bb
        bb="$(command -v busybox || echo /bin/busybox)"
        root="$(mktemp -d)"
        mkdir -p "$root/bin" "$root/etc" "$root/tmp"
        cp "$bb" "$root/bin/busybox"
        for app in $("$root/bin/busybox" --list); do
            [ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
        done
        echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
        echo 'root:x:0:' > "$root/etc/group"
        tar -C "$root" -c . | docker import --change "LABEL $FIXTURE_LABEL=busybox" - "$FIXTURE_IMAGE" >/dev/null
        rm -rf "$root"
        fixture_ok || { log "$FIXTURE_IMAGE lacks applets the tests need after import"; return 1; }
        log "imported $FIXTURE_IMAGE"
    fi
}

for s in "${want[@]}"; do
    case "$s" in
        journald) start_journald ;;
        docker) start_docker ;;
        *) log "unknown service $s"; exit 2 ;;
    esac
done
