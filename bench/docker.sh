#!/bin/bash
# Docker benchmark: Docker's own bridge driver against weft (the
# `weft docker-plugin` remote network and IPAM driver), same dockerd, same
# run, turns interleaved: `docker network connect` + `disconnect` of a
# running container, and `docker run --rm --network NET IMAGE true`.
# Prints p50/p99 per case and the ratios, and writes them as JSON.
#
# Run as root. dockerd runs inside a throwaway sandbox, as in
# tests/docker.rs: its own network namespace (--bridge=none
# --iptables=false), a private mount namespace whose tmpfs covers /run, and
# a temporary data root; the trap removes all of it.
#
# Environment: WEFT_BIN (default: the static release build, scripts/weft-bin),
# BENCH_DOCKER_N (default 50), BENCH_DOCKER_OUT (bench/docker-results.json).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/docker.sh: run as root" >&2
    exit 1
fi
for bin in dockerd docker containerd runc; do
    command -v "$bin" >/dev/null || { echo "bench/docker.sh: $bin missing: install docker.io" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "bench/docker.sh: install busybox-static" >&2; exit 1; }
N=${BENCH_DOCKER_N:-50}
OUT=${BENCH_DOCKER_OUT:-bench/docker-results.json}
WEFT_BIN="${WEFT_BIN:-$(scripts/weft-bin)}"
[ -x "$WEFT_BIN" ] || { echo "bench/docker.sh: no weft binary at $WEFT_BIN (make build)" >&2; exit 1; }
WEFT_BIN=$(realpath "$WEFT_BIN") # nsenter starts in /

NS="wdb-$$"
T=$(mktemp -d "${TMPDIR:-/tmp}/$NS.XXXXXX")
holder=""
cleanup() {
    set +e
    if [ -n "$holder" ]; then
        docker_ rm -f $(docker_ ps -aq) >/dev/null 2>&1
        mnt=$(readlink "/proc/$holder/ns/mnt")
        # Everything started in the sandbox's mount namespace: dockerd,
        # containerd, shims, the plugin.
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [ "$pid" = "$holder" ] && continue
            [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mnt" ] && kill -TERM "$pid" 2>/dev/null
        done
        sleep 2
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [ "$pid" = "$holder" ] && continue
            [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mnt" ] && kill -KILL "$pid" 2>/dev/null
        done
        kill "$holder" 2>/dev/null
        wait "$holder" 2>/dev/null
    fi
    ip netns del "$NS" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

docker_() { docker --host "unix://$T/docker.sock" "$@"; }
inside() { nsenter --mount="/proc/$holder/ns/mnt" --net="/proc/$holder/ns/net" "$@"; }

ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir -p "$T/etc" "$T/data" "$T/exec" "$T/state" "$T/rootfs/bin"
echo '{}' >"$T/daemon.json"
nsenter --net="/var/run/netns/$NS" unshare -m --propagation private sh -c \
    "mount -t tmpfs tmpfs /run && mkdir -p /run/docker/plugins && mount --bind $T/etc /etc/docker && exec sleep infinity" &
holder=$!
sleep 0.3
inside "$WEFT_BIN" --state-dir "$T/state" docker-plugin 2>"$T/plugin.log" &
plugin=$!
until inside test -S /run/docker/plugins/weft.sock; do
    kill -0 "$plugin" 2>/dev/null || { cat "$T/plugin.log" >&2; exit 1; }
    sleep 0.1
done
inside bash -c 'ulimit -n 1024 && ulimit -u 4096 && exec "$@"' bash dockerd \
    --data-root="$T/data" --exec-root="$T/exec" --pidfile="$T/dockerd.pid" \
    --host="unix://$T/docker.sock" --config-file="$T/daemon.json" \
    --bridge=none --iptables=false --ip6tables=false 2>"$T/dockerd.log" &
dockerd=$!
until docker_ version >/dev/null 2>&1; do
    kill -0 "$dockerd" 2>/dev/null || { tail "$T/dockerd.log" >&2; exit 1; }
    sleep 0.2
done

cp /bin/busybox "$T/rootfs/bin/"
for a in sh sleep true; do ln -s busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -c . | docker_ import - weft-bench-busybox >/dev/null

docker_ network create -d bridge --subnet 10.61.0.0/24 b-net >/dev/null
docker_ network create -d weft --ipam-driver weft --subnet 10.62.0.0/24 w-net >/dev/null
# The container connected and disconnected sits on a third network of its
# own (Docker cannot connect one in `--network none`).
docker_ network create -d bridge --subnet 10.60.0.0/24 base >/dev/null
docker_ run -d --name idle --network base weft-bench-busybox sleep 100000 >/dev/null

now() { date +%s%N; }
# One sample in ms (integer microseconds / 1000 in awk later).
sample() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null || { echo "bench/docker.sh: $* failed" >&2; return 1; }
    t1=$(now)
    echo $(((t1 - t0) / 1000))
}

: >"$T/samples"
for i in $(seq 1 2); do # warm-up, not recorded
    for net in b-net w-net; do
        docker_ network connect "$net" idle && docker_ network disconnect "$net" idle
        docker_ run --rm --network "$net" weft-bench-busybox true >/dev/null
    done
done
for i in $(seq 1 "$N"); do
    # Alternate which driver goes first, so neither always follows the other.
    if [ $((i % 2)) -eq 0 ]; then order="b-net w-net"; else order="w-net b-net"; fi
    for net in $order; do
        us=$(sample sh -c "docker --host unix://$T/docker.sock network connect $net idle && \
            docker --host unix://$T/docker.sock network disconnect $net idle")
        echo "connect+disconnect $net $us" >>"$T/samples"
        us=$(sample docker_ run --rm --network "$net" weft-bench-busybox true)
        echo "run $net $us" >>"$T/samples"
    done
done

awk -v n="$N" -v out="$OUT" '
function pct(arr, cnt, p,   i, j, t, k) {
    for (i = 1; i <= cnt; i++) s[i] = arr[i]
    for (i = 2; i <= cnt; i++) { t = s[i]; for (j = i - 1; j > 0 && s[j] > t; j--) s[j + 1] = s[j]; s[j + 1] = t }
    k = int(p * cnt + 0.999999); if (k < 1) k = 1; if (k > cnt) k = cnt
    return s[k] / 1000
}
{ key = $1 " " $2; c[key]++; v[key, c[key]] = $3 }
END {
    printf "{\n  \"n\": %d,\n  \"unit\": \"ms\",\n  \"cases\": {\n", n > out
    first = 1
    split("connect+disconnect run", ops, " ")
    for (o = 1; o <= 2; o++) {
        for (d = 1; d <= 2; d++) {
            net = (d == 1) ? "b-net" : "w-net"; key = ops[o] " " net
            for (i = 1; i <= c[key]; i++) a[i] = v[key, i]
            p50[key] = pct(a, c[key], 0.50); p99[key] = pct(a, c[key], 0.99)
        }
        bk = ops[o] " b-net"; wk = ops[o] " w-net"
        printf "%s    \"%s\": {\"docker_bridge\": {\"p50\": %.1f, \"p99\": %.1f}, \"weft\": {\"p50\": %.1f, \"p99\": %.1f}, \"weft_over_bridge_p50\": %.2f, \"weft_over_bridge_p99\": %.2f}", \
            (first ? "" : ",\n"), ops[o], p50[bk], p99[bk], p50[wk], p99[wk], p50[wk] / p50[bk], p99[wk] / p99[bk] > out
        first = 0
        printf "%-20s bridge p50 %7.1f ms  p99 %7.1f ms | weft p50 %7.1f ms  p99 %7.1f ms | weft/bridge p50 %.2f  p99 %.2f\n", \
            ops[o], p50[bk], p99[bk], p50[wk], p99[wk], p50[wk] / p50[bk], p99[wk] / p99[bk]
    }
    printf "\n  }\n}\n" > out
}' "$T/samples"
echo "bench/docker.sh: N=$N, written to $OUT"
