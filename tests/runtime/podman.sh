#!/bin/bash
# weft under a real container runtime: Podman 4.3 with its CNI backend runs
# two busybox containers on a weft network, they ping each other, `weft
# endpoint ls` lists both, and removing them leaves nothing behind. A third
# container runs on a conflist that chains weft with the reference portmap
# and tuning plugins (docs/cni.md's example): its published port answers and
# the sysctl is set.
#
#   sudo tests/runtime/podman.sh          # WEFT_BIN: the release build, else the debug build
#   sudo WEFT_BIN=/path/to/weft tests/runtime/podman.sh
#
# Needs root and the Debian packages podman, runc, busybox-static (the image
# is built offline from it), iproute2, util-linux, python3; the chained part
# also containernetworking-plugins and iptables (skipped, and said so in the
# PASS line, without them). Takes about 5 s. Prints one PASS line and exits
# 0, or a FAIL line with the reason and exits non-zero. Cargo runs it as the
# `runtime` test (tests/runtime.rs).
#
# Nothing outside a sandbox is touched:
# - Podman itself runs inside a throwaway network namespace (weft-rt-PID),
#   so weft's bridge, veths and nftables table land there, not on the host.
#   (We enter it with nsenter rather than `ip netns exec`: the latter remounts
#   /sys and so hides the cgroup mounts that runc needs.)
# - It also runs in a private mount namespace where /run (Podman's container
#   namespaces, runc's state) and /var/lib (libcni's result cache, the
#   image blob cache) are private tmpfs mounts.
# - Podman's storage, run root, locks, events, containers.conf, CNI config
#   and plugin dirs and weft's state dir all live in one temp dir; the
#   containers' cgroups under /weft-rt-PID.
# - A trap removes the containers, the image, the namespaces, the cgroups
#   and the temp dir, on success and on failure alike.
set -euo pipefail

NET=weftrt
SUBNET=10.88.5.0/24
CHAIN=weftchain
CHAIN_SUBNET=10.88.6.0/24
IMAGE=localhost/weft-rt-busybox:latest

fail() {
    echo "FAIL: runtime test (podman): $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Inner part: runs inside the sandbox netns and the private mount namespace.
# ---------------------------------------------------------------------------
inner() {
    : "${RT_TMP:?}" "${RT_NS:?}" "${WEFT_BIN:?}" "${RT_CHAIN?}"
    t=$RT_TMP
    # Podman, runc and libcni keep state under /run (netns, runc, libpod)
    # and /var/lib (containers/cache, cni/results) whatever their flags
    # say: private tmpfs mounts here, gone with this mount namespace.
    mount -t tmpfs -o mode=0755 weft-rt /run
    mount -t tmpfs -o mode=0755 weft-rt /var/lib
    mkdir -p /run/netns
    ip link set lo up

    export CONTAINERS_CONF=$t/containers.conf
    export CONTAINERS_STORAGE_CONF=$t/storage.conf
    # Podman reads XDG_RUNTIME_DIR for a few paths even as root.
    export XDG_RUNTIME_DIR=$t/xdg TMPDIR=$t/tmp
    mkdir -p "$t/xdg"
    pm() { podman --root "$t/storage" --runroot "$t/run" --storage-driver vfs "$@"; }
    weft() { "$WEFT_BIN" --state-dir "$t/weft-state" "$@"; }

    inner_cleanup() {
        local rc=$?
        pm rm --all --force --time 0 >/dev/null 2>&1 || true
        pm rmi --all --force >/dev/null 2>&1 || true
        return $rc
    }
    trap inner_cleanup EXIT

    # --- the image: busybox-static in an otherwise empty rootfs ------------
    # shellcheck source=tests/podman/busybox-image.sh
    . "$(dirname "$0")/../podman/busybox-image.sh"
    busybox_image "$t" "$IMAGE"

    # --- two containers on the weft network ---------------------------------
    local out
    for c in c1 c2; do
        out=$(pm run --detach --name "$c" --network "$NET" --cgroup-parent "/$RT_NS" \
            --cap-add NET_RAW "$IMAGE" sleep 600 2>&1) || fail "podman run $c failed: $out"
    done
    local id1 id2 ip1 ip2
    id1=$(pm inspect --format '{{.Id}}' c1)
    id2=$(pm inspect --format '{{.Id}}' c2)
    ip1=$(pm inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" c1)
    ip2=$(pm inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" c2)
    case "$ip1/$ip2" in
    10.88.5.*/10.88.5.*) ;;
    *) fail "containers did not get addresses in $SUBNET: c1=$ip1 c2=$ip2" ;;
    esac
    [ "$ip1" != "$ip2" ] || fail "both containers got $ip1"
    # The address is really on the container's eth0.
    out=$(pm exec c2 ip -4 -o addr show dev eth0 2>&1) || fail "podman exec c2 ip addr: $out"
    case "$out" in *" $ip2/24 "*) ;; *) fail "c2's eth0 lacks $ip2/24: $out" ;; esac

    out=$(pm exec c1 ping -c1 -W2 "$ip2" 2>&1) || fail "c1 ($ip1) cannot ping c2 ($ip2): $out"
    out=$(pm exec c2 ping -c1 -W2 "$ip1" 2>&1) || fail "c2 ($ip2) cannot ping c1 ($ip1): $out"

    # --- chained with the reference plugins (docs/cni.md's example) --------
    # weft -> portmap (a published port, DNAT through weft's forward chain)
    # -> tuning (a sysctl in the container), when those plugins and the
    # iptables that portmap drives are installed.
    local idw='' chain="chain: skipped, no /usr/lib/cni/portmap, tuning or iptables"
    if [ -n "$RT_CHAIN" ]; then
        out=$(pm run --detach --name web --network "$CHAIN" --publish 8080:80 \
            --cgroup-parent "/$RT_NS" "$IMAGE" \
            sh -c 'echo served-by-weft >/tmp/index.html && exec httpd -f -p 80 -h /tmp' 2>&1) ||
            fail "podman run web on $CHAIN (weft+portmap+tuning) failed: $out"
        idw=$(pm inspect --format '{{.Id}}' web)
        local gw=${CHAIN_SUBNET%.0/24}.1
        for _ in $(seq 50); do
            # (busybox-static 1.35 wget -T crashes: coreutils timeout instead.)
            out=$(timeout 3 /bin/busybox wget -q -O- "http://$gw:8080/index.html" 2>&1) && break
            sleep 0.1
        done
        [ "$out" = served-by-weft ] ||
            fail "published port $gw:8080 -> web:80 (portmap after weft) does not answer: $out"
        out=$(pm exec web cat /proc/sys/net/core/somaxconn 2>&1)
        [ "$out" = 512 ] || fail "tuning after weft did not set net.core.somaxconn=512: $out"
        chain="chain weft+portmap+tuning: port 8080 published, sysctl set"
    fi

    # --- weft's store knows them, under the runtime's container ids --------
    out=$(weft endpoint ls --json) || fail "weft endpoint ls failed"
    python3 - "$out" "$NET" "$id1=$ip1" "$id2=$ip2" "$idw" <<'EOF' || fail "weft endpoint ls does not list exactly c1 and c2 on $NET (and web on $CHAIN): $out"
import json, sys
eps, net = json.loads(sys.argv[1]), sys.argv[2]
want, web = dict(a.split("=") for a in sys.argv[3:5]), sys.argv[5]
got = {e["container"]: e["address"].split("/")[0] for e in eps
       if e["network"] == net and e["ifname"] == "eth0" and e["state"] == "ready"}
others = sorted(e["container"] for e in eps if e["network"] != net)
sys.exit(0 if got == want and others == ([web] if web else []) else 1)
EOF

    # --- removing them leaves nothing behind --------------------------------
    out=$(pm rm --all --force --time 0 2>&1) || fail "podman rm failed: $out"
    out=$(weft endpoint ls --json) || fail "weft endpoint ls failed"
    python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]) == [] else 1)' "$out" ||
        fail "endpoints left in weft's store after podman rm: $out"
    out=$(ip -d -j link show)
    python3 - "$out" <<'EOF' || fail "veths left in the sandbox after podman rm: $(ip -br link)"
import json, sys
left = [l["ifname"] for l in json.loads(sys.argv[1])
        if l.get("ifalias", "").startswith("weft:ep=")
        or l.get("linkinfo", {}).get("info_kind") == "veth"]
sys.exit(1 if left else 0)
EOF
    [ -z "$(ls -A /run/netns)" ] || fail "container namespaces left: $(ls /run/netns)"
    # libcni drops a cached result only once DEL succeeded.
    [ -z "$(ls -A /var/lib/cni/results 2>/dev/null)" ] ||
        fail "libcni still caches results (a DEL failed?): $(ls /var/lib/cni/results)"
    if [ -n "$RT_CHAIN" ] && iptables-save -t nat | grep -q 'CNI-DN-'; then
        fail "portmap's DNAT rules left after podman rm: $(iptables-save -t nat | grep CNI-DN-)"
    fi
    echo "$chain" >"$t/chain"
    echo "$(pm version --format '{{.Client.Version}}') $ip1 $ip2" >"$t/result"
}

# ---------------------------------------------------------------------------
# Outer part: checks, the sandbox, the config files, cleanup.
# ---------------------------------------------------------------------------
outer() {
    local start root
    start=$(date +%s.%N)
    root=$(cd "$(dirname "$0")/../.." && pwd)
    [ "$(id -u)" -eq 0 ] || fail "needs root (network and mount namespaces)"
    for cmd in podman runc conmon ip nsenter unshare python3 tar timeout; do
        command -v "$cmd" >/dev/null 2>&1 ||
            fail "$cmd is not installed (apt-get install podman runc busybox-static iproute2 util-linux python3)"
    done
    [ -x /bin/busybox ] || fail "/bin/busybox is missing (apt-get install busybox-static)"
    # ldd fails on a static binary: the image has no libc to offer.
    if ldd /bin/busybox >/dev/null 2>&1; then
        fail "/bin/busybox is dynamically linked: install busybox-static"
    fi
    if [ -z "${WEFT_BIN:-}" ]; then
        local target=${CARGO_TARGET_DIR:-$root/target}
        for b in "$target"/*/release/weft "$target/release/weft" "$target"/*/debug/weft "$target/debug/weft"; do
            [ -x "$b" ] && WEFT_BIN=$b && break
        done
    fi
    if [ -z "${WEFT_BIN:-}" ] || [ ! -x "$WEFT_BIN" ]; then
        fail "no weft binary at '${WEFT_BIN:-}' (build with 'make build' or set WEFT_BIN)"
    fi
    WEFT_BIN=$(realpath "$WEFT_BIN")

    RT_NS=weft-rt-$$
    RT_TMP=$(mktemp -d /tmp/weft-rt.XXXXXX)
    trap 'outer_cleanup' EXIT
    trap 'exit 130' INT TERM
    outer_cleanup() {
        local rc=$?
        set +e
        # Normally the inner trap has removed the containers already; this
        # kills whatever is left (conmon in the sandbox netns, container
        # processes in our cgroups), by pid.
        local pids cgroups
        # cgroup v1 (one tree per controller) or v2 (one tree).
        cgroups=$(ls -d /sys/fs/cgroup/"$RT_NS" /sys/fs/cgroup/*/"$RT_NS" 2>/dev/null)
        pids="$(ip netns pids "$RT_NS" 2>/dev/null)"
        for d in $cgroups; do
            pids="$pids $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)"
        done
        for p in $pids; do kill -9 "$p" 2>/dev/null; done
        [ -n "${pids// /}" ] && sleep 0.5
        for d in $cgroups; do
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
        ip netns del "$RT_NS" 2>/dev/null
        rm -rf "$RT_TMP"
        return $rc
    }

    local NPROC
    NPROC=$(ulimit -Hu)
    if [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 4096 ]; then NPROC=4096; fi
    # Private config: CNI backend with weft as the only plugin, runc,
    # cgroupfs, file locks and events, ulimits this machine allows.
    mkdir -p "$RT_TMP"/{cni-bin,cni-conf,weft-state,storage,run,tmp}
    ln -s "$WEFT_BIN" "$RT_TMP/cni-bin/weft"
    cat >"$RT_TMP/cni-conf/$NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [
    {"type": "weft", "subnet": "$SUBNET", "stateDir": "$RT_TMP/weft-state"}
  ]
}
EOF
    # The same network chained with the reference plugins, when installed.
    RT_CHAIN=
    if [ -x /usr/lib/cni/portmap ] && [ -x /usr/lib/cni/tuning ] &&
        command -v iptables-save >/dev/null 2>&1; then
        RT_CHAIN=1
        ln -s /usr/lib/cni/portmap /usr/lib/cni/tuning "$RT_TMP/cni-bin/"
        cat >"$RT_TMP/cni-conf/$CHAIN.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CHAIN",
  "plugins": [
    {"type": "weft", "subnet": "$CHAIN_SUBNET", "stateDir": "$RT_TMP/weft-state"},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
    {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}
  ]
}
EOF
    fi
    cat >"$RT_TMP/containers.conf" <<EOF
[containers]
# Podman's defaults (nofile 1048576, nproc 4194304) exceed the hard
# limits here, and runc may not raise them (no CAP_SYS_RESOURCE).
default_ulimits = ["nofile=1024:1024", "nproc=$NPROC:$NPROC"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["$RT_TMP/cni-bin"]
network_config_dir = "$RT_TMP/cni-conf"
default_network = "$NET"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RT_TMP/tmp/events.log"
lock_type = "file"
tmp_dir = "$RT_TMP/tmp"
volume_path = "$RT_TMP/storage/volumes"
image_copy_tmp_dir = "$RT_TMP/tmp"
EOF
    cat >"$RT_TMP/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$RT_TMP/storage"
runroot = "$RT_TMP/run"
EOF

    ip netns add "$RT_NS"
    nsenter --net="/run/netns/$RT_NS" -- unshare --mount --propagation slave -- \
        env RT_INNER=1 RT_TMP="$RT_TMP" RT_NS="$RT_NS" RT_CHAIN="$RT_CHAIN" \
        WEFT_BIN="$WEFT_BIN" bash "$0"
    local version ip1 ip2 secs
    read -r version ip1 ip2 <"$RT_TMP/result"
    secs=$(python3 -c "print($(date +%s.%N) - $start)")
    printf 'PASS: podman %s ran two busybox containers on weft network %s (%s, %s): ping both ways, weft endpoint ls listed both, nothing left after rm; %s (%.1f s)\n' \
        "$version" "$NET" "$ip1" "$ip2" "$(cat "$RT_TMP/chain")" "$secs"
}

if [ -n "${RT_INNER:-}" ]; then
    inner
else
    outer
fi
