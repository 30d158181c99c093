#!/bin/sh
# weft attach/detach benchmark against the reference CNI bridge + host-local
# plugins (see BENCHMARKS.md). Entry point of `make bench`; run as root.
#
# Builds weft-bench, then runs it. Every network namespace it makes is
# named "$BENCH_PREFIX-..." and lives only for the run; the trap below
# deletes any that survive a crash or Ctrl-C (weft-bench also cleans up
# itself). Nothing runs in, or changes, the machine's own namespace.
#
# Environment: WEFT_BIN (default: the static release build, scripts/weft-bin), CNI_PATH, BENCH_SEQ_N,
# BENCH_PAR_N, BENCH_WORKERS, BENCH_CHUNK, BENCH_WARMUP, BENCH_SUBNET,
# BENCH_OUT (default bench/results.json); see bench/src/main.rs.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/attach.sh: run as root (make bench uses sudo)" >&2
    exit 1
fi

CARGO=${CARGO:-cargo}
if ! command -v "$CARGO" >/dev/null 2>&1 && [ -n "${SUDO_USER:-}" ]; then
    # Under sudo, root's PATH may lack the invoking user's rustup cargo.
    home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    [ -x "$home/.cargo/bin/cargo" ] && CARGO="$home/.cargo/bin/cargo"
fi
export WEFT_BIN="${WEFT_BIN:-$(CARGO="$CARGO" scripts/weft-bin)}"
# The benchmark program (workspace member weft-bench).
"$CARGO" build --release -q -p weft-bench --bin weft-bench
BENCH_BIN="${CARGO_TARGET_DIR:-target}/release/weft-bench"

export BENCH_PREFIX="wbench-$$"
cleanup() {
    # Only namespaces of this run (the prefix carries this shell's pid).
    leftover=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BENCH_PREFIX-" || true)
    if [ -n "$leftover" ]; then
        echo "bench/attach.sh: removing leftover namespaces" >&2
        echo "$leftover" | sed 's/^/netns del /' | ip -force -batch - 2>/dev/null || true
    fi
    rm -rf "${TMPDIR:-/tmp}/$BENCH_PREFIX"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

"$BENCH_BIN"
