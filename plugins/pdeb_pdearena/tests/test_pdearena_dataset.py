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
    with pytest.raises(UsageError, match=r"^required setting data.pdearena-ns.path not given \(PDEArena's "
                                         r"NavierStokes2D HDF5 files: .*\); set data.pdearena-ns.path=VALUE"):
        build_dataset("pdearena-ns", "smoke")


# ----------------------------------------------------------------------------- pdearena-ns-cond

COND = (("train", 0.25, 3), ("train", 0.48, 3), ("valid", 0.33, 2), ("test", 0.30, 2))


def test_cond_reads_shards_and_states_the_buoyancy_in_use(tmp_path, monkeypatch):
    from pdebench_core.data.layouts import buoyancy_of
    from pdebench_core.data.layouts.fixtures import write_pdearena_ns_cond

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    written = write_pdearena_ns_cond(tmp_path / "cond", shards=COND, grid=(6, 5))
    dataset = build_dataset("pdearena-ns-cond", "smoke", [f"path={tmp_path / 'cond'}", "n_train=6", "n_val=2",
                                                          "n_test=2"])
    spec = dataset.spec
    assert spec.fields == ("u", "vx", "vy") and spec.spatial_shape == (6, 5) and spec.n_frames == 56
    assert spec.dt == pytest.approx(1.5) and spec.params["nu"] == 0.01
    assert spec.params["buoyancy"] == pytest.approx([0.25, 0.48])
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(np.stack(list(dataset.split(split))), written.splits[split].astype(np.float32))
        assert buoyancy_of(dataset.split(split)) == pytest.approx(written.buoyancy[split])
    fewer = build_dataset("pdearena-ns-cond", "smoke", [f"path={tmp_path / 'cond'}", "n_train=3", "n_val=2",
                                                        "n_test=2"])
    assert fewer.spec.params["buoyancy"] == pytest.approx([0.25, 0.33])  # the 0.48 shard is not used


def test_cond_with_one_buoyancy_states_that_value(tmp_path, monkeypatch):
    from pdebench_core.data.layouts.fixtures import write_pdearena_ns_cond

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    write_pdearena_ns_cond(tmp_path / "cond", shards=(("train", 0.3, 3), ("valid", 0.3, 1), ("test", 0.3, 1)),
                           frames=12)
    dataset = build_dataset("pdearena-ns-cond", "smoke", [f"path={tmp_path / 'cond'}", "n_train=3", "n_val=1",
                                                          "n_test=1"])
    assert dataset.spec.params["buoyancy"] == pytest.approx(0.3)


def test_cond_reads_dpot_preprocessed_folders(tmp_path, monkeypatch):
    from pdebench_core.data.layouts.fixtures import write_ns_cond_dpot

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    written = write_ns_cond_dpot(tmp_path / "ns2d_cond_pda", n_train=5, n_test=2)
    dataset = build_dataset("pdearena-ns-cond", "smoke", [f"path={tmp_path / 'ns2d_cond_pda'}", "n_train=4",
                                                          "n_val=1", "n_test=2"])
    assert dataset.spec.params["buoyancy"] == [0.2, 0.5]  # DPOT's files drop it: PDEArena's range
    assert dataset.spec.dt == pytest.approx(1.5) and dataset.spec.fields == ("u", "vx", "vy")
    np.testing.assert_array_equal(dataset.split("val")[0], written["train"][4].astype(np.float32))
    np.testing.assert_array_equal(dataset.split("test")[1], written["test"][1].astype(np.float32))


def test_each_dataset_refuses_the_other_set(tmp_path, monkeypatch):
    from pdebench_core.data.layouts.fixtures import write_ns_cond_dpot, write_pdearena_ns_cond

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    write_pdearena_ns_cond(tmp_path / "cond", frames=12)
    plain = _write_pdearena(tmp_path / "NavierStokes2D_train.h5", np.random.default_rng(0))
    with pytest.raises(UsageError, match="conditioned Navier-Stokes set, not pdearena-ns's; .*--data pdearena-ns-cond"):
        build_dataset("pdearena-ns", "smoke", [f"path={tmp_path / 'cond'}"])
    with pytest.raises(UsageError, match="not pdearena-ns-cond's; read it with --data pdearena-ns$"):
        build_dataset("pdearena-ns-cond", "smoke", [f"path={plain}"])
    write_ns_cond_dpot(tmp_path / "ns2d_pda", frames=14)
    with pytest.raises(UsageError, match="--data pdearena-ns$"):
        build_dataset("pdearena-ns-cond", "smoke", [f"path={tmp_path / 'ns2d_pda'}"])
    with pytest.raises(UsageError, match=r"^required setting data.pdearena-ns-cond.path not given"):
        build_dataset("pdearena-ns-cond", "smoke")


def test_converted_files_are_told_apart_by_the_buoyancy_they_state(tmp_path, monkeypatch):
    """A canonical file made by ``pdeb data convert`` from either set is refused by the other dataset."""
    import warnings

    from pdebench_core.data.layouts import convert
    from pdebench_core.data.layouts.fixtures import write_pdearena_ns_cond, write_pdearena_shard

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    write_pdearena_ns_cond(tmp_path / "cond", frames=12)
    plain = tmp_path / "NavierStokes2D_train.h5"
    write_pdearena_shard(plain, {"train": 3, "valid": 1, "test": 2})  # buoyancy 0.5, as published
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        cond_file = convert(tmp_path / "cond", tmp_path / "cond.h5")
        plain_file = convert(plain, tmp_path / "plain.h5")
    with pytest.raises(UsageError, match="cond.h5 holds PDEArena's conditioned .* --data pdearena-ns-cond$"):
        build_dataset("pdearena-ns", "smoke", [f"path={cond_file}"])
    with pytest.raises(UsageError, match="plain.h5 holds PDEArena's Navier-Stokes set, .* --data pdearena-ns$"):
        build_dataset("pdearena-ns-cond", "smoke", [f"path={plain_file}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        assert build_dataset("pdearena-ns-cond", "smoke", [f"path={cond_file}"]).spec.fields == ("u", "vx", "vy")
        assert len(build_dataset("pdearena-ns", "smoke", [f"path={plain_file}"]).split("test")) == 2


def test_plain_set_from_dpot_folders_uses_pdearenas_frame_spacing(tmp_path, monkeypatch):
    from pdebench_core.data.layouts.fixtures import write_ns_cond_dpot

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    write_ns_cond_dpot(tmp_path / "ns2d_pda", n_train=4, n_test=1, frames=14)  # DPOT keeps no dt
    dataset = build_dataset("pdearena-ns", "smoke", [f"path={tmp_path / 'ns2d_pda'}", "n_train=3", "n_val=1",
                                                     "n_test=1"])
    assert dataset.spec.dt == 6.0 and dataset.spec.params["buoyancy"] == 0.5


def test_cond_smoke_training_run(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from pdebench_core.data.layouts.fixtures import write_pdearena_ns_cond

    write_pdearena_ns_cond(tmp_path / "cond", frames=14)
    env = {**os.environ, "PDEB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data", "pdearena-ns-cond",
         f"data.pdearena-ns-cond.path={tmp_path / 'cond'}", "--profile", "smoke", "--device", "cpu",
         "--run-id", "cond-smoke", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    config = (tmp_path / "home/runs/cond-smoke/config.yaml").read_text()
    assert "pdearena-ns-cond" in config
    evaluation = json.loads((tmp_path / "home/runs/cond-smoke/eval/pdearena-ns-cond.json").read_text())
    assert evaluation["horizon"] == 4
