# shellcheck shell=bash
# The measurement of bench/podman.sh, run inside tests/podman/run.sh's
# sandbox (its helpers pm, run_d and fail are in scope).

NETAVARK_DIR=/usr/lib/podman

# N timings of CMD... in ms, one per line.
bench_times() {
    local n=$1 i t0 t1
    shift
    for i in $(seq "$n"); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || fail "bench: $* failed (run $i)"
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000))
    done
}

conn_disconn() {
    pm network connect benchnet idle && pm network disconnect benchnet idle
}

bench_backend() { # NAME HELPER_DIR
    local name=$1
    export CONTAINERS_HELPER_BINARY_DIR=$2
    pm run --rm "$IMAGE" true >/dev/null 2>&1 || fail "bench: $name: first run failed: $(pm run --rm "$IMAGE" true 2>&1)"
    # Alternating, so that drift over the run weighs on both alike.
    : >"$T/$name.run"
    : >"$T/$name.none"
    for _ in $(seq "$BENCH_N"); do
        bench_times 1 pm run --rm "$IMAGE" true >>"$T/$name.run"
        bench_times 1 pm run --rm --network none "$IMAGE" true >>"$T/$name.none"
    done
    # weft keeps an unused network 3 s (netavark::linger): a container
    # started later pays for the bridge and its rules again ("cold").
    if [ "$name" = weft ]; then
        : >"$T/$name.cold"
        for _ in $(seq "$BENCH_COLD"); do
            sleep 5
            bench_times 1 pm run --rm "$IMAGE" true >>"$T/$name.cold"
        done
    fi
    pm network create benchnet >/dev/null
    run_d idle "$IMAGE" sleep 600
    bench_times "$BENCH_N" conn_disconn >"$T/$name.conn"
    pm rm --force --time 0 idle >/dev/null
    pm network rm benchnet >/dev/null
}

# The helper alone: weft's setup and teardown as Podman runs them, timed
# by a wrapper around the same binary (bash's start is outside the timing).
bench_helper() {
    mkdir -p "$T/timed"
    cat >"$T/timed/netavark" <<EOS
#!/bin/bash
t0=\$(date +%s%N)
"$WEFT_BIN" netavark "\$@"
rc=\$?
t1=\$(date +%s%N)
echo "\${@: -2:1} \$(( (t1 - t0) / 1000 ))" >>"$T/helper"
exit \$rc
EOS
    chmod +x "$T/timed/netavark"
    export CONTAINERS_HELPER_BINARY_DIR=$T/timed
    bench_times "$BENCH_N" pm run --rm "$IMAGE" true >/dev/null
}

sc_bench() {
    local backends="weft"
    bench_backend weft "$T/helpers"
    bench_helper
    if [ -x "$NETAVARK_DIR/netavark" ]; then
        backends="weft netavark"
        bench_backend netavark "$NETAVARK_DIR"
    fi
    python3 - "$T" "$BENCH_N" "${PM_OUT:-/dev/null}" $backends <<'PY'
import json, sys
t, n, out, backends = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
res = {"n": n, "backends": {}}
for b in backends:
    r = {}
    for k in ("run", "none", "conn", "cold"):
        try:
            v = [int(x) / 1000 for x in open(f"{t}/{b}.{k}")]
        except FileNotFoundError:
            continue
        r[k] = {"p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)}
    r["network_share_p50_ms"] = round(r["run"]["p50_ms"] - r["none"]["p50_ms"], 1)
    if "cold" in r:
        r["cold_network_share_p50_ms"] = round(r["cold"]["p50_ms"] - r["none"]["p50_ms"], 1)
    res["backends"][b] = r
    print(f"{b:9} run {r['run']['p50_ms']:7.1f}/{r['run']['p99_ms']:7.1f}  none {r['none']['p50_ms']:7.1f}/{r['none']['p99_ms']:7.1f}"
          f"  connect+disconnect {r['conn']['p50_ms']:7.1f}/{r['conn']['p99_ms']:7.1f} ms (p50/p99)  network share {r['network_share_p50_ms']:.1f} ms")
helper = {}
for line in open(f"{t}/helper"):
    cmd, us = line.split(); helper.setdefault(cmd, []).append(int(us) / 1000)
res["weft_helper"] = {c: {"p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)} for c, v in helper.items()}
print("weft as netavark alone: " + ", ".join(f"{c} {r['p50_ms']}/{r['p99_ms']} ms" for c, r in res["weft_helper"].items()) + " (p50/p99)")
if "netavark" in res["backends"]:
    w, a = res["backends"]["weft"], res["backends"]["netavark"]
    res["share_ratio"] = round(w["network_share_p50_ms"] / a["network_share_p50_ms"], 3) if a["network_share_p50_ms"] > 0 else None
    res["conn_ratio"] = round(w["conn"]["p50_ms"] / a["conn"]["p50_ms"], 3)
    res["cold_share_ratio"] = round(w["cold_network_share_p50_ms"] / a["network_share_p50_ms"], 3) if a["network_share_p50_ms"] > 0 else None
    print(f"weft/netavark: network share {res['share_ratio']}, connect+disconnect {res['conn_ratio']}")
    print(f"weft cold (network unused for 5 s, made again; N={len(open(t + '/weft.cold').readlines())}): "
          f"run {w['cold']['p50_ms']} ms p50, network share {w['cold_network_share_p50_ms']} ms, ratio to netavark's share {res['cold_share_ratio']}")
else:
    res["netavark"] = "not installed (Debian package netavark): weft measured alone"
    print("netavark is not installed (apt-get install netavark): weft measured alone")
json.dump(res, open(out, "w"), indent=2)
PY
    PASS="bench N=$BENCH_N ($backends)"
}
