"""The testbed's ML2/OVN pieces that need no running testbed."""

import json
import subprocess

import pytest

from rally_lm_testbed import layout, ovn, testbed


def test_the_neutron_patch_fits_debians_file_and_still_compiles():
    if not ovn.MECH_DRIVER.exists():
        pytest.skip("Debian's neutron is not installed here")
    source = ovn.MECH_DRIVER.read_text()
    patched = source.replace(ovn._UNPATCHED, ovn._PATCHED)
    assert source.count(ovn._UNPATCHED) == 1 and patched != source
    compile(patched, str(ovn.MECH_DRIVER), "exec")
    # The key os-vif reads, from the binding's details.
    assert "portbindings.OVS_DATAPATH_TYPE" in patched


def test_another_neutron_than_zeds_is_refused_not_patched_blindly(monkeypatch, tmp_path):
    other = tmp_path / "mech_driver.py"
    other.write_text("vif_details = dict(self.vif_details[vif_type])\n")
    monkeypatch.setattr(ovn, "MECH_DRIVER", other)
    with pytest.raises(RuntimeError, match="not the Neutron 21"):
        ovn.patch_neutron()


def test_chassis_settings_neutron_reads_are_copied_from_other_config(monkeypatch):
    listed = {"headings": ["name", "other_config"], "data": [
        ["hv1", ["map", [["datapath-type", "netdev"], ["iface-types", "geneve,tap"],
                         ["ovn-bridge-mappings", ""], ["ovn-chassis-mac-mappings", ""]]]],
        ["hv2", ["map", [["datapath-type", "netdev"], ["iface-types", "geneve,tap"]]]],
        ["net", ["map", [["datapath-type", "netdev"], ["ovn-cms-options",
                                                        "enable-chassis-as-gw"],
                         ["ovn-bridge-mappings", "physnet-ext:br-ex"]]]]]}
    calls = []

    def sbctl(*args, check=True):
        calls.append(args)
        out = json.dumps(listed) if "list" in args else ""
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(ovn, "sbctl", sbctl)
    mirrored = ovn.mirror_chassis_config(timeout=1)
    assert mirrored["net"] == {"datapath-type": "netdev",
                               "ovn-bridge-mappings": "physnet-ext:br-ex",
                               "ovn-cms-options": "enable-chassis-as-gw"}
    sets = {args[2]: args[3:] for args in calls if args[0] == "set"}
    assert sets["net"] == ('external_ids:datapath-type="netdev"',
                           'external_ids:ovn-bridge-mappings="physnet-ext:br-ex"',
                           'external_ids:ovn-cms-options="enable-chassis-as-gw"')
    # Only what Neutron reads: not every other_config key.
    assert not any("chassis-mac" in a for args in sets.values() for a in args)


def test_a_chassis_that_never_registers_is_a_timeout(monkeypatch):
    monkeypatch.setattr(ovn, "sbctl", lambda *args, check=True: subprocess.CompletedProcess(
        args, 0, json.dumps({"headings": ["name", "other_config"], "data": []}), ""))
    with pytest.raises(TimeoutError, match="expected"):
        ovn.mirror_chassis_config(timeout=0.3)


def test_ml2_on_ovn_is_geneve_with_a_flat_external_network_and_central_nat():
    options = ovn.ml2_options()
    assert options["ml2"]["mechanism_drivers"] == "ovn"
    assert options["ml2"]["tenant_network_types"] == "geneve"
    assert options["ml2_type_flat"]["flat_networks"] == layout.EXTERNAL_PHYSNET
    assert options["ovn"]["ovn_sb_connection"] == ovn.SB_REMOTE
    assert options["ovn"]["enable_distributed_floating_ip"] is False


def test_the_network_backend_is_chosen_at_up_only(monkeypatch):
    monkeypatch.setattr(testbed, "read_mode", lambda: {**testbed.DEFAULT_MODE,
                                                       "network": "linuxbridge"})
    monkeypatch.setattr(testbed.hosts, "running_pid", lambda daemon: 42)
    with pytest.raises(RuntimeError, match="down` first, then `up --network ovn"):
        testbed.up("ovn")
    with pytest.raises(ValueError, match="linuxbridge, ovn"):
        testbed.up("ovs")


def test_each_backend_names_its_own_daemons():
    linuxbridge = testbed.all_daemons("linuxbridge")
    with_ovn = testbed.all_daemons("ovn")
    assert "hv1-linuxbridge-agent" in linuxbridge and "net-l3-agent" in linuxbridge
    assert not any("linuxbridge" in d or "l3-agent" in d for d in with_ovn)
    assert {"ovn-northd", "ovn-nb-db", "ovn-sb-db", "hv1-ovn-controller",
            "hv2-ovs-vswitchd", "net-ovn-controller"} <= set(with_ovn)


def _run_hook(tmp_path, op: str, xml: str, setup: str,
              after: str = "sleep 1.5", seconds: int = 1) -> tuple[str, str]:
    """The tap guard hook in a private network namespace with one real tap; the
    tap's link line after it ran and what the hook logged."""
    import os
    import shutil
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root to make a network and mount namespace and a tap")
    from rally_lm_testbed import compute
    log = tmp_path / f"guard-{op}-{len(list(tmp_path.iterdir()))}.log"
    script = (f"ip tuntap add dev tapguard0 mode tap && {setup} && "
              f"sh {compute.TAP_GUARD_HOOK} instance-1 {op} begin - && {after} && "
              "ip -o link show dev tapguard0")
    # A sysfs of the private namespace's own: the guard reads the tap's flags there.
    script = f"mount -t sysfs rally-lm-sysfs /sys && {script}"
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], input=xml,
                          text=True,
                          capture_output=True, timeout=30,
                          env={**os.environ, "RALLY_LM_TAP_GUARD_LOG": str(log),
                               "RALLY_LM_TAP_GUARD_SECONDS": str(seconds)})
    assert done.returncode == 0, done.stderr
    return done.stdout, log.read_text() if log.exists() else ""


DOMAIN_XML = "<domain><devices><interface type='ethernet'>\n" \
             "<target dev='tapguard0'/>\n</interface></devices></domain>\n"


def test_tap_guard_brings_a_tap_that_ovs_took_down_back_up(tmp_path):
    link, logged = _run_hook(tmp_path, "start", DOMAIN_XML, "ip link set dev tapguard0 down")
    assert ",UP" in link
    assert "instance-1: watching tapguard0" in logged
    assert "tapguard0 was down, set up" in logged


def test_tap_guard_catches_a_tap_taken_down_while_it_watches(tmp_path):
    # The race: vswitchd's write lands after libvirt's UP, once the watch began.
    link, logged = _run_hook(tmp_path, "start", DOMAIN_XML,
                             "ip link set dev tapguard0 up",
                             after="sleep 0.7 && ip link set dev tapguard0 down && sleep 1.2",
                             seconds=2)
    assert ",UP" in link, link
    assert logged.count("tapguard0 was down, set up") == 1, logged


def test_tap_guard_leaves_an_up_tap_and_other_operations_alone(tmp_path):
    link, logged = _run_hook(tmp_path, "start", DOMAIN_XML, "ip link set dev tapguard0 up")
    assert "watching tapguard0" in logged and "set up" not in logged
    link, logged = _run_hook(tmp_path, "stopped", DOMAIN_XML, "true")
    assert logged == "" and ",UP" not in link
    link, logged = _run_hook(tmp_path, "start", "<domain/>", "true")
    assert logged == ""


def test_tap_guard_is_installed_for_ovn_only(monkeypatch, tmp_path):
    from rally_lm_testbed import compute, config
    monkeypatch.setattr(config, "private_path",
                        lambda host, path: tmp_path / host.name / path.lstrip("/"))
    host = layout.COMPUTES[0]
    hook = tmp_path / host.name / "etc/libvirt/hooks/qemu"
    compute.libvirt_configure(host, "ovn")
    assert hook.read_text() == compute.TAP_GUARD_HOOK.read_text()
    assert hook.stat().st_mode & 0o111
    compute.libvirt_configure(host, "linuxbridge")
    assert not hook.exists()
