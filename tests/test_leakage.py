"""A run never evaluates on trajectories it trains on."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from pdebench_core.config import build_config
from pdebench_core.data import TrajectoryDataset
from pdebench_core.data.leakage import check_no_leakage
from pdebench_core.errors import UsageError
from pdebench_core.runner import execute
from pdebench_core.spec import DataSpec


def _dataset(name, train, test):
    spec = DataSpec(name=name, fields=("u",), spatial_shape=(8,))
    return TrajectoryDataset(spec, {"train": train, "val": [], "test": test})


def test_overlap_between_datasets_is_found():
    rng = np.random.default_rng(0)
    trajs = [rng.standard_normal((12, 8, 1)).astype(np.float32) for _ in range(4)]
    clean = {"a": _dataset("a", trajs[:2], trajs[2:3]), "b": _dataset("b", trajs[3:], trajs[2:3])}
    check_no_leakage(clean)  # the same test trajectory in two datasets is fine: it is trained on by neither
    leaky = {"a": _dataset("a", trajs[:2], trajs[2:3]), "b": _dataset("b", trajs[2:], trajs[3:])}
    with pytest.raises(UsageError, match=r"test trajectory 0 of 'a' is also train trajectory 0 of 'b'"):
        check_no_leakage(leaky)


def test_a_parameter_sweep_sharing_initial_conditions_is_not_leakage():
    """Trajectories that start from one initial condition under other parameters (the Well's
    Rayleigh-Benard, shear flow, MHD sets) share their first frame only: not the same data."""
    rng = np.random.default_rng(2)
    start = rng.standard_normal((1, 8, 1)).astype(np.float32)
    sweep = [np.concatenate([start, rng.standard_normal((11, 8, 1)).astype(np.float32)]) for _ in range(3)]
    check_no_leakage({"rb": _dataset("rb", sweep[:2], sweep[2:])})
    with pytest.raises(UsageError, match=r"test trajectory 0 of 'rb' is also train trajectory 1 of 'rb'"):
        check_no_leakage({"rb": _dataset("rb", sweep[:2], [sweep[1].copy()])})


def test_two_datasets_reading_one_file_with_different_splits_are_refused(fresh_home, tmp_path):
    path = tmp_path / "shared.hdf5"
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:  # PDEBench single-file layout: tensor (N, T, X, Y)
        f["tensor"] = rng.standard_normal((6, 12, 8, 8)).astype(np.float32)
        f["t-coordinate"] = np.linspace(0, 1, 13, dtype=np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 8, dtype=np.float32)
    overrides = [f"data.ns2d.path={path}", "data.ns2d.n_train=4", "data.ns2d.n_val=1", "data.ns2d.n_test=1",
                 f"data.ns2d-nu1e-4.path={path}", "data.ns2d-nu1e-4.n_train=1", "data.ns2d-nu1e-4.n_val=1",
                 "data.ns2d-nu1e-4.n_test=2", "model.width=4", "model.modes=2", "model.n_layers=1"]
    cfg = build_config(model="fno", data="ns2d,ns2d-nu1e-4", profile="smoke", overrides=overrides, device="cpu")
    with pytest.raises(UsageError, match="would be evaluated on data it trains on"):
        execute(cfg, quiet=True)
    allowed = build_config(model="fno", data="ns2d,ns2d-nu1e-4", profile="smoke", device="cpu",
                           overrides=[*overrides, "task.allow_test_overlap=true", "train.max_steps=1",
                                      "train.batch_size=2"])
    assert execute(allowed, quiet=True).results


def test_fine_tuning_is_refused_on_test_trajectories_its_pre_training_trained_on(fresh_home, tmp_path, monkeypatch):
    """Pre-train on a file, then fine-tune (or evaluate) from that run on another split of the
    same file: the test trajectories were pre-training data."""
    path = tmp_path / "mine.hdf5"
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((8, 12, 8, 8)).astype(np.float32)
        f["t-coordinate"] = np.linspace(0, 1, 13, dtype=np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 8, dtype=np.float32)
    tiny = ["model.width=4", "model.modes=2", "model.n_layers=1", "train.max_steps=1", "train.batch_size=2"]
    data = [f"data.ns2d.path={path}", "data.ns2d.n_val=1", "data.ns2d.n_test=1"]
    execute(build_config(model="fno", data="ns2d", profile="smoke", run_id="pre", device="cpu",
                         overrides=[*tiny, *data, "data.ns2d.n_train=6"]), quiet=True)
    later = [*tiny, f"data.ns2d.path={path}", "data.ns2d.n_train=1", "data.ns2d.n_val=1", "data.ns2d.n_test=6"]
    with pytest.raises(UsageError, match=r"test trajectory 0 of 'ns2d' is train trajectory 2 of 'ns2d' in run pre, "
                                         r"whose weights this run starts from"):
        execute(build_config(model="fno", data="ns2d", task="finetune", profile="smoke", run_id="tuned",
                             device="cpu", overrides=[*later, "task.checkpoint=pre"]), quiet=True)
    evaluated = execute(build_config(model="fno", data="ns2d", task="evaluate", profile="smoke", run_id="scored",
                                     device="cpu", overrides=[*later[:3], *later[5:], "task.checkpoint=pre"]),
                        quiet=True)
    assert "whose weights this run starts from" in (evaluated.run_dir / "log.txt").read_text()
    from pdebench_core.results import ResultsStore

    assert ResultsStore().run_rows("scored")[0]["extra"]["weights_of_run"] == "pre"  # counted once on the board
    from pathlib import Path

    from pdebench_core.builtin.tasks import _final_weights_of
    from pdebench_core.weights import resolve_checkpoint

    def final(ref: str, read: str | None = None):  # ``read``: the file load_weights read for ``ref``
        return _final_weights_of(ref, Path(read) if read else resolve_checkpoint(ref))

    checkpoints = fresh_home / "runs" / "pre" / "checkpoints"
    assert final(str(checkpoints / "last.pt")) == {"weights_of_run": "pre"}
    assert final(str(checkpoints / "best.pt"), str(checkpoints / "best.pt")) is None  # an earlier model
    assert final("pre") == {"weights_of_run": "pre"}  # the run id: its last.pt
    assert final("pre", str(checkpoints / "step-00000001.pt")) is None  # last.pt damaged: an earlier one was read
    monkeypatch.chdir(checkpoints)  # a bare file name relative to the run's checkpoints folder is no run id
    assert final("best.pt", "best.pt") is None and final("last.pt") == {"weights_of_run": "pre"}
    # test trajectories the pre-training never saw: no word
    apart = execute(build_config(model="fno", data="ns2d", task="finetune", profile="smoke", run_id="apart",
                                 device="cpu", overrides=[*tiny, *data, "data.ns2d.n_train=6",
                                                          "task.checkpoint=pre"]), quiet=True)
    assert "whose weights" not in (apart.run_dir / "log.txt").read_text()
