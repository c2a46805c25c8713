"""The third-party example plugin, installed with pip as its own distribution."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

try:
    importlib.metadata.distribution("pdeb-plugin-example")
    INSTALLED = True
except importlib.metadata.PackageNotFoundError:
    INSTALLED = False

pytestmark = pytest.mark.skipif(not INSTALLED, reason="pip install ./examples/pdeb-plugin-example first (CI does)")


def test_example_plugin_is_listed_with_its_distribution(pdeb):
    models = {m["name"]: m for m in json.loads(pdeb("models", "--json", check=True).stdout)}
    datasets = {d["name"]: d for d in json.loads(pdeb("datasets", "--json", check=True).stdout)}
    assert models["conv-stepper"]["plugin"] == "example"
    assert models["conv-stepper"]["version"] == "0.1.0"
    assert datasets["heat1d"]["dims"] == 1


def test_example_plugin_trains_and_reports(fresh_home, pdeb):
    pdeb("run", "--model", "conv-stepper", "--data", "heat1d", "--profile", "smoke", "--run-id", "example",
         "--quiet", "train.max_steps=30", check=True)
    rows = json.loads(pdeb("leaderboard", "--format", "json", "--model", "conv-stepper", check=True).stdout)
    assert [r["dataset"] for r in rows] == ["heat1d"]
    assert rows[0]["l2re"] < 1.0


def test_example_plugin_can_be_left_out(pdeb):
    result = pdeb("models", "--json", env={"PDEB_LOAD_PLUGINS": "fno,persistence"}, check=True)
    assert "conv-stepper" not in {m["name"] for m in json.loads(result.stdout)}
