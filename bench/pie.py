#!/usr/bin/env python3
"""What position independence costs weft's start and attach path.

Usage (root): bench/pie.py OLD_WEFT NEW_WEFT [RUNS]

Runs both binaries in turns, RUNS times each: `weft --version` (process
start alone), then `weft attach` of a fresh container namespace to a network
in a throwaway sandbox namespace (one network and state dir per binary;
each attach is followed by an untimed detach). CPU is the child's user+sys
time from wait4; wall is the time to its exit. Prints p50 and mean for
each and the ratios NEW/OLD. Nothing outside the sandbox is touched.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv, netns=None):
    if netns:
        # nsenter only enters the namespace and execs weft in place, so
        # wait4 counts weft's CPU plus one setns.
        argv = ["nsenter", f"--net=/var/run/netns/{netns}"] + argv
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.environ["WEFT_DAEMON"] = "off"
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execvp(argv[0], argv)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{argv} failed ({status})")
    return ru.ru_utime + ru.ru_stime, wall


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


def main():
    old, new = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    tag = f"wpie{os.getpid()}"
    host = f"{tag}-host"
    sh(f"ip netns add {host} && ip netns exec {host} ip link set lo up")
    cont = f"{tag}-c"
    res = {b: {"version": [], "attach": []} for b in ("old", "new")}
    dirs = {b: tempfile.mkdtemp(prefix=f"{tag}-{b}-") for b in ("old", "new")}
    bins = {"old": old, "new": new}
    try:
        for i, b in enumerate(("old", "new")):
            sh(f"ip netns exec {host} {bins[b]} --state-dir {dirs[b]} network create "
               f"n --subnet 10.90.{i}.0/24 >/dev/null")
        sh(f"ip netns add {cont}")
        for b in ("old", "new"):  # warm-up
            timed([bins[b], "--version"])
        for r in range(runs):
            for b in (("old", "new") if r % 2 == 0 else ("new", "old")):
                res[b]["version"].append(timed([bins[b], "--version"]))
                res[b]["attach"].append(timed(
                    [bins[b], "--state-dir", dirs[b], "attach", "n", "c", "--netns",
                     f"/var/run/netns/{cont}"], host))
                timed([bins[b], "--state-dir", dirs[b], "detach", "n", "c"], host)
    finally:
        subprocess.run(f"ip netns del {cont}; ip netns del {host}", shell=True)
    print(f"{runs} runs each, interleaved; ms")
    print("| op | metric | old p50 / mean | new p50 / mean | new/old p50 |")
    print("|---|---|---|---|---|")
    for op in ("version", "attach"):
        for k, name in ((0, "CPU"), (1, "wall")):
            o = [x[k] * 1e3 for x in res["old"][op]]
            n = [x[k] * 1e3 for x in res["new"][op]]
            po, pn = statistics.median(o), statistics.median(n)
            print(f"| {op} | {name} | {po:.3f} / {statistics.mean(o):.3f} | "
                  f"{pn:.3f} / {statistics.mean(n):.3f} | {pn / po:.2f} |")


if __name__ == "__main__":
    main()
