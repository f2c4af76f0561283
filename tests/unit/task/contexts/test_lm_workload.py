"""lm_workload boots pinned VMs, opens a probe security group only where needed."""

from unittest import mock

import pytest
import yaml

from rally_lm.task.contexts.nova import lm_workload


class StubAdapter:
    def __init__(self):
        self.booted, self.deleted, self.aborted = [], [], []
        self.task_states: dict[str, str | None] = {}

    def find_flavor(self, name):
        return {"id": "f1", "name": name, "disk": 3}

    def cloud_facts(self):
        return {"nova max microversion": "2.93"}

    def boot(self, name, image, flavor, host, network, userdata, security_groups=None,
             volume_size_gb=None):
        self.booted.append({"name": name, "image": image, "host": host, "network": network,
                            "userdata": userdata, "security_groups": security_groups,
                            "volume_size_gb": volume_size_gb})
        return f"id-{len(self.booted)}"

    def delete(self, server_id):
        self.deleted.append(server_id)

    def console_output(self, server_id, lines=None):
        return f"console of {server_id}"

    def server(self, server_id):
        if server_id in self.deleted:
            return None  # deleted at once
        return {"id": server_id, "task_state": self.task_states.get(server_id)}

    def migration_progress(self, server_id):
        return [{"id": 7}] if self.task_states.get(server_id) == "migrating" else []

    def abort_migration(self, server_id, migration_id):
        self.aborted.append((server_id, migration_id))
        self.task_states[server_id] = None


@pytest.fixture
def stubs(monkeypatch):
    adapter = StubAdapter()
    monkeypatch.setattr(lm_workload, "NovaAdapter", lambda _client: adapter)
    monkeypatch.setattr(lm_workload.LiveMigrationWorkload, "_wait_active",
                        staticmethod(lambda nova, servers, timeout: None))
    def wait_answering(servers, agent, timeout, console=None):
        adapter.consoles = [console(s["id"]) for s in servers]

    monkeypatch.setattr(lm_workload.LiveMigrationWorkload, "_wait_answering",
                        staticmethod(wait_answering))
    return adapter


def make_context(port_security):
    clients = mock.Mock()
    clients.glance.return_value.images.list.return_value = [{"id": "img-1"}]
    clients.neutron.return_value.list_networks.return_value = {
        "networks": [{"id": "net-1", "port_security_enabled": port_security}]}
    clients.neutron.return_value.create_security_group.return_value = {
        "security_group": {"id": "sg-1", "name": "c_rally_probes"}}
    clients.neutron.return_value.list_security_groups.return_value = {
        "security_groups": [{"id": "sg-1"}]}
    clients.neutron.return_value.list_subnets.return_value = {
        "subnets": [{"cidr": "127.0.0.0/8"}]}
    credential = mock.Mock()
    credential.clients.return_value = clients
    config = {"source_host": "hv1", "flavor": "small", "image": "guest", "network": "net",
              "count": 2, "agent": {"dirty_rate_mib": 4, "dirty_working_set_mib": 32}}
    context = {"task": {"uuid": "abcdef12-0000"}, "owner_id": "w1",
               "admin": {"credential": credential}, "config": {"lm_workload": config}}
    return context, clients.neutron.return_value


@pytest.mark.parametrize("port_security", [True, False])
def test_setup_and_cleanup(stubs, port_security):
    context, neutron = make_context(port_security)
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    # Rally's name generator, with the workload's part in it: Rally's cleanup knows them.
    names = [b["name"] for b in stubs.booted]
    assert len(set(names)) == 2 and all(
        lm_workload.LiveMigrationWorkload.name_matches_object(n, task_id="w1") for n in names)
    assert all(b["host"] == "hv1" and b["network"] == "net-1" and b["image"] == "img-1"
               for b in stubs.booted)
    files = {f["path"]: f for f in yaml.safe_load(stubs.booted[0]["userdata"])["write_files"]}
    assert "--dirty-mib 32 --dirty-rate 4" in files["/usr/local/lib/rally-lm/run-agent"]["content"]
    assert context["lm_workload"]["cloud"] == {"nova max microversion": "2.93"}
    # A silent agent's hint reads the server's own console log through Nova.
    assert stubs.consoles == ["console of id-1", "console of id-2"]
    if port_security:
        assert stubs.booted[0]["security_groups"] == ["c_rally_probes"]
        rules = [c.args[0]["security_group_rule"] for c in
                 neutron.create_security_group_rule.call_args_list]
        assert {r["protocol"] for r in rules} == {"icmp", "tcp", "udp"}
        # Only from where the probes come from (the route to 127/8 leaves from 127.0.0.1).
        assert {r["remote_ip_prefix"] for r in rules} == {"127.0.0.1/32"}
    else:
        assert stubs.booted[0]["security_groups"] is None
        neutron.create_security_group.assert_not_called()
    ctx.cleanup()
    assert stubs.deleted == ["id-1", "id-2"]
    if port_security:
        neutron.delete_security_group.assert_called_once_with("sg-1")


def test_a_second_cleanup_deletes_nothing_twice(stubs):
    # Rally cleans up a context whose setup failed, after the setup's own cleanup.
    context, neutron = make_context(True)
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    context["lm_workload"]["floating_ips"] = ["fip-1", "fip-2"]
    neutron.delete_floatingip.side_effect = [None, RuntimeError("neutron is down")]
    with pytest.raises(RuntimeError, match="^lm_workload left behind: floating IP fip-2: "
                                           "neutron is down$"):
        ctx.cleanup()
    assert stubs.deleted == ["id-1", "id-2"]
    assert context["lm_workload"]["floating_ips"] == ["fip-2"]  # kept for another try
    # Released meanwhile: Neutron's 404 counts as released.
    neutron.delete_floatingip.side_effect = [type("NotFound", (Exception,),
                                                  {"status_code": 404})()]
    ctx.cleanup()
    assert stubs.deleted == ["id-1", "id-2"]
    assert [c.args for c in neutron.delete_floatingip.call_args_list] == [
        ("fip-1",), ("fip-2",), ("fip-2",)]
    assert context["lm_workload"]["floating_ips"] == []
    neutron.delete_security_group.assert_called_once_with("sg-1")


def test_cleanup_aborts_a_migration_left_in_flight_before_deleting(stubs, monkeypatch):
    monkeypatch.setattr(lm_workload.time, "sleep", lambda _s: None)
    context, _neutron = make_context(False)
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    stubs.task_states["id-2"] = "migrating"
    ctx.cleanup()
    assert stubs.aborted == [("id-2", 7)]
    assert stubs.deleted == ["id-1", "id-2"]


def test_the_probe_prefix_is_the_source_address_towards_the_vms():
    assert lm_workload.probe_source_prefix("127.0.0.0/8") == "127.0.0.1/32"
    assert lm_workload.probe_source_prefix("::1/128") == "::1/128"


def test_a_configured_probe_cidr_wins(stubs):
    context, neutron = make_context(True)
    context["config"]["lm_workload"]["probe_cidr"] = "192.0.2.0/24"
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    rules = [c.args[0]["security_group_rule"] for c in
             neutron.create_security_group_rule.call_args_list]
    assert {r["remote_ip_prefix"] for r in rules} == {"192.0.2.0/24"}
    ctx.cleanup()


def test_boot_from_volume_sizes_the_volume_from_the_flavor_or_as_asked(stubs):
    context, _neutron = make_context(False)
    context["config"]["lm_workload"]["boot_from_volume"] = True
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    assert [b["volume_size_gb"] for b in stubs.booted] == [3, 3]
    ctx.cleanup()
    stubs.booted.clear()
    context["config"]["lm_workload"]["volume_size_gb"] = 8
    lm_workload.LiveMigrationWorkload(context).setup()
    assert [b["volume_size_gb"] for b in stubs.booted] == [8, 8]


READY_CONSOLE = ("[   88.1] cloud-init[375]: Created symlink ...\n"
                 "rally-lm-agent: ready tcp-echo=7 udp-echo=7 sink=0\n")
PATH_HINT = ("the agent of {} says in the console log that it is ready, so the path between "
             "here and the guest fails: a security group or firewall, the floating IP's NAT, "
             "a guest without a route back (no default gateway: it answers its own "
             "subnet only), or a datapath that drops the guest's offloaded checksums "
             "unfilled (ICMP passes, UDP/TCP do not: agent.tx_checksum_offload off)")


def unreadable(_server_id):
    raise RuntimeError("HTTP 500")


@pytest.mark.parametrize("silent, consoles, hint", [
    ({"10.0.0.3"}, None, "2 of 3 answered, so the network is reachable: read the silent VM's "
                         "console log (a guest that did not finish booting?)"),
    ({"10.0.0.1", "10.0.0.2", "10.0.0.3"}, None,
     "is the network reachable from where Rally runs?"),
    # Still booting: no ready line yet, the answer is as without a console.
    ({"10.0.0.1", "10.0.0.2", "10.0.0.3"}, {"id-1": "Booting Linux", "id-2": "", "id-3": ""},
     "is the network reachable from where Rally runs?"),
    ({"10.0.0.3"}, {"id-3": "rally-lm-agent: status {}\n"},
     "2 of 3 answered, so the network is reachable: read the silent VM's "
     "console log (a guest that did not finish booting?)"),
    # Ready inside, silent outside: the path, named for the VMs that say so.
    ({"10.0.0.1", "10.0.0.2", "10.0.0.3"}, {"id-1": READY_CONSOLE, "id-2": "", "id-3": ""},
     PATH_HINT.format("vm1")),
    ({"10.0.0.2", "10.0.0.3"}, {"id-2": READY_CONSOLE, "id-3": READY_CONSOLE},
     PATH_HINT.format("vm2, vm3")),
    ({"10.0.0.3"}, unreadable, "2 of 3 answered, so the network is reachable: read the silent "
                               "VM's console log (a guest that did not finish booting?)"),
])
def test_agents_that_never_answer_are_named_with_the_likelier_cause(monkeypatch, silent,
                                                                    consoles, hint):
    servers = [{"id": f"id-{i}", "name": f"vm{i}", "ip": f"10.0.0.{i}"} for i in (1, 2, 3)]
    monkeypatch.setattr(lm_workload.readiness, "wait_until_answering",
                        lambda ips, port, timeout: set(silent))
    console = consoles.__getitem__ if isinstance(consoles, dict) else consoles
    with pytest.raises(TimeoutError) as caught:
        lm_workload.LiveMigrationWorkload._wait_answering(servers, {"udp_echo_port": 7}, 300,
                                                          console=console)
    names = ", ".join(s["name"] for s in servers if s["ip"] in silent)
    assert str(caught.value) == (f"workload agent of {names} did not answer UDP echo on port 7 "
                                 f"within 300s: {hint}")


def run_agent_of(booted: dict) -> str:
    files = {f["path"]: f for f in yaml.safe_load(booted["userdata"])["write_files"]}
    return files["/usr/local/lib/rally-lm/run-agent"]["content"]


def test_each_vm_dirties_at_its_own_rate_when_given_a_list(stubs):
    context, _neutron = make_context(False)
    context["config"]["lm_workload"]["agent"]["dirty_rate_mib"] = [0, 16]
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    assert "--dirty" not in run_agent_of(stubs.booted[0])  # a rate of 0 dirties nothing
    assert "--dirty-mib 32 --dirty-rate 16" in run_agent_of(stubs.booted[1])
    assert [s["dirty_rate_mib"] for s in context["lm_workload"]["servers"]] == [0, 16]


@pytest.mark.parametrize("rates", [[4], [4, 16, 48]])
def test_a_rate_list_not_one_per_vm_is_refused_before_anything_is_created(stubs, rates):
    context, neutron = make_context(True)
    context["config"]["lm_workload"]["agent"]["dirty_rate_mib"] = rates
    ctx = lm_workload.LiveMigrationWorkload(context)
    with pytest.raises(ValueError, match=f"lists {len(rates)} rates for 2 VMs"):
        ctx.setup()
    assert stubs.booted == []
    neutron.create_security_group.assert_not_called()


@pytest.mark.parametrize("rate, count, expected", [
    (8, 3, [8, 8, 8]), ([1, 2.5], 2, [1, 2.5]), (0, 1, [0]),
])
def test_dirty_rates_per_vm(rate, count, expected):
    assert lm_workload.dirty_rates({"dirty_rate_mib": rate}, count) == expected


# -- defects of c38f188: cleanup stopped at the first failed delete ------------------------

class LockedAdapter(StubAdapter):
    """Nova refuses to delete the first VM (409: locked); the others go."""

    def delete(self, server_id):
        if server_id == "id-1":
            raise lm_workload.NovaError("Instance id-1 is locked (HTTP 409)", 409)
        super().delete(server_id)


def test_cleanup_goes_on_past_a_failed_delete_and_names_what_it_left(stubs, monkeypatch):
    locked = LockedAdapter()
    monkeypatch.setattr(lm_workload, "NovaAdapter", lambda _client: locked)
    context, neutron = make_context(True)
    ctx = lm_workload.LiveMigrationWorkload(context)
    ctx.setup()
    context["lm_workload"]["floating_ips"] = ["fip-1"]
    with pytest.raises(RuntimeError) as caught:
        ctx.cleanup()
    assert locked.deleted == ["id-2"]
    neutron.delete_floatingip.assert_called_once_with("fip-1")
    neutron.delete_security_group.assert_called_once_with("sg-1")
    first = context["lm_workload"]["servers"][0]["name"]
    assert str(caught.value) == (
        f"lm_workload left behind: workload VM {first} (id-1): Instance id-1 is "
        "locked (HTTP 409)")
    assert [s["id"] for s in context["lm_workload"]["servers"]] == ["id-1"]


def test_a_failed_setup_keeps_its_own_error_when_its_cleanup_fails(stubs, monkeypatch):
    def boot_failed(nova, servers, timeout):
        raise RuntimeError("workload VM rally-lm-abcdef12-vm1 failed to boot: No valid host")

    class Unreachable(StubAdapter):
        def server(self, server_id):
            raise lm_workload.NovaError("Nova is unreachable: keystone timed out")

    unreachable = Unreachable()
    monkeypatch.setattr(lm_workload, "NovaAdapter", lambda _client: unreachable)
    monkeypatch.setattr(lm_workload.LiveMigrationWorkload, "_wait_active",
                        staticmethod(boot_failed))
    context, neutron = make_context(True)
    neutron.delete_security_group.side_effect = RuntimeError("keystone is unreachable")
    ctx = lm_workload.LiveMigrationWorkload(context)
    with pytest.raises(RuntimeError) as caught:
        ctx.setup()
    assert str(caught.value) == ("workload VM rally-lm-abcdef12-vm1 failed to boot: "
                                 "No valid host")
    assert unreachable.deleted == ["id-1", "id-2"]
