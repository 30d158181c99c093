#!/bin/sh
# Port publishing and DNS benchmark: weft against bridge+portmap (attach
# with one published port, N=200 sequential) and against dnsmasq (queries
# per second with dnsperf), in the same run. Run as root. Every namespace
# is "$BENCH_PREFIX-..."; the trap deletes any a crash leaves behind.
#
# Environment: WEFT_BIN (default: the static release build, scripts/weft-bin), CNI_PATH,
# BENCH_PORTS_N, BENCH_DNS_SECS, BENCH_PORTS_OUT (bench/ports-results.json).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/ports.sh: run as root" >&2
    exit 1
fi
need=""
command -v dnsperf >/dev/null 2>&1 || need="$need dnsperf"
command -v dnsmasq >/dev/null 2>&1 || need="$need dnsmasq-base"
command -v iptables >/dev/null 2>&1 || need="$need iptables"
[ -x /usr/lib/cni/portmap ] || need="$need containernetworking-plugins"
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q $need >/dev/null
fi
CARGO=${CARGO:-cargo}
export WEFT_BIN="${WEFT_BIN:-$(CARGO="$CARGO" scripts/weft-bin)}"
"$CARGO" build --release -q -p weft-bench --bin weft-ports-bench
export BENCH_PREFIX="wpb-$$"
cleanup() {
    leftover=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BENCH_PREFIX-" || true)
    [ -z "$leftover" ] || echo "$leftover" | sed 's/^/netns del /' | ip -force -batch - 2>/dev/null || true
    rm -rf "${TMPDIR:-/tmp}/$BENCH_PREFIX"-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
"${CARGO_TARGET_DIR:-target}/release/weft-ports-bench"
