"""The core's own config sections: run, train and eval."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional

#: Settings that say how a run is fed, watched or where its results go, never what it
#: computes: they may change when a run is resumed, and runs that differ only in them (and in
#: their seeds) are repeats of one experiment on the leaderboard. ``sinks.*`` are too.
OPERATIONAL_SETTINGS = ("run.sinks", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
                        "train.num_workers", "train.prefetch_factor", "train.dist_timeout", "train.eval_every",
                        "train.data_on_device")
#: The same in every ``data.<name>`` section.
OPERATIONAL_DATA_SETTINGS = ("preload",)


def is_operational(key: str) -> bool:
    """Whether a dotted setting (``train.log_every``, ``data.ns2d.preload``, ``sinks.csv.path``)
    is one of :data:`OPERATIONAL_SETTINGS` or :data:`OPERATIONAL_DATA_SETTINGS`."""
    parts = key.split(".")
    return key in OPERATIONAL_SETTINGS or parts[0] == "sinks" or (
        len(parts) == 3 and parts[0] == "data" and parts[2] in OPERATIONAL_DATA_SETTINGS)


def settings_digest(config: Mapping[str, Any]) -> str:
    """16 hex digits of the settings that change a run's results: its resolved config without
    the run id and where results go (``run.sinks`` and every ``sinks.<name>`` section).

    Args:
        config: A resolved config as plain data.
    """
    data = json.loads(json.dumps(dict(config), default=str))
    return _digest(_without(data, lambda key: key in ("sinks", "run.run_id", "run.sinks")))


def experiment_digest(config: Mapping[str, Any]) -> str:
    """16 hex digits of what makes an experiment: the resolved config without the run id,
    ``run.seed`` and the operational settings (:func:`is_operational`; ``train.checkpoint_every``
    stays under ``train.on_divergence=rollback``). Repeats of one experiment with other seeds,
    or fed and watched otherwise, share it.

    Args:
        config: A resolved config as plain data.
    """
    data = json.loads(json.dumps(dict(config), default=str))
    # A rollback returns to the last checkpoint: how often one is written then changes the numbers.
    rollback = (data.get("train") or {}).get("on_divergence") == "rollback"

    def drop(key: str) -> bool:
        if key in ("run.run_id", "run.seed"):
            return True
        return is_operational(key) and not (rollback and key == "train.checkpoint_every")

    return _digest(_without(data, drop))


def _without(tree: dict, drop: Callable[[str], bool], prefix: str = "") -> dict:
    """``tree`` without the entries whose dotted key ``drop`` accepts."""
    kept = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if drop(path):
            continue
        kept[key] = _without(value, drop, path + ".") if isinstance(value, dict) else value
    return kept


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunSection:
    """``run.<key>``: what to run and where.

    Attributes:
        task: Registered task name (``train``, ``evaluate``, ``pretrain``, ...).
        seed: Seed for model initialisation, sampling and noise.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``/``cuda:N``.
        run_id: Name of the run directory; generated when empty.
        profile: ``smoke``, ``small`` or ``paper``; sets defaults of every section.
        sinks: Registered sink names that receive logs and result rows.
    """

    task: str = "train"
    seed: int = 0
    device: str = "auto"
    run_id: Optional[str] = None
    profile: str = "small"
    sinks: List[str] = field(default_factory=lambda: ["sqlite", "jsonl"])


@dataclass
class TrainSection:
    """``train.<key>``: the optimisation loop shared by every training task.

    Attributes:
        max_steps: Optimizer steps (unless ``epochs`` is set).
        epochs: Train this many epochs of the mixture instead of ``max_steps``: ``epochs`` x
            the optimizer steps of one epoch (see ``sampling``; each epoch drops its last
            partial batch). 0 = use ``max_steps``.
        batch_size: Windows per optimizer step, summed over processes and accumulation
            steps (so changing either leaves the optimisation unchanged).
        grad_accum: Micro-batches accumulated per optimizer step on each process.
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay (AdamW) or L2 penalty (Adam).
        optimizer: ``adamw`` or ``adam``.
        betas: Adam's ``(beta1, beta2)``; with ``cycle_momentum`` beta1 is cycled instead.
        scheduler: ``onecycle``, ``cosine`` or ``constant``.
        warmup_frac: Fraction of steps spent warming up (one-cycle ``pct_start``).
        div_factor: One-cycle start learning rate is ``lr / div_factor``.
        final_div_factor: One-cycle final learning rate is ``lr / div_factor / final_div_factor``.
        cycle_momentum: One-cycle also cycles beta1 between 0.85 and 0.95, inversely to the
            learning rate.
        sampling: What one epoch draws: ``window`` (every window of every trajectory,
            times the dataset weight) or ``trajectory`` (the official DPOT epoch: each
            trajectory ``weight`` times, one random window per draw).
        loss_on_padding: Include padded channels in the loss (the official DPOT loss does).
        grad_clip: Max gradient norm; 0 disables clipping.
        t_out: Frames predicted per model call during training.
        loss: ``rel_l2`` (relative L2 per channel, DPOT's) or ``mse``.
        resolution: Model grid per spatial axis when datasets differ (0 = first dataset's).
        log_every: Steps between log lines and metric records.
        eval_every: Steps between validation passes, and one at the last step (0 = no validation).
        checkpoint_every: Steps between checkpoints (0 = only at the end).
        keep_checkpoints: How many recent step checkpoints to keep.
        num_workers: DataLoader worker processes (-1 = automatic: several on CUDA, none on CPU).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        compile: Compile the model with ``torch.compile`` (falls back to eager mode, with a
            message, for models it cannot compile).
        channels_last: Store 2D convolution weights (4-D, real) and their inputs
            channels-last (faster NHWC kernels for convolution-heavy models such as U-Net);
            every other parameter keeps its layout.
        max_train_windows: Cap on windows per dataset per epoch (0 = all).
        on_divergence: What a NaN/Inf loss does: ``halt`` with a message, or ``rollback``
            to the last checkpoint with a lower learning rate.
        rollback_lr_factor: Learning-rate factor applied at each rollback.
        max_rollbacks: Rollbacks allowed before halting.
        strategy: Data parallelism over several processes: ``ddp`` (replicated model) or
            ``fsdp`` (parameters, gradients and optimizer state sharded; for large models).
        select_metric: Validation metric (in its registered direction) that picks ``best.pt`` when
            ``eval_every`` is set; validation uses the ``val`` split, never ``test``.
        val_trajectories: Validation trajectories rolled out per dataset (0 = all).
        dist_timeout: Seconds a process-group collective may wait for a peer before the run
            stops with a message naming the rank (data generation happens before it).
        deterministic: Deterministic kernels (``torch.use_deterministic_algorithms``); makes
            a resumed GPU run exact, at some cost in speed.
        activation_checkpointing: Recompute each block's activations in the backward pass
            instead of storing them (for large models).
        prefetch_factor: Batches each data-loader worker prepares ahead.
        data_on_device: Keep the training data (resized and padded) on the training device
            and gather each batch there: what keeps a GPU fed when a step takes well under a
            millisecond. Refused when the data would not leave room for the model.
    """

    max_steps: int = 1000
    epochs: int = 0  # 0: train max_steps
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: str = "adamw"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "onecycle"
    warmup_frac: float = 0.2  # one-cycle's pct_start
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = False
    sampling: str = "window"
    loss_on_padding: bool = False
    grad_clip: float = 0.0  # 0: no clipping
    t_out: int = 1
    loss: str = "rel_l2"
    resolution: int = 0  # 0: the first dataset's grid
    log_every: int = 10
    eval_every: int = 0  # 0: no validation
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    num_workers: int = -1  # -1: several on CUDA, none on CPU
    prefetch_factor: int = 2
    data_on_device: bool = False
    precision: str = "auto"
    compile: bool = False
    channels_last: bool = False
    max_train_windows: int = 0  # 0: every window
    on_divergence: str = "halt"
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3
    strategy: str = "ddp"
    select_metric: str = "l2re"
    val_trajectories: int = 8
    dist_timeout: float = 600.0  # seconds
    deterministic: bool = False
    activation_checkpointing: bool = False


@dataclass
class EvalSection:
    """``eval.<key>``: autoregressive evaluation.

    Attributes:
        split: Split to evaluate (``test``; ``val`` is used for model selection).
        batch_size: Trajectories rolled out at once.
        metrics: Registered metric names to compute.
        horizon: Frames to roll out after the first ``t_in`` (0 = each dataset's own).
        max_trajectories: Cap on trajectories evaluated per dataset (0 = all).
        grid: Where predictions are scored: ``model`` (on the model's grid, the data
            resized to it), ``native`` (predictions resized back to each dataset's own grid)
            or ``strided`` (the model grid at every (model / native)-th point, as the official
            DPOT evaluation does).
        precision: Rollout precision: ``fp32`` (default on every device; IEEE float32, TF32
            off on CUDA too), ``bf16`` or ``auto``.
    """

    split: str = "test"
    batch_size: int = 8
    metrics: List[str] = field(default_factory=lambda: ["l2re", "rmse", "nrmse"])
    horizon: int = 0
    max_trajectories: int = 0
    grid: str = "model"
    precision: str = "fp32"


# Profile defaults of the core sections; component profiles come from their cards.
CORE_PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {
        "train": {"max_steps": 20, "batch_size": 4, "log_every": 5, "lr": 1e-3},
        "eval": {"batch_size": 4},
    },
    "small": {
        "train": {"max_steps": 500, "batch_size": 16, "log_every": 50, "lr": 3e-3},
        "eval": {"batch_size": 8},
    },
    "paper": {
        "train": {"max_steps": 100000, "batch_size": 20, "log_every": 100, "lr": 1e-3,
                  "checkpoint_every": 5000, "eval_every": 5000},
        "eval": {"batch_size": 16},
    },
}
