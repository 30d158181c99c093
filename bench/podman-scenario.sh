# shellcheck shell=bash
# The measurement of bench/podman.sh, run inside tests/podman/run.sh's
# sandbox (its helpers pm, run_d and fail are in scope).
#
# Podman's own time drifts over a run (each container adds to its
# database and event log), so the backends take turns: each round runs
# weft's container, netavark's and one without a network, in an order that
# rotates. Each backend has a network of its own (benchw, bencha): weft
# keeps an unused network for 3 s and netavark deletes its bridge, so one
# shared bridge would be each other's.

NETAVARK_DIR=/usr/lib/podman

# Appends the time of CMD... in µs to FILE.
time_to() {
    local file=$1 t0 t1
    shift
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || fail "bench: $* failed"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >>"$file"
}

# with BACKEND CMD...: CMD with Podman's helper directory set to BACKEND's.
with() {
    local dir
    case $1 in weft) dir=$T/helpers ;; netavark) dir=$NETAVARK_DIR ;; timed) dir=$T/timed ;; esac
    shift
    CONTAINERS_HELPER_BINARY_DIR=$dir "$@"
}

net_of() { case $1 in weft | timed) echo benchw ;; netavark) echo bencha ;; esac; }

run_on() { # BACKEND: one `podman run --rm` on BACKEND's network
    with "$1" pm run --rm --network "$(net_of "$1")" "$IMAGE" true
}

conn_disconn() { # BACKEND
    local b=$1
    with "$b" pm network connect "$(net_of "$b")2" "idle-$b" &&
        with "$b" pm network disconnect "$(net_of "$b")2" "idle-$b"
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
    local i
    for i in $(seq "$BENCH_N"); do
        with timed pm run --rm --network benchw "$IMAGE" true >/dev/null 2>&1 || fail "bench: timed run $i failed"
    done
}

sc_bench() {
    local backends="weft" b i k
    if [ -x "$NETAVARK_DIR/netavark" ]; then backends="weft netavark"; fi
    pm network create --subnet 10.77.0.0/24 benchw >/dev/null
    pm network create --subnet 10.77.1.0/24 benchw2 >/dev/null
    pm network create --subnet 10.78.0.0/24 bencha >/dev/null
    pm network create --subnet 10.78.1.0/24 bencha2 >/dev/null
    for b in $backends; do
        run_on "$b" >/dev/null 2>&1 || fail "bench: $b: first run failed: $(run_on "$b" 2>&1)"
    done
    # Rounds: every backend's run and one without a network, rotating.
    local kinds=($backends none)
    for i in $(seq "$BENCH_N"); do
        for k in $(seq 0 $((${#kinds[@]} - 1))); do
            b=${kinds[$(((k + i) % ${#kinds[@]}))]}
            case $b in
            none) time_to "$T/none" pm run --rm --network none "$IMAGE" true ;;
            *) time_to "$T/$b.run" run_on "$b" ;;
            esac
        done
    done
    # connect + disconnect of a running container, turn about.
    for b in $backends; do with "$b" run_d "idle-$b" --network "$(net_of "$b")" "$IMAGE" sleep 600; done
    for i in $(seq "$BENCH_N"); do
        for b in $backends; do time_to "$T/$b.conn" conn_disconn "$b"; done
    done
    for b in $backends; do with "$b" pm rm --force --time 0 "idle-$b" >/dev/null; done
    bench_helper
    # weft after its network went (3 s unused): bridge and rules made again.
    # Through the timed wrapper: weft's own cold setup is in helper.cold.
    mv "$T/helper" "$T/helper.warm"
    for i in $(seq "$BENCH_COLD"); do
        sleep 5
        time_to "$T/weft.cold" run_on timed
        # Its baseline at the same time (Podman drifts over the run).
        time_to "$T/none.cold" pm run --rm --network none "$IMAGE" true
    done
    mv "$T/helper" "$T/helper.cold"
    python3 - "$T" "$BENCH_N" "${PM_OUT:-/dev/null}" $backends <<'PY'
import json, sys
t, n, out, backends = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
def stats(path):
    v = [int(x) / 1000 for x in open(path)]
    return {"n": len(v), "p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)}
none = stats(f"{t}/none")
res = {"n": n, "none": none, "backends": {}}
print(f"no network  run {none['p50_ms']:7.1f}/{none['p99_ms']:7.1f} ms (p50/p99)")
for b in backends:
    r = {k: stats(f"{t}/{b}.{k}") for k in ("run", "conn", "cold") if (b, k) != ("netavark", "cold")}
    r["network_share_p50_ms"] = round(r["run"]["p50_ms"] - none["p50_ms"], 1)
    if "cold" in r:
        r["cold_none"] = stats(f"{t}/none.cold")
        r["cold_network_share_p50_ms"] = round(r["cold"]["p50_ms"] - r["cold_none"]["p50_ms"], 1)
    res["backends"][b] = r
    print(f"{b:10}  run {r['run']['p50_ms']:7.1f}/{r['run']['p99_ms']:7.1f}"
          f"  connect+disconnect {r['conn']['p50_ms']:7.1f}/{r['conn']['p99_ms']:7.1f} ms (p50/p99)"
          f"  network share {r['network_share_p50_ms']:.1f} ms")
for kind, label in (("warm", "weft as netavark alone"), ("cold", "the same, cold")):
    helper = {}
    for line in open(f"{t}/helper.{kind}"):
        cmd, us = line.split(); helper.setdefault(cmd, []).append(int(us) / 1000)
    res[f"weft_helper_{kind}"] = {c: {"p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)} for c, v in helper.items()}
    print(f"{label}: " + ", ".join(f"{c} {r['p50_ms']}/{r['p99_ms']} ms" for c, r in res[f"weft_helper_{kind}"].items()) + " (p50/p99)")
w = res["backends"]["weft"]
if "netavark" in res["backends"]:
    a = res["backends"]["netavark"]
    share = a["network_share_p50_ms"]
    res["share_ratio"] = round(w["network_share_p50_ms"] / share, 3) if share > 0 else None
    res["conn_ratio"] = round(w["conn"]["p50_ms"] / a["conn"]["p50_ms"], 3)
    res["cold_share_ratio"] = round(w["cold_network_share_p50_ms"] / share, 3) if share > 0 else None
    print(f"weft/netavark: network share {res['share_ratio']}, connect+disconnect {res['conn_ratio']}")
else:
    res["netavark"] = "not installed (Debian package netavark): weft measured alone"
    print("netavark is not installed (apt-get install netavark): weft measured alone")
print(f"weft cold (its network unused for 5 s, made again; N={w['cold']['n']}): run {w['cold']['p50_ms']} ms p50, "
      f"network share {w['cold_network_share_p50_ms']} ms" +
      (f", {res['cold_share_ratio']} of netavark's share" if res.get("cold_share_ratio") is not None else ""))
json.dump(res, open(out, "w"), indent=2)
PY
    for b in benchw benchw2 bencha bencha2; do with weft pm network rm "$b" >/dev/null; done
    PASS="bench N=$BENCH_N ($backends)"
}
