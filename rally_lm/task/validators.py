"""Checks Rally runs before any context creates anything.

Each failure says what to fix. They only read from the cloud. Argument
types and ranges are checked by Rally itself from the scenarios' type
annotations and the contexts' schemas; these check what needs the cloud or
more than one argument at once.
"""

from __future__ import annotations

import subprocess

from rally.common import validation

from rally_lm.clients import hosts
from rally_lm.clients.nova import MICROVERSION, MIN_MICROVERSION, NovaAdapter, NovaError
from rally_lm.export.influx import ExportConfigError, InfluxSettings
from rally_lm.migration import sdn
from rally_lm.task.contexts.nova.lm_workload import LiveMigrationWorkload, dirty_rates

#: A dirtier's working set may use at most this share of the guest's RAM
#: (the guest's own kernel and services need the rest).
MAX_WORKING_SET_SHARE = 0.75


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def _adapter(context) -> NovaAdapter:
    credential = context["admin"]["credential"]
    return NovaAdapter(credential.clients().nova(version=MICROVERSION))


def _workload_config(config: dict) -> dict | None:
    contexts = config.get("contexts", {})
    return contexts.get("lm_workload") or contexts.get("lm_workload@openstack")


# Declaring the platform requirement makes Rally run these in its semantic
# phase, with credentials; without it they would run as syntax checks.
@validation.add("required_platform", platform="openstack", admin=True)
@validation.configure(name="lm_hosts", platform="openstack")
class LiveMigrationHostsValidator(validation.Validator):
    """Both compute hosts exist, differ, are up, enabled and in one zone; Nova speaks 2.80.

    Where the task gives ``hypervisor_uris``, both computes' libvirtd must
    answer, and over ``qemu+ssh://`` each compute must resolve the other's
    host name (or the destination set ``live_migration_inbound_addr``).

    :param source_param: scenario argument naming the host the VMs leave
    :param target_param: scenario argument naming the host they go to
    :param uris_param: scenario argument mapping hosts to libvirt URIs
    """

    def __init__(self, source_param: str = "source_host",
                 target_param: str = "target_host",
                 uris_param: str = "hypervisor_uris") -> None:
        super().__init__()
        self.source_param = source_param
        self.target_param = target_param
        self.uris_param = uris_param

    def validate(self, context, config, plugin_cls, plugin_cfg):
        args = config.get("args", {})
        source, target = args.get(self.source_param), args.get(self.target_param)
        if bool(source) != bool(target):
            self.fail(f"set both '{self.source_param}' and '{self.target_param}', or neither "
                      "to have two picked (nova service-list --binary nova-compute shows "
                      "the hosts)")
        if not source:
            return self._pickable(context, config)
        if "admin" not in context:
            self.fail("live migration to a chosen host needs admin credentials "
                      "(rally env create --from-sysenv with an admin OS_USERNAME)")
        try:
            adapter = _adapter(context)
            available = adapter.max_microversion()
            if _version_tuple(available) < _version_tuple(MIN_MICROVERSION):
                self.fail(f"Nova supports microversion {available} at most; rally_lm needs "
                          f">= {MIN_MICROVERSION} (Nova Ussuri or newer)")
            services = {s["host"]: s for s in adapter.compute_services()}
        except NovaError as exc:
            self.fail(f"cannot ask Nova about compute hosts: {exc}")
        for name in (source, target):
            service = services.get(name)
            if service is None:
                self.fail(f"compute host {name!r} is unknown to Nova; known hosts: "
                          f"{', '.join(sorted(services)) or 'none'}")
            if service["status"] != "enabled":
                self.fail(f"compute host {name!r} is disabled "
                          f"({service.get('disabled_reason') or 'no reason given'}): "
                          f"openstack compute service set --enable {name} nova-compute")
            if service["state"] != "up":
                self.fail(f"compute host {name!r} is down: its nova-compute is not "
                          "reporting; fix it before benchmarking")
        zones = {services[source].get("zone"), services[target].get("zone")}
        if len(zones) > 1:
            self.fail(f"compute hosts {source!r} and {target!r} are in different availability "
                      f"zones ({services[source].get('zone')} and "
                      f"{services[target].get('zone')}): Nova's scheduler refuses to move a "
                      "server out of its zone; pick two hosts of one zone")
        uris = args.get(self.uris_param)
        if uris:
            problems = hosts.check_computes(uris, source, target)
            if problems:
                self.fail("; ".join(problems))

    def _pickable(self, context, config) -> None:
        """Without named hosts: the cloud has two to pick, with room for the VMs."""
        if "admin" not in context:
            self.fail("picking the compute hosts needs admin credentials")
        workload = _workload_config(config) or {}
        try:
            adapter = _adapter(context)
            flavor = adapter.find_flavor(workload.get("flavor", ""))
            adapter.pick_hosts((flavor or {}).get("ram", 0),
                               workload.get("count", LiveMigrationWorkload.DEFAULT_CONFIG[
                                   "count"]) if flavor else 0)
        except NovaError as exc:
            self.fail(f"cannot pick two compute hosts: {exc}")


@validation.add("required_platform", platform="openstack", admin=True)
@validation.configure(name="lm_workload_resources", platform="openstack")
class WorkloadResourcesValidator(validation.Validator):
    """The lm_workload context fits the scenario and the cloud.

    Its flavor (or the task's flavors context creating it under a new name),
    image and network exist; it boots on the scenario's source host; the
    agent's memory working set fits the flavor's RAM.
    """

    def validate(self, context, config, plugin_cls, plugin_cfg):
        contexts = config.get("contexts", {})
        workload = _workload_config(config)
        if not workload:
            self.fail("the scenario needs the 'lm_workload' context (the VMs to migrate)")
        source = config.get("args", {}).get("source_host")
        if source and workload.get("source_host") and workload.get("source_host") != source:
            self.fail(f"the scenario's source_host is {source!r} but the lm_workload context "
                      f"boots its VMs on {workload.get('source_host')!r}: they must be the same")
        if "admin" not in context:
            self.fail("the lm_workload context needs admin credentials")
        clients = context["admin"]["credential"].clients()
        flavor_name = workload["flavor"]
        created = next((f for f in contexts.get("flavors") or contexts.get("flavors@openstack")
                        or [] if f.get("name") == flavor_name), None)
        try:
            exists = NovaAdapter(clients.nova(version=MICROVERSION)).find_flavor(flavor_name)
        except NovaError as exc:
            self.fail(f"cannot look up flavor {flavor_name!r}: {exc}")
        if created and exists is not None:
            # rally-openstack's flavors context would adopt it, then delete it at cleanup.
            self.fail(f"flavor {flavor_name!r} already exists, and the task's flavors context "
                      "would delete it when the task ends: name the task's flavor anew, or "
                      "drop flavor_spec to use the existing one")
        if not created and exists is None:
            self.fail(f"flavor {flavor_name!r} does not exist (openstack flavor list --all), "
                      "and no flavors context creates it (task arg flavor_spec)")
        self._check_agent(workload.get("agent", {}), created or exists, flavor_name)
        glance = clients.glance(version="2")
        images = list(glance.images.list(filters={"name": workload["image"]})) or [
            i for i in glance.images.list() if i["id"] == workload["image"]]
        if not images:
            self.fail(f"image {workload['image']!r} does not exist (openstack image list)")
        neutron = clients.neutron()
        networks = neutron.list_networks(name=workload["network"])["networks"] or \
            neutron.list_networks(id=workload["network"])["networks"]
        if not networks:
            self.fail(f"network {workload['network']!r} does not exist (openstack network list)")
        if workload.get("probe_via") == "floating":
            self._check_floating(neutron, workload.get("floating_network"))
        if workload.get("boot_from_volume"):
            self._check_volume_zones(clients, workload.get("source_host"),
                                     config.get("args", {}).get("target_host"))

    def _check_volume_zones(self, clients, *hosts: str | None) -> None:
        """The seed's lesson 3: volume-backed VMs need Cinder where their hosts are.

        Nova creates each boot volume in the instance's availability zone; a
        cloud whose cinder-volume services serve other zones (or that sets
        ``[cinder] cross_az_attach = False``) refuses the volume or its attach.
        """
        try:
            volume_zones = {s.zone for s in clients.cinder().services.list(
                binary="cinder-volume") if s.state == "up"}
            compute = {s["host"]: s.get("zone") for s in NovaAdapter(
                clients.nova(version=MICROVERSION)).compute_services()}
        except Exception as exc:  # noqa: BLE001 - any client failure: say what is unknown
            self.fail(f"boot_from_volume needs Cinder; its services could not be listed: {exc}")
        if not volume_zones:
            self.fail("boot_from_volume: no cinder-volume service is up (openstack volume "
                      "service list)")
        for host in filter(None, hosts):
            zone = compute.get(host)
            if zone not in volume_zones:
                self.fail(f"boot_from_volume: compute host {host!r} is in availability zone "
                          f"{zone!r} but Cinder serves volumes only in "
                          f"{', '.join(sorted(map(str, volume_zones)))}: Nova would create "
                          "or attach the boot volume across zones (refused with "
                          "[cinder] cross_az_attach = False)")

    def _check_floating(self, neutron, name: str | None) -> None:
        if not name:
            self.fail("probe_via: floating needs floating_network (the external network "
                      "the floating IPs come from)")
        found = neutron.list_networks(name=name)["networks"] or \
            neutron.list_networks(id=name)["networks"]
        if not found:
            self.fail(f"floating network {name!r} does not exist (openstack network list "
                      "--external)")
        if not found[0].get("router:external"):
            self.fail(f"network {name!r} is not external: floating IPs come from a network "
                      "with router:external (openstack network list --external)")

    def _check_agent(self, agent: dict, flavor: dict, flavor_name: str) -> None:
        ram = flavor.get("ram") or 0
        working_set = agent.get("dirty_working_set_mib", 0)
        if working_set and working_set > ram * MAX_WORKING_SET_SHARE:
            self.fail(f"agent.dirty_working_set_mib={working_set} does not fit flavor "
                      f"{flavor_name!r} ({ram} MiB RAM): at most "
                      f"{int(ram * MAX_WORKING_SET_SHARE)} MiB, the guest needs the rest")


@validation.configure(name="lm_offline")
class OfflineValidator(validation.Validator):
    """What the task's own arguments must agree on, checked with no cloud at all.

    Rally runs it in its syntax phase (``rally task validate`` needs no
    credentials for it): two different hosts; one dirty rate per VM when a
    list is given; a working set for a dirty rate; a floating network for
    floating IPs.
    """

    def validate(self, context, config, plugin_cls, plugin_cfg):
        args = config.get("args", {})
        workload = _workload_config(config) or {}
        source = args.get("source_host") or workload.get("source_host")
        target = args.get("target_host") or workload.get("target_host")
        if source and source == target:
            self.fail(f"'source_host' and 'target_host' are both {source!r}: live migration "
                      "needs two different compute hosts")
        agent = {**LiveMigrationWorkload.DEFAULT_CONFIG["agent"], **workload.get("agent", {})}
        try:
            dirty_rates(agent, workload.get("count",
                                            LiveMigrationWorkload.DEFAULT_CONFIG["count"]))
        except ValueError as exc:
            self.fail(str(exc))
        rate = agent.get("dirty_rate_mib", 0)
        if any(rate if isinstance(rate, (list, tuple)) else [rate]) and \
                not agent.get("dirty_working_set_mib"):
            self.fail("agent.dirty_rate_mib is set but agent.dirty_working_set_mib is 0: "
                      "give the dirtier a working set to write over")
        if workload.get("probe_via") == "floating" and not workload.get("floating_network"):
            self.fail("probe_via: floating needs floating_network (the external network "
                      "the floating IPs come from)")


@validation.configure(name="lm_labels")
class LabelsValidator(validation.Validator):
    """Every label is a string (YAML turns an unquoted off/on/yes/no into a boolean).

    :param param_name: scenario argument holding the labels
    """

    def __init__(self, param_name: str = "labels") -> None:
        super().__init__()
        self.param_name = param_name

    def validate(self, context, config, plugin_cls, plugin_cfg):
        labels = config.get("args", {}).get(self.param_name) or {}
        if not isinstance(labels, dict):
            self.fail(f"{self.param_name} must be a mapping of names to strings")
        for key, value in labels.items():
            if isinstance(value, bool):
                word = "on" if value else "off"
                self.fail(f"label {key!r} is the boolean {value}, not a string: quote it "
                          f"(\"{word}\") - YAML reads an unquoted on/off/yes/no as a boolean")
            if not isinstance(value, str) or not value:
                self.fail(f"label {key!r} must be a non-empty string, not {value!r}")


@validation.configure(name="lm_network_view", platform="openstack")
class NetworkViewValidator(validation.Validator):
    """OVN's southbound database answers where ``ovn_sb_connection`` says.

    Checked before any VM boots: ovsdb-client is installed where Rally runs
    and reads the database's chassis. With ``ovn_chassis_watch``, each compute
    concerned has a ``qemu+ssh://`` URI whose login finds tcpdump, ovsdb-client
    and its Open vSwitch database, and may capture.

    :param param_name: scenario argument naming the southbound database
    """

    def __init__(self, param_name: str = "ovn_sb_connection") -> None:
        super().__init__()
        self.param_name = param_name

    def validate(self, context, config, plugin_cls, plugin_cfg):
        args = config.get("args", {})
        remote = args.get(self.param_name)
        if args.get("ovn_chassis_watch"):
            self._chassis(args, remote)
        if not remote:
            return
        listener = sdn.SouthboundListener(remote)
        try:
            chassis = listener.chassis_names()
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.fail(f"{self.param_name} {remote}: {exc}")
        if listener.error:
            self.fail(f"{self.param_name}: {listener.error}")
        if not chassis:
            self.fail(f"{self.param_name} {remote}: OVN's southbound database lists no "
                      "chassis: is it this cloud's?")

    def _chassis(self, args: dict, remote: str | None) -> None:
        """``ovn_chassis_watch``: each compute concerned gives a shell that can watch."""
        if not remote:
            self.fail(f"ovn_chassis_watch needs {self.param_name} (the ports' steps name "
                      "what the computes see)")
        uris = args.get("hypervisor_uris") or {}
        wanted = [h for h in (args.get("source_host"), args.get("target_host")) if h] \
            or sorted(uris)
        for host in wanted:
            shell = hosts.ssh_command(uris.get(host, ""))
            if shell is None:
                self.fail(f"ovn_chassis_watch: {host} needs a qemu+ssh:// URI in "
                          "hypervisor_uris (the watch runs over its ssh login)")
            why = sdn.check_chassis(shell)
            if why is not None:
                self.fail(f"ovn_chassis_watch: {host}: {why}")


@validation.configure(name="lm_influx")
class InfluxSettingsValidator(validation.Validator):
    """The scenario's ``influx`` settings are usable (checked before any VM boots).

    :param param_name: scenario argument holding the InfluxDB settings
    """

    def __init__(self, param_name: str = "influx") -> None:
        super().__init__()
        self.param_name = param_name

    def validate(self, context, config, plugin_cls, plugin_cfg):
        settings = config.get("args", {}).get(self.param_name)
        if not settings:
            return
        try:
            found = InfluxSettings.from_config(settings)
        except ExportConfigError as exc:
            self.fail(f"{self.param_name}: {exc}")
        if not found.token:
            variable = settings.get("token_env", "INFLUX_TOKEN")
            self.fail(f"{self.param_name}: ${variable} is empty or unset where Rally runs: "
                      "InfluxDB would refuse every point (export the token before "
                      "rally task start)")
