"""Hostile input never produces a traceback: a seeded fuzz run over the CLI's inputs.

Several hundred generated invocations (overrides, option values, config files, data
files, leaderboard options) must each end in a clean result or a one-line error. Runs
that pass validation stop before any compute (``execute`` is replaced for this test),
so the whole fuzz run stays within seconds.
"""

from __future__ import annotations

import random

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pdebench_core import launcher as launcher_module
from pdebench_core import runner as runner_module
from pdebench_core.cli import app

KEYS = ["train.max_steps", "train.batch_size", "train.lr", "train.t_out", "train.grad_accum", "train.betas",
        "train.sampling", "train.precision", "train.strategy", "train.warmup_frac", "train.div_factor",
        "eval.batch_size", "eval.horizon", "eval.grid", "eval.metrics", "run.seed", "run.sinks", "model.width",
        "model.modes", "data.ns2d.n_train", "data.ns2d.nu", "data.ns2d.resolution", "data.ns2d.format",
        "data.ns2d.device", "data.ns2d.t_in", "task.t_ar", "task.pushforward", "train.nonsense", "trian.lr",
        "model", "data", "1", "data.cfd2d.mach"]
VALUES = ["0", "-1", "1", "3", "1e30", "1e-300", "nan", "inf", "-inf", "''", "abc", "[1,2]", "[]", "{}", "{a: 1}",
          "${train.lr}", "${train.max_steps}", "${oc.env:NOPE_NOT_SET}", "${nothing}", "true", "null", "ü",
          "9" * 40, "0x10", "[0.9, 0.9]", "[0.9]", "trajectory", "window", "bf16", "fsdp", "native", "[l2re,nope]"]
OPTIONS = [("--seed", ["0", "-3", str(2**64), "x"]), ("--nproc-per-node", ["0", "-1", "1", "2", "64", "x"]),
           ("--run-id", ["", "a/b", "..", "ok-id", "x" * 200, "é"]), ("--data", [",ns2d", "ns2d,,", "ns2d", "nope",
                                                                                  "ns2d,ns2d"]),
           ("--profile", ["smoke", "huge", ""]), ("--device", ["cpu", "tpu", "cuda:x"]),
           ("--horizon", ["-2", "0", "5", "x"])]
LEADERBOARD = [["--metric", ","], ["--metric", "l2re,rmse", "--pivot"], ["--pivot"], ["--format", "xml"],
               ["--data", "nothing"], ["--model", ""], ["--wide"], ["--per-run"], ["--source", "nope"],
               ["--format", "json"], ["--metric", "nrmse", "--pivot", "--data", "ns2d"], ["--task", "x"]]


@pytest.fixture
def stop_before_compute(monkeypatch):
    """Valid runs end right after validation: no data, no model, no processes."""
    def stop(*args, **kwargs):
        raise SystemExit(0)

    monkeypatch.setattr(runner_module, "execute", stop)
    monkeypatch.setattr(launcher_module, "launch_torchrun", lambda *a, **k: 0)


def _run_args(rng: random.Random, tmp_path) -> list[str]:
    args = ["run", "--model", rng.choice(["fno", "dpot", "nope", "persistence"])]
    if rng.random() < 0.9:
        args += ["--data", "ns2d"]
    for option, values in rng.sample(OPTIONS, rng.randint(0, 3)):
        args += [option, rng.choice(values)]
    args += [f"{rng.choice(KEYS)}={rng.choice(VALUES)}" for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.15:
        config = tmp_path / f"c{rng.randint(0, 10**9)}.yaml"
        config.write_text(rng.choice(["1: 2\n", "model: [1, 2]\n", "train:\n  max_steps: -4\n", ":\n", "[",
                                      "train: 3\n", "data:\n  ns2d:\n    nu: abc\n", "run:\n  seed: 1e99\n",
                                      "train:\n  lr: ${train.max_steps}\n"]))
        args += ["--config", str(config)]
    return args


def _hostile_files(tmp_path) -> list[str]:
    files = []
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 3)
    files.append(str(garbage))
    for name, shape in (("empty.h5", (0, 10, 8, 8)), ("flat.h5", (5,)), ("wide.h5", (2, 3, 4, 5, 6, 7, 8))):
        with h5py.File(tmp_path / name, "w") as f:
            f["tensor"] = np.zeros(shape, dtype=np.float32)
        files.append(str(tmp_path / name))
    with h5py.File(tmp_path / "empty.mat", "w") as f:
        f["u"] = np.zeros((12, 8, 8, 0), dtype=np.float32)
        f["a"] = np.zeros((8, 8, 0), dtype=np.float32)
    files += [str(tmp_path / "empty.mat"), str(tmp_path / "missing.h5"), str(tmp_path)]
    return files


def test_three_hundred_hostile_invocations_give_no_traceback(tmp_path, monkeypatch, stop_before_compute):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    rng = random.Random(20261201)
    files = _hostile_files(tmp_path)
    runner = CliRunner()
    failures = []
    for i in range(300):
        roll = rng.random()
        if roll < 0.7:
            args = _run_args(rng, tmp_path)
        elif roll < 0.85:
            args = ["leaderboard", *rng.choice(LEADERBOARD)]
        else:
            args = ["data", rng.choice(["info", "verify"]), rng.choice(files)]
            if rng.random() < 0.3:
                args += ["--format", rng.choice(["fno-mat", "pdebench", "dpot", "nope", "well"])]
        result = runner.invoke(app, args)
        clean = result.exception is None or isinstance(result.exception, SystemExit)
        if not clean or result.exit_code not in (0, 1, 2) or "Traceback" in result.output:
            failures.append((args, result.exit_code, repr(result.exception), result.output[-300:]))
    assert not failures, f"{len(failures)} of 300 invocations failed; first: {failures[0]}"
