#!/bin/busybox sh
# /init of the rally-lm benchmark guest (busybox initramfs).
# Network from the config drive's network_data.json (or lmip= on the kernel
# command line), workload from its user_data, as cloud-init would do.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# Parameters on the kernel command line as module.param=value reach the module,
# as modprobe passes them (the OVN testbed sets virtio_net.csum=0 that way).
for module in $(cat /modules.order); do
    params=$(tr ' ' '\n' < /proc/cmdline | sed -n "s/^${module%.ko}\.//p")
    insmod "/lib/modules/$module" $params 2>/dev/null
done
echo "rally-lm-guest: modules loaded"

mkdir -p /config
for dev in /dev/sr0 /dev/sr1 /dev/vdb /dev/vdc; do
    [ -b "$dev" ] || continue
    mount -o ro -t vfat "$dev" /config 2>/dev/null || mount -o ro -t iso9660 "$dev" /config \
        2>/dev/null || continue
    [ -d /config/openstack ] && break
    umount /config
done

ip=""; mask="255.255.255.0"; gateway=""
data=/config/openstack/latest/network_data.json
if [ -f "$data" ]; then
    # First occurrences: the network's own netmask comes before its routes'.
    first() { grep -o "\"$1\": *\"[0-9.]*\"" "$data" | head -n 1 | sed 's/.*"\([0-9.]*\)"$/\1/'; }
    ip=$(first ip_address)
    found=$(first netmask)
    [ -n "$found" ] && mask=$found
    # The subnet's gateway (the router), when it has one: replies to floating IPs go there.
    gateway=$(first gateway)
fi
for arg in $(cat /proc/cmdline); do
    case "$arg" in lmip=*) ip=${arg#lmip=} ;; esac
done
ip link set lo up
if [ -n "$ip" ]; then
    ifconfig eth0 "$ip" netmask "$mask" up
    echo "rally-lm-guest: eth0 $ip/$mask"
    if [ -n "$gateway" ]; then
        ip route add default via "$gateway" && echo "rally-lm-guest: default via $gateway"
    fi
else
    echo "rally-lm-guest: no address found (no config drive, no lmip=)"
fi

if [ -f /config/openstack/latest/user_data ]; then
    cp /config/openstack/latest/user_data /user_data
    echo "rally-lm-guest: running user_data"
    sh /user_data > /dev/console 2>&1 &
fi
echo "rally-lm-guest: up $(cut -d' ' -f1 /proc/uptime)s"
while true; do sleep 3600; done
