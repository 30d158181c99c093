#!/bin/sh
# Overlay benchmark of issue 4 (see BENCHMARKS.md, "Overlay (issue 4)"):
# convergence (attach on host A -> first reply from host B, p50/p99) and
# container-to-container throughput/latency across two simulated hosts,
# weft's overlay vs the same VXLAN path built by hand. Run as root.
#
# Needs: etcd-server, iperf3, iproute2, iputils-ping (Debian packages).
# Builds weft (release) and weft-overlay-bench, then runs the latter. Every
# namespace it makes is named "$BENCH_PREFIX-..."; weft-overlay-bench
# deletes them itself, and the trap below kills whatever still runs in
# them and deletes them after a crash or a kill. Nothing runs in, or
# changes, the machine's own namespace.
#
# Environment: WEFT_BIN (default: the static release build, built if
# missing: scripts/weft-bin),
# OVL_N, OVL_ROUNDS, OVL_IPERF_SECS, OVL_PINGS,
# BENCH_OUT (default bench/overlay-results.json); see
# bench/src/bin/weft-overlay-bench.rs.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/overlay.sh: run as root" >&2
    exit 1
fi
for tool in etcd etcdctl iperf3 ip ping; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench/overlay.sh: $tool missing (apt-get install etcd-server iperf3 iproute2 iputils-ping)" >&2
        exit 1
    fi
done

CARGO=${CARGO:-cargo}
TARGET="${CARGO_TARGET_DIR:-target}"
export WEFT_BIN="${WEFT_BIN:-$(CARGO="$CARGO" scripts/weft-bin)}"
"$CARGO" build --release -q -p weft-bench --bin weft-overlay-bench
BENCH_BIN="$TARGET/release/weft-overlay-bench"

export BENCH_PREFIX="wovl-$$"
export BENCH_OUT="${BENCH_OUT:-bench/overlay-results.json}"
cleanup() {
    # Only namespaces of this run (the prefix carries this shell's pid):
    # first what still runs inside them (agents, etcd, iperf3), then them.
    leftover=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BENCH_PREFIX-" || true)
    if [ -n "$leftover" ]; then
        echo "bench/overlay.sh: removing leftover namespaces" >&2
        for ns in $leftover; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
        done
        echo "$leftover" | sed 's/^/netns del /' | ip -force -batch - 2>/dev/null || true
    fi
    rm -rf "${TMPDIR:-/tmp}/$BENCH_PREFIX"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

"$BENCH_BIN"
