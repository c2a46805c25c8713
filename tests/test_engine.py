"""The training engine: accumulation, data parallelism, checkpoints, resume, divergence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pdebench_core.checkpoint import load_checkpoint, save_checkpoint
from pdebench_core.config import build_config
from pdebench_core.errors import PdebError, UsageError
from pdebench_core.runner import execute

SMOKE_FNO = ["model.width=6", "model.modes=3", "model.n_layers=1", "train.log_every=1"]


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def _assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0 if atol == 0 else 1e-5, msg=key)


def _train(run_id, *overrides):
    cfg = build_config(model="fno", data="ns2d", profile="smoke", run_id=run_id,
                       overrides=[*SMOKE_FNO, "train.max_steps=6", "train.batch_size=4", *overrides])
    return execute(cfg, quiet=True)


def test_gradient_accumulation_equals_one_big_batch(fresh_home):
    one = _train("accum-1", "train.grad_accum=1")
    four = _train("accum-4", "train.grad_accum=4")
    _assert_same_weights(_weights(one.run_dir), _weights(four.run_dir), atol=1e-6)
    assert one.results["ns2d"]["l2re"] == pytest.approx(four.results["ns2d"]["l2re"], rel=1e-5)


def test_batch_not_divisible_by_accumulation_is_a_usage_error(fresh_home):
    with pytest.raises(UsageError, match=r"train.batch_size=4 must be divisible by processes x train.grad_accum"):
        _train("bad-accum", "train.grad_accum=3")


def test_two_process_ddp_matches_one_process(fresh_home, pdeb):
    args = ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--quiet", *SMOKE_FNO,
            "train.max_steps=6", "train.batch_size=4"]
    pdeb(*args, "--run-id", "single", check=True)
    pdeb(*args, "--run-id", "ddp", "--nproc-per-node", "2", check=True)
    runs = fresh_home / "runs"
    _assert_same_weights(_weights(runs / "single"), _weights(runs / "ddp"), atol=1e-6)
    from pdebench_core.results import ResultsStore

    rows = ResultsStore().rows()
    assert sorted(r["run_id"] for r in rows) == ["ddp", "single"]  # exactly one row for the DDP run
    ddp_row = next(r for r in rows if r["run_id"] == "ddp")
    single_row = next(r for r in rows if r["run_id"] == "single")
    assert ddp_row["metrics"]["l2re"] == pytest.approx(single_row["metrics"]["l2re"], rel=1e-5)


def test_killed_run_resumes_to_identical_weights(fresh_home, pdeb):
    common = ["--model", "fno", "--data", "ns2d", "--profile", "smoke", "--quiet", *SMOKE_FNO,
              "train.max_steps=150", "train.batch_size=2", "train.checkpoint_every=3", "train.keep_checkpoints=50"]
    pdeb("run", *common, "--run-id", "straight", check=True)
    cmd = [sys.executable, "-m", "pdebench_core.cli", "run", *common, "--run-id", "killed"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    checkpoints = fresh_home / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 300
    # step-12 appears only after last.pt was rewritten at step 9, so last.pt is at step >= 9.
    while time.time() < deadline and not (checkpoints / "step-00000012.pt").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = load_checkpoint(checkpoints / "last.pt")["step"]
    assert 9 <= stopped_at < 150
    resumed = pdeb("run", "--resume", "killed", "--quiet", check=True)
    assert resumed.returncode == 0
    runs = fresh_home / "runs"
    _assert_same_weights(_weights(runs / "straight"), _weights(runs / "killed"))
    from pdebench_core.results import ResultsStore

    metrics = {r["run_id"]: r["metrics"] for r in ResultsStore().rows()}
    assert metrics["killed"] == metrics["straight"]


def test_resume_errors(fresh_home, pdeb):
    missing = pdeb("run", "--resume", "no-such-run")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    _train("finished")
    conflict = pdeb("run", "--resume", "finished", "--model", "fno", "--data", "ns2d", "--profile", "smoke",
                    "train.lr=0.5")
    assert conflict.returncode == 2 and "differ from the saved config" in conflict.stderr


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def exploding_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(PdebError, match="No space left on device; the previous checkpoint is untouched"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_pickled_module_checkpoint_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UsageError, match="not a plain state dict"):
        load_checkpoint(path)


def test_nan_loss_halts_with_a_message(fresh_home):
    with pytest.raises(PdebError, match=r"training diverged at step \d+: loss is (nan|inf)"):
        _train("diverge-halt", "train.lr=1e30", "train.scheduler=constant")
    with pytest.raises(UsageError, match=r"train.lr must be a positive number"):
        _train("bad-lr", "train.lr=nan")


def test_nan_loss_rolls_back_with_lower_learning_rate(fresh_home):
    # A huge learning rate blows the weights up after the first checkpoint; rollback halves it
    # each time and gives up after max_rollbacks with a clear message.
    with pytest.raises(PdebError, match="training diverged"):
        _train("diverge-rollback", "train.lr=1e30", "train.scheduler=constant", "train.checkpoint_every=1",
               "train.on_divergence=rollback", "train.max_rollbacks=2")
    log = (fresh_home / "runs" / "diverge-rollback" / "log.txt").read_text()
    assert log.count("rolled back to step") == 2


def test_two_process_fsdp_matches_one_process(fresh_home, pdeb):
    # task train: pre-training's input noise is drawn per rank, so only noise-free runs can match
    args = ["run", "--model", "dpot", "--data", "ns2d", "--task", "train", "--profile", "smoke", "--quiet",
            "train.max_steps=4", "train.batch_size=4", "model.depth=2"]
    pdeb(*args, "--run-id", "single", check=True)
    pdeb(*args, "--run-id", "fsdp", "--nproc-per-node", "2", "train.strategy=fsdp", check=True)
    runs = fresh_home / "runs"
    _assert_same_weights(_weights(runs / "single"), _weights(runs / "fsdp"), atol=1e-5)


def test_best_checkpoint_is_chosen_on_validation_not_test(fresh_home):
    ctx = _train("best", "train.eval_every=2", "train.max_steps=6")
    log = (ctx.run_dir / "log.txt").read_text()
    assert log.count(": validation l2re") == 3
    best = load_checkpoint(ctx.run_dir / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "l2re" and best["best"]["step"] in (2, 4, 6)
    val_lines = [line for line in log.splitlines() if ": validation l2re" in line]
    values = {int(line.split("step ")[1].split(":")[0]): float(line.split("validation l2re ")[1].split(",")[0])
              for line in val_lines}
    assert best["best"]["step"] == min(values, key=values.get)
    with pytest.raises(UsageError, match="unknown metric 'l2'"):
        _train("bad-select", "train.select_metric=l2")
