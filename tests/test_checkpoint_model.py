"""An evaluation or a fine-tuning from a run's weights builds the model those weights fit:
the model and its settings default to those of the run that wrote them."""

from __future__ import annotations

import math

import pytest

from pdebench_core.config import build_config
from pdebench_core.errors import UsageError
from pdebench_core.runner import execute


def test_the_run_of_the_weights_gives_the_models_settings(private_home, tmp_path):
    execute(build_config(model="fno", data="ns2d", profile="smoke", run_id="wide", device="cpu",
                         overrides=["model.width=12", "model.n_layers=1", "train.max_steps=1",
                                    "eval.max_trajectories=1"]), quiet=True)
    # No --model, another profile: the run's model, as it was trained.
    cfg = build_config(data="ns2d", task="evaluate", profile="smoke", device="cpu", run_id="scored",
                       overrides=["task.checkpoint=wide", "eval.max_trajectories=1"])
    assert (cfg.model.name, cfg.model.width, cfg.model.n_layers) == ("fno", 12, 1)
    assert math.isfinite(execute(cfg, quiet=True).results["ns2d"]["l2re"])
    last = private_home / "runs" / "wide" / "checkpoints" / "last.pt"  # a file of the run says the same
    assert build_config(data="ns2d", task="evaluate", overrides=[f"task.checkpoint={last}"]).model.width == 12
    # What the user gives wins; another model takes nothing from the run.
    given = build_config(model="fno", data="ns2d", task="evaluate", overrides=["task.checkpoint=wide", "model.width=6"])
    assert (given.model.width, given.model.n_layers) == (6, 1)
    other = build_config(model="ffno", data="ns2d", task="evaluate", profile="smoke",
                         overrides=["task.checkpoint=wide"])
    assert other.model.name == "ffno" and other.model.width != 12
    # Weights of no run (a released file) say nothing of the model: it must be named.
    released = tmp_path / "released.pt"
    released.write_bytes(last.read_bytes())
    with pytest.raises(UsageError, match="no model given"):
        build_config(data="ns2d", task="evaluate", overrides=[f"task.checkpoint={released}"])


def test_weights_that_are_not_there_are_named_before_any_data(private_home, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"^no checkpoint file or run named 'nosuchrun'"):
        build_config(data="ns2d", task="evaluate", overrides=["task.checkpoint=nosuchrun"])
    (private_home / "runs" / "empty" / "checkpoints").mkdir(parents=True)
    missing = private_home / "runs" / "empty" / "checkpoints" / "best.pt"
    with pytest.raises(UsageError, match=rf"^checkpoint file '{missing}' does not exist"):
        build_config(model="fno", data="ns2d", task="evaluate", overrides=[f"task.checkpoint={missing}"])


def test_a_relative_checkpoint_path_is_saved_absolute(private_home, tmp_path, monkeypatch):
    """A reproduction or a report from another folder scores the same weights."""
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.pt").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    cfg = build_config(model="fno", data="ns2d", task="evaluate", overrides=["task.checkpoint=w/model.pt"])
    assert cfg.task.checkpoint == str(tmp_path / "w" / "model.pt")
