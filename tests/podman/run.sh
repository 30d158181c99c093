#!/bin/bash
# Real Podman 4.3 on weft as its network backend (weft linked as
# `netavark`), one scenario per run:
#
#   sudo WEFT_BIN=/path/to/weft tests/podman/run.sh SCENARIO
#
# Scenarios: default, created, ports, dns, multi, lifecycle, errors,
# install (see
# the functions below). Prints one PASS line and exits 0, or a FAIL line
# with the reason and exits non-zero. Cargo runs them from tests/podman.rs.
#
# Nothing outside a sandbox is touched (as tests/runtime/podman.sh):
# Podman runs in a throwaway network namespace ("the host" here), entered
# with nsenter (`ip netns exec` would hide the cgroup mounts runc needs),
# and a private mount namespace with tmpfs /run and /var/lib; storage, run
# root, network definitions, containers.conf, the helper dir (weft as
# netavark) and weft's state dir live in one temp dir. A second namespace,
# "outside", is a client on a veth link to the host (192.0.2.0/24). A trap
# removes containers, image, namespaces, cgroups and the temp dir, on
# success and on failure.
set -Eeuo pipefail
# A command that fails where no check expects it says so.
trap 'fail "line $LINENO: \`$BASH_COMMAND\` failed"' ERR

IMAGE=localhost/weft-pm-busybox:latest
HOST_IP=192.0.2.1
OUT_IP=192.0.2.2

fail() {
    echo "FAIL: podman ${SCENARIO:-?}: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Helpers for the scenarios (inside the sandbox).
# ---------------------------------------------------------------------------
pm() { podman --root "$T/storage" --runroot "$T/run" --storage-driver vfs "$@"; }
weft() { "$WEFT_BIN" --state-dir /var/lib/weft "$@"; }
out_ns() { nsenter --net="$T/outside-ns" -- "$@"; }
run_d() { # NAME ARGS...: a detached container, or FAIL with Podman's words
    local name=$1 out
    shift
    out=$(pm run --detach --name "$name" --cgroup-parent "/$SANDBOX" --cap-add NET_RAW "$@" 2>&1) ||
        fail "podman run $name $*: $out"
}
ip_of() { pm inspect --format "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
# The endpoints in weft's store as "container network ifname address" lines.
endpoints() {
    weft endpoint ls --json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["container"], e["network"], e["ifname"], e["address"].split("/")[0], e["state"])'
}
wait_for() { # TRIES CMD...: retry CMD every 0.1 s
    local n=$1
    shift
    for _ in $(seq "$n"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
no_endpoints() { [ -z "$(endpoints)" ]; }
dns_stopped() { [ ! -e /var/lib/weft/podman-dns.pid ] || flock -n /var/lib/weft/podman-dns.pid true; }
logs_have() { pm logs "$1" 2>&1 | grep -q "$2"; }
exec_has() { local c=$1 want=$2; shift 2; pm exec "$c" "$@" 2>&1 | grep -q "$want"; }
http_get() { timeout 3 /bin/busybox wget -q -O- "$1" 2>&1; }

# What Podman and weft leave once every container is gone: nothing.
check_clean() {
    local rm_out
    rm_out=$(pm rm --all --force --time 0 2>&1) || fail "podman rm --all --force: $rm_out"
    local eps nets
    eps=$(endpoints)
    [ -z "$eps" ] || fail "endpoints left in weft's store after podman rm: $eps (podman rm said: $rm_out)"
    # A network outlives its last container by 3 s (netavark::linger).
    wait_for 100 sh -c '[ "$("$WEFT_BIN" --state-dir /var/lib/weft network ls --json)" = "[]" ]' ||
        fail "networks left in weft's store 10 s after the last container: $(weft network ls --json)"
    # The veths go a moment later (weft's reaper).
    wait_for 50 sh -c '! ip -o link show type veth | grep -v "veth-out" | grep -q .' ||
        fail "veths left: $(ip -br link show type veth)"
    wait_for 20 sh -c '! ip -o link show type bridge | grep -q .' ||
        fail "bridges left: $(ip -br link show type bridge)"
    wait_for 30 sh -c '! nft list tables | grep -q "inet weft"' || fail "weft's nftables table left: $(nft list tables)"
    [ -z "$(ls -A /run/netns)" ] || fail "namespaces left: $(ls /run/netns)"
    wait_for 30 dns_stopped || fail "weft dns still running after the last Podman network went"
}

# ---------------------------------------------------------------------------
# Scenarios.
# ---------------------------------------------------------------------------

# The default network: podman0, 10.88.0.0/16, Podman's address on eth0,
# weft's store lists the container by name, out to the host and back.
sc_default() {
    run_d c1 "$IMAGE" sleep 600
    local ip out
    ip=$(ip_of c1 podman)
    case "$ip" in 10.88.*) ;; *) fail "c1 got $ip, not in 10.88.0.0/16" ;; esac
    out=$(ip -o -4 addr show dev podman0 2>&1) || fail "no bridge podman0: $out"
    case "$out" in *" 10.88.0.1/16 "*) ;; *) fail "podman0 lacks 10.88.0.1/16: $out" ;; esac
    out=$(pm exec c1 ip -o -4 addr show dev eth0)
    case "$out" in *" $ip/16 "*) ;; *) fail "c1's eth0 lacks $ip/16: $out" ;; esac
    out=$(endpoints)
    [ "$out" = "c1 podman eth0 $ip ready" ] || fail "weft endpoint ls: $out"
    out=$(pm exec c1 ping -c1 -W2 10.88.0.1 2>&1) || fail "c1 cannot ping its gateway: $out"
    out=$(pm exec c1 ping -c1 -W2 "$HOST_IP" 2>&1) || fail "c1 cannot reach the host's $HOST_IP: $out"
    # weft gc keeps what Podman uses.
    weft gc >/dev/null || fail "weft gc failed"
    out=$(endpoints)
    [ "$out" = "c1 podman eth0 $ip ready" ] || fail "after weft gc: $out"
    out=$(weft topology 2>&1) || fail "weft topology: $out"
    case "$out" in *c1*) ;; *) fail "weft topology does not show c1: $out" ;; esac
    pm stop --time 0 c1 >/dev/null
    # Podman tears the network down when the container has exited, through
    # conmon's cleanup command: moments after `stop` returns.
    wait_for 50 no_endpoints || fail "podman stop left endpoints: $(endpoints)"
    pm start c1 >/dev/null || fail "podman start c1 failed"
    out=$(endpoints)
    [ "$out" = "c1 podman eth0 $(ip_of c1 podman) ready" ] || fail "after restart: $out"
    pm restart --time 0 c1 >/dev/null || fail "podman restart c1 failed"
    out=$(pm exec c1 ping -c1 -W2 10.88.0.1 2>&1) || fail "after restart, no gateway: $out"
    # Renamed while running: the teardown still finds it (by namespace).
    pm rename c1 c1-renamed || fail "podman rename failed"
    pm stop --time 0 c1-renamed >/dev/null
    wait_for 50 no_endpoints || fail "a renamed container's endpoint outlived its stop: $(endpoints)"
    check_clean
    PASS="default network podman0: $ip, listed by name, stop/start/restart/rm leave nothing"
}

# A created network: --subnet/--gateway/-o mtu, --ip/--mac-address; an
# internal one has no way out; two containers reach each other.
sc_created() {
    pm network create --subnet 10.99.0.0/24 --gateway 10.99.0.254 -o mtu=1400 n1 >/dev/null
    pm network create --internal --subnet 10.98.0.0/24 vault >/dev/null
    run_d a --network n1 --ip 10.99.0.7 --mac-address 02:11:22:33:44:55 "$IMAGE" sleep 600
    run_d b --network n1 "$IMAGE" sleep 600
    local out br
    out=$(pm exec a ip -o addr show dev eth0)
    case "$out" in *" 10.99.0.7/24 "*) ;; *) fail "a's eth0 lacks --ip 10.99.0.7/24: $out" ;; esac
    out=$(pm exec a ip -o link show dev eth0)
    case "$out" in *"mtu 1400 "*"02:11:22:33:44:55"*) ;; *) fail "a's eth0: want mtu 1400 and --mac-address: $out" ;; esac
    out=$(pm exec a ip route)
    case "$out" in *"via 10.99.0.254 "*) ;; *) fail "a's default route is not via --gateway 10.99.0.254: $out" ;; esac
    br=$(pm network inspect n1 --format '{{.NetworkInterface}}')
    out=$(ip -o -4 addr show dev "$br")
    case "$out" in *" 10.99.0.254/24 "*) ;; *) fail "bridge $br lacks 10.99.0.254/24: $out" ;; esac
    out=$(pm exec b ping -c1 -W2 10.99.0.7 2>&1) || fail "b cannot ping a: $out"

    # --ipv6: Podman's IPv6 subnet and address, on eth0.
    pm network create --ipv6 --subnet 10.91.0.0/24 --subnet fd00:91::/64 six >/dev/null
    run_d s6 --network six "$IMAGE" sleep 600
    local ip6
    ip6=$(pm inspect --format '{{(index .NetworkSettings.Networks "six").GlobalIPv6Address}}' s6)
    case "$ip6" in fd00:91::*) ;; *) fail "s6 got IPv6 address '$ip6', not in fd00:91::/64" ;; esac
    out=$(pm exec s6 ip -o -6 addr show dev eth0)
    case "$out" in *" $ip6/64 "*) ;; *) fail "s6's eth0 lacks $ip6/64: $out" ;; esac
    out=$(pm exec s6 ping -c1 -W2 fd00:91::1 2>&1) || fail "s6 cannot ping its IPv6 gateway: $out"
    # As with Podman's own backend, its networks reach each other, unless
    # one is created with -o isolate=true.
    out=$(pm exec s6 ping -c1 -W2 10.99.0.7 2>&1) || fail "six cannot reach n1 (neither is isolated): $out"
    pm network create --subnet 10.90.0.0/24 -o isolate=true iso >/dev/null
    run_d i1 --network iso "$IMAGE" sleep 600
    if pm exec i1 ping -c1 -W1 10.99.0.7 >/dev/null 2>&1; then
        fail "a container on an isolated network reaches one on network n1"
    fi
    if pm exec s6 ping -c1 -W1 "$(ip_of i1 iso)" >/dev/null 2>&1; then
        fail "a container on network six reaches one on an isolated network"
    fi
    # weft explain knows Podman's containers by name, and says the same.
    out=$(weft explain s6 a 2>&1) || fail "weft explain s6 a: $out"
    out=$(weft explain i1 a 2>&1) && fail "weft explain passes i1 (isolated) -> a: $out"
    case "$out" in *"not in @same_bridge"*) ;; *) fail "weft explain i1 a: $out" ;; esac

    run_d v --network vault "$IMAGE" sleep 600
    out=$(pm exec v ip route)
    case "$out" in *default*) fail "a container on an --internal network has a default route: $out" ;; esac
    if pm exec v ping -c1 -W1 "$HOST_IP" >/dev/null 2>&1; then
        fail "a container on an --internal network reaches the host's $HOST_IP"
    fi
    if pm exec v ping -c1 -W1 10.99.0.7 >/dev/null 2>&1; then
        fail "a container on network vault reaches one on network n1"
    fi
    check_clean
    pm network rm n1 vault six iso >/dev/null || fail "podman network rm failed"
    check_clean
    PASS="created networks: --subnet/--gateway/mtu/--ip/--mac-address/--ipv6/--internal/isolate as asked"
}

# -p: tcp, udp, a range, a host IP; from the host (its address and
# localhost), from an outside namespace (the client's real address seen
# inside) and from another container (hairpin).
sc_ports() {
    run_d web -p 8080:80 -p 5353:53/udp -p 8000-8001:8000-8001 -p 127.0.0.1:9090:80 -p 7000:7000/sctp "$IMAGE" \
        sh -c 'mkdir -p /www && echo hello-weft >/www/index.html &&
               httpd -p 8000 -h /www && httpd -p 8001 -h /www && exec httpd -f -v -p 80 -h /www'
    # UDP: busybox has no UDP server; the host's python3 serves in the
    # container's network namespace, which is where the DNAT leads.
    local sandbox_key
    sandbox_key=$(pm inspect --format '{{.NetworkSettings.SandboxKey}}' web)
    nsenter --net="$sandbox_key" -- python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53)); s.settimeout(20)
data, addr = s.recvfrom(100)
open(sys.argv[1], "w").write(data.decode() + " from " + addr[0])' "$T/udp" &    run_d peer "$IMAGE" sleep 600
    local out
    wait_for 50 http_get "http://127.0.0.1:8080/" || fail "localhost:8080 does not answer"
    out=$(http_get "http://$HOST_IP:8080/" || true)
    [ "$out" = hello-weft ] || fail "host address $HOST_IP:8080: $out"
    out=$(out_ns timeout 3 /bin/busybox wget -q -O- "http://$HOST_IP:8080/" 2>&1 || true)
    [ "$out" = hello-weft ] || fail "from the outside namespace, $HOST_IP:8080: $out"
    wait_for 20 logs_have web "$OUT_IP" ||
        fail "the container did not see the outside client's address $OUT_IP: $(pm logs web 2>&1 | tail -3)"
    for p in 8000 8001; do
        out=$(out_ns timeout 3 /bin/busybox wget -q -O- "http://$HOST_IP:$p/" 2>&1 || true)
        [ "$out" = hello-weft ] || fail "range port $p from outside: $out"
    done
    out=$(http_get "http://127.0.0.1:9090/" || true)
    [ "$out" = hello-weft ] || fail "127.0.0.1:9090 (host IP 127.0.0.1): $out"
    if out_ns timeout 2 /bin/busybox wget -q -O- "http://$HOST_IP:9090/" >/dev/null 2>&1; then
        fail "-p 127.0.0.1:9090:80 answers on $HOST_IP from outside"
    fi
    out=$(pm exec peer timeout 3 wget -q -O- "http://$HOST_IP:8080/" 2>&1 || true)
    [ "$out" = hello-weft ] || fail "from container peer (hairpin via $HOST_IP:8080): $out"
    udp_send() {
        out_ns python3 -c 'import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"udp-through-weft", (sys.argv[1], 5353))' "$HOST_IP"
        grep -q . "$T/udp" 2>/dev/null
    }
    wait_for 30 udp_send || fail "udp $HOST_IP:5353 -> web:53 did not arrive"
    out=$(cat "$T/udp")
    [ "$out" = "udp-through-weft from $OUT_IP" ] || fail "udp: the container got: $out"
    # SCTP: published like the others (the kernel's sctp module decides
    # whether anything answers; the map element is weft's part).
    out=$(nft list table inet weft)
    case "$out" in *"sctp . 7000 : "*) ;; *) fail "no sctp 7000 element in weft's table: $out" ;; esac
    # A host port taken by another container is refused with weft's line.
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" -p 8080:80 "$IMAGE" true 2>&1) &&
        fail "a second -p 8080 was accepted"
    case "$out" in *"netavark: weft:"*8080*) ;; *) fail "port clash message: $out" ;; esac
    check_clean
    PASS="ports: tcp, udp, sctp, range, host IP; host, localhost, outside (real source), hairpin; clash refused"
}

# Names: containers resolve each other and their aliases through weft's
# DNS on the gateway (no aardvark-dns).
# A resolver for "the host": every A query gets 203.0.113.7.
fake_upstream() {
    out_ns python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    q, addr = s.recvfrom(512)
    end = q.index(b"\0", 12) + 5
    head = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([203, 0, 113, 7])
    s.sendto(head + q[12:end] + answer, addr)' &
    # weft dns reads the host's resolv.conf: this namespace's is private.
    echo "nameserver $OUT_IP" >"$T/resolv.conf"
    mount --bind "$T/resolv.conf" /etc/resolv.conf
}

sc_dns() {
    fake_upstream
    pm network create d1 >/dev/null
    run_d srv --network d1 --network-alias web.alias "$IMAGE" sleep 600
    run_d cli --network d1 "$IMAGE" sleep 600
    local ip gw out
    ip=$(ip_of srv d1)
    gw=$(pm network inspect d1 --format '{{(index .Subnets 0).Gateway}}')
    out=$(pm exec cli cat /etc/resolv.conf)
    case "$out" in *"nameserver $gw"*) ;; *) fail "cli's resolv.conf does not name the gateway $gw: $out" ;; esac
    for name in srv web.alias; do
        wait_for 30 exec_has cli "Address: $ip" nslookup "$name" "$gw" ||
            fail "cli cannot resolve $name to $ip: $(pm exec cli nslookup "$name" "$gw" 2>&1)"
    done
    out=$(pm exec cli ping -c1 -W2 srv 2>&1) || fail "cli cannot ping srv by name: $out"
    # Other names go to the host's resolvers: here one in the outside
    # namespace that answers every A query with 203.0.113.7.
    wait_for 30 exec_has cli "Address: 203.0.113.7" nslookup www.example.test "$gw" ||
        fail "an external name was not forwarded: $(pm exec cli nslookup www.example.test "$gw" 2>&1)"
    # Idle a moment (its gateway address off the bridge), then in use
    # again: weft's DNS answers on the gateway as before.
    pm rm --force --time 0 srv cli >/dev/null
    run_d srv2 --network d1 "$IMAGE" sleep 600
    ip=$(ip_of srv2 d1)
    wait_for 30 exec_has srv2 "Address: $ip" nslookup srv2 "$gw" ||
        fail "after d1 was idle, srv2 cannot resolve itself: $(pm exec srv2 nslookup srv2 "$gw" 2>&1)"
    check_clean
    pm network rm d1 >/dev/null
    PASS="dns: name and --network-alias resolve through weft's DNS on $gw, other names forwarded"
}

# A container on two networks; connect and disconnect while it runs.
sc_multi() {
    pm network create --subnet 10.97.0.0/24 m1 >/dev/null
    pm network create --subnet 10.96.0.0/24 m2 >/dev/null
    run_d two --network m1 --network m2 "$IMAGE" sleep 600
    local out
    out=$(endpoints | sort | awk '{print $1, $2, $4, $5}' | sed 's/\.[0-9]* ready$/ ready/')
    [ "$out" = "two m1 10.97.0 ready"$'\n'"two m2 10.96.0 ready" ] ||
        fail "two networks: weft endpoint ls says $(endpoints)"
    out=$(endpoints | awk '{print $3}' | sort | tr '\n' ' ')
    [ "$out" = "eth0 eth1 " ] || fail "two networks: interfaces $out, not eth0 and eth1"
    run_d one --network m1 "$IMAGE" sleep 600
    pm network connect m2 one || fail "podman network connect m2 one failed"
    out=$(pm exec one ip -o -4 addr show dev eth1 2>&1)
    case "$out" in *" 10.96.0."*) ;; *) fail "after connect, one has no eth1 on m2: $out" ;; esac
    out=$(pm exec one ping -c1 -W2 "$(ip_of two m2)" 2>&1) || fail "one cannot reach two on m2: $out"
    pm network disconnect m2 one || fail "podman network disconnect m2 one failed"
    if pm exec one ip link show eth1 >/dev/null 2>&1; then fail "eth1 still in one after disconnect"; fi
    out=$(endpoints | grep '^one ' || true)
    case "$out" in "one m1 eth0 "*) ;; *) fail "after disconnect, weft lists: $out" ;; esac
    check_clean
    pm network prune --force >/dev/null || fail "podman network prune failed"
    # Six containers started at once on one network: each gets its address.
    pm network create par >/dev/null
    local i
    for i in 1 2 3 4 5 6; do
        (pm run --rm --cgroup-parent "/$SANDBOX" --network par "$IMAGE" ip -o -4 addr show dev eth0 >"$T/par.$i" 2>&1 ||
            echo "FAILED" >>"$T/par.$i") &
    done
    wait
    out=$(cat "$T"/par.*)
    [ "$(echo "$out" | grep -c ' inet 10\.')" = 6 ] || fail "parallel podman run: $out"
    [ "$(echo "$out" | grep -o 'inet [0-9.]*' | sort -u | wc -l)" = 6 ] || fail "parallel runs shared an address: $out"
    check_clean
    PASS="two networks at run, connect and disconnect on a running container, six parallel runs"
}

# Lifecycle: a vanished namespace, reload after `nft flush ruleset`,
# network rm and prune.
sc_lifecycle() {
    run_d r1 -p 8080:80 "$IMAGE" sh -c 'mkdir /www && echo r1 >/www/index.html && exec httpd -f -p 80 -h /www'
    wait_for 50 http_get "http://127.0.0.1:8080/" || fail "r1's port does not answer"
    nft flush ruleset
    if http_get "http://$HOST_IP:8080/" >/dev/null; then fail "port still answers after the flush?"; fi
    pm network reload r1 >/dev/null || fail "podman network reload failed"
    wait_for 30 http_get "http://$HOST_IP:8080/" || fail "after reload, port 8080 does not answer"
    local out
    out=$(pm exec r1 ping -c1 -W2 "$HOST_IP" 2>&1) || fail "after reload, r1 cannot reach the host: $out"
    # The container's veth is deleted behind everyone's back: stop and rm
    # still succeed.
    local veth
    veth=$(weft endpoint ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["host_veth"])')
    ip link del "$veth"
    out=$(pm stop --time 0 r1 2>&1) || fail "podman stop with the veth gone: $out"
    out=$(pm rm r1 2>&1) || fail "podman rm: $out"
    check_clean
    # The namespace vanishes under a running container: Podman cannot join
    # it and skips the teardown; the next Podman operation reclaims it.
    run_d v1 -p 8090:80 "$IMAGE" sleep 600
    local key
    key=$(pm inspect --format '{{.NetworkSettings.SandboxKey}}' v1)
    umount "$key"
    rm -f "$key"
    pm rm --force --time 0 v1 >/dev/null 2>&1 || true
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" "$IMAGE" true 2>&1) || fail "podman run after a vanished netns: $out"
    check_clean
    pm network create l1 >/dev/null
    run_d x --network l1 "$IMAGE" true
    pm wait x >/dev/null 2>&1 || true
    pm rm x >/dev/null
    pm network rm l1 >/dev/null || fail "podman network rm l1 failed"
    check_clean
    # The last container gone, its network lingers 3 s: the next container
    # plugs into the same bridge (no bridge or rules made again). Under
    # load a `podman run` may take longer than that: up to three tries.
    pm network create --subnet 10.89.7.0/24 g1 >/dev/null
    local br idx try reused=""
    br=$(pm network inspect g1 --format '{{.NetworkInterface}}')
    for try in 1 2 3; do
        out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network g1 "$IMAGE" true 2>&1) ||
            fail "podman run on g1 failed: $out"
        idx=$(ip -o link show dev "$br" 2>/dev/null | cut -d: -f1)
        [ -n "$idx" ] || continue
        # Idle, the bridge holds no address: the subnet is free on the host.
        out=$(ip -o -4 addr show dev "$br" 2>/dev/null) || continue
        [ -z "$out" ] || fail "idle bridge $br keeps an address: $out"
        out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network g1 "$IMAGE" ping -c1 -W2 10.89.7.1 2>&1) ||
            fail "the next run on g1 cannot reach its gateway: $out"
        if [ "$(ip -o link show dev "$br" 2>/dev/null | cut -d: -f1)" = "$idx" ]; then
            reused=1
            break
        fi
    done
    [ -n "$reused" ] || fail "g1's bridge $br was made again for the next container (3 tries)"
    # Podman removes it and makes another with the same subnet (and, as
    # the lowest free one, the same bridge name) while weft keeps g1.
    pm network rm g1 >/dev/null
    pm network create --subnet 10.89.7.0/24 g2 >/dev/null
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network g2 "$IMAGE" ip -o -4 addr show dev eth0 2>&1) ||
        fail "podman run on g2 (g1's subnet, g1 still idle in weft) failed: $out"
    case "$(weft network ls --json)" in *'"g1"'*) fail "idle g1 kept beside g2: $(weft network ls)" ;; esac
    local br2
    br2=$(pm network inspect g2 --format '{{.NetworkInterface}}')
    if [ "$br2" != "$br" ] && ip link show "$br" >/dev/null 2>&1; then
        fail "idle g1's bridge $br kept beside g2's $br2"
    fi
    # The child that removes idle networks is killed: weft gc does its job.
    wait_for 50 pgrep --ns $$ --nslist net -f 'netavark linger' ||
        fail "no process removing idle networks after the last container left g2"
    pkill -KILL --ns $$ --nslist net -f 'netavark linger'
    sleep 3.2
    out=$(weft gc 2>&1) || fail "weft gc: $out"
    case "$out" in *"removed idle Podman network g2"*) ;; *) fail "weft gc did not remove idle g2: $out" ;; esac
    ! ip link show "$br2" >/dev/null 2>&1 || fail "weft gc left idle g2's bridge $br2"
    pm network rm g2 >/dev/null
    check_clean
    # A weft network made by hand with the name of a Podman network weft
    # removed is the user's: no later sweep of idle networks touches it.
    pm network create --subnet 10.89.8.0/24 h1 >/dev/null
    pm run --rm --cgroup-parent "/$SANDBOX" --network h1 "$IMAGE" true >/dev/null || fail "podman run on h1 failed"
    weft network rm h1 >/dev/null || fail "weft network rm h1 (idle) failed"
    weft network create h1 --subnet 10.89.9.0/24 >/dev/null || fail "weft network create h1 failed"
    sleep 3.2
    pm run --rm --cgroup-parent "/$SANDBOX" "$IMAGE" true >/dev/null || fail "podman run failed"
    out=$(weft gc 2>&1) || fail "weft gc: $out"
    weft network ls --json | grep -q '"h1"' || fail "the user's network h1 was swept as an idle Podman network"
    weft network rm h1 >/dev/null
    pm network rm h1 >/dev/null
    # `weft attach` onto an idle network puts its gateway back.
    pm network create --subnet 10.89.10.0/24 k1 >/dev/null
    pm run --rm --cgroup-parent "/$SANDBOX" --network k1 "$IMAGE" true >/dev/null || fail "podman run on k1 failed"
    br=$(pm network inspect k1 --format '{{.NetworkInterface}}')
    ip netns add k-ctr
    out=$(weft attach k1 k-ctr 2>&1) || { ip netns del k-ctr; fail "weft attach onto idle k1: $out"; }
    out=$(ip -o -4 addr show dev "$br" 2>&1)
    case "$out" in *" 10.89.10.1/24 "*) ;; *) ip netns del k-ctr; fail "after weft attach, idle $br lacks its gateway: $out" ;; esac
    weft detach k1 k-ctr >/dev/null
    ip netns del k-ctr
    pm network rm k1 >/dev/null
    # A host interface takes an idle network's subnet (it looked free): the
    # next container on it fails with weft's line, and nothing is left.
    pm network create --subnet 10.89.11.0/24 t1 >/dev/null
    pm run --rm --cgroup-parent "/$SANDBOX" --network t1 "$IMAGE" true >/dev/null || fail "podman run on t1 failed"
    ip link add weft-pm-dummy type veth peer name weft-pm-dummy1
    ip addr add 10.89.11.5/24 dev weft-pm-dummy
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network t1 "$IMAGE" true 2>&1) &&
        { ip link del weft-pm-dummy; fail "t1 used again while a host interface holds its subnet"; }
    ip link del weft-pm-dummy
    case "$out" in *"netavark: weft:"*"overlaps 10.89.11.0/24"*) ;; *) fail "subnet taken while idle: $out" ;; esac
    pm network rm t1 >/dev/null
    # The default network's teardowns above sweep what is left.
    pm run --rm --cgroup-parent "/$SANDBOX" "$IMAGE" true >/dev/null || fail "podman run failed"
    check_clean
    PASS="reload after nft flush ruleset, vanished veth, vanished netns, network rm, idle networks"
}

# Errors: Podman shows weft's one line; nothing is left behind.
sc_errors() {
    local out
    out=$(echo 'not json' | "$WEFT_BIN" netavark setup /run/netns/none 2>/dev/null) && fail "bad JSON accepted"
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if list(d)==["error"] and "\n" not in d["error"] else 1)' "$out" ||
        fail "bad JSON: not exactly one {\"error\"} line: $out"
    pm network create -d macvlan -o parent=lo --subnet 10.95.0.0/24 mv >/dev/null
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network mv "$IMAGE" true 2>&1) && fail "macvlan accepted"
    case "$out" in *"netavark: weft:"*macvlan*"not supported"*) ;; *) fail "macvlan message: $out" ;; esac
    [ "$(echo "$out" | grep -c 'netavark: weft:')" = 1 ] || fail "not one line: $out"
    # --ip outside the network's subnet: Podman refuses it itself.
    pm network create --subnet 10.94.0.0/24 e1 >/dev/null
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network e1 --ip 10.93.0.5 "$IMAGE" true 2>&1) &&
        fail "an address outside the subnet was accepted"
    # weft's own check, for a caller that is not Podman: an address outside
    # the subnet is one error line, and no network or endpoint is left.
    ip netns add bad-ip
    out=$("$WEFT_BIN" netavark setup /run/netns/bad-ip 2>/dev/null <<'EOF_JSON'
{"container_id":"x","container_name":"bad","networks":{"b1":{"static_ips":["10.80.1.5"],"interface_name":"eth0"}},
 "network_info":{"b1":{"name":"b1","id":"1","driver":"bridge","network_interface":"podman9",
 "subnets":[{"subnet":"10.80.0.0/24","gateway":"10.80.0.1"}],"internal":false,"dns_enabled":false}}}
EOF_JSON
) && fail "an address outside the subnet was accepted: $out"
    ip netns del bad-ip
    case "$out" in '{"error":"weft: '*10.80.1.5*'"}') ;; *) fail "address outside the subnet: $out" ;; esac
    [ "$(weft network ls --json)" = "[]" ] || fail "a failed setup left a network: $(weft network ls)"
    ! ip link show podman9 >/dev/null 2>&1 || fail "a failed setup left bridge podman9"
    # The host's own namespace is never a container's.
    out=$("$WEFT_BIN" netavark setup /proc/self/ns/net 2>/dev/null <<'EOF_JSON'
{"container_id":"x","container_name":"host","networks":{"b1":{"static_ips":["10.80.0.5"],"interface_name":"eth0"}},
 "network_info":{"b1":{"name":"b1","id":"1","driver":"bridge","network_interface":"podman9",
 "subnets":[{"subnet":"10.80.0.0/24","gateway":"10.80.0.1"}],"internal":false,"dns_enabled":false}}}
EOF_JSON
) && fail "the host's namespace was accepted: $out"
    case "$out" in '{"error":"weft: '*"never the host"*'"}') ;; *) fail "host namespace: $out" ;; esac
    [ "$(weft network ls --json)" = "[]" ] || fail "a refused setup left a network: $(weft network ls)"
    ! ip link show podman9 >/dev/null 2>&1 || fail "a refused setup left bridge podman9"
    # A host port another weft endpoint publishes (here one the weft CLI
    # made): weft's line, and Podman's container gets nothing.
    weft network create cli-net --subnet 10.92.0.0/24 >/dev/null
    ip netns add cli-ctr
    weft attach cli-net cli-ctr -p 8086:80 >/dev/null
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" --network e1 -p 8086:80 "$IMAGE" true 2>&1) &&
        fail "a host port published by a weft endpoint was accepted"
    case "$out" in *"netavark: weft:"*"8086"*"already published"*) ;; *) fail "port clash message: $out" ;; esac
    [ "$(echo "$out" | grep -c 'netavark: weft:')" = 1 ] || fail "not one line: $out"
    weft detach cli-net cli-ctr >/dev/null
    weft network rm cli-net >/dev/null
    ip netns del cli-ctr
    # A host port a process holds: Podman's own bind refuses it (as with
    # its own netavark), and weft's setup is undone.
    (exec /bin/busybox nc -l -p 8085 >/dev/null 2>&1) &
    local ncpid=$!
    wait_for 20 sh -c 'grep -q ":1F95 " /proc/net/tcp /proc/net/tcp6' || fail "test listener did not start"
    out=$(pm run --rm --cgroup-parent "/$SANDBOX" -p 8085:80 "$IMAGE" true 2>&1) && fail "a taken host port was accepted"
    kill "$ncpid" 2>/dev/null || true
    case "$out" in *"8085"*"in use"*) ;; *) fail "port in use message: $out" ;; esac
    check_clean
    pm network rm mv e1 >/dev/null
    PASS="errors: bad JSON, macvlan, address outside the subnet, the host's namespace, port clash, port in use: one line, nothing left"
}

# `make install-podman` as a user runs it: the drop-in in
# /etc/containers/containers.conf.d (a private tmpfs here) and no
# CONTAINERS_CONF or CONTAINERS_HELPER_BINARY_DIR; `make uninstall-podman`
# puts Podman back.
sc_install() {
    local repo out
    repo=$(cd "$(dirname "$0")/../.." && pwd)
    cp -a /etc/containers "$T/etc-containers"
    mount -t tmpfs -o mode=0755 weft-pm /etc/containers
    cp -a "$T/etc-containers/." /etc/containers/
    # The sandbox's settings, without network_backend and helper dirs.
    grep -v -e '^network_backend' -e '^helper_binaries_dir' "$CONTAINERS_CONF" >/etc/containers/containers.conf
    unset CONTAINERS_CONF CONTAINERS_HELPER_BINARY_DIR
    out=$(make -C "$repo" --no-print-directory install-podman WEFT="$WEFT_BIN" \
        PODMAN_HELPER_DIR="$T/installed" 2>&1) || fail "make install-podman: $out"
    [ -f /etc/containers/containers.conf.d/50-weft.conf ] || fail "no drop-in after make install-podman"
    out=$(pm info --format '{{.Host.NetworkBackend}}' 2>&1)
    [ "$out" = netavark ] || fail "after install, Podman's network backend is $out"
    run_d i1 "$IMAGE" sleep 600
    out=$(endpoints)
    case "$out" in "i1 podman eth0 10.88."*" ready") ;; *) fail "after install, weft does not list i1: $out" ;; esac
    pm rm --force --time 0 i1 >/dev/null
    out=$(make -C "$repo" --no-print-directory uninstall-podman PODMAN_HELPER_DIR="$T/installed" 2>&1) ||
        fail "make uninstall-podman: $out"
    [ ! -e /etc/containers/containers.conf.d/50-weft.conf ] || fail "drop-in left after uninstall-podman"
    [ ! -e "$T/installed" ] || fail "helper dir left after uninstall-podman: $(ls "$T/installed")"
    # Podman no longer runs weft: a container now gets no weft endpoint
    # (whatever backend Podman falls back to here, it may also fail).
    pm run --rm --cgroup-parent "/$SANDBOX" "$IMAGE" true >/dev/null 2>&1 || true
    out=$(endpoints)
    [ -z "$out" ] || fail "after uninstall-podman, weft still sets up containers: $out"
    # Podman's CNI fallback keeps its bridge, as it does without weft.
    ip link del cni-podman0 2>/dev/null || true
    check_clean
    PASS="make install-podman: Podman on weft with a drop-in only; uninstall-podman: back"
}

# ---------------------------------------------------------------------------
# Inner part: inside the sandbox netns and a private mount namespace.
# ---------------------------------------------------------------------------
inner() {
    mount -t tmpfs -o mode=0755 weft-pm /run
    mount -t tmpfs -o mode=0755 weft-pm /var/lib
    mkdir -p /run/netns
    ip link set lo up
    export CONTAINERS_CONF=$T/containers.conf CONTAINERS_STORAGE_CONF=$T/storage.conf
    export CONTAINERS_HELPER_BINARY_DIR=$T/helpers
    # weft as netavark keeps its state in /var/lib/weft (the private tmpfs
    # here), whatever the environment: conmon's cleanup runs teardowns
    # with an environment of its own.
    export XDG_RUNTIME_DIR=$T/xdg TMPDIR=$T/tmp
    unset WEFT_STATE_DIR
    mkdir -p "$T/xdg"
    trap 'trap - ERR; pm rm --all --force --time 0 >/dev/null 2>&1; pm rmi --all --force >/dev/null 2>&1' EXIT

    # shellcheck source=tests/podman/busybox-image.sh
    . "$(dirname "$0")/busybox-image.sh"
    busybox_image "$T" "$IMAGE"

    "sc_$SCENARIO"
    echo "$PASS" >"$T/result"
}

# ---------------------------------------------------------------------------
# Outer part: checks, the sandbox, the config files, cleanup.
# ---------------------------------------------------------------------------
outer() {
    [ "$(id -u)" -eq 0 ] || fail "needs root (network and mount namespaces)"
    declare -F "sc_$SCENARIO" >/dev/null || fail "no scenario $SCENARIO"
    for cmd in podman runc conmon ip nsenter unshare python3 tar timeout nft flock make; do
        command -v "$cmd" >/dev/null 2>&1 ||
            fail "$cmd is not installed (apt-get install podman runc busybox-static iproute2 util-linux python3 nftables make)"
    done
    [ -x /bin/busybox ] || fail "/bin/busybox is missing (apt-get install busybox-static)"
    if ldd /bin/busybox >/dev/null 2>&1; then fail "/bin/busybox is dynamically linked: install busybox-static"; fi
    [ -x "${WEFT_BIN:-}" ] || fail "no weft binary at '${WEFT_BIN:-}' (set WEFT_BIN)"
    WEFT_BIN=$(realpath "$WEFT_BIN")

    SANDBOX=weft-pm-$$
    OUT_NS=weft-pmo-$$
    T=$(mktemp -d /tmp/weft-pm.XXXXXX)
    trap outer_cleanup EXIT
    trap 'exit 130' INT TERM
    outer_cleanup() {
        local rc=$?
        trap - ERR
        set +e
        local pids cgroups
        cgroups=$(ls -d /sys/fs/cgroup/"$SANDBOX" /sys/fs/cgroup/*/"$SANDBOX" 2>/dev/null)
        pids="$(ip netns pids "$SANDBOX" 2>/dev/null) $(ip netns pids "$OUT_NS" 2>/dev/null)"
        for d in $cgroups; do pids="$pids $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)"; done
        for p in $pids; do kill -9 "$p" 2>/dev/null; done
        [ -n "${pids// /}" ] && sleep 0.5
        for d in $cgroups; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
        ip netns del "$SANDBOX" 2>/dev/null
        ip netns del "$OUT_NS" 2>/dev/null
        umount "$T/outside-ns" 2>/dev/null
        rm -rf "$T"
        return $rc
    }

    local NPROC
    NPROC=$(ulimit -Hu)
    if [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 4096 ]; then NPROC=4096; fi
    mkdir -p "$T"/{helpers,networks,storage,run,tmp}
    ln -s "$WEFT_BIN" "$T/helpers/netavark"
    ln -s "$WEFT_BIN" "$T/helpers/aardvark-dns"
    cat >"$T/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=$NPROC:$NPROC"]
log_driver = "k8s-file"

[network]
network_backend = "netavark"
network_config_dir = "$T/networks"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/tmp/events.log"
lock_type = "file"
tmp_dir = "$T/tmp"
volume_path = "$T/storage/volumes"
image_copy_tmp_dir = "$T/tmp"
helper_binaries_dir = ["$T/helpers"]
EOF
    cat >"$T/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$T/storage"
runroot = "$T/run"
EOF

    ip netns add "$SANDBOX"
    ip netns add "$OUT_NS"
    touch "$T/outside-ns"
    mount --bind "/run/netns/$OUT_NS" "$T/outside-ns"
    # The outside world: a client on a veth link to the sandbox "host".
    ip link add veth-out netns "$SANDBOX" type veth peer name eth0 netns "$OUT_NS"
    ip -n "$SANDBOX" addr add "$HOST_IP/24" dev veth-out
    ip -n "$SANDBOX" link set veth-out up
    ip -n "$OUT_NS" addr add "$OUT_IP/24" dev eth0
    ip -n "$OUT_NS" link set eth0 up
    ip -n "$OUT_NS" link set lo up
    local start
    start=$(date +%s.%N)
    nsenter --net="/run/netns/$SANDBOX" -- unshare --mount --propagation slave -- \
        env PM_INNER=1 T="$T" SANDBOX="$SANDBOX" OUT_NS="$OUT_NS" SCENARIO="$SCENARIO" \
        WEFT_BIN="$WEFT_BIN" PM_SCENARIOS="${PM_SCENARIOS:-}" PM_OUT="${PM_OUT:-}" bash "$0" "$SCENARIO" ||
        exit 1
    printf 'PASS: podman %s: %s (%.1f s)\n' "$SCENARIO" "$(cat "$T/result")" \
        "$(python3 -c "print($(date +%s.%N) - $start)")"
}

# More scenarios (bench/podman.sh adds its measurement this way).
if [ -n "${PM_SCENARIOS:-}" ]; then
    # shellcheck source=/dev/null
    . "$PM_SCENARIOS"
fi
SCENARIO=${1:-}
if [ -n "${PM_INNER:-}" ]; then
    inner
else
    outer
fi
