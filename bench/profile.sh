#!/bin/sh
# Where weft's attach/detach time goes (the findings in BENCHMARKS.md).
# Run as root after building weft:  bench/profile.sh [N [GROWTH_N]]
#
#  1. syscall wall time of N attaches and N detaches (strace -f -c -w)
#  2. the slow system calls of one attach and one detach (strace -T)
#  3. off-CPU time per operation by kernel wait site (perf sched timehist)
#  4. SQLite open/close churn: attach/detach with and without another
#     connection holding weft.db open (needs python3)
#  5. the kernel's own cost of one veth pair, without any process per op
#     (ip -batch), default queue count vs numtxqueues/numrxqueues 1
#  6. with GROWTH_N > 0: CPU per operation by kernel subsystem with 0 and
#     with GROWTH_N endpoints already attached, then the same with IPv6
#     disabled inside the sandbox host and container namespaces
#
# Everything runs in throwaway namespaces named "wbprof-$$-*", deleted on
# exit (also on Ctrl-C); the only sysctls written (section 6) belong to
# those namespaces. perf and python3 sections are skipped when missing.
set -eu
cd "$(dirname "$0")/.."
N=${1:-20}
GROWTH_N=${2:-0}
WEFT_BIN=$(realpath "${WEFT_BIN:-$(scripts/weft-bin)}")
P="wbprof-$$"
OUT=${PROFILE_OUT:-$(mktemp -d /tmp/wbprof.XXXXXX)}
HERE=$(realpath bench)
NAMES=""

mkns() { for n in "$@"; do echo "netns add $n"; done | ip -batch -; NAMES="$NAMES $*"; }
rmns() { for n in "$@"; do echo "netns del $n"; done | ip -force -batch - 2>/dev/null || true; }
cleanup() { rmns $NAMES; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# sandbox TAG COUNT: a host namespace $P-TAG-h, containers $P-TAG-1..COUNT,
# a state dir and network "bn"; sets H (run in host) and S (state dir).
sandbox() {
    mkns "$P-$1-h" $(seq -f "$P-$1-%g" 1 "$2")
    H="nsenter --net=/run/netns/$P-$1-h"
    S="$OUT/state-$1"
    mkdir -p "$S"
    $H "$WEFT_BIN" --state-dir "$S" network create bn --subnet 10.88.0.0/16 >/dev/null
}
# attach_range TAG FROM TO / detach_range TAG FROM TO, in the sandbox host
attach_range() { $H sh -c "for i in \$(seq $2 $3); do '$WEFT_BIN' --state-dir '$S' attach bn c\$i --netns /run/netns/$P-$1-\$i >/dev/null; done"; }
detach_range() { $H sh -c "for i in \$(seq $2 $3); do '$WEFT_BIN' --state-dir '$S' detach bn c\$i >/dev/null; done"; }
attach_cmd() { echo "for i in \$(seq $2 $3); do '$WEFT_BIN' --state-dir '$S' attach bn c\$i --netns /run/netns/$P-$1-\$i >/dev/null; done"; }
detach_cmd() { echo "for i in \$(seq $2 $3); do '$WEFT_BIN' --state-dir '$S' detach bn c\$i >/dev/null; done"; }

sandbox a "$N"
attach_range a 1 "$N"; detach_range a 1 "$N" # warm-up

echo "== 1. syscall wall time of $N attaches, then $N detaches (strace -f -c -w; includes sh) =="
$H strace -f -c -w -o "$OUT/attach.strace" sh -c "$(attach_cmd a 1 "$N")"
$H strace -f -c -w -o "$OUT/detach.strace" sh -c "$(detach_cmd a 1 "$N")"
echo "-- attach"; head -12 "$OUT/attach.strace"
echo "-- detach"; head -12 "$OUT/detach.strace"

echo; echo "== 2. system calls over 0.5 ms in one attach and one detach (strace -T) =="
$H strace -f -T -o "$OUT/attach1.strace" "$WEFT_BIN" --state-dir "$S" attach bn c1 --netns "/run/netns/$P-a-1" >/dev/null
$H strace -f -T -o "$OUT/detach1.strace" "$WEFT_BIN" --state-dir "$S" detach bn c1 >/dev/null
for f in attach1 detach1; do
    echo "-- $f"
    awk -F'<' '{t=$NF; sub(/>.*/,"",t); if (t+0 > 0.0005) { l=$0; sub(/^[0-9]+ +/,"",l); printf "   %-90s %7.2f ms\n", substr(l,1,90), t*1000 } }' "$OUT/$f.strace" \
        | grep -v -E "^   (wait4|exit)|\+\+\+" || true
done

if command -v perf >/dev/null 2>&1; then
    echo; echo "== 3. time per operation: on CPU, waiting for a CPU, blocked by kernel wait site (perf sched) =="
    for op in attach detach; do
        cmd=$(${op}_cmd a 1 "$N")
        if $H perf sched record -q -g -o "$OUT/$op.sched" -- sh -c "$cmd" >/dev/null 2>&1; then
            perf sched timehist -i "$OUT/$op.sched" -g 2>/dev/null | awk -v OP="$op" -f "$HERE/offcpu.awk"
        else
            echo "   perf sched record failed (no sched tracepoints?)"
        fi
    done
fi

if command -v python3 >/dev/null 2>&1; then
    echo; echo "== 4. SQLite churn: weft.db held open by another connection, or not =="
    $H python3 - "$WEFT_BIN" "$S" "$P-a" "$N" <<'EOF'
import os, sys, time, sqlite3, statistics, subprocess
weft, state, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def op(args):
    t = time.perf_counter()
    proc = subprocess.Popen([weft, "--state-dir", state] + args, stdout=subprocess.DEVNULL)
    _, st, ru = os.wait4(proc.pid, 0)
    assert st == 0
    return (time.perf_counter() - t) * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3
res = {}
for mode in ["alone", "held", "alone", "held"]:
    holder = None
    if mode == "held":
        holder = sqlite3.connect(state + "/weft.db")
        holder.execute("select count(*) from networks").fetchall()
    for i in range(1, n + 1):
        res.setdefault(("attach", mode), []).append(op(["attach", "bn", f"c{i}", "--netns", f"/run/netns/{prefix}-{i}"]))
    for i in range(1, n + 1):
        res.setdefault(("detach", mode), []).append(op(["detach", "bn", f"c{i}"]))
    if holder:
        holder.close()
for (k, mode), v in sorted(res.items()):
    print(f"   {k} db {mode:5}: wall p50 {statistics.median(x[0] for x in v):6.2f} ms   cpu p50 {statistics.median(x[1] for x in v):5.2f} ms   ({len(v)} runs)")
EOF
fi

echo; echo "== 5. kernel cost of one veth pair into a bridge (ip -batch, 100 pairs, no process per op) =="
mkns "$P-q-h" "$P-q-c"
ip -n "$P-q-h" link add br0 type bridge
ip -n "$P-q-h" link set br0 up
for q in default 1; do
    extra=""
    [ $q = 1 ] && extra="numtxqueues 1 numrxqueues 1"
    : > "$OUT/add.batch"
    : > "$OUT/del.batch"
    for i in $(seq 1 100); do
        echo "link add v$i $extra type veth peer name p$i $extra netns $P-q-c" >> "$OUT/add.batch"
        echo "link set v$i master br0 up" >> "$OUT/add.batch"
        echo "link del v$i" >> "$OUT/del.batch"
    done
    s=$(date +%s%N); ip -n "$P-q-h" -batch "$OUT/add.batch"
    m=$(date +%s%N); ip -n "$P-q-h" -batch "$OUT/del.batch"; e=$(date +%s%N)
    awk -v q=$q -v a=$((m - s)) -v d=$((e - m)) 'BEGIN { printf "   queues %-7s add %.2f ms/pair, delete %.2f ms/pair\n", q, a/1e8, d/1e8 }'
done

if [ "$GROWTH_N" -gt 0 ] && command -v perf >/dev/null 2>&1; then
    K=$N
    for v6 in on off; do
        tag="g$v6"
        sandbox "$tag" $((GROWTH_N + K))
        if [ $v6 = off ]; then
            # Only the sandbox's own namespaces: host and containers.
            for ns in "$P-$tag-h" $(seq -f "$P-$tag-%g" 1 $((GROWTH_N + K))); do
                nsenter --net=/run/netns/"$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'
            done
        fi
        for at in 0 "$GROWTH_N"; do
            if [ "$at" -gt 0 ]; then attach_range "$tag" $((K + 1)) $((K + GROWTH_N)); fi
            echo; echo "== 6. CPU per operation by kernel subsystem, $at endpoints attached, IPv6 $v6 (perf, 10 kHz) =="
            echo "   (host netns IPv6 routes: $($H ip -6 route show table all | wc -l))"
            for op in attach detach; do
                cmd=$(${op}_cmd "$tag" 1 "$K")
                $H perf record -q -F 10000 -e cpu-clock -g -o "$OUT/cpu-$tag-$at-$op.perf" -- sh -c "$cmd" >/dev/null 2>&1
                echo "-- $op"
                perf script -i "$OUT/cpu-$tag-$at-$op.perf" --comm weft -F comm,ip,sym 2>/dev/null | awk -v K="$K" -f "$HERE/cpucat.awk"
            done
        done
        rmns "$P-$tag-h" $(seq -f "$P-$tag-%g" 1 $((GROWTH_N + K)))
    done
fi
echo; echo "raw data: $OUT"
