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

NEEDS="etcd-server iperf3 iproute2 iputils-ping"
. bench/netns-bench.sh
run_netns_bench bench/overlay.sh weft-overlay-bench wovl bench/overlay-results.json etcd etcdctl iperf3 ip ping
