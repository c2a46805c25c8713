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
    assert datasets["heat1d"]["dims"] == [1]  # one type for models and datasets


def test_example_plugin_trains_and_reports(private_home, pdeb):
    pdeb("run", "--model", "conv-stepper", "--data", "heat1d", "--profile", "smoke", "--run-id", "example",
         "--quiet", "--device", "cpu", "train.max_steps=30", check=True)
    rows = json.loads(pdeb("leaderboard", "--format", "json", "--model", "conv-stepper", check=True).stdout)
    assert [r["dataset"] for r in rows] == ["heat1d"]
    assert rows[0]["l2re"] < 1.0


def test_example_plugin_can_be_left_out(pdeb):
    result = pdeb("models", "--json", env={"PDEB_LOAD_PLUGINS": "fno,persistence"}, check=True)
    assert "conv-stepper" not in {m["name"] for m in json.loads(result.stdout)}


def test_example_plugin_honours_data_path(private_home, pdeb, tmp_path):
    import numpy as np

    from pdebench_core.data import write_canonical
    from pdebench_core.spec import DataSpec

    x = np.linspace(0, 2 * np.pi, 24, endpoint=False)  # not the generator's grid
    times = np.arange(16)[:, None] * 0.05
    traj = [np.sin(x + k)[None, :] * np.exp(-times) for k in range(6)]  # (T, X) each
    splits = {"train": np.stack(traj[:4])[..., None].astype("float32"),
              "val": np.stack(traj[4:5])[..., None].astype("float32"),
              "test": np.stack(traj[5:])[..., None].astype("float32")}
    spec = DataSpec(name="heat1d", fields=("u",), spatial_shape=(24,), t_in=10, dt=0.05)
    path = tmp_path / "heat.h5"
    write_canonical(path, splits, spec, {"generator": "test"})
    pdeb("run", "--model", "conv-stepper", "--data", "heat1d", "--profile", "smoke", "--device", "cpu",
         "--run-id", "from-file", "--quiet", f"data.heat1d.path={path}", "train.max_steps=3", check=True)
    log = (private_home / "runs" / "from-file" / "log.txt").read_text()
    assert "grid [24]" in log  # the file's grid, not the generator's default
    assert not list(private_home.rglob("heat1d-*.h5"))  # nothing was generated


def test_example_plugin_passes_the_checks_the_docs_recommend(private_home):
    import pdeb_example
    from pdeb_example import HEAT1D, ConvStepperConfig, Heat1dConfig

    from pdebench_core.testing import check_dataset_registration, check_generated_dataset
    from pdebench_core.testing.models import ModelPlugin, toy_spec

    check_dataset_registration(pdeb_example.register_datasets, "heat1d", factory=HEAT1D, config=Heat1dConfig)
    check_generated_dataset(HEAT1D, HEAT1D.config_for("smoke"))  # the cache key, the cache, batch sizes
    model = ModelPlugin.of(pdeb_example, "conv-stepper", ConvStepperConfig)
    model.check_card(dims=(1, 2))
    model.check_contract(model.smoke, toy_spec((16, 16), fields=("u", "v"), t_out=2))
