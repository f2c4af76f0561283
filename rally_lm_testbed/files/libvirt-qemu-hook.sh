#!/bin/sh
# libvirt's qemu hook on an OVN compute of the rally_lm testbed (installed only there).
#
# Why: on Open vSwitch's userspace datapath (this kernel has no openvswitch
# module), ovs-vswitchd sets PROMISC on a port it adds, writing the whole flag
# word from its cached copy (lib/netdev-linux.c update_flags). os-vif creates
# the port before libvirt creates the tap; when the tap appears, libvirt sets
# it UP while ovs-vswitchd opens it, and if vswitchd cached the flags before the
# UP, its write takes the tap DOWN again: the guest runs, its agent is ready,
# and no frame ever reaches it (seen on 1 of 18 boots on this testbed). A real
# cloud's kernel datapath does not do this.
#
# What: at "start" (a boot, and the destination of an incoming migration),
# a detached watcher brings the domain's taps UP whenever they are down, for
# a minute, and logs what it watches and every time it had to act.
# (The two variables below are for the script's own tests; libvirt runs
# hooks with a clean environment.)
[ "$2" = start ] || exit 0
domain=$1
taps=$(sed -n "s/.*<target dev='\(tap[^']*\)'.*/\1/p")
[ -n "$taps" ] || exit 0
log=${RALLY_LM_TAP_GUARD_LOG:-/var/log/libvirt/rally-lm-tap-guard.log}
seconds=${RALLY_LM_TAP_GUARD_SECONDS:-60}
echo "$(date -u +%FT%T.%N) $domain: watching" $taps >>"$log"
# Cheap on purpose: it runs beside the guests, in their CPU group, once per boot
# and per incoming migration - a minute each, several at a time under a
# benchmark. Each look reads the tap's flags from sysfs with the shell's own
# `read` (IFF_UP is bit 0): the only fork is the `sleep` between looks. (With
# `ip link show` and `grep` each look, the watchers took 0.125 of a core.)
setsid sh -c '
    domain=$1; seconds=$2; shift 2
    looks=$((seconds * 2))
    while [ "$looks" -gt 0 ]; do
        looks=$((looks - 1))
        for tap in "$@"; do
            read -r flags 2>/dev/null <"/sys/class/net/$tap/flags" || continue
            if [ $((flags & 1)) -eq 0 ]; then
                ip link set dev "$tap" up &&
                    echo "$(date -u +%FT%T.%N) $domain: $tap was down, set up"
            fi
        done
        sleep 0.5
    done
 ' guard "$domain" "$seconds" $taps </dev/null >>"$log" 2>&1 &
exit 0
