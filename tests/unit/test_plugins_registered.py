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
    # name: plugin base class path
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
    ours = {p.get_name(): p for p in plugin.Plugin.get_all() if p.__module__.startswith("rally_lm.")}
    assert set(EXPECTED_PLUGINS) <= set(ours), sorted(set(EXPECTED_PLUGINS) - set(ours))


def test_testbed_is_not_under_the_plugin_path():
    assert not any(m.startswith("rally_lm.testbed") for m in all_modules())
