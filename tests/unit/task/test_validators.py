"""Validators reject bad input before anything is created (against FakeNova)."""

import re

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from rally.common import validation

from rally_lm.clients.nova import make_client
from rally_lm.task.validators import LiveMigrationHostsValidator
from tests.fakes.fake_nova import FakeClock, FakeNova


class FakeCredential:
    """What Rally's validation context offers: credential.clients().nova(version)."""

    def __init__(self, url):
        self.url = url

    def clients(self):
        return self

    def nova(self, version):
        sess = ks_session.Session(auth=token_endpoint.Token(self.url, "fake-token"))
        return make_client(sess)


@pytest.fixture
def nova():
    fake = FakeNova(FakeClock(), hosts=("hv1", "hv2", "hv3", "hv4")).start()
    fake.hosts["hv3"].update(status="disabled", disabled_reason="maintenance")
    fake.hosts["hv4"].update(state="down")
    yield fake
    fake.stop()


def check(nova, args, admin=True):
    context = {"admin": {"credential": FakeCredential(nova.url)}} if admin else {}
    LiveMigrationHostsValidator().validate(context, {"args": args}, None, None)


def test_good_hosts_pass(nova):
    check(nova, {"source_host": "hv1", "target_host": "hv2"})


@pytest.mark.parametrize("args, message", [
    ({"source_host": "hv1"}, "set both 'source_host' and 'target_host', or neither"),
    ({"source_host": "hv1", "target_host": "hv9"}, "'hv9' is unknown to Nova; known hosts"),
    ({"source_host": "hv3", "target_host": "hv2"}, "'hv3' is disabled (maintenance)"),
    ({"source_host": "hv1", "target_host": "hv4"}, "'hv4' is down"),
])
def test_bad_hosts_are_rejected_with_what_to_fix(nova, args, message):
    with pytest.raises(validation.ValidationError) as error:
        check(nova, args)
    assert message in str(error.value)


def test_missing_admin_credentials(nova):
    with pytest.raises(validation.ValidationError, match="admin credentials"):
        check(nova, {"source_host": "hv1", "target_host": "hv2"}, admin=False)


def test_compute_problems_found_through_hypervisor_uris_are_reported(nova, monkeypatch):
    from rally_lm.clients import hosts

    asked = []

    def check_computes(uris, source, target):
        asked.append((uris, source, target))
        return ["hv1 cannot resolve 'hv2': ...", "libvirtd on hv2 does not answer: ..."]

    monkeypatch.setattr(hosts, "check_computes", check_computes)
    uris = {"hv1": "qemu+ssh://hv1/system", "hv2": "qemu+ssh://hv2/system"}
    with pytest.raises(validation.ValidationError) as error:
        check(nova, {"source_host": "hv1", "target_host": "hv2", "hypervisor_uris": uris})
    assert "hv1 cannot resolve 'hv2': ...; libvirtd on hv2 does not answer" in str(error.value)
    assert asked == [(uris, "hv1", "hv2")]


def test_without_hypervisor_uris_the_computes_are_not_contacted(nova, monkeypatch):
    from rally_lm.clients import hosts

    monkeypatch.setattr(hosts, "check_computes", lambda *a: pytest.fail("contacted"))
    check(nova, {"source_host": "hv1", "target_host": "hv2"})


def test_old_nova_is_rejected(nova):
    nova.max_version = "2.60"
    with pytest.raises(validation.ValidationError, match="2.60 at most; rally_lm needs >= 2.80"):
        check(nova, {"source_host": "hv1", "target_host": "hv2"})


def test_unreachable_nova_is_reported():
    context = {"admin": {"credential": FakeCredential("http://127.0.0.1:9/v2.1")}}
    with pytest.raises(validation.ValidationError, match="cannot ask Nova"):
        LiveMigrationHostsValidator().validate(
            context, {"args": {"source_host": "hv1", "target_host": "hv2"}}, None, None)


class FakeGlance:
    """Only what the validator calls: images.list(filters=...)."""

    def __init__(self, images):
        self.images = self
        self._images = images

    def list(self, filters=None):
        name = (filters or {}).get("name")
        return [i for i in self._images if name is None or i["name"] == name]


class FakeNeutron:
    """Only what the validator calls: list_networks(name=... | id=...)."""

    def __init__(self, networks):
        self._networks = networks

    def list_networks(self, **query):
        return {"networks": [n for n in self._networks
                             if all(n.get(k) == v for k, v in query.items())]}


class FakeResourceCredential(FakeCredential):
    def glance(self, version):
        return FakeGlance([{"id": "img-1", "name": "rally-lm-guest"}])

    def neutron(self):
        return FakeNeutron([{"id": "net-1", "name": "lm-tenant"}])


WORKLOAD = {"source_host": "hv1", "flavor": "lm.small", "image": "rally-lm-guest",
            "network": "lm-tenant"}


def check_resources(nova, workload, flavors=None):
    from rally_lm.task.validators import WorkloadResourcesValidator

    context = {"admin": {"credential": FakeResourceCredential(nova.url)}}
    contexts = {"lm_workload": workload} if workload is not None else {}
    if flavors is not None:
        contexts["flavors"] = flavors
    WorkloadResourcesValidator().validate(context, {"contexts": contexts}, None, None)


def test_existing_workload_resources_pass(nova):
    check_resources(nova, WORKLOAD)


@pytest.mark.parametrize("change, message", [
    ({"flavor": "lm.huge"}, "flavor 'lm.huge' does not exist .* no flavors context"),
    ({"image": "cirros"}, "image 'cirros' does not exist"),
    ({"network": "public"}, "network 'public' does not exist"),
])
def test_unknown_workload_resources_are_rejected(nova, change, message):
    with pytest.raises(validation.ValidationError, match=message):
        check_resources(nova, {**WORKLOAD, **change})


def test_a_flavor_the_task_creates_need_not_exist(nova):
    check_resources(nova, {**WORKLOAD, "flavor": "rally-lm-task-flavor"},
                    flavors=[{"name": "rally-lm-task-flavor", "ram": 256}])


def test_a_flavor_the_task_would_create_and_delete_must_not_exist_yet(nova):
    # rally-openstack's flavors context adopts an existing flavor, then deletes it.
    with pytest.raises(validation.ValidationError,
                       match="'lm.small' already exists, and the task's flavors context"):
        check_resources(nova, WORKLOAD, flavors=[{"name": "lm.small", "ram": 256}])


def offline(args=None, workload=None):
    """lm_offline: no cloud, no credentials (context None, as Rally's syntax phase)."""
    from rally_lm.task.validators import OfflineValidator

    OfflineValidator().validate(None, {"args": args or {},
                                       "contexts": {"lm_workload": workload or {}}}, None, None)


@pytest.mark.parametrize("count, rates, message", [
    (2, [4, 16, 48], "lists 3 rates for 2 VMs"),
    (None, [4, 16], "lists 2 rates for 6 VMs"),  # lm_workload boots 6 unless told
    (2, [0, 8], "agent.dirty_rate_mib is set but agent.dirty_working_set_mib is 0"),
])
def test_per_vm_dirty_rates_must_be_one_per_vm_and_have_a_working_set(count, rates, message):
    workload = {**WORKLOAD, "agent": {"dirty_rate_mib": rates}}
    if count is not None:
        workload["count"] = count
    with pytest.raises(validation.ValidationError, match=message):
        offline(workload=workload)


@pytest.mark.parametrize("args, workload, message", [
    ({"source_host": "hv1", "target_host": "hv1"}, {}, "are both 'hv1': live migration "
                                                       "needs two different compute hosts"),
    ({}, {"source_host": "hv2", "target_host": "hv2"}, "are both 'hv2'"),
    ({}, {"probe_via": "floating"}, "probe_via: floating needs floating_network"),
])
def test_what_needs_no_cloud_is_refused_without_one(args, workload, message):
    with pytest.raises(validation.ValidationError, match=message):
        offline(args, workload)
    offline({"source_host": "hv1", "target_host": "hv2"}, {"probe_via": "floating",
                                                           "floating_network": "ext"})


def test_one_rate_per_vm_passes(nova):
    check_resources(nova, {**WORKLOAD, "count": 2,
                           "agent": {"dirty_rate_mib": [0, 8], "dirty_working_set_mib": 32}})


def test_scenario_without_the_workload_context_is_rejected(nova):
    with pytest.raises(validation.ValidationError, match="needs the 'lm_workload' context"):
        check_resources(nova, None)


@pytest.mark.parametrize("influx, message", [
    ({"url": "influx:8086"}, "is not an http(s) URL with a host"),
    ({"url": "ftp://influx"}, "is not an http(s) URL with a host"),
    ({"url": "http://"}, "is not an http(s) URL with a host"),
])
def test_malformed_influx_url_is_rejected_before_a_run(influx, message, monkeypatch):
    from rally_lm.task.validators import InfluxSettingsValidator

    monkeypatch.delenv("INFLUX_URL", raising=False)
    with pytest.raises(validation.ValidationError, match=f"influx: .*{re.escape(message)}"):
        InfluxSettingsValidator().validate(None, {"args": {"influx": influx}}, None, None)


def test_good_influx_settings_and_none_pass(monkeypatch):
    from rally_lm.task.validators import InfluxSettingsValidator

    monkeypatch.setenv("INFLUX_TOKEN", "s3cret")
    for args in ({"influx": {"url": "http://127.0.0.1:8086", "org": "o"}}, {}):
        InfluxSettingsValidator().validate(None, {"args": args}, None, None)


@pytest.mark.parametrize("variable, value", [("INFLUX_TOKEN", None), ("INFLUX_TOKEN", ""),
                                             ("LM_TOKEN", None)])
def test_an_influx_url_without_its_token_is_refused(monkeypatch, variable, value):
    from rally_lm.task.validators import InfluxSettingsValidator

    monkeypatch.delenv(variable, raising=False)
    if value is not None:
        monkeypatch.setenv(variable, value)
    settings = {"url": "http://127.0.0.1:8086", **({"token_env": variable}
                                                   if variable != "INFLUX_TOKEN" else {})}
    with pytest.raises(validation.ValidationError) as caught:
        InfluxSettingsValidator().validate(None, {"args": {"influx": settings}}, None, None)
    assert str(caught.value) == (f"influx: ${variable} is empty or unset where Rally runs: "
                                 "InfluxDB would refuse every point (export the token before "
                                 "rally task start)")


@pytest.mark.parametrize("url, ok", [
    ("http://influx:8086", True), ("https://influx.example/api", True),
    ("influx:8086", False), ("http://", False), ("http://a b", False),
])
def test_hook_influx_url_pattern(url, ok):
    import jsonschema

    from rally_lm.task.hooks.vm_metrics import INFLUX_SCHEMA

    valid = jsonschema.Draft7Validator(INFLUX_SCHEMA).is_valid({"url": url})
    assert valid is ok


def test_an_unreadable_ovn_southbound_database_is_refused_before_a_run(tmp_path):
    from rally_lm.task.validators import NetworkViewValidator

    remote = f"unix:{tmp_path}/no-such.sock"
    with pytest.raises(validation.ValidationError) as error:
        NetworkViewValidator().validate({}, {"args": {"ovn_sb_connection": remote}}, None, None)
    # Whether ovsdb-client is missing here or cannot connect, the user is told which.
    assert "ovn_sb_connection" in str(error.value)
    assert remote in str(error.value) or "ovsdb-client is not installed" in str(error.value)
    # Without the argument there is nothing to check.
    NetworkViewValidator().validate({}, {"args": {}}, None, None)


def test_a_chassis_watch_that_cannot_run_is_refused_before_a_run(monkeypatch):
    from rally_lm.migration import sdn
    from rally_lm.task.validators import NetworkViewValidator

    ssh = "qemu+ssh://root@hv{}/system"
    args = {"source_host": "hv1", "target_host": "hv2", "ovn_chassis_watch": True,
            "hypervisor_uris": {"hv1": ssh.format(1), "hv2": ssh.format(2)}}

    def refused(extra: dict) -> str:
        with pytest.raises(validation.ValidationError) as error:
            NetworkViewValidator()._chassis({**args, **extra},
                                            extra.get("ovn_sb_connection", "tcp:sb:6642"))
        return str(error.value)

    asked: list[list[str]] = []
    monkeypatch.setattr(sdn, "check_chassis",
                        lambda shell: asked.append(shell) or ("tcpdump is not installed"
                                                              if "root@hv2" in shell else None))
    assert refused({}) == "ovn_chassis_watch: hv2: tcpdump is not installed"
    assert [shell[-2] for shell in asked] == ["root@hv1", "root@hv2"]
    tls = {"hv1": "qemu+tls://hv1/system", "hv2": ssh.format(2)}
    assert "hv1 needs a qemu+ssh:// URI" in refused({"hypervisor_uris": tls})
    with pytest.raises(validation.ValidationError) as error:
        NetworkViewValidator().validate({}, {"args": args}, None, None)
    assert "ovn_chassis_watch needs ovn_sb_connection" in str(error.value)
    monkeypatch.setattr(sdn, "check_chassis", lambda shell: None)
    NetworkViewValidator()._chassis(args, "tcp:sb:6642")  # both computes can watch
