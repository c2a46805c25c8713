"""DPOT's training recipes as tasks: denoising auto-regressive pre-training and fine-tuning.

Both run through the core engine (``pdebench_core.workflow``); any model can use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from pdebench_core.builtin.tasks import TrainTaskConfig
from pdebench_core.errors import UsageError

# Official noise scales: the input gets noise_scale * ||x||_2 * N(0, I).
NOISE_SCALE_BY_SIZE = {"ti": 5e-4, "s": 5e-4, "m": 5e-4, "l": 5e-5, "h": 5e-5}
DEFAULT_NOISE_SCALE = 5e-4


@dataclass
class PretrainConfig(TrainTaskConfig):
    """Settings of the ``pretrain`` task (``task.<key>``): those of ``train`` and the input noise.

    ``t_ar`` is 1 in every released recipe; ``pushforward`` is not part of the official
    recipe. Any noise is injected at every auto-regressive call.

    Attributes:
        noise_scale: Scale of the input noise; None = the official value for
            ``model.size`` (5e-4 for ti/s/m, 5e-5 for l/h; 5e-4 for other models). 0 disables it.
        noise_mode: ``norm`` (official: ``noise_scale * ||x||_2 * N(0, I)``, the norm per
            sample and channel over time and space, so it grows with the grid) or ``rms``
            (``noise_scale * RMS(x) * N(0, I)``: the same relative noise at any resolution).
    """

    noise_scale: Optional[float] = None
    noise_mode: str = "norm"


@dataclass
class FinetuneConfig(TrainTaskConfig):
    """Settings of the ``finetune`` task (``task.<key>``): those of ``train`` and the starting weights.

    Attributes:
        checkpoint: Weights to start from: a checkpoint file (ours or a released DPOT file)
            or a run id. Loaded strictly into the whole model. For DPOT, ``model.init`` with
            ``model.init_components`` selects components instead (e.g. 2D -> 3D).
        from_scratch: Train from the model's own initial weights with the fine-tuning recipe:
            a baseline (FNO, a DPOT not pre-trained) on the same footing as a fine-tuned model.
    """

    checkpoint: Optional[str] = None
    from_scratch: bool = False


def resolve_noise_scale(task_cfg: Any, model_cfg: Any) -> float:
    """The configured noise scale, or the official one for the model size."""
    if task_cfg.noise_scale is not None:
        return float(task_cfg.noise_scale)
    size = str(model_cfg.get("size", "") or "").lower()
    return NOISE_SCALE_BY_SIZE.get(size, DEFAULT_NOISE_SCALE)


def make_input_noise(scale: float, mode: str):
    """An ``input_noise`` hook adding DPOT's denoising noise to model inputs (targets stay clean).

    Args:
        scale: ``noise_scale``.
        mode: ``norm`` or ``rms`` (see :class:`PretrainConfig`).
    """
    import torch

    if mode not in ("norm", "rms"):
        raise UsageError(f"unknown task.noise_mode '{mode}'; use norm or rms")

    def add_noise(x, generator):
        if scale == 0:
            return x
        axes = tuple(range(1, x.ndim - 1))  # time and space, per sample and channel
        norm = x.float().pow(2).sum(dim=axes, keepdim=True).sqrt()  # (B, 1, *1, C)
        if mode == "rms":
            norm = norm / math.sqrt(math.prod(x.shape[1:-1]))
        # Drawn where the generator lives (the training device); a generator elsewhere
        # draws there and the noise moves.
        device = x.device if generator.device == x.device else generator.device
        noise = torch.randn(x.shape, generator=generator, device=device).to(x.device)
        return x + scale * norm * noise

    return add_noise


def run_pretrain(ctx) -> dict[str, Any]:
    """Next-frame pre-training with input noise over a mixture of datasets."""
    from pdebench_core import workflow

    datasets, mixture, model = workflow.prepare(ctx)
    scale = resolve_noise_scale(ctx.cfg.task, ctx.cfg.model)
    ctx.log(f"pre-training on {list(datasets)} with input noise {scale:g} ({ctx.cfg.task.noise_mode})")
    trainer = workflow.train_model(ctx, model, mixture, input_noise=make_input_noise(scale, ctx.cfg.task.noise_mode))
    return workflow.evaluate_trained(ctx, model, mixture, trainer, noise_scale=scale)


def run_finetune(ctx) -> dict[str, Any]:
    """Train from pre-trained weights without noise, then evaluate."""
    from pdebench_core import workflow
    from pdebench_core.weights import load_weights

    cfg = ctx.cfg
    weights = cfg.task.checkpoint or cfg.model.get("init")
    if not weights and not cfg.task.from_scratch:
        raise UsageError("finetune needs weights to start from: set task.checkpoint=FILE_OR_RUN_ID (or model.init "
                         "for dpot); for a baseline trained the same way from its own initial weights, set "
                         "task.from_scratch=true")
    if weights and cfg.task.from_scratch:
        raise UsageError(f"task.from_scratch=true and weights to start from ({weights}) contradict each other; "
                         f"give one of them")
    _, mixture, model = workflow.prepare(ctx)
    if cfg.task.from_scratch:
        ctx.log("training from the model's own initial weights with the fine-tuning recipe (task.from_scratch)")
    if cfg.task.checkpoint and not ctx.resume:
        load_weights(model, cfg.task.checkpoint, config=cfg)
        ctx.log(f"starting from {cfg.task.checkpoint}")
    elif cfg.model.get("init") and not ctx.resume:
        parts = getattr(model, "initialized_components", None) or cfg.model.get("init_components")
        ctx.log(f"starting from model.init={cfg.model.init} ({', '.join(parts) if parts else 'every component'})")
    trainer = workflow.train_model(ctx, model, mixture)
    return workflow.evaluate_trained(ctx, model, mixture, trainer, init=cfg.task.checkpoint or cfg.model.get("init"))


# The official recipe (train_temporal.py, finetune.py and their configs): Adam with betas
# (0.9, 0.9) and weight decay 1e-6 as an L2 penalty; torch's OneCycleLR with div_factor and
# final_div_factor 1e4, beta1 cycled (its default) and 200 of 1000 epochs (40 of 200 when
# fine-tuning) of warm-up; gradients clipped at norm 1e4; an epoch draws every trajectory once
# per unit of weight; the loss covers padded channels too.
RECIPE = {"optimizer": "adam", "betas": [0.9, 0.9], "weight_decay": 1e-6, "scheduler": "onecycle",
          "div_factor": 1e4, "final_div_factor": 1e4, "cycle_momentum": True, "warmup_frac": 0.2,
          "sampling": "trajectory", "loss_on_padding": True, "loss": "rel_l2", "grad_clip": 1e4}

# What the `paper` profile adds: the official length, batch and grid. Pre-training is the Ti
# recipe (configs/pretrain_tiny.yaml: 1000 epochs, 20 windows per GPU on 6 GPUs); fine-tuning
# is configs/dpot_finetune.yaml (200 epochs, batch 32). Both train on a 128x128 grid and score
# at every (128 / stored size)-th point of it, as the official target mask does.
PAPER_PRETRAIN = {"epochs": 1000, "batch_size": 120, "resolution": 128}
PAPER_FINETUNE = {"epochs": 200, "batch_size": 32, "resolution": 128}


def _recipe_profiles(small_lr: float, paper: dict[str, Any]) -> dict[str, Any]:
    """The official recipe in every profile; ``small`` sets its learning rate, ``paper`` the
    official learning rate, length, batch, grid and scoring points."""
    return {"smoke": {"train": dict(RECIPE)}, "small": {"train": {**RECIPE, "lr": small_lr}},
            "paper": {"train": {**RECIPE, "lr": 1e-3, **paper}, "eval": {"grid": "strided"}}}


def register(register_task) -> None:
    """Register ``pretrain`` and ``finetune``."""
    register_task("pretrain", run_pretrain, config=PretrainConfig, profiles=_recipe_profiles(2e-3, PAPER_PRETRAIN),
                  description="DPOT's denoising auto-regressive pre-training over a mixture of datasets",
                  paper="Hao et al., DPOT, ICML 2024")
    register_task("finetune", run_finetune, config=FinetuneConfig, profiles=_recipe_profiles(1e-3, PAPER_FINETUNE),
                  description="fine-tune pre-trained weights (ours or official) without noise",
                  paper="Hao et al., DPOT, ICML 2024")
