# shellcheck shell=bash
# Sourced by the Podman test scripts (tests/podman/run.sh,
# tests/runtime/podman.sh).
#
# busybox_image DIR IMAGE: an image made of busybox-static alone, its
# applets linked as `busybox --install -s` would link them, built under
# DIR and imported with the caller's `pm` (its podman) as IMAGE.
busybox_image() {
    local dir=$1 image=$2
    local rootfs=$dir/rootfs
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root}
    cp /bin/busybox "$rootfs/bin/busybox"
    /bin/busybox --list-full | while read -r app; do
        [ "$app" = bin/busybox ] || ln -sf /bin/busybox "$rootfs/$app"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
    echo 'root:x:0:' >"$rootfs/etc/group"
    tar -C "$rootfs" -cf "$dir/rootfs.tar" .
    pm import --quiet "$dir/rootfs.tar" "$image" >/dev/null || fail "podman import of the busybox image failed"
}
