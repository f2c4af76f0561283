"""The compute checks behind lm_hosts: ssh command lines and the name-resolution verdict."""

import subprocess

import pytest

from rally_lm.clients import hosts
from rally_lm.clients.virsh import HypervisorStatsError

KEYED = "qemu+ssh://root@10.0.0.11:2222/system?keyfile=/k/id&no_verify=1"


def test_ssh_command_follows_libvirts_uri_parameters():
    assert hosts.ssh_command(KEYED) == [
        "ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={hosts.CONNECT_TIMEOUT}",
        "-p", "2222", "-i", "/k/id", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@10.0.0.11", "--"]


def test_ssh_command_without_user_or_options():
    assert hosts.ssh_command("qemu+ssh://hv1/system?known_hosts=/kh")[-4:] == [
        "-o", "UserKnownHostsFile=/kh", "hv1", "--"]


@pytest.mark.parametrize("uri", ["qemu+tls://hv1/system", "qemu+tcp://hv1/system",
                                 "qemu:///system", "qemu+ssh:///system"])
def test_no_shell_without_ssh(uri):
    assert hosts.ssh_command(uri) is None


def _runner(stdout="", returncode=0, stderr=""):
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)
    return run, calls


def test_peer_view_reads_resolution_and_inbound_address():
    run, calls = _runner("resolves\nlive_migration_inbound_addr = 10.0.0.12\n")
    view = hosts.peer_view("hv1", KEYED, "hv2", run=run)
    assert view == hosts.PeerView("hv1", "hv2", True, "10.0.0.12")
    assert calls[0][-1].startswith("getent hosts hv2 ")


def test_peer_view_quotes_the_peer_name():
    run, calls = _runner("")
    hosts.peer_view("hv1", KEYED, "hv2; rm -rf /", run=run)
    assert "getent hosts 'hv2; rm -rf /'" in calls[0][-1]


def test_peer_view_unresolved_without_inbound_address():
    run, _ = _runner("")
    assert hosts.peer_view("hv1", KEYED, "hv2", run=run) == hosts.PeerView(
        "hv1", "hv2", False, None)


def test_peer_view_ssh_failure_is_an_error():
    run, _ = _runner(returncode=255, stderr="Permission denied (publickey).")
    with pytest.raises(HypervisorStatsError, match="Permission denied"):
        hosts.peer_view("hv1", KEYED, "hv2", run=run)


def test_peer_view_without_ssh_is_none():
    run, calls = _runner()
    assert hosts.peer_view("hv1", "qemu+tls://hv1/system", "hv2", run=run) is None
    assert calls == []


def test_unresolvable_destination_is_reported_in_that_direction_only():
    views = {"hv1": hosts.PeerView("hv1", "hv2", False, None),
             "hv2": hosts.PeerView("hv2", "hv1", True, None)}
    problems = hosts.name_resolution_problems(views)
    assert len(problems) == 1
    assert problems[0].startswith("hv1 cannot resolve 'hv2'")


def test_destination_inbound_address_makes_its_name_irrelevant():
    views = {"hv1": hosts.PeerView("hv1", "hv2", False, None),
             "hv2": hosts.PeerView("hv2", "hv1", False, "10.0.0.12")}
    # hv1 -> hv2 uses hv2's address; hv2 -> hv1 still needs hv1's name.
    assert [p.split(":")[0] for p in hosts.name_resolution_problems(views)] == [
        "hv2 cannot resolve 'hv1'"]


def test_check_computes_names_a_missing_uri():
    problems = hosts.check_computes({"hv1": KEYED}, "hv1", "hv2")
    assert problems == ["hypervisor_uris has no URI for hv2 (it names hv1): give one per "
                        "compute host, named as Nova names them"]


def test_check_computes_stops_at_an_unanswering_libvirtd(monkeypatch):
    def hostname(uri, timeout):
        raise HypervisorStatsError(f"virsh -c {uri} hostname: unable to connect")
    monkeypatch.setattr(hosts, "hostname", hostname)
    run, calls = _runner("resolves\n")
    problems = hosts.check_computes({"hv1": KEYED, "hv2": KEYED}, "hv1", "hv2", run=run)
    assert len(problems) == 2 and all("does not answer" in p for p in problems)
    assert calls == []


def test_check_computes_asks_both_directions(monkeypatch):
    monkeypatch.setattr(hosts, "hostname", lambda uri, timeout: "hv")
    run, calls = _runner("")
    problems = hosts.check_computes({"hv1": KEYED, "hv2": KEYED}, "hv1", "hv2", run=run)
    assert [c[-1].split()[2] for c in calls] == ["hv2", "hv1"]
    assert len(problems) == 2
