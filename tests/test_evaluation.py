"""Rollout evaluation: padding reset, grid modes, precision, device-side totals, matching collectives."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from pdebench_core import evaluation, metrics
from pdebench_core.data.windows import PAD_VALUE, resize_frames
from pdebench_core.evaluation import evaluate_dataset, rollout

METRICS = {name: metrics.METRICS[name] for name in ("l2re", "rmse", "max_error")}
CPU = torch.device("cpu")


def summary(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` values of one metric over the whole rollout."""
    return metrics.METRICS[name].score(metrics.Pair(pred, target)).summary


class Scribble(torch.nn.Module):
    """Writes noise into every channel, padding included, and records what it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return x[:, -1:] + torch.randn(x[:, -1:].shape, generator=self.gen)


def smooth_trajectories(n: int, frames: int, size: int, channels: int) -> list[torch.Tensor]:
    """Travelling waves ``(frames, size, size, channels)``: smooth, different per sample and channel."""
    axis = torch.linspace(0, 2 * torch.pi, size + 1)[:-1]
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    out = []
    for i in range(n):
        traj = torch.stack([torch.stack([torch.sin(x + 0.3 * t + i) * torch.cos(2 * y + c) + 2.0
                                         for c in range(channels)], dim=-1) for t in range(frames)])
        out.append(traj)
    return out


class Oracle(torch.nn.Module):
    """Returns the true next frame on the model grid (looked up by the last input frame)."""

    def __init__(self, trajectories: list[torch.Tensor], grid: tuple[int, int]) -> None:
        super().__init__()
        self.frames = [resize_frames(t, grid) for t in trajectories]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for sample in x:
            last = sample[-1]
            for traj in self.frames:
                hits = [k for k in range(traj.shape[0] - 1)
                        if torch.allclose(traj[k], last[..., :traj.shape[-1]], atol=1e-6)]
                if hits:
                    nxt = traj[hits[0] + 1]
                    pad = torch.full((*nxt.shape[:-1], sample.shape[-1] - nxt.shape[-1]), PAD_VALUE)
                    outs.append(torch.cat([nxt, pad], dim=-1)[None])
                    break
        return torch.stack(outs)


def test_padded_channels_stay_at_the_padding_value_over_a_20_step_rollout():
    model = Scribble()
    start = torch.randn(2, 3, 8, 8, 4)
    start[..., 2:] = PAD_VALUE
    mask = torch.tensor([True, True, False, False])
    pred = rollout(model, start, steps=20, t_out=1, channel_mask=mask)
    assert pred.shape == (2, 20, 8, 8, 4)
    assert torch.equal(pred[..., 2:], torch.full_like(pred[..., 2:], PAD_VALUE))
    assert len(model.seen) == 20
    for fed in model.seen:  # the model never saw its own guess of the padding
        assert torch.equal(fed[..., 2:], torch.full_like(fed[..., 2:], PAD_VALUE))
    assert not torch.equal(pred[..., :2], start[:, -1:, ..., :2].expand_as(pred[..., :2]))  # real channels move
    free = rollout(Scribble(), start, steps=3, t_out=1)  # without a mask nothing is reset
    assert not torch.equal(free[..., 2:], torch.full_like(free[..., 2:], PAD_VALUE))


def test_evaluation_resets_padding_of_narrow_datasets():
    model = Scribble()
    data = [torch.randn(25, 8, 8, 1) for _ in range(2)]
    out = evaluate_dataset(model, data, METRICS, t_in=5, t_out=1, horizon=20, device=CPU, n_channels=3)
    assert out["horizon"] == 20 and len(out["per_step"]["l2re"]) == 20 and len(out["per_channel"]["l2re"]) == 1
    assert all(torch.equal(fed[..., 1:], torch.full_like(fed[..., 1:], PAD_VALUE)) for fed in model.seen)


def test_grid_modes_score_where_they_say():
    native, grid = (16, 16), (32, 32)
    data = smooth_trajectories(n=3, frames=8, size=16, channels=2)
    model = Oracle(data, grid)
    run = {mode: evaluate_dataset(model, data, METRICS, t_in=2, t_out=1, horizon=4, device=CPU, grid=grid,
                                  n_channels=3, grid_mode=mode)
           for mode in ("model", "native", "strided")}
    # The oracle is exact on the model grid, so `model` and `strided` (a subset of its points) see no error ...
    assert run["model"]["summary"]["l2re"] == pytest.approx(0.0, abs=1e-6)
    assert run["strided"]["summary"]["l2re"] == pytest.approx(0.0, abs=1e-6)
    # ... but `native` scores against the data as stored: the round trip through the model grid shows.
    stored = torch.stack(data)[:, 2:6]  # (3, 4, 16, 16, 2)
    round_trip = torch.stack([resize_frames(resize_frames(t, grid), native) for t in stored])
    expected = summary("l2re", round_trip, stored).mean().item()
    assert expected > 1e-4
    assert run["native"]["summary"]["l2re"] == pytest.approx(expected, rel=1e-5)
    assert run["native"]["summary"]["max_error"] == pytest.approx(summary("max_error", round_trip, stored).max().item())


def test_strided_mode_uses_the_points_of_the_native_grid():
    data = [torch.randn(6, 8, 8, 1) for _ in range(2)]
    grid = (32, 32)
    model = Scribble()
    out = evaluate_dataset(model, data, {"l2re": metrics.l2re}, t_in=2, t_out=1, horizon=3, device=CPU, grid=grid,
                           grid_mode="strided")
    on_model = torch.stack([resize_frames(t, grid) for t in data])
    model.gen.manual_seed(0)  # replay the same noise
    pred = rollout(model, on_model[:, :2], 3, 1)
    truth = on_model[:, 2:5]
    expected = summary("l2re", pred[:, :, ::4, ::4], truth[:, :, ::4, ::4]).mean().item()
    assert out["summary"]["l2re"] == pytest.approx(expected, rel=1e-6)
    assert evaluation.strides_for((128, 128), (64, 64)) == (2, 2)
    assert evaluation.strides_for((128, 128), (512, 512)) == (1, 1)  # finer data: every model point


def test_same_grid_all_modes_agree():
    data = smooth_trajectories(n=2, frames=7, size=16, channels=1)
    scores = [evaluate_dataset(Scribble(), data, METRICS, t_in=2, t_out=1, horizon=3, device=CPU, grid=(16, 16),
                               grid_mode=mode)["summary"] for mode in evaluation.GRID_MODES]
    assert scores[0] == scores[1] == scores[2]


def test_unknown_grid_mode_is_a_usage_error():
    from pdebench_core.errors import UsageError

    with pytest.raises(UsageError, match="unknown eval.grid 'nativ'"):
        evaluate_dataset(Scribble(), [torch.zeros(4, 8, 8, 1)], METRICS, t_in=2, t_out=1, horizon=1, device=CPU,
                         grid_mode="nativ")


def test_totals_reach_the_host_once(monkeypatch):
    calls = []
    original = torch.Tensor.cpu

    def counting(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting)
    data = [torch.randn(30, 8, 8, 3) for _ in range(5)]
    out = evaluate_dataset(Scribble(), data, METRICS, t_in=5, t_out=1, horizon=20, device=CPU, batch_size=2)
    assert out["n_samples"] == 5 and len(out["per_step"]["rmse"]) == 20 and len(out["per_channel"]["rmse"]) == 3
    assert len(calls) == 1  # not once per step, channel, metric or batch


def test_each_metric_is_evaluated_once_per_batch_with_one_spectrum(monkeypatch):
    """Summary, curve and per-channel values come from one call per metric and batch (plus one
    for the teacher-forced step), and the Fourier bands share one FFT of the error."""
    import dataclasses

    calls: dict[str, int] = {}

    def counted(metric):
        def values(pair):
            calls[metric.name] = calls.get(metric.name, 0) + 1
            return metric.values(pair)
        return dataclasses.replace(metric, values=values)

    ffts = []
    fftn = torch.fft.fftn
    monkeypatch.setattr(torch.fft, "fftn", lambda *a, **k: ffts.append(1) or fftn(*a, **k))
    names = ("l2re", "rmse", "frmse_low", "frmse_mid", "max_error")
    chosen = {name: counted(metrics.METRICS[name]) for name in names}
    data = [torch.randn(25, 16, 16, 3) for _ in range(4)]
    out = evaluate_dataset(Scribble(), data, chosen, t_in=5, t_out=1, horizon=20, device=CPU, batch_size=2)
    assert calls == {name: 2 * 2 for name in names}  # 2 batches x (rollout + one step)
    assert len(ffts) == 2 * 2
    assert len(out["per_step"]["frmse_mid"]) == 20 and len(out["per_channel"]["frmse_mid"]) == 3


def test_samples_combine_by_each_metrics_reduction_over_the_true_count():
    """A short last batch weighs as much as its samples; max_error keeps the worst sample."""
    data = [torch.randn(6, 8, 8, 2, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    out = evaluate_dataset(Scribble(), data, METRICS, t_in=2, t_out=1, horizon=4, device=CPU, batch_size=2)
    model, preds = Scribble(), []  # replay the same noise, batch by batch
    for items in (data[:2], data[2:]):
        start = torch.stack(items)[:, :2]
        preds.append(rollout(model, start, 4, 1))
        with torch.no_grad():
            model(start)  # the teacher-forced step draws noise too
    truth = torch.stack(data)[:, 2:6]
    per_sample = {name: summary(name, torch.cat(preds), truth) for name in METRICS}
    assert out["n_samples"] == 3
    assert out["summary"]["l2re"] == pytest.approx(per_sample["l2re"].sum().item() / 3, rel=1e-12)
    assert out["summary"]["max_error"] == pytest.approx(per_sample["max_error"].max().item(), rel=1e-12)


def test_a_bare_function_is_refused_in_one_line():
    from pdebench_core.errors import UsageError

    with pytest.raises(UsageError, match="metric 'mae' is a function, not a pdebench_core.metrics.Metric"):
        evaluate_dataset(Scribble(), [torch.zeros(4, 8, 8, 1)], {"mae": lambda p, t, m=None: p}, t_in=2, t_out=1,
                         horizon=1, device=CPU)


def test_rollout_precision_follows_its_argument():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.is_autocast_enabled("cpu"))
            return x[:, -1:]

    data = [torch.randn(5, 8, 8, 1)]
    evaluate_dataset(Probe(), data, METRICS, t_in=2, t_out=1, horizon=2, device=CPU)
    evaluate_dataset(Probe(), data, METRICS, t_in=2, t_out=1, horizon=2, device=CPU, precision="bf16")
    assert seen == [False] * 3 + [True] * 3


def test_score_takes_eval_precision_and_grid_not_train_precision(monkeypatch):
    from pdebench_core import workflow
    from pdebench_core.config import build_config
    from pdebench_core.spec import DataSpec

    cfg = build_config(model="fno", data="ns2d", profile="smoke",
                       overrides=["train.precision=bf16", "eval.grid=native", "run.device=cpu"])
    assert cfg.eval.precision == "fp32"
    captured = {}
    monkeypatch.setattr(evaluation, "evaluate_dataset", lambda *a, **k: captured.update(k) or {})
    spec = DataSpec(name="ns2d", fields=("w", "geometry"), spatial_shape=(8, 8), channel_mask=(True, False))
    dataset = SimpleNamespace(spec=spec, split=lambda name: [])
    group = SimpleNamespace(grid=(16, 16), n_channels=2)
    mixture = SimpleNamespace(datasets={"ns2d": dataset}, group_of=lambda name: group, t_in=10, t_out=1)
    ctx = SimpleNamespace(cfg=cfg, device=CPU, rank=0, world_size=1)
    workflow.score(ctx, torch.nn.Identity(), mixture, "test", 0)
    assert captured["precision"] == "fp32" and captured["grid_mode"] == "native" and captured["scored_channels"] == 1


GLOO_SCRIPT = """
import json, os, sys
import torch
import torch.distributed as dist
from pdebench_core import metrics
from pdebench_core.distributed import end_worker, leave_process_group
from pdebench_core.evaluation import evaluate_dataset

class Step(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.mix = torch.nn.Linear(3, 3)  # the same weights on every rank

    def forward(self, x):
        return x[:, -1:] + 0.1 * self.mix(x[:, -1:])


model = Step()
data = [torch.randn(9, 8, 8, 2, generator=torch.Generator().manual_seed(i)) for i in range(2)]
fns = {"l2re": metrics.l2re, "max_error": metrics.max_error}
world = int(os.environ.get("WORLD_SIZE", "1"))
if world > 1:
    dist.init_process_group("gloo")
rank = dist.get_rank() if world > 1 else 0
out = evaluate_dataset(model, data, fns, t_in=3, t_out=1, horizon=5, device=torch.device("cpu"), n_channels=3,
                       rank=rank, world_size=world, batch_size=1)
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
if leave_process_group():
    end_worker(0)
"""


def test_ranks_without_trajectories_join_every_all_reduce(tmp_path):
    """3 gloo processes, 2 trajectories: rank 2 has none, yet the totals match one process."""
    import subprocess
    import sys

    script = tmp_path / "evaluate.py"
    script.write_text(GLOO_SCRIPT)
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
                    f"--log-dir={tmp_path / 'torch-logs'}",  # else torch leaves a folder in the system's /tmp
                    str(script), str(tmp_path / "three.json")], check=True, env=env, timeout=300,
                   capture_output=True)
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.json")], check=True, env=env, timeout=300)
    three = json.loads((tmp_path / "three.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert three["n_samples"] == one["n_samples"] == 2 and three["horizon"] == 5
    for part in ("summary", "per_step", "per_channel", "one_step"):
        for name, value in one[part].items():
            assert three[part][name] == pytest.approx(value, rel=1e-6), (part, name)


def test_three_process_run_with_two_test_trajectories_finishes(pdeb, tmp_path):
    """The command that aborted with a collective size mismatch under gloo."""
    home = {"PDEB_HOME": str(tmp_path / "home")}
    pdeb("run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--nproc-per-node", "3",
         "train.batch_size=3", "--device", "cpu", "--quiet", "--run-id", "three", env=home, check=True)
    out = json.loads((tmp_path / "home" / "runs" / "three" / "eval" / "ns2d.json").read_text())
    assert out["n_samples"] == 2 and len(out["per_step"]["l2re"]) == out["horizon"] > 0
    assert all(0 < v < 10 for v in out["summary"].values())


def test_specs_say_which_channels_are_scored():
    from pdebench_core.evaluation import scored_channels_of
    from pdebench_core.spec import DataSpec

    base = DataSpec(name="x", fields=("u", "v", "mask"), spatial_shape=(8, 8))
    assert scored_channels_of(base) is None
    assert scored_channels_of(base.replace(params={"scored_fields": ["u", "v"]})) == 2  # CFDBench's mask is input only
    assert scored_channels_of(base.replace(channel_mask=(True, False, False))) == 1
    assert scored_channels_of(base.replace(params={"scored_fields": ["v"]})) is None  # not leading: score all
    data = [torch.randn(6, 8, 8, 3) for _ in range(2)]
    two = evaluate_dataset(Scribble(), data, METRICS, t_in=2, t_out=1, horizon=3, device=CPU,
                           scored_channels=2)
    every = evaluate_dataset(Scribble(), data, METRICS, t_in=2, t_out=1, horizon=3, device=CPU)
    assert len(two["per_channel"]["l2re"]) == 2 and two["per_channel"]["l2re"] == every["per_channel"]["l2re"][:2]
    assert two["summary"]["l2re"] == pytest.approx(sum(every["per_channel"]["l2re"][:2]) / 2)


def test_a_split_stacked_in_one_array_evaluates_like_a_list():
    data = torch.randn(3, 7, 8, 8, 2)
    for mode in evaluation.GRID_MODES:  # the native grid is (8, 8), not the array's (7, 8, 8)
        stacked = evaluate_dataset(Scribble(), data, METRICS, t_in=2, t_out=1, horizon=4, device=CPU,
                                   grid=(16, 16), grid_mode=mode)
        listed = evaluate_dataset(Scribble(), list(data), METRICS, t_in=2, t_out=1, horizon=4, device=CPU,
                                  grid=(16, 16), grid_mode=mode)
        assert stacked["n_samples"] == 3 and len(stacked["per_channel"]["l2re"]) == 2
        assert stacked == listed


def test_an_fp32_rollout_runs_without_tf32_whatever_training_set():
    """Training turns TF32 on for CUDA matmuls; a rollout at eval.precision=fp32 is IEEE float32
    (and the setting is back afterwards)."""
    import torch

    from pdebench_core.evaluation import rollout

    seen = []

    class Recording(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.backends.cuda.matmul.allow_tf32)
            return x[:, -1:]

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        rollout(Recording(), torch.zeros(1, 2, 4, 1), steps=2, t_out=1, precision="fp32")
        assert seen == [False, False] and torch.backends.cuda.matmul.allow_tf32
        rollout(Recording(), torch.zeros(1, 2, 4, 1), steps=1, t_out=1, precision="bf16")
        assert seen[-1] is True  # bf16 asked for: the matmul flags are left as training set them
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
