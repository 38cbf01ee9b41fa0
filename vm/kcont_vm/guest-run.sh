#!/bin/sh
# kcont-vm guest wrapper: the first thing virtme-ng runs in the guest.
#
# Shell, not Python: under TCG with KASAN, Python's start-up alone costs
# ~20 s, and `kcont-vm run -- true` should cost a boot and little more.
#
# It gives the command a writable /tmp and mounted debugfs/tracefs (bcc
# needs both), clears kmemleak's record of boot-time objects so only the
# command's leaks count, runs the command, then waits out kmemleak's 5 s
# minimum object age, scans twice and forwards any report to the kernel
# log (printk.devkmsg=on), where the host's report detection sees it.
# The command's exit code goes to $KCONT_RESULTS/guest-rc, so the host can
# tell "the command failed" from "the guest died".
#
# usage: guest-run.sh [--no-kmemleak] -- CMD [ARGS...]
KMEMLEAK=/sys/kernel/debug/kmemleak
scan=1
while [ $# -gt 0 ]; do
    case "$1" in
    --no-kmemleak) scan=0; shift ;;
    --) shift; break ;;
    *) break ;;
    esac
done

mounted() { grep -q " $1 " /proc/mounts; }
mounted /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
mounted /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
if ! mounted /tmp || ! [ -w /tmp ]; then
    mount -t tmpfs -o mode=1777 tmpfs /tmp
fi
[ $scan = 1 ] && [ -e $KMEMLEAK ] && echo clear > $KMEMLEAK

if [ $# -eq 0 ]; then
    echo "kcont-vm: no command" >&2
    rc=2
elif ! command -v "$1" >/dev/null 2>&1; then
    echo "kcont-vm: $1: command not found in the guest" >&2
    rc=127
else
    "$@"
    rc=$?
fi

if [ $scan = 1 ] && [ -e $KMEMLEAK ]; then
    sleep 5.5
    echo scan > $KMEMLEAK
    echo scan > $KMEMLEAK
    leaks=$(grep -c "unreferenced object" $KMEMLEAK)
    if [ "$leaks" -gt 0 ]; then
        echo "kcont-guest: kmemleak: $leaks new suspected memory leaks after the command" > /dev/kmsg
        sed 's/^/kcont-guest: /' $KMEMLEAK | while IFS= read -r line; do
            echo "$line" > /dev/kmsg
        done
    fi
fi
[ -n "$KCONT_RESULTS" ] && echo "$rc" > "$KCONT_RESULTS/guest-rc"
exit $rc
