"""The first vertical slice: run a model on generated data and see it on the leaderboard."""

from __future__ import annotations

import json
import subprocess
import sys
import os
from dataclasses import dataclass

import pytest
import torch

from pdebench_core import hookimpl, plugins
from pdebench_core.config import build_config
from pdebench_core.errors import UsageError
from pdebench_core.results import ResultsStore
from pdebench_core.runner import execute

SMOKE = ["--profile", "smoke", "--quiet"]
HAS_CUDA = torch.cuda.is_available()


def test_fno_smoke_run_writes_run_dir_and_row(fresh_home, pdeb):
    result = pdeb("run", "--model", "fno", "--data", "ns2d", "--run-id", "fno-smoke", "--device", "cpu", *SMOKE,
                  check=True)
    run_dir = fresh_home / "runs" / "fno-smoke"
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "status.json", "eval/ns2d.json", "checkpoints/last.pt"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    evaluation = json.loads((run_dir / "eval/ns2d.json").read_text())
    assert len(evaluation["per_step"]["l2re"]) == evaluation["horizon"] > 0
    assert len(evaluation["per_channel"]["l2re"]) == 1
    rows = json.loads(pdeb("leaderboard", "--format", "json", "--source", "local", check=True).stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "fno" and row["dataset"] == "ns2d" and row["task"] == "train"
    assert row["run_id"] == "fno-smoke" and 0 < row["l2re"] < 10
    stored = ResultsStore().rows()[0]
    assert stored["n_params"] > 0 and stored["config"]["model"]["name"] == "fno"
    assert stored["versions"]["pdeb"] and stored["config_hash"] and stored["device"] == "cpu"
    assert "fno-smoke" in result.stdout
    # what it was scored on: the stored 32x32 data itself, and the test split's own hash
    from pdebench_core.config import build_dataset
    from pdebench_core.data.identity import dataset_identity

    assert row["scoring"] == "native" and stored["extra"]["scoring"] == "native"
    test_split = dataset_identity(build_dataset("ns2d", "smoke")).split_hashes["test"]
    assert stored["extra"]["scored_data_hash"] == row["scored_data_hash"] == test_split


def test_run_id_that_exists_is_refused_without_touching_it(fresh_home, pdeb):
    pdeb("run", "--model", "persistence", "--data", "ns2d", "--task", "evaluate", "--run-id", "same", "--device", "cpu",
         *SMOKE, check=True)
    before = (fresh_home / "runs" / "same" / "config.yaml").read_text()
    again = pdeb("run", "--model", "persistence", "--data", "ns2d", "--run-id", "same", *SMOKE)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr
    assert (fresh_home / "runs" / "same" / "config.yaml").read_text() == before


@pytest.mark.parametrize("args, message", [
    (["--model", "fnoo", "--data", "ns2d"], "did you mean 'fno'"),
    (["--model", "fno", "--data", "ns2d", "train.max_stpes=3"], "did you mean 'max_steps'"),
    (["--model", "fno", "--data", "ns2d", "train.max_steps=abc"], "bad value for 'train.max_steps'"),
    pytest.param(["--model", "fno", "--data", "ns2d", "--device", "cuda"], "no CUDA device",
                 marks=pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")),
    (["--model", "fno", "--data", "ns2d", "data.ns2d.path=/nonexistent/file.h5"], "/nonexistent/file.h5"),
])
def test_bad_input_is_one_line_exit_2(fresh_home, pdeb, args, message):
    result = pdeb("run", *args, *SMOKE)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert not (fresh_home / "runs").exists() or not any((fresh_home / "runs").iterdir())


def test_parallel_runs_keep_every_row(fresh_home):
    cmd = [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "persistence", "--data", "ns2d",
           "--task", "evaluate", "--device", "cpu", *SMOKE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # three processes share the cores without spinning
    procs = [subprocess.Popen(cmd + ["--run-id", f"parallel-{i}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert sorted(r["run_id"] for r in ResultsStore().rows()) == ["parallel-0", "parallel-1", "parallel-2"]


@dataclass
class Cube3dConfig:
    """A tiny 3D dataset for contract tests."""

    size: int = 4


def _build_cube(cfg):
    import torch

    from pdebench_core.data import TrajectoryDataset
    from pdebench_core.spec import DataSpec

    gen = torch.Generator().manual_seed(0)
    trajs = [torch.randn(12, cfg.size, cfg.size, cfg.size, 2, generator=gen) for _ in range(3)]
    spec = DataSpec(name="cube3d", fields=("a", "b"), spatial_shape=(cfg.size,) * 3, t_in=10)
    return TrajectoryDataset(spec, {"train": trajs[:1], "val": trajs[1:2], "test": trajs[2:]})


class Cube3dPlugin:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        register("cube3d", _build_cube, config=Cube3dConfig, dims=3)

    @staticmethod
    @hookimpl
    def register_models(register):
        import torch

        register("flat2d", lambda cfg, spec: torch.nn.Identity(), dims=(2,))


@pytest.fixture
def cube_plugin():
    plugins.register_plugin(Cube3dPlugin, name="cube3d-test")
    yield
    plugins.unregister_plugin("cube3d-test")


def test_model_refuses_data_of_another_dimension(fresh_home, cube_plugin):
    # both declare their dimensions: refused with the config, before any data is built
    with pytest.raises(UsageError, match=r"model 'flat2d' supports 2D data, but 'cube3d' is 3D"):
        build_config(model="flat2d", data="cube3d", profile="smoke", device="cpu")
    assert not (fresh_home / "runs").exists() or not any((fresh_home / "runs").iterdir())
    # a dataset that declares none is refused once its data shows its dimension, nothing half-written
    plugins.get("dataset", "cube3d").dims = ()
    cfg = build_config(model="flat2d", data="cube3d", profile="smoke", device="cpu")
    with pytest.raises(UsageError, match=r"model 'flat2d' supports 2D data, but 'cube3d' is 3D"):
        execute(cfg, quiet=True)
    assert not any((fresh_home / "runs").iterdir())


def test_persistence_evaluates_in_3d(fresh_home, cube_plugin):
    cfg = build_config(model="persistence", data="cube3d", task="evaluate", profile="smoke", device="cpu")
    ctx = execute(cfg, quiet=True)
    assert set(ctx.results["cube3d"]) == {"l2re", "rmse", "nrmse"}
    assert ctx.results["cube3d"]["l2re"] > 0


def test_corrupt_data_file_is_one_line_exit_2(fresh_home, pdeb, tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    result = pdeb("run", "--model", "fno", "--data", "ns2d", f"data.ns2d.path={corrupt}", *SMOKE)
    assert result.returncode == 2, result.stderr
    assert "corrupt.h5" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0


def _build_short_test(cfg):
    import torch

    from pdebench_core.data import TrajectoryDataset
    from pdebench_core.spec import DataSpec

    gen = torch.Generator().manual_seed(0)
    long = [torch.randn(12, 8, 1, generator=gen) for _ in range(2)]
    spec = DataSpec(name="short-test", fields=("u",), spatial_shape=(8,), t_in=int(cfg.t_in))
    return TrajectoryDataset(spec, {"train": long[:1], "val": [], "test": [torch.randn(3, 8, 1, generator=gen)]})


class ShortTestPlugin:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        from pdebench_core.data.config import DatasetConfig

        register("short-test", _build_short_test, config=DatasetConfig, dims=1)


def test_a_test_split_too_short_for_t_in_names_the_dataset_split_and_setting(fresh_home):
    plugins.register_plugin(ShortTestPlugin, name="short-test-plugin")
    try:
        cfg = build_config(model="persistence", data="short-test", task="evaluate", profile="smoke", device="cpu",
                           overrides=["data.short-test.t_in=3", "data.short-test.n_val=0"])
        with pytest.raises(UsageError, match=r"dataset 'short-test', test split: trajectories have 3 frames, not more "
                                             r"than t_in=3; nothing to roll out; lower data.short-test.t_in"):
            execute(cfg, quiet=True)
    finally:
        plugins.unregister_plugin("short-test-plugin")


_LAB_FOLDER: list = []  # where the folder plugin finds its files (it takes no path setting)


def _build_folder(cfg):
    from pdebench_core.data import FileTrajectories, TrajectoryDataset
    from pdebench_core.spec import DataSpec

    folder = _LAB_FOLDER[0]
    names = {"train": ["a.npy", "b.npy", "c.npy"], "val": ["d.npy"], "test": ["e.npy"]}
    spec = DataSpec(name="lab-folder", fields=("u", "v"), spatial_shape=(8, 8), t_in=int(cfg.t_in),
                    horizon=cfg.horizon)
    return TrajectoryDataset(spec, {s: FileTrajectories([folder / n for n in listed]) for s, listed in names.items()})


class FolderPlugin:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        from pdebench_core.data.config import DatasetConfig

        register("lab-folder", _build_folder, config=DatasetConfig, dims=2)


def test_a_dataset_plugin_over_a_folder_of_npy_files_trains_and_names_its_folder(fresh_home, tmp_path):
    import numpy as np

    from pdebench_core.results import ResultsStore

    folder = tmp_path / "my-lab-data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in "abcde":
        np.save(folder / f"{name}.npy", rng.standard_normal((8, 8, 8, 2)))  # float64, as numpy saves by default
    plugins.register_plugin(FolderPlugin, name="folder-plugin")
    _LAB_FOLDER[:] = [folder]
    try:
        cfg = build_config(model="fno", data="lab-folder", profile="smoke", device="cpu", run_id="folder-run",
                           overrides=["data.lab-folder.t_in=2", "model.width=4", "model.modes=2",
                                      "model.n_layers=1", "train.max_steps=2", "train.batch_size=2"])
        ctx = execute(cfg, quiet=True)
    finally:
        plugins.unregister_plugin("folder-plugin")
    assert ctx.results["lab-folder"]["l2re"] > 0
    row = ResultsStore().rows()[0]
    assert row["data_source"] == "my-lab-data" and row["n_train"] == 3  # the files' folder, not 'generated'
    assert row["extra"]["data_basis"] == "files"
