#!/bin/sh
# Churn soak of issue 13 (see BENCHMARKS.md, "Ownership soak (issue 13)"):
# three simulated hosts with a 3-member etcd, four workers attaching and
# detaching at random, and a fault every 5-15 s (a weft attach killed
# midway, an agent killed, a host partitioned for 3 lease TTLs, the etcd
# leader killed); after each, the invariants are checked until they hold.
# Exits non-zero on any invariant violation. Run as root.
#
# Needs: etcd-server, iproute2, iputils-ping (Debian packages).
# Environment: WEFT_BIN (default: the static release build, built if
# missing: scripts/weft-bin), SOAK_MINUTES (default 2; CI runs 2),
# SOAK_MAX (live containers, default 30), BENCH_OUT (default
# bench/soak-results.json); see bench/src/bin/weft-soak.rs.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/soak.sh: run as root" >&2
    exit 1
fi
for tool in etcd etcdctl ip ping; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench/soak.sh: $tool missing (apt-get install etcd-server iproute2 iputils-ping)" >&2
        exit 1
    fi
done

CARGO=${CARGO:-cargo}
TARGET="${CARGO_TARGET_DIR:-target}"
export WEFT_BIN="${WEFT_BIN:-$(CARGO="$CARGO" scripts/weft-bin)}"
"$CARGO" build --release -q -p weft-bench --bin weft-soak
BENCH_BIN="$TARGET/release/weft-soak"

export BENCH_PREFIX="wsoak-$$"
export BENCH_OUT="${BENCH_OUT:-bench/soak-results.json}"
cleanup() {
    # Only namespaces of this run: what still runs inside them first.
    leftover=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BENCH_PREFIX-" || true)
    if [ -n "$leftover" ]; then
        echo "bench/soak.sh: removing leftover namespaces" >&2
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
