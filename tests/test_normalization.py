"""data.<name>.normalize: the model sees normalised values, metrics see physical ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdebench_core.config import build_config
from pdebench_core.data.normalization import normalized, to_physical
from pdebench_core.runner import execute
from pdebench_core.spec import DataSpec


class _Offset:
    """Trajectories around 1000 with a spread of 5, one channel, 12 frames on 8x8."""

    spec = DataSpec(name="offset", fields=("u",), spatial_shape=(8, 8), t_in=4)

    def __init__(self):
        rng = np.random.default_rng(0)
        self._splits = {s: [1000 + 5 * rng.standard_normal((12, 8, 8, 1)).astype(np.float32) for _ in range(n)]
                        for s, n in (("train", 6), ("val", 2), ("test", 2))}

    def split(self, name):
        return self._splits[name]


def test_normalised_splits_and_windows_have_train_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    data = normalized(_Offset())
    train = np.stack(list(data.split("train")))
    assert abs(train.mean()) < 1e-3 and abs(train.std() - 1) < 1e-3
    np.testing.assert_allclose(data.split("train").window(1, 2, 3), train[1, 2:5], rtol=1e-6)
    restored = to_physical(torch.as_tensor(train[:1]), data.normalization)
    np.testing.assert_allclose(restored.numpy(), np.stack(_Offset().split("train"))[:1], rtol=1e-6)


def test_a_run_with_normalize_scores_physical_values_like_one_without(tmp_path, monkeypatch):
    """Persistence has no weights: normalising must not change its physical error at all."""
    from pdebench_core import hookimpl, plugins

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))

    class Plugin:
        @staticmethod
        @hookimpl
        def register_datasets(register):
            from dataclasses import dataclass

            from pdebench_core.data.config import DatasetConfig

            @dataclass
            class OffsetConfig(DatasetConfig):
                t_in: int = 4

            register("offset", lambda cfg: _Offset(), config=OffsetConfig, dims=(2,))

    plugins.register_plugin(Plugin, name="offset-plugin")
    try:
        results = {}
        for flag in ("false", "true"):
            cfg = build_config(model="persistence", data="offset", task="evaluate", profile="smoke", device="cpu",
                               run_id=f"offset-{flag}", overrides=[f"data.offset.normalize={flag}"])
            results[flag] = execute(cfg, quiet=True).results["offset"]
    finally:
        plugins.unregister_plugin("offset-plugin")
    for metric in ("l2re", "rmse"):
        assert results["true"][metric] == pytest.approx(results["false"][metric], rel=1e-5)
    assert results["true"]["rmse"] > 1.0  # physical scale (spread 5), not the normalised one
