"""DPOT's pre-training and fine-tuning tasks through the core engine."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from pdebench_core.checkpoint import load_checkpoint
from pdebench_core.config import build_config
from pdebench_core.errors import UsageError
from pdebench_core.runner import execute
from pdeb_dpot.tasks import make_input_noise, resolve_noise_scale

TINY = ["model.embed_dim=16", "model.depth=1", "model.n_blocks=2", "model.out_layer_dim=4", "model.modes=4",
        "train.log_every=1", "eval.max_trajectories=1"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_noise_follows_the_official_formula():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, 32, 32, 2) * torch.tensor([1.0, 100.0])  # (B, T, X, Y, C), channels of very different size
    noisy = make_input_noise(5e-4, "norm")(x, gen)
    noise = noisy - x
    norm = x.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()  # per sample and channel over (T, X, Y)
    ratio = (noise / (5e-4 * norm)).std(dim=(1, 2, 3))  # (B, C): N(0, 1) after scaling
    torch.testing.assert_close(ratio, torch.ones(3, 2), atol=0.03, rtol=0)


def test_rms_noise_is_resolution_independent():
    gen = torch.Generator().manual_seed(1)
    for size in (16, 64):
        x = torch.ones(2, 10, size, size, 1)
        noisy = make_input_noise(1e-2, "rms")(x, gen)
        assert (noisy - x).std().item() == pytest.approx(1e-2, rel=0.05)
    with pytest.raises(UsageError, match="unknown task.noise_mode"):
        make_input_noise(1e-2, "loud")


def test_noise_scale_follows_model_size():
    class Task:
        noise_scale = None

    class Model(dict):
        pass

    assert resolve_noise_scale(Task, Model(size="ti")) == 5e-4
    assert resolve_noise_scale(Task, Model(size="l")) == 5e-5
    Task.noise_scale = 0.0
    assert resolve_noise_scale(Task, Model(size="l")) == 0.0


def test_pdeb_run_resolves_the_official_recipe_and_the_old_one_is_one_override_away(home):
    command = [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "dpot", "--data", "ns2d",
               "--profile", "smoke", "--device", "cpu", "--run-id", "recipe", "--quiet",
               "train.max_steps=2", "eval.max_trajectories=1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resolved = OmegaConf.to_container(OmegaConf.load(home / "runs" / "recipe" / "config.yaml"))
    train = resolved["train"]
    assert (train["sampling"], train["betas"], train["div_factor"], train["final_div_factor"]) == \
        ("trajectory", [0.9, 0.9], 10000, 10000)
    assert train["cycle_momentum"] is True and train["loss_on_padding"] is True
    assert (train["optimizer"], train["weight_decay"], train["warmup_frac"]) == ("adam", 1e-6, 0.2)
    assert (resolved["task"]["t_ar"], resolved["task"]["pushforward"]) == (1, False)
    for task in ("pretrain", "finetune"):
        before = build_config(model="dpot", data="ns2d", task=task, profile="paper", overrides=[
            "train.sampling=window", "train.loss_on_padding=false", "train.betas=[0.9,0.999]",
            "train.div_factor=25", "train.cycle_momentum=false"]).train
        assert (before.sampling, list(before.betas), before.div_factor, before.cycle_momentum,
                before.loss_on_padding) == ("window", [0.9, 0.999], 25, False, False)


def test_dpot_defaults_to_pretraining_and_records_noise(home):
    cfg = build_config(model="dpot", data="ns2d", profile="smoke", run_id="pre", overrides=[*TINY, "train.max_steps=4"])
    assert cfg.run.task == "pretrain" and cfg.train.optimizer == "adam" and cfg.train.weight_decay == 1e-6
    ctx = execute(cfg, quiet=True)
    assert math.isfinite(ctx.results["ns2d"]["l2re"])
    assert "input noise 0.0005 (norm)" in (ctx.run_dir / "log.txt").read_text()


def test_finetune_from_our_checkpoint_and_from_official_format(home, tmp_path):
    execute(build_config(model="dpot", data="ns2d", profile="smoke", run_id="base",
                         overrides=[*TINY, "train.max_steps=3"]), quiet=True)
    ours = home / "runs" / "base" / "checkpoints" / "last.pt"
    tuned = execute(build_config(model="dpot", data="ns2d", task="finetune", profile="smoke", run_id="tuned",
                                 overrides=[*TINY, "train.max_steps=2", "task.checkpoint=base"]), quiet=True)
    assert "starting from base" in (tuned.run_dir / "log.txt").read_text()
    # The released format: {'model': state_dict} with DDP's 'module.' prefix.
    weights = load_checkpoint(ours)["model"]
    official = tmp_path / "official.pth"
    torch.save({"model": {f"module.{k}": v for k, v in weights.items()}}, official)
    via_init = execute(build_config(model="dpot", data="ns2d", task="finetune", profile="smoke", run_id="via-init",
                                    overrides=[*TINY, "train.max_steps=2", f"model.init={official}"]), quiet=True)
    assert math.isfinite(via_init.results["ns2d"]["l2re"])
    log = (via_init.run_dir / "log.txt").read_text()
    assert f"starting from model.init={official} (patch_embed, pos, blocks, time_agg, cls_head, out)" in log
    # Scoring that run's weights takes its model, not its starting weights: the checkpoint replaces them.
    scored = build_config(data="ns2d", task="evaluate", profile="small", overrides=["task.checkpoint=via-init"])
    assert scored.model.name == "dpot" and scored.model.embed_dim == 16 and scored.model.init == ""
    by_run_id = execute(build_config(model="dpot", data="ns2d", task="finetune", profile="smoke", run_id="init-run",
                                     overrides=[*TINY, "train.max_steps=1", "model.init=base",
                                                "model.init_components=[blocks]"]), quiet=True)
    assert "starting from model.init=base (blocks)" in (by_run_id.run_dir / "log.txt").read_text()
    # Another profile: the model is still the one the weights fit, taken from their run.
    other_profile = build_config(data="ns2d", task="finetune", profile="small", run_id="wider",
                                 overrides=["task.checkpoint=base", "train.max_steps=1"])
    assert other_profile.model.name == "dpot" and (other_profile.model.embed_dim, other_profile.model.depth) == (16, 1)
    with pytest.raises(UsageError) as refused:  # other widths asked for outright
        execute(build_config(model="dpot", data="ns2d", task="finetune", profile="small", run_id="wider",
                             overrides=["task.checkpoint=base", "train.max_steps=1", "model.depth=3",
                                        "model.embed_dim=128", "model.n_blocks=4"]), quiet=True)
    message = str(refused.value)
    assert "does not fit this model" in message and "shapes differ: " in message and ": checkpoint (" in message
    assert "its run had model.depth=1" in message and "(--profile smoke)" in message and "model.init" in message
    with pytest.raises(UsageError, match="no checkpoint file or run named 'bsae'"):
        execute(build_config(model="dpot", data="ns2d", task="finetune", profile="smoke", run_id="typo",
                             overrides=[*TINY, "model.init=bsae"]), quiet=True)
    with pytest.raises(UsageError, match="finetune needs weights to start from.*task.from_scratch=true"):
        build_and_run = build_config(model="dpot", data="ns2d", task="finetune", profile="smoke", run_id="none",
                                     overrides=TINY)
        execute(build_and_run, quiet=True)


def test_model_init_names_the_components_to_leave_out_when_t_in_or_channels_grow(home):
    """A checkpoint pre-trained on 10 input frames of 1-channel data, fine-tuned on 4 frames of
    2 channels: the error names the parts that cannot fit and the init_components that start
    from the rest, and following it trains, copying those parts alone."""
    from pdeb_dpot.checkpoint import read_state_dict

    execute(build_config(model="dpot", data="ns2d", profile="smoke", run_id="one-channel",
                         overrides=[*TINY, "train.max_steps=1"]), quiet=True)
    with pytest.raises(UsageError) as refused:
        execute(build_config(model="dpot", data="dr2d", task="finetune", profile="smoke", run_id="refused",
                             overrides=[*TINY, "train.max_steps=1", "model.init=one-channel", "data.dr2d.t_in=4"]),
                quiet=True)
    message = str(refused.value)
    assert "6 shape mismatch(es): patch_embed.proj.0.weight " in message and message.count("\n") == 0
    fix = "model.init_components=[pos,blocks,cls_head]"
    assert message.endswith(f"; or start from the rest and train patch_embed, time_agg, out afresh (shaped by t_in "
                            f"and the channels): {fix}"), message
    tuned = execute(build_config(model="dpot", data="dr2d", task="finetune", profile="smoke", run_id="followed",
                                 overrides=[*TINY, "train.max_steps=1", "model.init=one-channel",
                                            "data.dr2d.t_in=4", fix]), quiet=True)
    assert "starting from model.init=one-channel (pos, blocks, cls_head)" in (tuned.run_dir / "log.txt").read_text()
    saved = load_checkpoint(tuned.run_dir / "checkpoints" / "last.pt")["config"]
    assert saved["model"]["in_channels"] == 0  # the data's 2 channels: more than the checkpoint's 1
    assert read_state_dict("followed")["patch_embed.proj.0.weight"].shape[1] != \
        read_state_dict("one-channel")["patch_embed.proj.0.weight"].shape[1]


def _finetune_log(run_id: str, data: str, init: str) -> str:
    ctx = execute(build_config(model="dpot", data=data, task="finetune", profile="smoke", run_id=run_id,
                               overrides=[*TINY, "train.max_steps=1", f"model.init={init}"]), quiet=True)
    return next(line for line in (ctx.run_dir / "log.txt").read_text().splitlines() if "starting from" in line)


def test_model_init_loads_every_model_that_can_start_from_the_checkpoint_and_logs_what_each_took(home):
    """A 2D checkpoint: the 3D model takes its blocks (2D -> 3D), also beside 1D data that
    cannot start from it; a 2D+3D checkpoint on 2D+3D data: each model its own dimension's."""
    for run_id, data in (("flat", "ns2d"), ("mixed", "ns2d,cfd3d"), ("cube", "cfd3d")):
        execute(build_config(model="dpot", data=data, profile="smoke", run_id=run_id,
                             overrides=[*TINY, "train.max_steps=1"]), quiet=True)
    everything = "patch_embed pos blocks time_agg cls_head out"
    assert _finetune_log("lifted", "cfd3d", "flat").endswith("(blocks)")
    assert _finetune_log("beside-1d", "burgers1d,cfd3d", "flat").endswith("(1D: blocks shared, 3D: blocks)")
    assert _finetune_log("both", "ns2d,cfd3d", "flat").endswith(f"(2D: {everything}, 3D: blocks)")
    assert _finetune_log("each-own", "ns2d,cfd3d", "mixed").endswith(f"(2D: {everything}, 3D: {everything})")
    with pytest.raises(UsageError, match="model.init 'cube' holds DPOT for 3D data; this run's data is 1D, 2D, none "
                                         "with as many spatial dimensions"):
        _finetune_log("lower", "burgers1d,ns2d", "cube")


def test_a_baseline_trains_from_scratch_with_the_fine_tuning_recipe(home):
    """FNO beside a fine-tuned DPOT: the same task, recipe and length, from its own initial weights."""
    fno = ["model.width=4", "model.modes=2", "model.n_layers=1", "train.max_steps=2"]
    baseline = execute(build_config(model="fno", data="ns2d", task="finetune", profile="smoke", run_id="fno-base",
                                    overrides=[*fno, "task.from_scratch=true"]), quiet=True)
    assert baseline.cfg.train.optimizer == "adam" and list(baseline.cfg.train.betas) == [0.9, 0.9]
    assert "with the fine-tuning recipe (task.from_scratch)" in (baseline.run_dir / "log.txt").read_text()
    with pytest.raises(UsageError, match="task.from_scratch=true and weights to start from"):
        execute(build_config(model="fno", data="ns2d", task="finetune", profile="smoke", run_id="both",
                             overrides=[*fno, "task.from_scratch=true", "task.checkpoint=fno-base"]), quiet=True)


def test_mixed_dimensions_share_blocks(home):
    from pdebench_core import workflow
    from pdebench_core.runs import RunContext

    cfg = build_config(model="dpot", data="ns2d,burgers1d", profile="smoke", run_id="mixed",
                       overrides=[*TINY, "train.max_steps=2", "data.burgers1d.resolution=32"])
    ctx = execute(cfg, quiet=True)
    assert set(ctx.results) == {"ns2d", "burgers1d"}
    ctx2 = RunContext(cfg=cfg, run_id="x", run_dir=home, device=torch.device("cpu"), quiet=True)
    mixture = workflow.plan(ctx2, workflow.build_datasets(ctx2))
    model = workflow.build_model(ctx2, mixture)
    two, one = model.by_dim["2"], model.by_dim["1"]
    assert two.blocks[0].filter.w1 is one.blocks[0].filter.w1
    assert two.time_agg_layer is one.time_agg_layer
    assert two.patch_embed is not one.patch_embed
    owned = {id(p) for p in model.parameters()}
    assert len(owned) == len(list(model.parameters()))  # shared weights counted once


def test_fno_refuses_mixed_dimensions(home):
    # both datasets declare their dimension: refused with the config, before any data is made
    with pytest.raises(UsageError, match="cannot train on datasets of different dimensions"):
        build_config(model="fno", data="ns2d,burgers1d", profile="smoke", run_id="fno-mixed")
    assert not (home / "data").exists() or not list((home / "data").glob("*.h5"))


def test_headline_2d_plus_3d_pretraining(home):
    cfg = build_config(model="dpot", data="ns2d,cfd3d", profile="smoke", run_id="headline",
                       overrides=[*TINY, "train.max_steps=4"])
    ctx = execute(cfg, quiet=True)
    assert set(ctx.results) == {"ns2d", "cfd3d"}
    assert all(math.isfinite(v["l2re"]) for v in ctx.results.values())


def test_finetune_from_a_four_channel_model_scores_the_padding_like_the_official_loss(home):
    """finetune.py pads every dataset to 4 channels with ones and its loss averages over all 4:
    batches carry the padding, and the loss equals that formula; evaluation is unchanged."""
    from pdebench_core import workflow
    from pdebench_core.data.pipeline import training_loader
    from pdebench_core.evaluation import evaluate_dataset
    from pdebench_core.objectives import training_objective
    from pdebench_core.runs import RunContext

    cfg = build_config(model="dpot", data="ns2d", task="finetune", profile="smoke", run_id="pad",
                       overrides=[*TINY, "model.in_channels=4"])
    home.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg=cfg, run_id="pad", run_dir=home, device=torch.device("cpu"), quiet=True)
    _, mixture, model = workflow.prepare(ctx)
    assert mixture.n_channels == 4 and mixture.datasets["ns2d"].spec.n_channels == 1
    loader, _ = training_loader(mixture, "train", 4, seed=0, sampling="trajectory")
    x, y, mask = next(iter(loader))
    assert x.shape[-1] == 4 and bool((x[..., 1:] == 1).all()) and mask[0].tolist() == [True, False, False, False]
    with torch.no_grad():
        loss = training_objective(cfg)(model, x, y, mask).item()
        pred = model(x)
        axes = tuple(range(1, pred.ndim - 1))  # time and space, per sample and channel
        official = ((pred - y).pow(2).sum(dim=axes).sqrt() / y.pow(2).sum(dim=axes).sqrt()).mean(dim=-1).sum().item()
    assert loss == pytest.approx(official, rel=1e-5)
    # scoring pads the same ones the model would add itself: the metrics do not change
    fns = workflow.metric_functions(["l2re"])
    scored = [evaluate_dataset(model, mixture.datasets["ns2d"].split("test"), fns, t_in=mixture.t_in, t_out=1,
                               horizon=3, device=torch.device("cpu"), grid=mixture.grid, n_channels=channels,
                               batch_size=2, scored_channels=1)["summary"]["l2re"] for channels in (1, 4)]
    assert scored[0] == pytest.approx(scored[1], rel=1e-6)
