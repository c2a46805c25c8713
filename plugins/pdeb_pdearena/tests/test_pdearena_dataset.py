"""``pdearena-ns`` reads PDEArena's layout and refuses to run without a file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pdebench_core.config import build_dataset
from pdebench_core.data.layouts import SplitWarning
from pdebench_core.errors import UsageError


def _write_pdearena(path, rng):
    with h5py.File(path, "w") as f:
        for group, n in (("train", 3), ("valid", 1), ("test", 2)):
            for key in ("u", "vx", "vy"):
                f[f"{group}/{key}"] = rng.standard_normal((n, 14, 16, 16)).astype(np.float32)
    return path


def test_reads_the_files_own_splits_in_channel_order(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    path = _write_pdearena(tmp_path / "NavierStokes2D_train.h5", np.random.default_rng(0))
    with pytest.warns(SplitWarning, match="split 'train' has only 3 trajectories"):
        dataset = build_dataset("pdearena-ns", "smoke", [f"path={path}"])
    assert dataset.spec.fields == ("u", "vx", "vy")
    assert [len(dataset.split(s)) for s in ("train", "val", "test")] == [3, 1, 2]
    first = np.asarray(dataset.split("test")[1])
    with h5py.File(path) as f:
        expected = np.stack([f["test/u"][1], f["test/vx"][1], f["test/vy"][1]], axis=-1)
    np.testing.assert_array_equal(first, expected)


def test_without_a_path_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    with pytest.raises(UsageError, match=r"pdearena-ns has no built-in solver; .* data.pdearena-ns.path="):
        build_dataset("pdearena-ns", "smoke")
