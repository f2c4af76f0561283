#!/usr/bin/env bash
# Installs the Debian packages rally_lm's testbed and tests need (Debian 12, root).
# Idempotent: re-running only installs what is missing.
#   --minimal   only what the unit/probe tests need (no OpenStack, no hypervisor)
set -euo pipefail

minimal=0
[ "${1:-}" = "--minimal" ] && minimal=1

if [ "$(id -u)" != 0 ]; then
    echo "install-system-deps: must run as root (apt-get install)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# QEMU 7.2 in bookworm loses guest memory writes during live migration under
# TCG; 10.0 from bookworm-backports does not. Same URI and keyring as main.
backports=/etc/apt/sources.list.d/rally-lm-backports.sources
added_backports=0
if [ ! -f "$backports" ]; then
    added_backports=1
    uri=$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    keyring=$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    cat > "$backports" <<SRC
Types: deb
URIs: ${uri:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: ${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
SRC
fi

# Daemons are started by the testbed itself, inside its namespaces: while
# these packages install, no service starts on the host. The policy is ours
# only for the install; whatever was there before is put back on exit.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
fi
restore_policy() {
    if [ -n "$saved" ]; then
        cp -p "$saved" "$policy" && rm -f "$saved"
    else
        rm -f "$policy"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# rally_lm install: no service starts while packages install\nexit 101\n' > "$policy"
chmod +x "$policy"

base_pkgs=(iproute2 iputils-ping procps psmisc util-linux python3-venv sqlite3 victoria-metrics nginx-light
           influxdb)
hv_pkgs=(qemu-system-x86 qemu-utils qemu-block-extra libvirt-daemon-system libvirt-clients
         libvirt-daemon libvirt-daemon-driver-qemu libvirt0)
testbed_pkgs=(python3-libvirt busybox-static cpio kmod genisoimage openssh-server openssh-client gcc libc6-dev bindfs ebtables iptables bridge-utils tcpdump mmdebstrap extlinux syslinux-common e2fsprogs
              mariadb-server rabbitmq-server memcached python3-pymysql python3-memcache
              keystone glance-api placement-api nova-api nova-conductor nova-scheduler
              nova-compute-kvm neutron-server neutron-linuxbridge-agent neutron-plugin-ml2
              uwsgi-core uwsgi-plugin-python3 python3-openstackclient chromium
              neutron-l3-agent ceph-mon ceph-osd ceph-mgr ceph-common python3-rbd python3-rados
              cinder-api cinder-scheduler cinder-volume
              openvswitch-switch ovn-central ovn-host neutron-ovn-metadata-agent ethtool)

apt-get update -q
apt-get install -y -q --no-install-recommends "${base_pkgs[@]}"
[ "$minimal" = 1 ] && exit 0
apt-get install -y -q --no-install-recommends -t bookworm-backports "${hv_pkgs[@]}"
apt-get install -y -q --no-install-recommends "${testbed_pkgs[@]}"

if [ "$added_backports" = 1 ]; then
    echo "install-system-deps: NOTE: added $backports (Debian bookworm-backports, for" >&2
    echo "  QEMU 10 / libvirt 11) to this machine's apt sources; it stays. Remove it with" >&2
    echo "  rm $backports && apt-get update" >&2
fi
