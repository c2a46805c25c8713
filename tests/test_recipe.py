"""The official DPOT training recipe: schedule, padded channels, auto-regressive objectives,
trajectory sampling through the loader, and the settings refused before any compute."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch

from pdebench_core import workflow
from pdebench_core.config import build_config
from pdebench_core.data.base import TrajectoryDataset
from pdebench_core.data.pipeline import plan_mixture, training_loader
from pdebench_core.data.windows import PAD_VALUE
from pdebench_core.errors import UsageError
from pdebench_core.losses import relative_l2_loss
from pdebench_core.objectives import (next_frames_objective, pushforward_objective, training_objective,
                                      unrolled_objective)
from pdebench_core.optim import make_optimizer, make_scheduler
from pdebench_core.runner import execute
from pdebench_core.spec import DataSpec

SMOKE_FNO = ["model.width=6", "model.modes=3", "model.n_layers=1", "train.log_every=1", "eval.max_trajectories=1"]
TINY_DPOT = ["model.embed_dim=16", "model.depth=1", "model.n_blocks=2", "model.out_layer_dim=4", "model.modes=4",
             "eval.max_trajectories=1"]


# -- optimizer and one-cycle schedule --------------------------------------------------------

def test_pretrain_schedule_matches_torch_one_cycle_configured_like_the_official_code():
    steps = 40
    train = build_config(model="dpot", data="ns2d", profile="smoke", overrides=[f"train.max_steps={steps}"]).train
    torch.manual_seed(0)
    ours = torch.nn.Linear(3, 2)
    official = copy.deepcopy(ours)
    optimizer = make_optimizer(ours, train, torch.device("cpu"))
    scheduler = make_scheduler(optimizer, train)
    # train_temporal.py: Adam(betas=(0.9, 0.9), weight_decay=1e-6) and OneCycleLR with torch's
    # momentum defaults, warm-up 200 of 1000 epochs, one scheduler step per optimizer step.
    official_optimizer = torch.optim.Adam(official.parameters(), lr=train.lr, betas=(0.9, 0.9), weight_decay=1e-6)
    official_scheduler = torch.optim.lr_scheduler.OneCycleLR(
        official_optimizer, max_lr=train.lr, div_factor=1e4, final_div_factor=1e4, pct_start=200 / 1000,
        total_steps=steps)
    seen_beta1 = []
    for _ in range(steps):
        group, reference = optimizer.param_groups[0], official_optimizer.param_groups[0]
        assert group["lr"] == reference["lr"]
        assert group["betas"] == reference["betas"]
        seen_beta1.append(group["betas"][0])
        x = torch.randn(4, 3)
        for model, opt in ((ours, optimizer), (official, official_optimizer)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
        scheduler.step()
        official_scheduler.step()
    assert min(seen_beta1) == pytest.approx(0.85, abs=1e-3) and max(seen_beta1) == pytest.approx(0.95)
    for a, b in zip(ours.parameters(), official.parameters()):
        assert torch.equal(a, b)


def test_the_fused_cpu_update_matches_torchs_per_tensor_adam_and_complex_models_keep_it():
    # make_optimizer fuses the update on the CPU (one kernel, ~10x faster there); the weights
    # must follow the per-tensor Adam the official code runs, and a model with complex weights
    # (FNO's spectral layers, which fused kernels refuse) must still get an optimizer.
    train = build_config(model="dpot", data="ns2d", profile="smoke").train
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))
    reference = copy.deepcopy(ours)
    optimizer = make_optimizer(ours, train, torch.device("cpu"))
    assert optimizer.defaults["fused"] is (torch.torch_version.TorchVersion(torch.__version__) >= "2.4")
    per_tensor = torch.optim.Adam(reference.parameters(), lr=train.lr, betas=tuple(train.betas),
                                  weight_decay=train.weight_decay, foreach=False)
    for _ in range(20):
        x = torch.randn(5, 8)
        for model, opt in ((ours, optimizer), (reference, per_tensor)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)

    complex_model = torch.nn.Linear(4, 4)
    complex_model.spectral = torch.nn.Parameter(torch.randn(3, dtype=torch.cfloat))
    optimizer = make_optimizer(complex_model, train, torch.device("cpu"))
    assert not optimizer.defaults.get("fused")
    complex_model.spectral.abs().sum().backward()
    optimizer.step()


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_very_short_one_cycle_runs_stay_valid(steps):
    train = build_config(model="dpot", data="ns2d", profile="smoke", overrides=[f"train.max_steps={steps}"]).train
    optimizer = make_optimizer(torch.nn.Linear(2, 2), train, torch.device("cpu"))
    scheduler = make_scheduler(optimizer, train)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        assert 0 < optimizer.param_groups[0]["lr"] <= train.lr


# -- padded channels and the auto-regressive objectives ---------------------------------------

class DriftingModel(torch.nn.Module):
    """Predicts the last frame scaled and shifted, padding included, and records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.1))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.scale * x[:, -1:] + 0.25


def _padded_window(steps: int):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, 3)
    y = torch.randn(2, steps, 8, 8, 3)
    x[..., 2], y[..., 2] = PAD_VALUE, PAD_VALUE
    return x, y, torch.tensor([True, True, False])


@pytest.mark.parametrize("make", [unrolled_objective, pushforward_objective])
def test_padded_channels_stay_at_the_padding_value_over_a_20_step_unroll(make):
    x, y, mask = _padded_window(20)
    model = DriftingModel()
    make(relative_l2_loss, 20)(model, x, y, mask)
    assert len(model.inputs) == 20
    for step, seen in enumerate(model.inputs):
        assert torch.equal(seen[..., 2], torch.full_like(seen[..., 2], PAD_VALUE)), f"call {step}"
    # The model does predict other values there, and its real channels are fed back.
    last = model.inputs[-2]
    prediction = 1.1 * last[:, -1:] + 0.25
    assert not torch.equal(prediction[..., 2], last[:, -1:, ..., 2])
    torch.testing.assert_close(model.inputs[-1][:, -1:, ..., :2], prediction[..., :2])


def test_loss_on_padding_scores_padded_channels():
    x, y, mask = _padded_window(1)
    y = y[:, :1]

    def right_but_padding(inputs):
        out = y.clone()
        out[..., 2] = 3.0  # wrong only in the padded channel
        return out

    assert next_frames_objective(relative_l2_loss)(right_but_padding, x, y, mask).item() == 0
    covered = next_frames_objective(relative_l2_loss, loss_on_padding=True)(right_but_padding, x, y, mask)
    assert covered.item() == pytest.approx(2 * 2.0 / 3)  # relative error 2 in one of three channels, 2 samples


class ScaleLast(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x[:, -1:]


def _noise_counter():
    calls = []

    def perturb(x):
        calls.append(x.shape)
        return x

    return perturb, calls


def test_t_ar_unrolls_with_noise_at_every_call_and_sums_losses_with_gradient_through_the_unroll():
    torch.manual_seed(1)
    x, y, mask = torch.randn(2, 2, 16, 1), torch.randn(2, 3, 16, 1), torch.tensor([True])
    model, (perturb, calls) = ScaleLast(), _noise_counter()
    loss = unrolled_objective(relative_l2_loss, 3)(model, x, y, mask, perturb)
    loss.backward()
    assert len(calls) == 3
    a = torch.tensor(0.9, requires_grad=True)  # call k predicts a^(k+1) * last input frame
    expected = sum(relative_l2_loss(a ** (k + 1) * x[:, -1:], y[:, k:k + 1], mask) for k in range(3))
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach())
    torch.testing.assert_close(model.a.grad, a.grad)


def test_pushforward_trains_only_the_last_call_on_the_detached_unroll():
    torch.manual_seed(2)
    x, y, mask = torch.randn(2, 2, 16, 1), torch.randn(2, 3, 16, 1), torch.tensor([True])
    model, (perturb, calls) = ScaleLast(), _noise_counter()
    loss = pushforward_objective(relative_l2_loss, 3)(model, x, y, mask, perturb)
    loss.backward()
    assert len(calls) == 3
    a = torch.tensor(0.9, requires_grad=True)
    expected = relative_l2_loss(a * (0.9 ** 2 * x[:, -1:]), y[:, 2:3], mask)  # the unroll is a constant
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach())
    torch.testing.assert_close(model.a.grad, a.grad)


def test_task_settings_choose_the_objective():
    cfg = build_config(model="fno", data="ns2d", profile="smoke", overrides=["task.t_ar=3"])
    x, y, mask = torch.randn(1, 2, 16, 1), torch.randn(1, 3, 16, 1), torch.tensor([True])
    model = DriftingModel()
    training_objective(cfg)(model, x, y, mask)
    assert len(model.inputs) == 3


# -- windows and trajectory sampling through the loader --------------------------------------

def _numbered_dataset(name: str, n_trajectories: int, n_frames: int, first: int) -> TrajectoryDataset:
    """Trajectory i, frame t holds the value 100 * (first + i) + t everywhere."""
    frames = torch.arange(n_frames, dtype=torch.float32)
    trajectories = [(100 * (first + i) + frames).reshape(-1, 1, 1, 1).expand(-1, 4, 4, 1).clone()
                    for i in range(n_trajectories)]
    spec = DataSpec(name=name, fields=("u",), spatial_shape=(4, 4), t_in=2)
    return TrajectoryDataset(spec, {"train": trajectories, "val": [], "test": []})


def test_trajectory_sampling_through_the_loader_draws_trajectories_and_cuts_t_ar_windows():
    datasets = {"long": _numbered_dataset("long", 3, 40, first=0), "short": _numbered_dataset("short", 4, 8, first=10)}
    mixture = plan_mixture(datasets, t_out=1, weights={"long": 2.0, "short": 1.0})
    loader, sampler = training_loader(mixture, "train", batch_size=2, seed=0, sampling="trajectory", t_ar=3)
    batches, drawn = iter(loader), Counter()
    for _ in range(sampler.batches_per_epoch()):
        x, y, _ = next(batches)
        assert x.shape[1] == 2 and y.shape[1] == 3  # t_in inputs, t_ar * t_out targets
        for frames in torch.cat([x, y], dim=1)[..., 0, 0, 0]:
            assert torch.equal(frames, frames[0] + torch.arange(5.0))  # consecutive frames of one trajectory
            drawn[int(frames[0]) // 100] += 1
    # Each long trajectory twice, each short one once: 10 draws, not 2 x 3 x 34 + 4 x 4 windows.
    assert drawn == {0: 2, 1: 2, 2: 2, 10: 1, 11: 1, 12: 1, 13: 1}


# -- settings refused before any compute ------------------------------------------------------

@pytest.mark.parametrize("model, extra, message", [
    ("dpot", ["task.t_ar=0"], "task.t_ar must be at least 1"),
    ("fno", ["task.t_ar=0"], "task.t_ar must be at least 1"),
    ("fno", ["task.pushforward=true", "task.t_ar=2", "train.t_out=2"], "needs a model predicting one frame"),
    ("fno", ["task.pushforward=true"], "needs task.t_ar >= 2"),
    ("dpot", ["train.betas=[0.9]"], "train.betas must be two numbers in"),
    ("dpot", ["train.betas=[0.9,1.0]"], "train.betas must be two numbers in"),
    ("dpot", ["train.div_factor=0"], "train.div_factor must be a positive number"),
    ("fno", ["train.final_div_factor=-1"], "train.final_div_factor must be a positive number"),
    ("dpot", ["train.sampling=frames"], "unknown train.sampling 'frames'"),
])
def test_bad_recipe_settings_are_refused_before_data_is_built(fresh_home, monkeypatch, model, extra, message):
    def no_data(ctx):
        raise AssertionError("data was built before the settings were checked")

    monkeypatch.setattr(workflow, "build_datasets", no_data)
    cfg = build_config(model=model, data="ns2d", profile="smoke", device="cpu", overrides=extra)
    with pytest.raises(UsageError, match=message) as caught:
        execute(cfg, quiet=True)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("model, extra", [
    ("fno", [*SMOKE_FNO, "task.t_ar=2"]),
    ("fno", [*SMOKE_FNO, "task.t_ar=3", "task.pushforward=true", "train.sampling=trajectory",
             "train.loss_on_padding=true"]),
    ("dpot", [*TINY_DPOT, "task.t_ar=2"]),
])
def test_auto_regressive_training_runs_for_any_model(fresh_home, model, extra):
    cfg = build_config(model=model, data="ns2d", profile="smoke", device="cpu",
                       overrides=[*extra, "train.max_steps=2"])
    ctx = execute(cfg, quiet=True)
    assert math.isfinite(ctx.results["ns2d"]["l2re"])


@pytest.mark.parametrize("task, epochs, batch", [("pretrain", 1000, 120), ("finetune", 200, 32)])
def test_paper_profiles_train_the_official_length_batch_and_grid_and_score_like_the_official_mask(task, epochs,
                                                                                                   batch):
    # configs/pretrain_tiny.yaml: 1000 epochs, 20 per GPU on 6 GPUs, res 128, grad_clip 1e4;
    # configs/dpot_finetune.yaml: 200 epochs, batch 32, res 128.
    cfg = build_config(model="dpot", data="ns2d", task=task, profile="paper")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.resolution) == (epochs, batch, 128)
    assert cfg.train.grad_clip == 1e4 and cfg.eval.grid == "strided"
    mine = build_config(model="dpot", data="ns2d", task=task, profile="paper",
                        overrides=["eval.grid=model", "train.epochs=0"])
    assert mine.eval.grid == "model" and mine.train.epochs == 0  # the user's settings win
    steps = build_config(model="dpot", data="ns2d", task=task, profile="paper", overrides=["train.max_steps=2000"])
    assert steps.train.epochs == 0 and steps.train.max_steps == 2000  # a given length wins over the profile's
    core = build_config(model="dpot", data="ns2d", task="train", profile="paper")
    assert core.train.epochs == 0 and core.eval.grid == "model" and core.train.grad_clip == 0


def test_epochs_set_the_number_of_optimizer_steps(fresh_home):
    from pdebench_core.checkpoint import load_checkpoint

    overrides = [*SMOKE_FNO, "train.sampling=trajectory", "train.batch_size=4", "train.epochs=3",
                 "data.ns2d.n_train=10"]
    ctx = execute(build_config(model="fno", data="ns2d", profile="smoke", device="cpu", overrides=overrides),
                  quiet=True)
    assert ctx.cfg.train.max_steps == 20  # the profile's, not used
    # 10 trajectories, one window each per epoch, in batches of 4: 2 steps (the last 2 dropped), 3 times.
    assert load_checkpoint(ctx.run_dir / "checkpoints" / "last.pt")["step"] == 6


def test_official_recipe_resumes_mid_run_to_identical_weights(fresh_home):
    import shutil

    from pdebench_core.checkpoint import load_checkpoint
    from pdebench_core.runs import run_dir_for

    # Trajectory epochs of 2 batches, so the interruption falls mid-epoch; noise and t_ar on.
    settings = [*TINY_DPOT, "train.max_steps=5", "train.checkpoint_every=3", "train.keep_checkpoints=10",
                "task.t_ar=2"]
    straight = execute(build_config(model="dpot", data="ns2d", profile="smoke", device="cpu", run_id="straight",
                                    overrides=settings), quiet=True)
    assert straight.cfg.train.sampling == "trajectory"
    split_dir = run_dir_for("split")
    shutil.copytree(straight.run_dir, split_dir)
    shutil.copyfile(split_dir / "checkpoints" / "step-00000003.pt", split_dir / "checkpoints" / "last.pt")
    resumed = execute(build_config(model="dpot", data="ns2d", profile="smoke", device="cpu", run_id="split",
                                   overrides=settings), resume=True, quiet=True)
    want = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")["model"]
    got = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


def test_the_logged_learning_rate_is_the_one_each_step_used(tmp_path, monkeypatch):
    """One-cycle over 6 steps: the first step runs at lr/div_factor, the last at
    lr/div_factor/final_div_factor (the scheduler's next value, past the schedule, is not logged)."""
    import json

    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    cfg = build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id="lr-log",
                       overrides=["train.max_steps=6", "train.log_every=1", "train.lr=1e-3", "model.width=4",
                                  "model.modes=2", "run.sinks=[jsonl]"])
    execute(cfg, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "runs" / "lr-log" / "metrics.jsonl").read_text().splitlines()]
    rates = [r["lr"] for r in records if "lr" in r]
    assert len(rates) == 6 and max(rates) <= 1e-3
    assert rates[0] == pytest.approx(1e-3 / 25) and rates[-1] == pytest.approx(1e-3 / 25 / 1e4)
