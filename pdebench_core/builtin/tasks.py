"""Builtin tasks: ``train`` (supervised next-step training) and ``evaluate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pdebench_core.hookspecs import hookimpl


@dataclass
class TrainTaskConfig:
    """Settings of the ``train`` task.

    Attributes:
        evaluate: Roll out on the evaluation split after training and write result rows.
        allow_test_overlap: Allow evaluation trajectories that also appear in the training
            data of any dataset of the run (refused by default).
        t_ar: Auto-regressive calls per training window (the official DPOT ``T_ar``): each
            prediction is fed back as input, noise (if any) is injected at every call, and
            the losses of all calls are summed; gradients flow through the whole unroll.
        pushforward: Unroll ``t_ar - 1`` calls without gradient and train only the last one
            (the pushforward trick of PDEBench and Brandstetter et al.); needs ``t_ar >= 2``
            and ``train.t_out=1``.
    """

    evaluate: bool = True
    allow_test_overlap: bool = False
    t_ar: int = 1
    pushforward: bool = False


@dataclass
class EvaluateTaskConfig:
    """Settings of the ``evaluate`` task.

    Attributes:
        checkpoint: A checkpoint file, or the id of a finished run whose weights to use;
            empty evaluates the model as built (e.g. ``persistence``, or ``model.init``).
    """

    checkpoint: Optional[str] = None


def run_train(ctx) -> dict[str, Any]:
    """Train the model on the datasets, then evaluate it on each."""
    from pdebench_core import workflow

    _, mixture, model = workflow.prepare(ctx)
    trainer = workflow.train_model(ctx, model, mixture)
    return workflow.evaluate_trained(ctx, model, mixture, trainer)


def run_evaluate(ctx) -> dict[str, Any]:
    """Evaluate a model (optionally from a checkpoint) on the datasets."""
    from pdebench_core import workflow
    from pdebench_core.weights import load_weights

    _, mixture, model = workflow.prepare(ctx, training=False)
    extra = None
    if ctx.cfg.task.checkpoint:
        read = load_weights(model, ctx.cfg.task.checkpoint, config=ctx.cfg)
        extra = _final_weights_of(ctx.cfg.task.checkpoint, read)
    elif any(p.requires_grad for p in model.parameters()):
        ctx.log(f"warning: no task.checkpoint: '{ctx.cfg.model.name}' is scored with the weights it was built with "
                f"(untrained unless it loads some itself, e.g. model.init); pass task.checkpoint=RUN_ID or FILE")
    return workflow.evaluate_all(ctx, model, mixture, extra=extra)


def _final_weights_of(ref: str, read: Path) -> Optional[dict]:
    """``{"weights_of_run": RUN_ID}`` when ``ref`` names a run's final weights (the file ``read``
    is its ``last.pt``): the model that run's own row scored, which the leaderboard counts once.
    An earlier checkpoint (``best.pt``, a step, the newest intact one behind a damaged
    ``last.pt``) is another model."""
    from pdebench_core.weights import run_of_checkpoint

    source = run_of_checkpoint(ref)
    return {"weights_of_run": source} if source is not None and read.name == "last.pt" else None


@hookimpl
def register_tasks(register):
    """Register the builtin tasks."""
    register("train", run_train, config=TrainTaskConfig,
             description="supervised next-step training, then autoregressive evaluation")
    register("evaluate", run_evaluate, config=EvaluateTaskConfig, trains=False,
             description="autoregressive rollout evaluation of a model or checkpoint")
