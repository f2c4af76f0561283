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
if [ ! -f "$backports" ]; then
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

# Daemons are started by the testbed itself, inside its namespaces.
if [ ! -f /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
fi

base_pkgs=(iproute2 iputils-ping procps psmisc util-linux python3-venv sqlite3 victoria-metrics)
hv_pkgs=(qemu-system-x86 qemu-utils qemu-block-extra libvirt-daemon-system libvirt-clients
         libvirt-daemon libvirt-daemon-driver-qemu libvirt0)
testbed_pkgs=(python3-libvirt busybox-static cpio kmod genisoimage openssh-server openssh-client gcc libc6-dev bindfs ebtables iptables bridge-utils
              mariadb-server rabbitmq-server memcached python3-pymysql python3-memcache
              keystone glance-api placement-api nova-api nova-conductor nova-scheduler
              nova-compute-kvm neutron-server neutron-linuxbridge-agent neutron-plugin-ml2
              uwsgi-core uwsgi-plugin-python3 python3-openstackclient chromium)

apt-get update -q
apt-get install -y -q --no-install-recommends "${base_pkgs[@]}"
[ "$minimal" = 1 ] && exit 0
apt-get install -y -q --no-install-recommends -t bookworm-backports "${hv_pkgs[@]}"
apt-get install -y -q --no-install-recommends "${testbed_pkgs[@]}"
