"""train.data_on_device serves exactly the host loader's batches, gathered on the device."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from pdebench_core.config import build_config
from pdebench_core.data.pipeline import plan_mixture, training_loader
from pdebench_core.runner import execute
from pdebench_core.spec import DataSpec


class _Dataset:
    def __init__(self, name, n, grid, channels, seed):
        rng = np.random.default_rng(seed)
        self.spec = DataSpec(name=name, fields=tuple(f"c{i}" for i in range(channels)), spatial_shape=(grid, grid),
                             t_in=3)
        self._train = [rng.standard_normal((9, grid, grid, channels)).astype(np.float32) for _ in range(n)]

    def split(self, name):
        return self._train


def test_device_batches_equal_host_batches_for_a_mixture():
    datasets = {"a": _Dataset("a", 5, 8, 2, 0), "b": _Dataset("b", 4, 16, 1, 1)}  # b is resized and padded
    mixture = plan_mixture(datasets, t_out=2, resolution=8)
    for sampling in ("window", "trajectory"):
        host, _ = training_loader(mixture, "train", batch_size=4, seed=7, sampling=sampling)
        device, _ = training_loader(mixture, "train", batch_size=4, seed=7, sampling=sampling,
                                    device=torch.device("cpu"))
        for (hx, hy, hm), (dx, dy, dm) in itertools.islice(zip(host, device), 25):
            assert torch.equal(hx, dx) and torch.equal(hy, dy) and torch.equal(hm, dm)


def test_training_on_device_data_gives_the_same_weights(tmp_path, monkeypatch):
    from pdebench_core.checkpoint import load_checkpoint

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    weights = {}
    for flag in ("false", "true"):
        cfg = build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id=f"dev-{flag}",
                           overrides=["train.max_steps=6", f"train.data_on_device={flag}"])
        ctx = execute(cfg, quiet=True)
        weights[flag] = load_checkpoint(ctx.run_dir / "checkpoints" / "last.pt")["model"]
    for key in weights["false"]:
        assert torch.equal(weights["false"][key], weights["true"][key]), key


def test_data_too_large_for_the_device_is_refused(monkeypatch):
    import pytest

    from pdebench_core.errors import UsageError

    monkeypatch.setattr("pdebench_core.memory.available_memory", lambda: 1000)
    mixture = plan_mixture({"a": _Dataset("a", 5, 8, 2, 0)}, t_out=1)
    with pytest.raises(UsageError, match="train.data_on_device needs .* set train.data_on_device=false"):
        training_loader(mixture, "train", batch_size=4, seed=0, device=torch.device("cpu"))
