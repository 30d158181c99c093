#!/bin/bash
# Podman's network share of a container start, weft against Podman's own
# netavark, in the same run and the same sandbox (tests/podman/run.sh's:
# a throwaway network namespace, private storage and state):
#
#   sudo WEFT_BIN=target/x86_64-unknown-linux-gnu/release/weft bench/podman.sh [N]
#
# N rounds (default 50); in each, in a rotating order:
#   run   `podman run --rm --network NET IMAGE true` with weft, and with
#         netavark (each backend on a network of its own)
#   none  the same with `--network none` (no helper runs)
# then N turns of `podman network connect` + `disconnect` of a running
# container per backend, weft's setup and teardown timed alone, and
#   cold  (weft, N/5 times) `run` after 5 s without containers, when
#         weft has removed the network and makes it again.
# Prints p50/p99 in ms, the network's share (run - none, p50) and the
# ratio weft/netavark; writes bench/podman-results.json. Podman's netavark
# is /usr/lib/podman/netavark (Debian package `netavark`); without it only
# weft is measured, and the output says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BENCH_N=${1:-50}
# Cold starts (after the network's 3 s linger) are slow to collect: fewer.
export BENCH_COLD=$(( BENCH_N / 5 > 5 ? BENCH_N / 5 : 5 ))
export PM_SCENARIOS=$root/bench/podman-scenario.sh
export PM_OUT=${PM_OUT:-$root/bench/podman-results.json}
exec bash "$root/tests/podman/run.sh" bench
