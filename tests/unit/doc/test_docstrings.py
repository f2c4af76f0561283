"""Rally's and rally-openstack's docstring conventions, applied to rally_lm's plugins.

Our own equivalents of openstack/rally's and openstack/rally-openstack's
tests/unit/doc/test_docstrings.py: docstrings are the user documentation
(`rally plugin show` renders them), so every plugin has a declarative,
complete title, a description that parses as reStructuredText without
warnings, and every argument documented - scenario ``run()`` arguments and
validator ``__init__`` arguments as ``:param:`` clauses, context/SLA/hook
options as ``description`` in their CONFIG_SCHEMA (see test_jsonschemas).
"""

import sys
from unittest import mock

import pytest
from docutils import frontend, nodes, utils
from docutils.parsers import rst
from rally import plugins
from rally.common import validation
from rally.common.plugin import plugin
from rally.task import scenario


@mock.patch.object(sys, "stderr")
def parse_rst(text, _stderr):
    parser = rst.Parser()
    settings = frontend.get_default_settings(rst.Parser)
    document = utils.new_document(text, settings)
    parser.parse(text, document)
    return document.children


def ours():
    plugins.load()
    found = [p for p in plugin.Plugin.get_all() if p.__module__.startswith("rally_lm.")]
    assert found
    return found


def rst_problems(name, items):
    problems = []
    for item in items:
        if isinstance(item, nodes.definition_list):
            problems.append(f"{name}: a definition list (an indentation slip?)")
        elif isinstance(item, nodes.system_message):
            problems.append(f"{name}: {item.astext()}")
        elif item.children:
            problems += rst_problems(name, item.children)
    return problems


@pytest.fixture(scope="module")
def plugins_of_ours():
    return ours()


def test_every_plugin_has_a_declarative_complete_title(plugins_of_ours):
    problems = []
    for cls in plugins_of_ours:
        title = cls.get_info()["title"]
        if not title:
            problems.append(f"{cls.get_name()} has no docstring")
        elif title.startswith("Test"):
            problems.append(f"{cls.get_name()}: title should be declarative")
        elif not title.endswith((".", ")")):
            # `rally plugin list` shows only the first line: no cut sentences.
            problems.append(f"{cls.get_name()}: title '{title}' is cut mid-sentence")
    assert not problems, "\n".join(problems)


def test_every_description_is_valid_rst(plugins_of_ours):
    problems = []
    for cls in plugins_of_ours:
        description = cls.get_info()["description"]
        if description:
            problems += rst_problems(cls.get_name(), parse_rst(description))
    assert not problems, "\n".join(problems)


def documented(cls):
    return {p["name"]: p["doc"] for p in cls.get_info()["parameters"]}


def test_every_argument_is_documented(plugins_of_ours):
    problems = []
    for cls in plugins_of_ours:
        if issubclass(cls, scenario.Scenario):
            code = cls.run.__code__
        elif issubclass(cls, validation.Validator):
            code = cls.__init__.__code__
        else:
            continue
        params = code.co_varnames[:code.co_argcount]
        docs = documented(cls)
        for name in params:
            if name in ("self", "scenario_obj"):
                continue
            if not docs.get(name):
                problems.append(f"{cls.get_name()}: ':param {name}:' missing or empty")
    assert not problems, "\n".join(problems)


def test_scenario_arguments_map_to_a_strict_schema(plugins_of_ours):
    # Rally's own doc test turns strict_type_annotations on: every argument's
    # annotation must become a JSON schema (no silent "any value").
    scenario.CONF.set_override("strict_type_annotations", True)
    try:
        for cls in plugins_of_ours:
            if issubclass(cls, scenario.Scenario):
                schema = cls.get_info()["schema"]
                assert schema["additionalProperties"] is False
                for name, prop in schema["properties"].items():
                    assert prop.get("description"), f"{cls.get_name()}.{name}"
                    assert set(prop) - {"description", "default"}, \
                        f"{cls.get_name()}.{name} accepts anything"
    finally:
        scenario.CONF.clear_override("strict_type_annotations")


def test_every_plugin_is_registered_for_the_openstack_platform_where_it_acts(
        plugins_of_ours):
    # `rally plugin list --platform openstack` must show whatever needs a cloud.
    needs_cloud = {"LiveMigration.evacuate_host", "LiveMigration.migrate_server",
                   "lm_workload", "lm_vm_metrics", "lm_hosts", "lm_workload_resources"}
    platforms = {cls.get_name(): cls.get_platform() for cls in plugins_of_ours}
    assert {name for name in needs_cloud if platforms[name] != "openstack"} == set()
