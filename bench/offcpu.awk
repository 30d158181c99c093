# Summarises `perf sched timehist -g` for the weft processes of one
# recording (bench/profile.sh section 3): per operation, time on CPU, time
# runnable but waiting for a CPU, and time blocked, by kernel wait site.
# A line's wait time belongs to the task's previous switch-out, whose
# call chain says why it blocked. Threads (tid/pid) count as CPU only.
# Variable OP names the operation.
$3 ~ /^weft\[/ {
    id = $3; sub(/^weft\[/, "", id); sub(/\].*/, "", id)
    wait = $4; sch = $5; run = $6
    chain = $0; sub(/^.*[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+ +/, "", chain)
    if (id ~ /\//) { thread_cpu += run; next }
    if (!(id in seen)) { seen[id] = 1; procs++ }
    if (id in prev) { c = site(prev[id]); blocked[c] += wait - sch; queued += sch }
    cpu += run; prev[id] = chain
}
function site(ch) {
    if (ch ~ /blkdev_issue_discard/) return "discard on unlink (SQLite -wal/-shm)"
    if (ch ~ /file_write_and_wait|__sync_dirty_buffer|fsync_buffers_list|blkdev_issue_flush|submit_bio_wait/) return "fsync (SQLite)"
    if (ch ~ /rcu_barrier/) return "rcu_barrier (veth unregister)"
    if (ch ~ /synchronize_rcu|exp_funnel_lock|synchronize_net/) return "synchronize_rcu_expedited"
    if (ch ~ /mutex_lock|rtnl/) return "mutex (rtnl)"
    if (ch ~ /futex/) return "join of the netns worker thread"
    if (ch ~ /filemap_fault|do_fault|page_fault/) return "page-in"
    if (ch ~ /exit_to_user_mode|irqentry_exit|preempt/) return "preempted"
    if (ch ~ /do_task_dead|do_exit/) return "(after exit)"
    return "other: " substr(ch, 1, 50)
}
END {
    if (!procs) { print "   no weft process recorded"; exit }
    printf "-- %s (%d processes), ms per operation\n", OP, procs
    printf "   %-48s %7.2f\n", "on CPU", (cpu + thread_cpu) / procs
    printf "   %-48s %7.2f\n", "runnable, waiting for a CPU (machine load)", queued / procs
    for (c in blocked)
        if (c != "(after exit)" && blocked[c] / procs >= 0.05)
            printf "   %-48s %7.2f\n", "blocked: " c, blocked[c] / procs
}
