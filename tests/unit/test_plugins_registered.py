"""Every rally_lm plugin module imports and every plugin is registered.

Rally only logs a warning when a plugin module fails to import (and then
stops loading the rest of the package), so this test imports each module
itself and turns any failure into an error.
"""

import importlib
import pkgutil

import pytest

import rally_lm

EXPECTED_PLUGINS = {
    "LiveMigration.evacuate_host", "LiveMigration.migrate_server", "lm_workload",
    "lm_hosts", "lm_workload_resources", "lm_labels", "lm_influx", "lm_network_view",
    "lm_max_downtime",
    "lm_tcp_continuity",
    "lm_success_rate", "lm_max_migration_duration", "lm_max_evacuation_duration",
    "lm_vm_metrics", "lm_timeline", "lm_max_postcopy", "lm_max_throttle", "lm_regression",
    "lm_offline",
}


def all_modules():
    return [name for _finder, name, _pkg in
            pkgutil.walk_packages(rally_lm.__path__, prefix="rally_lm.")]


@pytest.mark.parametrize("module", all_modules())
def test_module_imports(module):
    importlib.import_module(module)


def test_rally_loads_every_rally_lm_plugin():
    from rally import plugins
    from rally.common.plugin import plugin

    plugins.load()
    ours = {p.get_name() for p in plugin.Plugin.get_all() if p.__module__.startswith("rally_lm.")}
    assert ours == EXPECTED_PLUGINS


def test_every_plugin_documents_itself():
    from rally import plugins
    from rally.common.plugin import plugin

    plugins.load()
    for cls in plugin.Plugin.get_all():
        if cls.__module__.startswith("rally_lm."):
            doc = cls.get_info()["title"]
            assert doc, f"{cls.get_name()} has no docstring title"


def test_testbed_is_not_under_the_plugin_path():
    assert not any(m.startswith("rally_lm.testbed") for m in all_modules())


def test_testbed_modules_import():
    import rally_lm_testbed

    for _finder, name, _pkg in pkgutil.walk_packages(rally_lm_testbed.__path__,
                                                     prefix="rally_lm_testbed."):
        importlib.import_module(name)
