"""SouthboundListener against a real ovsdb-server with OVN's southbound schema.

The server listens on a Unix socket in a temporary directory (no network);
ovn-sbctl makes the changes a live migration makes to a port's binding.
"""

import shutil
import subprocess
import time

import pytest

from rally_lm.migration import sdn
from tests.functional.conftest import require

SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
PORT = "4f1c0a52-5f0e-4d3e-9a55-2b0c1d9e7a10"


@pytest.fixture
def southbound(tmp_path):
    require(shutil.which("ovsdb-server") is not None and shutil.which("ovn-sbctl") is not None,
            "openvswitch-switch and ovn-central are not installed")
    db, sock = tmp_path / "sb.db", tmp_path / "sb.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), SCHEMA], check=True)
    server = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{sock}",
                               f"--unixctl={tmp_path}/sb.ctl", "-vconsole:off"])
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    def sbctl(*args):
        return subprocess.run(["ovn-sbctl", f"--db=unix:{sock}", *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    sbctl("chassis-add", "hv1", "geneve", "10.231.16.11")
    sbctl("chassis-add", "hv2", "geneve", "10.231.16.12")
    datapath = sbctl("create", "Datapath_Binding", "tunnel_key=1")
    hv1 = sbctl("--bare", "--columns=_uuid", "find", "Chassis", "name=hv1")
    sbctl("create", "Port_Binding", f"logical_port={PORT}", f"datapath={datapath}",
          "tunnel_key=1", 'mac="fa:16:3e:5a:11:02 10.231.48.12"', f"chassis={hv1}", "up=true")
    yield f"unix:{sock}", sbctl
    server.terminate()
    server.wait()


def test_the_listener_hears_a_migrations_steps_with_chassis_by_name(southbound):
    remote, sbctl = southbound
    listener = sdn.SouthboundListener(remote).start()
    assert listener.error is None
    assert sorted(listener.table.chassis_names.values()) == ["hv1", "hv2"]
    hv2 = sbctl("--bare", "--columns=_uuid", "find", "Chassis", "name=hv2")
    time.sleep(0.3)  # the monitor's initial rows first
    before = time.time()
    sbctl("set", "Port_Binding", PORT, f"additional_chassis={hv2}")
    sbctl("set", "Port_Binding", PORT, "options:additional-chassis-activated=hv2")
    sbctl("set", "Port_Binding", PORT, f"chassis={hv2}", "additional_chassis=[]")
    deadline = time.monotonic() + 5
    while len(listener.events()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = listener.stop()
    assert listener.error is None
    assert [(e.kind, e.chassis) for e in sdn.port_events(events, "10.231.48.12", before,
                                                         time.time())] == [
        ("claimed", "hv2"), ("activated", "hv2"), ("moved", "hv2"), ("released", "hv2")]
    # Stamped as they arrived, in order, within the test's own span.
    walls = [e.wall for e in events]
    assert walls == sorted(walls) and before <= walls[0] and walls[-1] <= time.time()


def test_an_unreachable_database_is_an_error_not_an_empty_history(tmp_path):
    require(shutil.which("ovsdb-client") is not None, "openvswitch-common is not installed")
    listener = sdn.SouthboundListener(f"unix:{tmp_path}/nothing.sock").start()
    assert listener.error and "not readable" in listener.error
    assert listener.stop() == []
