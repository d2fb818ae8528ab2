#!/usr/bin/env bash
# Starts, idempotently, the container runtimes the t1609-context runtime tests drive:
#   - a containerd of the tests' own (own config, socket, root and state directories;
#     dockerd's containerd is left alone), CRI plugin on, host-network pod sandboxes (no
#     CNI), its sandbox_image a pause image built here;
#   - podman (rootful, crun), whose containers need no service.
# No registry is reachable: both images are built from busybox-static as OCI archives and
# imported (`ctr images import`, `podman load`); nothing is ever pulled.
#
# Usage: scripts/runtimes.sh [containerd] [podman] [stop]   (default: containerd podman)
# Prints, on success, one `KEY=VALUE` line per fact the tests read (socket paths, image
# names). Packages: containerd (with docker.io), runc, podman, crun, conmon, busybox-static;
# installed with apt-get when missing (T1609_SKIP_APT=1 to forbid).
set -euo pipefail
log() { printf '[runtimes] %s\n' "$*" >&2; }
want=("$@"); [ ${#want[@]} -gt 0 ] || want=(containerd podman)

BASE_RUN=/run/t1609-test/containerd
BASE_LIB=/var/lib/t1609-test/containerd
SOCK="$BASE_RUN/containerd.sock"
CONFIG="$BASE_LIB/config.toml"
LOG=/tmp/t1609-containerd.log
IMAGES="$BASE_LIB/images"
BUSYBOX_REF=docker.io/t1609-test/busybox:1
PAUSE_REF=docker.io/t1609-test/pause:1
PODMAN_REF=localhost/t1609-test/busybox:1
# The tests' own containerd namespace, besides the CRI's k8s.io.
OWN_NS=t1609

need_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${T1609_SKIP_APT:-0}" = 1 ]; then
        log "missing packages ${missing[*]} and T1609_SKIP_APT=1"
        return 1
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# make_oci_archive OUT REF CMD_JSON: an OCI image archive of a busybox-static root
# file system, named REF (containerd reads io.containerd.image.name; podman the ref name).
make_oci_archive() {
    local out="$1" ref="$2" cmd="$3" work root bb app arch diffid layer cfg man
    work="$(mktemp -d)"
    root="$work/rootfs"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$work/oci/blobs/sha256"
    bb="$(command -v busybox || echo /bin/busybox)"
    cp "$bb" "$root/bin/busybox"
    for app in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$app" ] || ln -s busybox "$root/bin/$app"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    tar -C "$root" --numeric-owner --sort=name --mtime=@0 -cf "$work/layer.tar" .
    diffid="$(sha "$work/layer.tar")"
    gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"
    layer="$(sha "$work/layer.tar.gz")"
    mv "$work/layer.tar.gz" "$work/oci/blobs/sha256/$layer"
    arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":%s,"Labels":{"org.t1609.test-fixture":"busybox"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$arch" "$cmd" "$diffid" >"$work/config.json"
    cfg="$(sha "$work/config.json")"
    cp "$work/config.json" "$work/oci/blobs/sha256/$cfg"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
        "$cfg" "$(stat -c %s "$work/config.json")" "$layer" "$(stat -c %s "$work/oci/blobs/sha256/$layer")" >"$work/manifest.json"
    man="$(sha "$work/manifest.json")"
    cp "$work/manifest.json" "$work/oci/blobs/sha256/$man"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$man" "$(stat -c %s "$work/manifest.json")" "$ref" "$ref" >"$work/oci/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
    tar -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
    mv "$out.tmp" "$out"
    rm -rf "$work"
}

images() {
    mkdir -p "$IMAGES"
    [ -s "$IMAGES/busybox.tar" ] || make_oci_archive "$IMAGES/busybox.tar" "$BUSYBOX_REF" '["/bin/sh"]'
    # The pod sandbox's process: sleeps until the runtime kills it (StopPodSandbox).
    [ -s "$IMAGES/pause.tar" ] || make_oci_archive "$IMAGES/pause.tar" "$PAUSE_REF" '["/bin/sleep","2147483647"]'
}

ctr_() { ctr -a "$SOCK" "$@"; }

write_config() {
    mkdir -p "$BASE_RUN" "$BASE_LIB" "$BASE_RUN/cni-none"
    cat >"$CONFIG.tmp" <<EOF
# Written by scripts/runtimes.sh: the t1609 tests' own containerd.
version = 2
root = "$BASE_LIB/root"
state = "$BASE_RUN/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$BASE_LIB/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_REF"
    disable_apparmor = true
    # Pod sandboxes ask for oom_score_adj -998, which needs CAP_SYS_RESOURCE (not in
    # every bounding set, not in this build machine's): clamp to containerd's own.
    restrict_oom_score_adj = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
    # Pod sandboxes use the host's network: no CNI plugin is ever called.
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$BASE_RUN/cni-none"
EOF
    if ! cmp -s "$CONFIG.tmp" "$CONFIG"; then mv "$CONFIG.tmp" "$CONFIG"; return 1; fi
    rm -f "$CONFIG.tmp"
}

running_pid() {
    pgrep -f "^containerd --config $CONFIG\$" | head -n1 || true
}

start_containerd() {
    need_pkgs containerd runc busybox-static
    images
    local changed=0 pid
    write_config || changed=1
    pid="$(running_pid)"
    if [ -n "$pid" ] && [ "$changed" = 1 ]; then
        log "config changed: restarting the tests' containerd ($pid)"
        kill "$pid"; for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        pid=""
    fi
    if [ -z "$pid" ] || ! ctr_ version >/dev/null 2>&1; then
        log "starting containerd --config $CONFIG (log: $LOG)"
        setsid containerd --config "$CONFIG" </dev/null >"$LOG" 2>&1 &
        for _ in $(seq 1 150); do
            ctr_ version >/dev/null 2>&1 && break
            sleep 0.2
        done
        ctr_ version >/dev/null 2>&1 || { log "containerd did not answer on $SOCK; see $LOG"; tail -n 20 "$LOG" >&2; return 1; }
    fi
    local ns ref tar digest by_digest have
    for ns in k8s.io "$OWN_NS"; do
        for ref in "$BUSYBOX_REF" "$PAUSE_REF"; do
            tar="$IMAGES/busybox.tar"; [ "$ref" = "$PAUSE_REF" ] && tar="$IMAGES/pause.tar"
            digest="$(tar -xOf "$tar" index.json | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p')"
            # A repo@digest name too, as a pull leaves: the CRI reports it as the
            # container's image_ref (its digest), which the alerts carry.
            by_digest="${ref%:*}@$digest"
            # (The list is read whole first: `grep -q` closing the pipe early would fail
            # the pipeline under pipefail.)
            have="$(ctr_ -n "$ns" images ls -q)"
            if ! grep -qxF "$by_digest" <<<"$have"; then
                log "importing $ref ($digest) into namespace $ns"
                ctr_ -n "$ns" images rm "$ref" >/dev/null 2>&1 || true
                ctr_ -n "$ns" images import "$tar" >/dev/null
                ctr_ -n "$ns" images tag --force "$ref" "$by_digest" >/dev/null
            fi
        done
    done
    echo "CONTAINERD_SOCKET=$SOCK"
    echo "CONTAINERD_OWN_NAMESPACE=$OWN_NS"
    echo "BUSYBOX_IMAGE=$BUSYBOX_REF"
    echo "PAUSE_IMAGE=$PAUSE_REF"
}

start_podman() {
    need_pkgs podman crun conmon busybox-static
    images
    if ! podman image exists "$PODMAN_REF" 2>/dev/null; then
        log "loading $PODMAN_REF into podman"
        # podman names an OCI archive after its ref annotation; tag it with our name.
        local loaded
        loaded="$(podman load -q -i "$IMAGES/busybox.tar" 2>&1 | sed -n 's/^Loaded image[^:]*: //p' | tail -n1)"
        [ -n "$loaded" ] || { log "podman load printed no image name"; return 1; }
        podman tag "$loaded" "$PODMAN_REF"
    fi
    podman image exists "$PODMAN_REF" || { log "podman has no $PODMAN_REF after load"; return 1; }
    echo "PODMAN_IMAGE=$PODMAN_REF"
    echo "PODMAN_STORAGE=$(podman info --format '{{.Store.GraphRoot}}')"
    echo "PODMAN_DRIVER=$(podman info --format '{{.Store.GraphDriverName}}')"
}

stop_containerd() {
    local pid; pid="$(running_pid)"
    [ -n "$pid" ] && kill "$pid" && log "stopped containerd $pid"
    return 0
}

for s in "${want[@]}"; do
    case "$s" in
        containerd) start_containerd ;;
        podman) start_podman ;;
        stop) stop_containerd ;;
        *) log "unknown runtime $s"; exit 2 ;;
    esac
done
