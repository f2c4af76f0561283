"""The control plane, from Debian's packages, inside the ``ctl`` host.

Each service follows one lifecycle: ``configure`` (write its files),
``init`` (create its database or state, idempotent), ``start`` (daemons, then
wait until it answers). ``stop_all`` stops in mirror order.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from rally_lm_testbed import ceph, config, hosts, layout, ovn
from rally_lm_testbed.layout import CONTROLLER as CTL

DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "neutron",
             "cinder")


def _write(path: str, sections: config.Sections) -> None:
    config.write(config.private_path(CTL, path), sections)


def _write_text(path: str, text: str) -> None:
    target = config.private_path(CTL, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _chown(user: str, *paths: str) -> None:
    for path in paths:
        shutil.chown(config.private_path(CTL, path), user, user)


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return hosts.host_run(CTL, argv, **kwargs)


# -- mariadb ------------------------------------------------------------------

def mariadb_init() -> None:
    _chown("mysql", "/var/lib/mysql", "/run/mysqld")
    if not config.private_path(CTL, "/var/lib/mysql/mysql").exists():
        _run(["mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql",
              "--skip-test-db", "--auth-root-authentication-method=socket"])


def mariadb_start() -> None:
    hosts.spawn(CTL, "mariadb", [
        "mariadbd", "--user=mysql", "--datadir=/var/lib/mysql",
        "--socket=/run/mysqld/mysqld.sock", f"--bind-address={CTL.ip}",
        "--innodb-buffer-pool-size=64M", "--performance-schema=OFF", "--skip-name-resolve",
        "--max-connections=500", "--log-error=",
    ])
    hosts.wait_for_port(CTL, 3306, 60, "mariadb")
    statements = [f"CREATE DATABASE IF NOT EXISTS {db};" for db in DATABASES]
    statements += [
        f"CREATE USER IF NOT EXISTS 'openstack'@'%' IDENTIFIED BY '{layout.PASSWORD}';",
        "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'%';",
        "FLUSH PRIVILEGES;",
    ]
    _run(["mariadb", "--socket=/run/mysqld/mysqld.sock", "-uroot", "-e", " ".join(statements)])


# -- rabbitmq, memcached --------------------------------------------------------

def rabbitmq_configure() -> None:
    _write_text("/etc/rabbitmq/rabbitmq.conf", "\n".join([
        f"listeners.tcp.default = {CTL.ip}:5672",
        "default_user = openstack",
        f"default_pass = {layout.PASSWORD}",
        "loopback_users = none",
        "log.console = true",
        "log.file = false",
        "",
    ]))
    _write_text("/etc/rabbitmq/rabbitmq-env.conf", "\n".join([
        "NODENAME=rabbit@ctl",
        f"NODE_IP_ADDRESS={CTL.ip}",
        "",
    ]))
    _chown("rabbitmq", "/var/lib/rabbitmq", "/var/log/rabbitmq")


def rabbitmq_start() -> None:
    hosts.spawn(CTL, "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], user="rabbitmq",
                env={"HOME": "/var/lib/rabbitmq", "ERL_EPMD_ADDRESS": f"127.0.0.1,{CTL.ip}",
                     "RABBITMQ_CONFIG_FILE": "/etc/rabbitmq/rabbitmq.conf"})
    hosts.wait_for_port(CTL, 5672, 120, "rabbitmq")


def memcached_start() -> None:
    hosts.spawn(CTL, "memcached", ["memcached", "-u", "memcache", "-l", CTL.ip, "-p", "11211",
                                   "-m", "64"])
    hosts.wait_for_port(CTL, 11211, 20, "memcached")


# -- keystone ---------------------------------------------------------------------

def keystone_configure() -> None:
    _write("/etc/keystone/keystone.conf", {
        "DEFAULT": {"use_stderr": True},
        "database": {"connection": config.db_url("keystone")},
        "token": {"provider": "fernet"},
        # As devstack and production clouds run it. Uncached, each token
        # validation re-read the user's roles, project and catalog from the
        # database: keystone was the testbed's largest CPU user after the
        # guests during a policy task (25 s of 145; validations 1.8 s each).
        "cache": {"enabled": True, "backend": "dogpile.cache.memcached",
                  "memcache_servers": f"{layout.CONTROLLER.ip}:11211"},
        # Every Rally task creates and deletes its users and logs in ~28 times,
        # each login a bcrypt check: 211 ms of CPU at keystone's default cost
        # (12), 0.9 ms at the minimum (4), measured here with passlib. Keystone's
        # two workers, already short of CPU beside the guests, queue the
        # services' token validations behind those checks. The cost applies
        # to passwords set afterwards, so bootstrap's admin gets it too.
        "identity": {"password_hash_rounds": 4},
    })
    _write_text("/etc/keystone/rally-lm-uwsgi.ini",
                config.uwsgi_ini("keystone", "/usr/bin/keystone-wsgi-public", 5000))


def keystone_init() -> None:
    _run(["keystone-manage", "db_sync"])
    for command in ("fernet_setup", "credential_setup"):
        _run(["keystone-manage", command, "--keystone-user", "root", "--keystone-group", "root"])
    url = f"http://{CTL.ip}:5000/v3/"
    _run(["keystone-manage", "bootstrap", "--bootstrap-password", layout.PASSWORD,
          "--bootstrap-admin-url", url, "--bootstrap-internal-url", url,
          "--bootstrap-public-url", url, "--bootstrap-region-id", layout.REGION])


def keystone_start() -> None:
    hosts.spawn(CTL, "keystone", ["uwsgi", "--ini", "/etc/keystone/rally-lm-uwsgi.ini"])
    hosts.wait_for_port(CTL, 5000, 60, "keystone")


# -- glance, placement -------------------------------------------------------------

def glance_configure() -> None:
    _write("/etc/glance/glance-api.conf", {
        # Images live in Ceph: in the ceph storage mode Nova clones them there,
        # copy-on-write; in the others it downloads them through Glance.
        "DEFAULT": {"bind_host": CTL.ip, "bind_port": 9292, "workers": 1, "use_stderr": True,
                    "enabled_backends": "local:file,ceph:rbd",
                    "show_image_direct_url": True},
        "database": {"connection": config.db_url("glance")},
        "keystone_authtoken": config.authtoken("glance"),
        "paste_deploy": {"flavor": "keystone"},
        "glance_store": {"default_backend": "ceph"},
        "local": {"filesystem_store_datadir": "/var/lib/glance/images/"},
        "ceph": {"rbd_store_pool": "images", "rbd_store_user": ceph.CLIENT,
                 "rbd_store_ceph_conf": "/etc/ceph/ceph.conf", "rbd_store_chunk_size": 8},
        "oslo_concurrency": {"lock_path": "/var/lib/glance/tmp"},
    })


def glance_init() -> None:
    _run(["glance-manage", "db_sync"])


def glance_start() -> None:
    hosts.spawn(CTL, "glance-api", ["glance-api", "--config-file",
                                    "/etc/glance/glance-api.conf"])
    hosts.wait_for_port(CTL, 9292, 60, "glance-api")


def placement_configure() -> None:
    _write("/etc/placement/placement.conf", {
        "DEFAULT": {"use_stderr": True},
        "placement_database": {"connection": config.db_url("placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": config.authtoken("placement"),
    })
    _write_text("/etc/placement/rally-lm-uwsgi.ini",
                config.uwsgi_ini("placement", "/usr/bin/placement-api", 8778))


def placement_init() -> None:
    _run(["placement-manage", "db", "sync"])


def placement_start() -> None:
    hosts.spawn(CTL, "placement", ["uwsgi", "--ini", "/etc/placement/rally-lm-uwsgi.ini"])
    hosts.wait_for_port(CTL, 8778, 60, "placement")


# -- nova ----------------------------------------------------------------------------

def nova_configure() -> None:
    _write("/etc/nova/nova.conf", {
        "DEFAULT": {"transport_url": config.TRANSPORT_URL, "my_ip": CTL.ip,
                    "state_path": "/var/lib/nova", "use_stderr": True,
                    "enabled_apis": "osapi_compute"},
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": config.db_url("nova_api")},
        "database": {"connection": config.db_url("nova")},
        "keystone_authtoken": config.authtoken("nova"),
        "placement": config.service_auth("placement"),
        "neutron": config.service_auth("neutron"),
        "service_user": {**config.service_auth("nova"), "send_service_user_token": True},
        "glance": {"api_servers": f"http://{CTL.ip}:9292"},
        "scheduler": {"discover_hosts_in_cells_interval": 15, "workers": 1},
        "conductor": {"workers": 1},
        "oslo_concurrency": {"lock_path": "/var/lib/nova/tmp"},
        "vnc": {"enabled": False},
    })
    # nova-api only: its RPC heartbeats must not depend on eventlet under uwsgi
    # (else synchronous calls time out with HTTP 500 MessagingTimeout).
    _write("/etc/nova/nova-api.conf", {
        "oslo_messaging_rabbit": {"heartbeat_in_pthread": True},
    })
    ini = config.uwsgi_ini("nova-api", "/usr/bin/nova-api-wsgi", 8774)
    ini += "env = OS_NOVA_CONFIG_FILES=api-paste.ini;nova.conf;nova-api.conf\n"
    _write_text("/etc/nova/rally-lm-uwsgi.ini", ini)


def nova_init() -> None:
    _run(["nova-manage", "api_db", "sync"])
    _run(["nova-manage", "cell_v2", "map_cell0", "--database_connection",
          config.db_url("nova_cell0")])
    listed = _run(["nova-manage", "cell_v2", "list_cells"]).stdout
    if " cell1 " not in listed:
        _run(["nova-manage", "cell_v2", "create_cell", "--name", "cell1"])
    _run(["nova-manage", "db", "sync"])


def nova_start() -> None:
    hosts.spawn(CTL, "nova-api", ["uwsgi", "--ini", "/etc/nova/rally-lm-uwsgi.ini"])
    hosts.spawn(CTL, "nova-conductor", ["nova-conductor", "--config-file",
                                        "/etc/nova/nova.conf"])
    hosts.spawn(CTL, "nova-scheduler", ["nova-scheduler", "--config-file",
                                        "/etc/nova/nova.conf"])
    hosts.wait_for_port(CTL, 8774, 90, "nova-api")


def nova_discover_hosts() -> None:
    _run(["nova-manage", "cell_v2", "discover_hosts"])


# -- neutron -------------------------------------------------------------------------

NEUTRON_FILES = ["--config-file", "/etc/neutron/neutron.conf",
                 "--config-file", "/etc/neutron/plugins/ml2/ml2_conf.ini"]


def neutron_configure(network: str = "linuxbridge") -> None:
    """neutron-server with ML2/linuxbridge (flat networks, the L3 agent routes) or
    ML2/OVN (Geneve tenant networks, OVN's own L3, ``ovn-router``)."""
    common = {"core_plugin": "ml2", "bind_host": CTL.ip,
              "transport_url": config.TRANSPORT_URL, "auth_strategy": "keystone",
              "notify_nova_on_port_status_changes": True,
              "notify_nova_on_port_data_changes": True, "api_workers": 1,
              "rpc_workers": 1, "rpc_state_report_workers": 1, "use_stderr": True}
    if network == "ovn":
        # Room on the tenant wire for Geneve around a 1500-byte guest; the
        # external wire stays at 1500 (the probe's side of it).
        common.update({"service_plugins": "ovn-router", "global_physnet_mtu": 1600})
        ml2 = ovn.ml2_options()
        ml2["ml2"]["physical_network_mtus"] = f"{layout.EXTERNAL_PHYSNET}:1500"
        extra = {}
    else:
        common["service_plugins"] = "router"
        ml2 = {
            "ml2": {"type_drivers": "flat", "tenant_network_types": "",
                    "mechanism_drivers": "linuxbridge", "extension_drivers": "port_security"},
            "ml2_type_flat": {"flat_networks": f"{layout.PHYSNET},{layout.EXTERNAL_PHYSNET}"},
        }
        extra = {"experimental": {"linuxbridge": True}}
    _write("/etc/neutron/neutron.conf", {
        "DEFAULT": common,
        "database": {"connection": config.db_url("neutron")},
        "keystone_authtoken": config.authtoken("neutron"),
        "nova": config.service_auth("nova"),
        "oslo_concurrency": {"lock_path": "/var/lib/neutron/tmp"},
        **extra,
    })
    _write("/etc/neutron/plugins/ml2/ml2_conf.ini", ml2)


def neutron_init() -> None:
    _run(["neutron-db-manage", *NEUTRON_FILES, "upgrade", "head"], timeout=600)


def neutron_start() -> None:
    hosts.spawn(CTL, "neutron-server", ["neutron-server", *NEUTRON_FILES])
    hosts.wait_for_port(CTL, 9696, 120, "neutron-server")


# -- cinder --------------------------------------------------------------------------

def cinder_configure() -> None:
    _write("/etc/cinder/cinder.conf", {
        "DEFAULT": {"transport_url": config.TRANSPORT_URL, "auth_strategy": "keystone",
                    "my_ip": CTL.ip, "enabled_backends": "ceph", "use_stderr": True,
                    "glance_api_servers": f"http://{CTL.ip}:9292",
                    "state_path": "/var/lib/cinder", "osapi_volume_workers": 1,
                    "storage_availability_zone": "nova"},
        "database": {"connection": config.db_url("cinder")},
        "keystone_authtoken": config.authtoken("cinder"),
        "nova": config.service_auth("nova"),
        "service_user": {**config.service_auth("cinder"), "send_service_user_token": True},
        "oslo_concurrency": {"lock_path": "/var/lib/cinder/tmp"},
        "ceph": {"volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
                 "volume_backend_name": "ceph", "rbd_pool": "volumes",
                 "rbd_ceph_conf": "/etc/ceph/ceph.conf", "rbd_user": ceph.CLIENT,
                 "rbd_secret_uuid": ceph.SECRET_UUID},
    })
    _write_text("/etc/cinder/rally-lm-uwsgi.ini",
                config.uwsgi_ini("cinder-api", "/usr/bin/cinder-wsgi", 8776))


def cinder_init() -> None:
    _run(["cinder-manage", "db", "sync"], timeout=600)


def cinder_start() -> None:
    hosts.spawn(CTL, "cinder-api", ["uwsgi", "--ini", "/etc/cinder/rally-lm-uwsgi.ini"])
    hosts.spawn(CTL, "cinder-scheduler", ["cinder-scheduler", "--config-file",
                                          "/etc/cinder/cinder.conf"])
    hosts.spawn(CTL, "cinder-volume", ["cinder-volume", "--config-file",
                                       "/etc/cinder/cinder.conf"])
    hosts.wait_for_port(CTL, 8776, 90, "cinder-api")


# -- the whole control plane ---------------------------------------------------------

#: (name, configure, init, start) in start order; daemons named as in hosts.spawn.
SERVICES = [
    ("mariadb", None, mariadb_init, mariadb_start),
    ("rabbitmq", rabbitmq_configure, None, rabbitmq_start),
    ("memcached", None, None, memcached_start),
    ("keystone", keystone_configure, keystone_init, keystone_start),
    ("glance", glance_configure, glance_init, glance_start),
    ("placement", placement_configure, placement_init, placement_start),
    ("nova", nova_configure, nova_init, nova_start),
    ("neutron", neutron_configure, neutron_init, neutron_start),
    ("cinder", cinder_configure, cinder_init, cinder_start),
]
DAEMONS = ["mariadb", "rabbitmq", "memcached", "keystone", "glance-api", "placement",
           "nova-api", "nova-conductor", "nova-scheduler", "neutron-server", "cinder-api",
           "cinder-scheduler", "cinder-volume"]


def _prepare(configure, init) -> None:
    if configure:
        configure()
    if init:
        init()


def daemons(network: str = "linuxbridge") -> list[str]:
    return (ovn.daemons_central() if network == "ovn" else []) + DAEMONS


def up(after_keystone, network: str = "linuxbridge", log=print) -> None:
    """Configure, init and start every service; ``after_keystone`` registers users."""
    # The services before keystone are what the others' schemas live in and talk over.
    first_api = [name for name, *_ in SERVICES].index("keystone")
    for name, configure, init, start in SERVICES[:first_api]:
        log(f"controller: {name}")
        _prepare(configure, init)
        start()
    if network == "ovn":
        # neutron-server connects to OVN's databases as it starts.
        log("controller: OVN northbound and southbound databases, ovn-northd")
        ovn.central_configure()
        ovn.central_start()
        log(f"controller: patched in its mount namespace: {ovn.patch_neutron()}")
    apis = [(name, functools.partial(neutron_configure, network), init, start)
            if name == "neutron" else (name, configure, init, start)
            for name, configure, init, start in SERVICES[first_api:]]
    # Each schema migration needs only the database, and they are single-threaded
    # Python: side by side they use both cores (keystone's alone took ~60 s).
    log(f"controller: configure and migrate {', '.join(n for n, *_ in apis)} side by side")
    with ThreadPoolExecutor(max_workers=3) as pool:
        for prepared in [pool.submit(_prepare, c, i) for _n, c, i, _s in apis]:
            prepared.result()
    for name, _configure, _init, start in apis:
        log(f"controller: {name}")
        start()
        if name == "keystone":
            after_keystone()


def stop_all() -> None:
    for daemon in reversed(DAEMONS):
        hosts.stop(daemon)
    ovn.central_stop()
