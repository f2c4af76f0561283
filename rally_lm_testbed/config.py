"""INI files for the services, written from plain dicts (case kept, order kept)."""

from __future__ import annotations

from pathlib import Path

from rally_lm_testbed import layout

Sections = dict[str, dict[str, object]]


def render(sections: Sections) -> str:
    out = []
    for section, options in sections.items():
        out.append(f"[{section}]")
        for key, value in options.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            out.append(f"{key} = {value}")
        out.append("")
    return "\n".join(out)


def write(path: Path, sections: Sections) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(sections))


def private_path(host: layout.Host, path: str) -> Path:
    """Where a host's private copy of ``path`` lives, seen from the root namespace."""
    return host.state / "root" / path.lstrip("/")


def db_url(database: str) -> str:
    return (f"mysql+pymysql://openstack:{layout.PASSWORD}@{layout.CONTROLLER.ip}/"
            f"{database}?charset=utf8")


TRANSPORT_URL = f"rabbit://openstack:{layout.PASSWORD}@{layout.CONTROLLER.ip}:5672/"


def service_auth(user: str) -> dict[str, object]:
    """A [keystone_authtoken]-style section for a service user."""
    return {
        "auth_url": layout.KEYSTONE_URL,
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": user,
        "password": layout.PASSWORD,
        "region_name": layout.REGION,
    }


def authtoken(user: str) -> dict[str, object]:
    return {
        **service_auth(user),
        "www_authenticate_uri": f"http://{layout.CONTROLLER.ip}:5000",
        "memcached_servers": f"{layout.CONTROLLER.ip}:11211",
    }


def uwsgi_ini(name: str, wsgi_file: str, port: int) -> str:
    """A small uwsgi ini: Debian's own ask for apparmor and 8x32 workers."""
    return "\n".join([
        "[uwsgi]",
        "plugins = python3",
        f"http-socket = {layout.CONTROLLER.ip}:{port}",
        f"wsgi-file = {wsgi_file}",
        "processes = 2",
        # nova's WSGI app monkey-patches eventlet: more than one thread per
        # process breaks greenlet switching.
        "threads = 1",
        "master = true",
        "die-on-term = true",
        "lazy-apps = true",
        "buffer-size = 65535",
        # http-socket does not keep connections alive; say so, or clients
        # reuse a pooled connection uwsgi already closed (RemoteDisconnected).
        "add-header = Connection: close",
        "listen = 512",
        f"procname-prefix = {name}-",
        "",
    ])
