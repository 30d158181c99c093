# shellcheck shell=sh
# Sourced by bench/overlay.sh and bench/soak.sh (cwd: the repository).
#
# run_netns_bench SCRIPT BIN PREFIX OUT TOOL... : checks root and the
# TOOLs, builds weft-bench's BIN (release), and runs it with WEFT_BIN
# (default: the static release weft, built if missing), BENCH_PREFIX (a
# name prefix with this shell's pid) and BENCH_OUT (default OUT). BIN
# deletes the namespaces it made; after a crash or a kill the trap kills
# what still runs in namespaces named "$BENCH_PREFIX-..." and deletes them.
# Nothing runs in, or changes, the machine's own namespace.
run_netns_bench() {
    script=$1 bin=$2 prefix=$3 out=$4
    shift 4
    if [ "$(id -u)" -ne 0 ]; then
        echo "$script: run as root" >&2
        exit 1
    fi
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "$script: $tool missing (apt-get install $NEEDS)" >&2
            exit 1
        fi
    done
    CARGO=${CARGO:-cargo}
    TARGET="${CARGO_TARGET_DIR:-target}"
    WEFT_BIN="${WEFT_BIN:-$(CARGO="$CARGO" scripts/weft-bin)}"
    export WEFT_BIN
    "$CARGO" build --release -q -p weft-bench --bin "$bin"
    BENCH_PREFIX="$prefix-$$"
    BENCH_OUT="${BENCH_OUT:-$out}"
    export BENCH_PREFIX BENCH_OUT
    trap netns_bench_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    "$TARGET/release/$bin"
}

netns_bench_cleanup() {
    leftover=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BENCH_PREFIX-" || true)
    if [ -n "$leftover" ]; then
        echo "$script: removing leftover namespaces" >&2
        for ns in $leftover; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            # shellcheck disable=SC2086
            [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
        done
        echo "$leftover" | sed 's/^/netns del /' | ip -force -batch - 2>/dev/null || true
    fi
    rm -rf "${TMPDIR:-/tmp}/$BENCH_PREFIX"
}
