"""The two compute hosts: virtlogd + libvirtd, nova-compute, and the network's
agent: the linuxbridge agent, or with ML2/OVN an OVN chassis (``ovn``).

The storage mode decides where instance disks live: ``local`` - the host's
own ``/var/lib/nova/instances`` (Nova block-migrates), ``shared`` - one
directory for both, mounted through bindfs as ``fuse.glusterfs`` so libvirt
and Nova treat it as shared storage (a plain bind mount is refused as unsafe),
``ceph`` - RBD images in the Ceph cluster's ``vms`` pool, cloned from
Glance's ``images`` pool (Nova's shared-block-storage path, as the seed ran).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from rally_lm_testbed import ceph, config, hosts, layout, network, ovn, policy
from rally_lm_testbed.layout import Host

INSTANCES = "/var/lib/nova/instances"


def daemons(host: Host, network_backend: str = "linuxbridge") -> list[str]:
    agent = (ovn.daemons_chassis(host) if network_backend == "ovn"
             else [f"{host.name}-linuxbridge-agent"])
    return [f"{host.name}-sshd", f"{host.name}-virtlogd", f"{host.name}-libvirtd", *agent,
            f"{host.name}-nova-compute"]


def _write_text(host: Host, path: str, text: str) -> None:
    target = config.private_path(host, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


# -- libvirt -------------------------------------------------------------------------

#: libvirt's qemu hook for OVN computes: keeps a new guest's tap up through
#: ovs-vswitchd's userspace flag race (the script says why).
TAP_GUARD_HOOK = Path(__file__).parent / "files" / "libvirt-qemu-hook.sh"
#: Where the hook logs what it watched and every tap it had to bring up.
TAP_GUARD_LOG = "/var/log/libvirt/rally-lm-tap-guard.log"


def libvirt_configure(host: Host, network_backend: str = "linuxbridge") -> None:
    # libvirt cannot read a host UUID here, and equal UUIDs make it refuse to
    # migrate ("Attempt to migrate guest to the same host").
    host_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"rally-lm-testbed-{host.name}")
    _write_text(host, "/etc/libvirt/libvirtd.conf", "\n".join([
        "listen_tls = 0",
        "listen_tcp = 1",
        f'listen_addr = "{host.ip}"',
        'auth_tcp = "none"',
        'auth_unix_rw = "none"',
        'auth_unix_ro = "none"',
        f'host_uuid = "{host_uuid}"',
        'log_outputs = "3:stderr"',
        "",
    ]))
    _write_text(host, "/etc/libvirt/qemu.conf", "\n".join([
        'user = "root"',
        'group = "root"',
        "dynamic_ownership = 0",
        "remember_owner = 0",
        'security_driver = "none"',
        "cgroup_controllers = [ ]",
        f'migration_address = "{host.ip}"',
        # Used only when Nova asks for native TLS (policy.native_tls).
        f'migrate_tls_x509_cert_dir = "{policy.TLS_DIR}"',
        "",
    ]))
    # libvirtd reads its hooks when it starts.
    hook = config.private_path(host, "/etc/libvirt/hooks/qemu")
    if network_backend == "ovn":
        hook.parent.mkdir(parents=True, exist_ok=True)
        hook.write_text(TAP_GUARD_HOOK.read_text())
        hook.chmod(0o755)
    else:
        hook.unlink(missing_ok=True)


def tap_guard_lines(host: Host) -> list[str]:
    """What the OVN tap guard logged on this host (none without OVN)."""
    log = config.private_path(host, TAP_GUARD_LOG)
    return log.read_text().splitlines() if log.exists() else []


def libvirt_start(host: Host) -> None:
    hosts.spawn(host, f"{host.name}-virtlogd",
                ["virtlogd", "--pid-file", "/run/libvirt/virtlogd.pid"])
    hosts.spawn(host, f"{host.name}-libvirtd",
                ["libvirtd", "--listen", "--pid-file", "/run/libvirt/libvirtd.pid"])
    hosts.wait_for_port(host, 16509, 60, f"{host.name}-libvirtd")


def virsh(host: Host, *args: str, check: bool = True):
    return hosts.host_run(host, ["virsh", "-c", "qemu:///system", *args], check=check)


# -- ssh between computes (Nova copies the config drive with scp) -----------------------

def ssh_configure(host: Host) -> None:
    keys = layout.STATE / "ssh"
    if not (keys / "id_ed25519").exists():
        keys.mkdir(parents=True, exist_ok=True)
        hosts.netns.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                         "rally-lm-testbed", "-f", str(keys / "id_ed25519")])
    dot_ssh = config.private_path(host, "/root/.ssh")
    dot_ssh.mkdir(parents=True, exist_ok=True)
    dot_ssh.chmod(0o700)
    for name in ("id_ed25519", "id_ed25519.pub"):
        (dot_ssh / name).write_bytes((keys / name).read_bytes())
        (dot_ssh / name).chmod(0o600)
    (dot_ssh / "authorized_keys").write_bytes((keys / "id_ed25519.pub").read_bytes())
    # Testbed hosts are rebuilt every run: their host keys change by design.
    (dot_ssh / "config").write_text("StrictHostKeyChecking no\nUserKnownHostsFile /dev/null\n"
                                    "LogLevel ERROR\n")
    _write_text(host, "/etc/ssh/sshd_config", "\n".join([
        f"ListenAddress {host.ip}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "UsePAM no",
        "PidFile none",
        "Subsystem sftp internal-sftp",
        "",
    ]))
    hosts.host_run(host, ["ssh-keygen", "-A"])
    hosts.host_run(host, ["mkdir", "-p", "/run/sshd"])


def ssh_start(host: Host) -> None:
    hosts.spawn(host, f"{host.name}-sshd", ["/usr/sbin/sshd", "-D", "-e"])
    hosts.wait_for_port(host, 22, 20, f"{host.name}-sshd")


# -- storage mode ---------------------------------------------------------------------

def _mounted_fstype(host: Host, path: str) -> str | None:
    out = hosts.host_run(host, ["findmnt", "-n", "-o", "FSTYPE", path], check=False).stdout
    return out.strip() or None


def storage_apply(host: Host, storage: str) -> None:
    """Make ``INSTANCES`` on ``host`` local or shared (computes must be stopped)."""
    fstype = _mounted_fstype(host, INSTANCES)
    if storage == "shared":
        if fstype != "fuse.glusterfs":
            layout.SHARED_INSTANCES.mkdir(parents=True, exist_ok=True)
            hosts.host_run(host, ["mkdir", "-p", INSTANCES])
            hosts.host_run(host, ["bindfs", "-o", "subtype=glusterfs,allow_other,nonempty",
                                  str(layout.SHARED_INSTANCES), INSTANCES])
    elif fstype is not None:
        hosts.host_run(host, ["umount", INSTANCES])
    hosts.host_run(host, ["mkdir", "-p", INSTANCES])


# -- nova-compute and the linuxbridge agent ---------------------------------------------

#: oslo.privsep appends the context and socket to this command.
PRIVSEP_HELPER = "/usr/bin/privsep-helper --config-file /etc/nova/nova.conf"
#: Nova's own, os-vif's plugins' (linux bridge, Open vSwitch) and os-brick's (Ceph
#: volumes) contexts.
PRIVSEP_SECTIONS = ("nova_sys_admin", "vif_plug_linux_bridge_privileged",
                    "vif_plug_ovs_privileged", "privsep_osbrick")


def nova_compute_configure(host: Host, tunnelled: bool, storage: str = "local",
                           migration_policy: policy.Policy | None = None,
                           network_backend: str = "linuxbridge") -> None:
    libvirt = {"virt_type": "qemu", "cpu_mode": "custom", "cpu_models": "qemu64",
               "live_migration_scheme": "tcp", "live_migration_inbound_addr": host.ip,
               "live_migration_tunnelled": tunnelled,
               # Volumes (Cinder's RBD backend) attach with this libvirt secret.
               "rbd_user": ceph.CLIENT, "rbd_secret_uuid": ceph.SECRET_UUID}
    libvirt.update((migration_policy or policy.Policy()).nova_options())
    if storage == "ceph":
        libvirt.update({"images_type": "rbd", "images_rbd_pool": "vms",
                        "images_rbd_ceph_conf": "/etc/ceph/ceph.conf"})
    config.write(config.private_path(host, "/etc/nova/nova.conf"), {
        "DEFAULT": {"host": host.name, "my_ip": host.ip, "transport_url": config.TRANSPORT_URL,
                    "compute_driver": "libvirt.LibvirtDriver", "state_path": "/var/lib/nova",
                    # The iso9660 config drive is copied with scp during block
                    # migration: hence sshd between the computes (see ssh_*).
                    "instances_path": INSTANCES, "force_config_drive": True,
                    "use_stderr": True, "initial_cpu_allocation_ratio": 8.0,
                    "reserved_host_memory_mb": 256},
        "libvirt": libvirt,
        # Without it the destination's bridge lacks its uplink until the agent
        # adds it after port activation: a 100 ms pause became a 7.7 s outage.
        "os_vif_linux_bridge": {"flat_interface": network.TENANT_DEV},
        # With ML2/OVN: this host's own switch database (os-vif's default is TCP
        # on 127.0.0.1, which no ovsdb-server here listens on).
        "os_vif_ovs": {"ovsdb_connection": "unix:/run/openvswitch/db.sock"},
        "neutron": config.service_auth("neutron"),
        "placement": config.service_auth("placement"),
        "service_user": {**config.service_auth("nova"), "send_service_user_token": True},
        "glance": {"api_servers": f"http://{layout.CONTROLLER.ip}:9292"},
        "cinder": {"os_region_name": layout.REGION},
        "oslo_concurrency": {"lock_path": "/var/lib/nova/tmp"},
        "vnc": {"enabled": False},
        # nova-compute runs as root here: its privileged helpers start without
        # sudo and rootwrap, two Python start-ups fewer. Each restart (a mode
        # switch) spawned them again on the first boot and the first incoming
        # migration, ~4.5 s apiece on a slow machine.
        **{section: {"helper_command": PRIVSEP_HELPER} for section in PRIVSEP_SECTIONS},
    })


def ceph_secret(host: Host) -> None:
    """client.openstack's key as the libvirt secret Nova and Cinder name (idempotent)."""
    keyring = config.private_path(host, f"/etc/ceph/ceph.client.{ceph.CLIENT}.keyring")
    key = keyring.read_text().split("key = ", 1)[1].split()[0]
    xml = config.private_path(host, "/etc/libvirt/rally-lm-ceph-secret.xml")
    xml.write_text(f"<secret ephemeral='no' private='no'><uuid>{ceph.SECRET_UUID}</uuid>"
                   f"<usage type='ceph'><name>client.{ceph.CLIENT} secret</name></usage>"
                   "</secret>\n")
    virsh(host, "secret-define", "/etc/libvirt/rally-lm-ceph-secret.xml")
    virsh(host, "secret-set-value", "--secret", ceph.SECRET_UUID, "--base64", key)


def linuxbridge_configure(host: Host) -> None:
    config.write(config.private_path(host, "/etc/neutron/neutron.conf"), {
        "DEFAULT": {"host": host.name, "transport_url": config.TRANSPORT_URL,
                    "use_stderr": True},
        "oslo_concurrency": {"lock_path": "/var/lib/neutron/tmp"},
    })
    config.write(config.private_path(host, "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"), {
        "linux_bridge": {"physical_interface_mappings":
                         f"{layout.PHYSNET}:{network.TENANT_DEV}"},
        "vxlan": {"enable_vxlan": False},
        "securitygroup": {"firewall_driver": "iptables", "enable_security_group": True},
    })


def services_start(host: Host, network_backend: str = "linuxbridge") -> None:
    """Start nova-compute and the network's agent, each unless it runs already."""
    if network_backend == "ovn":
        # The chassis first: os-vif plugs into br-int, which ovn-controller makes.
        ovn.chassis_start(host)
    hosts.spawn(host, f"{host.name}-nova-compute",
                ["nova-compute", "--config-file", "/etc/nova/nova.conf"])
    if network_backend != "ovn":
        hosts.spawn(host, f"{host.name}-linuxbridge-agent", [
            "neutron-linuxbridge-agent", "--config-file", "/etc/neutron/neutron.conf",
            "--config-file", "/etc/neutron/plugins/ml2/linuxbridge_agent.ini"])


def nova_compute_stop(host: Host) -> None:
    """Stop nova-compute alone (a mode switch restarts nothing else)."""
    # The network agent's configuration never depends on the mode; a restart
    # made the linuxbridge agent resync every port, and neutron-server with it,
    # beside the next task's boots.
    hosts.stop(f"{host.name}-nova-compute")


def up(host: Host, mode: dict, log=print) -> None:
    backend = mode.get("network", "linuxbridge")
    log(f"{host.name}: sshd, libvirt")
    ssh_configure(host)
    ssh_start(host)
    libvirt_configure(host, backend)
    libvirt_start(host)
    ceph_secret(host)
    agent = "OVN chassis" if backend == "ovn" else "linuxbridge agent"
    log(f"{host.name}: nova-compute, {agent} ({json.dumps(mode)})")
    storage_apply(host, mode["storage"])
    nova_compute_configure(host, mode["tunnelled"] == "on", mode["storage"],
                           policy.Policy.from_dict(mode.get("policy")), backend)
    if backend == "ovn":
        ovn.chassis_configure(host)
    else:
        linuxbridge_configure(host)
    services_start(host, backend)


def stop_all(host: Host) -> None:
    for backend in layout.NETWORK_BACKENDS:
        for daemon in reversed(daemons(host, backend)):
            hosts.stop(daemon)
