"""Checks Rally runs before any context creates anything.

Each failure says what to fix. They only read from the cloud.
"""

from __future__ import annotations

from rally.common import validation

from rally_lm.clients.nova import MICROVERSION, MIN_MICROVERSION, NovaAdapter, NovaError
from rally_lm.export.influx import ExportConfigError, InfluxSettings


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def _adapter(context) -> NovaAdapter:
    credential = context["admin"]["credential"]
    return NovaAdapter(credential.clients().nova(version=MICROVERSION))


# Declaring the platform requirement makes Rally run these in its semantic
# phase, with credentials; without it they would run as syntax checks.
@validation.add("required_platform", platform="openstack", admin=True)
@validation.configure(name="lm_hosts", platform="openstack")
class LiveMigrationHostsValidator(validation.Validator):
    """Both compute hosts exist, differ, are up and enabled; Nova speaks 2.80."""

    def __init__(self, source_param: str = "source_host",
                 target_param: str = "target_host") -> None:
        super().__init__()
        self.source_param = source_param
        self.target_param = target_param

    def validate(self, context, config, plugin_cls, plugin_cfg):
        args = config.get("args", {})
        source, target = args.get(self.source_param), args.get(self.target_param)
        if not source or not target:
            self.fail(f"set both '{self.source_param}' and '{self.target_param}' "
                      "(nova service-list --binary nova-compute shows the hosts)")
        if source == target:
            self.fail(f"'{self.source_param}' and '{self.target_param}' are both {source!r}: "
                      "live migration needs two different compute hosts")
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


@validation.add("required_platform", platform="openstack", admin=True)
@validation.configure(name="lm_workload_resources", platform="openstack")
class WorkloadResourcesValidator(validation.Validator):
    """The lm_workload context's flavor, image and network exist (or, for the flavor, are
    created by the task's ``flavors`` context under a name no flavor has yet)."""

    def validate(self, context, config, plugin_cls, plugin_cfg):
        contexts = config.get("contexts", {})
        workload = contexts.get("lm_workload") or contexts.get("lm_workload@openstack")
        if not workload:
            self.fail("the scenario needs the 'lm_workload' context (the VMs to migrate)")
        if "admin" not in context:
            self.fail("the lm_workload context needs admin credentials")
        clients = context["admin"]["credential"].clients()
        flavor = workload["flavor"]
        created = any(f.get("name") == flavor for f in
                      contexts.get("flavors") or contexts.get("flavors@openstack") or [])
        try:
            exists = NovaAdapter(clients.nova(version=MICROVERSION)).find_flavor(flavor)
        except NovaError as exc:
            self.fail(f"cannot look up flavor {flavor!r}: {exc}")
        if created and exists is not None:
            # rally-openstack's flavors context would adopt it, then delete it at cleanup.
            self.fail(f"flavor {flavor!r} already exists, and the task's flavors context "
                      "would delete it when the task ends: name the task's flavor anew, or "
                      "drop flavor_spec to use the existing one")
        if not created and exists is None:
            self.fail(f"flavor {flavor!r} does not exist (openstack flavor list --all), "
                      "and no flavors context creates it (task arg flavor_spec)")
        images = list(clients.glance(version="2").images.list(
            filters={"name": workload["image"]})) or [
            i for i in clients.glance(version="2").images.list() if i["id"] == workload["image"]]
        if not images:
            self.fail(f"image {workload['image']!r} does not exist (openstack image list)")
        neutron = clients.neutron()
        networks = neutron.list_networks(name=workload["network"])["networks"] or \
            neutron.list_networks(id=workload["network"])["networks"]
        if not networks:
            self.fail(f"network {workload['network']!r} does not exist (openstack network list)")


@validation.configure(name="lm_influx")
class InfluxSettingsValidator(validation.Validator):
    """The scenario's ``influx`` settings are usable (checked before any VM boots)."""

    def __init__(self, param_name: str = "influx") -> None:
        super().__init__()
        self.param_name = param_name

    def validate(self, context, config, plugin_cls, plugin_cfg):
        settings = config.get("args", {}).get(self.param_name)
        if not settings:
            return
        try:
            InfluxSettings.from_config(settings)
        except ExportConfigError as exc:
            self.fail(f"{self.param_name}: {exc}")
