"""``cfdbench`` reads DPOT's CFDBench files, refuses to run without one, and trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from pdebench_core.config import build_dataset
from pdebench_core.data.layouts import SplitWarning
from pdebench_core.data.layouts.fixtures import write_cfdbench
from pdebench_core.errors import UsageError


def test_reads_dpot_splits_fields_and_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    written = write_cfdbench(tmp_path / "cfdbench", n_train=7, n_test=3, grid=(6, 5))
    path = tmp_path / "cfdbench" / "ns2d_cdb_test.hdf5"  # either file of the pair finds the other
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitWarning)  # these counts fit: no fallback
        dataset = build_dataset("cfdbench", "smoke", [f"path={path}", "n_train=5", "n_val=2", "n_test=3"])
    spec = dataset.spec
    assert spec.fields == ("u", "v", "mask") and spec.spatial_shape == (6, 5) and spec.n_frames == 20
    assert spec.dt == pytest.approx(0.1) and spec.t_in == 10 and spec.channel_mask is None
    assert spec.params["scored_fields"] == ["u", "v"]
    assert [len(dataset.split(s)) for s in ("train", "val", "test")] == [5, 2, 3]
    np.testing.assert_array_equal(dataset.split("train")[4], written["train"][4].astype(np.float32))
    np.testing.assert_array_equal(dataset.split("val")[1], written["train"][6].astype(np.float32))
    np.testing.assert_array_equal(dataset.split("test")[0], written["test"][0].astype(np.float32))


def test_defaults_follow_dpot_and_keep_no_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    write_cfdbench(tmp_path / "cfdbench", n_train=4, n_test=2)
    with pytest.warns(SplitWarning, match="split 'test' has only 2 trajectories"):
        dataset = build_dataset("cfdbench", "smoke", [f"path={tmp_path / 'cfdbench'}"])
    assert [len(dataset.split(s)) for s in ("train", "val", "test")] == [4, 0, 2]


def test_without_a_path_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    with pytest.raises(UsageError, match=r"^required setting data.cfdbench.path not given \(DPOT's file "
                                         r"ns2d_cdb_train.hdf5: download CFDBench and preprocess it with DPOT's "
                                         r"data_generation/cfdbench/save_data.py\); set data.cfdbench.path="):
        build_dataset("cfdbench", "smoke")


def test_smoke_training_run(tmp_path):
    write_cfdbench(tmp_path / "cfdbench", n_train=6, n_test=2)
    path = tmp_path / "cfdbench" / "ns2d_cdb_train.hdf5"
    env = {**os.environ, "PDEB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data", "cfdbench",
         f"data.cfdbench.path={path}", "--profile", "smoke", "--device", "cpu", "--run-id", "cfdbench-smoke",
         "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    evaluation = json.loads((tmp_path / "home/runs/cfdbench-smoke/eval/cfdbench.json").read_text())
    assert evaluation["horizon"] == 10  # 20 frames, 10 in
    assert len(evaluation["per_channel"]["l2re"]) == 2  # u and v (scored_fields); the mask is input only
