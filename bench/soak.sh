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

NEEDS="etcd-server iproute2 iputils-ping"
. bench/netns-bench.sh
run_netns_bench bench/soak.sh weft-soak wsoak bench/soak-results.json etcd etcdctl ip ping
