"""Plugin loading: builtins, entry points, failures, duplicates, misspelt hooks."""

from __future__ import annotations

import json
import os
import textwrap

import pluggy
import pytest

from pdebench_core import hookimpl, plugins
from pdebench_core.errors import UsageError

GOOD_PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass
    from pdebench_core import hookimpl

    @dataclass
    class TinyConfig:
        scale: float = 1.0

    def build(cfg, spec):
        import torch
        return torch.nn.Identity()

    @hookimpl
    def register_models(register):
        register("tiny-identity", build, config=TinyConfig, description="identity for tests", dims=(1, 2))
''')

BROKEN_PLUGIN = "raise RuntimeError('this plugin is broken on purpose')\n"

DUPLICATE_PLUGIN = textwrap.dedent('''
    from pdebench_core import hookimpl

    @hookimpl
    def register_models(register):
        register("fno", lambda cfg, spec: None, description="a second fno")
''')


def test_builtins_register_through_the_same_hooks():
    regs = plugins.registries()
    assert "train" in regs["task"] and "evaluate" in regs["task"]
    assert "l2re" in regs["metric"]
    assert {"sqlite", "jsonl"} <= set(regs["sink"].names())
    assert regs["task"].get("train").plugin == "pdebench_core.builtin.tasks"


def test_bundled_plugins_are_entry_points():
    infos = {i.name: i for i in plugins.plugin_infos()}
    for name in ("fno", "ns2d", "persistence"):
        assert infos[name].origin == "entry point"
        assert infos[name].error is None
    assert plugins.get("model", "fno").plugin == "fno"


def test_unknown_name_suggests_and_points_to_listing():
    with pytest.raises(UsageError, match=r"unknown model 'fnoo' \(did you mean 'fno'\?\); run 'pdeb models'"):
        plugins.get("model", "fnoo")


def test_manual_registration_and_duplicate_names_both_named():
    class Duplicate:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("fno", lambda cfg, spec: None)

    plugins.register_plugin(Duplicate, name="duplicate-fno")
    try:
        with pytest.raises(UsageError, match=r"model 'fno' is registered twice: by plugin 'fno' and by plugin 'duplicate-fno'"):
            plugins.registries()
    finally:
        plugins.unregister_plugin("duplicate-fno")
    assert plugins.get("model", "fno").plugin == "fno"


def test_misspelt_hook_is_caught():
    class Misspelt:
        @staticmethod
        @hookimpl
        def register_model(register):  # missing the final "s"
            register("x", None)

    with pytest.raises(pluggy.PluginValidationError, match="register_model"):
        plugins.register_plugin(Misspelt, name="misspelt")
    plugins.pm.unregister(name="misspelt")


def test_entry_point_plugin_loads_and_broken_one_is_reported(tmp_path, pdeb, fake_distribution):
    root = fake_distribution(tmp_path / "site", "pdeb-test-plugins",
                             {"tinyplug": "tinyplug", "brokenplug": "brokenplug"},
                             {"tinyplug": GOOD_PLUGIN, "brokenplug": BROKEN_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    listed = pdeb("models", "--json", env=env, check=True)
    names = {m["name"]: m for m in json.loads(listed.stdout)}
    assert names["tiny-identity"]["plugin"] == "tinyplug"
    assert names["tiny-identity"]["version"] == "1.2.3"
    assert "fno" in names  # the rest keeps working
    assert "brokenplug" in listed.stderr and "failed to load" in listed.stderr
    status = {p["name"]: p for p in json.loads(pdeb("plugins", "--json", env=env, check=True).stdout)}
    assert "this plugin is broken on purpose" in status["brokenplug"]["error"]
    assert status["tinyplug"]["error"] is None


def test_pdeb_load_plugins_limits_entry_points(pdeb):
    result = pdeb("models", "--json", env={"PDEB_LOAD_PLUGINS": "fno"}, check=True)
    assert [m["name"] for m in json.loads(result.stdout)] == ["fno"]
    none = pdeb("plugins", "--json", env={"PDEB_LOAD_PLUGINS": ""}, check=True)
    assert {p["origin"] for p in json.loads(none.stdout)} == {"builtin"}


def test_duplicate_from_entry_point_is_one_line_error(tmp_path, pdeb, fake_distribution):
    root = fake_distribution(tmp_path / "site", "pdeb-dup", {"dupplug": "dupplug"}, {"dupplug": DUPLICATE_PLUGIN})
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = pdeb("models", env=env)
    assert result.returncode == 2
    assert "model 'fno' is registered twice" in result.stderr and "'dupplug'" in result.stderr
    assert "Traceback" not in result.stderr
