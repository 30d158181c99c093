# Sorts weft's CPU samples (perf script -F comm,ip,sym, 10 kHz) into kernel
# subsystems by the first frame of each call chain that names one
# (bench/profile.sh section 6). K: operations recorded.
function classify(s) {
    if (s ~ /^(fib6_|__fib6|rt6_|ip6_|addrconf|inet6_|ipv6_|ndisc|mld_|igmp6|__ipv6|in6_dev|icmpv6)/) return "kernel: IPv6 (fib6 walks, ND/MLD, rx)"
    if (s ~ /^(br_|nbp_|__br_|new_nbp|del_nbp)/) return "kernel: bridge (ports, FDB, STP)"
    if (s ~ /^(__netdev_adjacent|netdev_upper|netdev_lower|__netdev_update_features|netdev_update_features|netdev_change_features)/) return "kernel: netdev features/adjacency"
    if (s ~ /^(veth_|register_netdevice|unregister_netdevice|rtnl_newlink|rtnl_dellink|rtnl_setlink|__rtnl_newlink|netdev_run_todo|dev_close|dev_open|__dev_)/) return "kernel: netdev core (veth)"
    if (s ~ /^(ext4_|jbd2|blk_|__blk|submit_bio|virtio|vp_notify|iowrite16|generic_buffers|do_fsync|__sync_dirty|file_write_and_wait|filemap_fdatawrite|__filemap_fdatawait|find_inode_bit|recently_deleted|do_unlinkat|vfs_unlink)/) return "kernel: filesystem/block (SQLite files)"
    if (s ~ /^(bprm_execve|load_elf_binary|do_execveat|begin_new_exec|setup_arg_pages|exit_mmap|do_exit|do_group_exit|unmap_|free_pgtables|tlb_|release_pages|__mmput|mmput|wp_page|do_wp_page|filemap_map_pages|next_uptodate_folio|handle_mm_fault|__handle_mm_fault|do_anonymous_page|exc_page_fault|do_user_addr_fault|clear_page|set_ptes)/) return "kernel: exec, page faults, exit"
    if (s ~ /^(sqlite3|yy_)/) return "user: SQLite"
    if (s ~ /serde_json|serde_core/) return "user: serde_json"
    if (s ~ /^(_dl_|do_lookup_x|check_match|init_cpu_features|__cpu_indicator)/) return "user: dynamic loader"
    if (s ~ /clap/) return "user: clap"
    return ""
}
function close_sample() { if (open && cat == "") tot["other"]++; open = 0 }
/^ *weft/ { close_sample(); n++; cat = ""; open = 1; next }
/^[ \t]+[0-9a-f]+ / {
    if (!open || cat != "") next
    s = $2; sub(/\+0x.*/, "", s)
    c = classify(s)
    if (c != "") { cat = c; tot[c]++ }
    next
}
END {
    close_sample()
    if (!n) { print "   no samples"; exit }
    for (c in tot) printf "   %6.2f ms/op  %5.1f%%  %s\n", tot[c] * 0.1 / K, 100 * tot[c] / n, c | "sort -rn"
    close("sort -rn")
    printf "   %6.2f ms/op          total (perf inflates it somewhat)\n", n * 0.1 / K
}
