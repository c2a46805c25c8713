"""Run a protocol: a released checkpoint evaluated zero-shot, and optionally after fine-tuning,
on every dataset of the protocol found under a data root.

:func:`reproduce` does the work and returns a :class:`Reproduction`;
:mod:`pdebench_core.protocol_report` prints it beside the published cells.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from pdebench_core.errors import UsageError
from pdebench_core.protocols import Column, Located, Protocol, load_protocol, locate, published_cells, \
    published_row_for

# Constructor arguments of the released models that a checkpoint must match (the rest is its size).
FIT_KEYS = ("ndim", "img_size", "patch_size", "in_channels", "out_channels", "in_timesteps", "out_timesteps")
ARCH_KEYS = ("embed_dim", "depth", "n_blocks", "mlp_ratio", "out_layer_dim")


@dataclass
class ColumnResult:
    """Our numbers on one dataset of the protocol.

    Attributes:
        column: The protocol's column.
        path: The test files read.
        n: Test trajectories scored.
        horizon: Frames rolled out and scored.
        zero_shot: The metric of the checkpoint as released.
        finetuned: The metric after fine-tuning (``None`` without fine-tuning).
        n_finetuned: Test trajectories the fine-tuned copy is scored on: the smaller test set
            of the official fine-tuning script (``test_size``), not the released-checkpoint
            evaluation's (``eval_test_size``).
        notes: Where the files differ from the protocol (grid, frames, trajectories).
    """

    column: Column
    path: str
    n: int
    horizon: int
    zero_shot: float
    finetuned: float | None = None
    n_finetuned: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Reproduction:
    """Everything :mod:`pdebench_core.protocol_report` prints.

    Attributes:
        protocol: The protocol run.
        checkpoint: The checkpoint file.
        size: The checkpoint's DPOT size (``ti``, ``s``, ...) or ``None``.
        finetune_steps: Optimizer steps of fine-tuning per dataset (0 = none, or by epochs).
        finetune_epochs: Epochs of fine-tuning per dataset (0 = none, or by steps).
        device: Where it ran.
        rows: ``{"zero_shot": published row, "finetuned": published row}`` compared with.
        published: ``{"zero_shot": {column: value}, "finetuned": {...}}``.
        results: One entry per dataset found.
        absent: Columns whose files were not found.
        recipe: The fine-tuning settings used (the protocol's, with any override).
    """

    protocol: Protocol
    checkpoint: str
    size: str | None
    finetune_steps: int
    finetune_epochs: int
    device: str
    rows: dict[str, dict[str, Any] | None]
    published: dict[str, dict[str, float]]
    results: list[ColumnResult]
    absent: list[Column]
    recipe: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the model


def _dpot_modules():
    try:
        from pdeb_dpot import SIZES
        from pdeb_dpot.checkpoint import load_pretrained, read_state_dict
        from pdeb_dpot.official import build_official, infer_official_config
    except ImportError:
        raise UsageError("this protocol evaluates DPOT checkpoints and needs the dpot model plugin "
                         "(pdeb_dpot); reinstall pdeb") from None
    return SIZES, load_pretrained, read_state_dict, build_official, infer_official_config


def load_model(protocol: Protocol, checkpoint: str | Path) -> tuple[torch.nn.Module, str | None]:
    """The protocol's model with the checkpoint's weights (official key names), and its size name.

    Raises:
        UsageError: unreadable file, not a DPOT state dict, or a model other than the protocol's
            (grid, patch, channels, frames), naming every difference.
    """
    sizes, load_pretrained, read_state_dict, build_official, infer_official_config = _dpot_modules()
    if protocol.model.get("family") != "dpot":
        raise UsageError(f"protocol '{protocol.name}' names model family '{protocol.model.get('family')}'; "
                         f"only dpot checkpoints can be reproduced")
    state = read_state_dict(checkpoint)
    found = infer_official_config(state)
    wrong = [f"{key} {found[key]} (protocol: {protocol.model[key]})" for key in FIT_KEYS
             if key in protocol.model and found[key] != protocol.model[key]]
    if wrong:
        raise UsageError(f"checkpoint {checkpoint} does not fit the model of protocol '{protocol.name}': "
                         f"{', '.join(wrong)}")
    arguments = {k: v for k, v in found.items() if k != "ndim"}
    arguments["modes"] = int(protocol.model.get("modes", 32))
    model = build_official(arguments, ndim=int(found["ndim"]))
    load_pretrained(model, state, source_name=str(checkpoint))
    arch = tuple(found[k] for k in ARCH_KEYS)
    size = next((name for name, preset in sizes.items() if tuple(preset[k] for k in ARCH_KEYS) == arch), None)
    return model, size


# --------------------------------------------------------------------------- the data


def open_split(path: Path, split: str):
    """The trajectories of ``split`` at ``path`` (pdeb's ``dpot`` layout; a lone file or folder is one pool)."""
    from pdebench_core.data.layouts import open_layout

    found = open_layout(str(path), "dpot")
    for key in (split, "all"):
        if key in found.pools:
            return found.pools[key]
    return next(iter(found.pools.values()))


def _file_notes(column: Column, shape: tuple[int, ...], n_found: int, wanted: int) -> list[str]:
    notes = []
    if tuple(shape[1:-1]) != column.grid:
        notes.append(f"grid {'x'.join(map(str, shape[1:-1]))} (protocol {'x'.join(map(str, column.grid))})")
    if shape[-1] != len(column.fields):
        notes.append(f"{shape[-1]} channels (protocol {len(column.fields)}: {', '.join(column.fields)})")
    if shape[0] < column.t_in + column.horizon:
        notes.append(f"{shape[0]} frames: horizon {max(0, shape[0] - column.t_in)} (protocol {column.horizon})")
    if n_found < wanted:
        notes.append(f"{n_found} test trajectories (protocol {wanted})")
    return notes


def evaluate_column(model: torch.nn.Module, protocol: Protocol, located: Located, device: torch.device,
                    max_trajectories: int = 0, finetuned: bool = False) -> ColumnResult:
    """Roll the model out on one dataset's test split as the protocol says and score it.

    A released checkpoint is scored on the first ``eval_test_size`` test trajectories (the
    official ``evaluate.py``), a fine-tuned copy (``finetuned``) on the first ``test_size``
    (the official ``finetune.py`` reports on that test set).
    """
    from pdebench_core import metrics
    from pdebench_core.evaluation import evaluate_dataset

    column, settings = located.column, protocol.evaluation
    pool = open_split(located.test, "test")
    size = column.test_size if finetuned else column.eval_test_size
    wanted = size if not max_trajectories else min(max_trajectories, size)
    n = min(wanted, len(pool))
    name = str(settings.get("metric", "l2re"))
    out = evaluate_dataset(
        model, pool, {name: getattr(metrics, name)}, t_in=column.t_in, t_out=int(settings.get("t_out", 1)),
        horizon=column.horizon, device=device, grid=protocol.grid, n_channels=int(settings["channels"]),
        batch_size=int(settings.get("batch_size", 8)), max_trajectories=n,
        precision=str(settings.get("precision", "fp32")), grid_mode=str(settings.get("eval_grid", "strided")),
        scored_channels=column.scored_channels,
    )
    notes = _file_notes(column, tuple(pool.shape), len(pool), wanted)
    return ColumnResult(column, str(located.test), out["n_samples"], int(out["horizon"]), out["summary"][name],
                        notes=notes)


# --------------------------------------------------------------------------- fine-tuning


def _train_section(protocol: Protocol, steps: int, batch_size: int):
    from omegaconf import OmegaConf

    from pdebench_core.settings import TrainSection

    known = set(TrainSection.__dataclass_fields__)
    recipe = {k: v for k, v in protocol.finetune.items() if k in known}
    recipe.update(max_steps=int(steps), num_workers=0, checkpoint_every=0, eval_every=0, log_every=max(1, steps),
                  precision=str(protocol.evaluation.get("precision", "fp32")), t_out=1, batch_size=int(batch_size))
    return OmegaConf.merge(OmegaConf.structured(TrainSection), recipe)


def finetune_column(pretrained: torch.nn.Module, protocol: Protocol, located: Located, steps: int,
                    device: torch.device, batch_size: int | None = None, seed: int = 0,
                    log: Callable[[str], None] = print, epochs: int = 0) -> torch.nn.Module:
    """A copy of ``pretrained`` trained on one dataset's training split with the protocol's
    recipe (the engine's own training loop): ``steps`` optimizer steps, or with ``epochs`` that
    many epochs of the split (each trajectory drawn once per epoch, the last partial batch
    dropped)."""
    from pdebench_core.data.base import TrajectoryDataset
    from pdebench_core.data.pipeline import Group, Mixture, training_loader
    from pdebench_core.engine import Trainer
    from pdebench_core.losses import LOSSES
    from pdebench_core.objectives import next_frames_objective
    from pdebench_core.spec import DataSpec

    column = located.column
    pool = open_split(located.train, "train")
    pool = pool.subset(list(range(min(len(pool), column.train_size))))
    shape = tuple(pool.shape)
    spec = DataSpec(name=column.dataset, fields=tuple(f"c{i}" for i in range(shape[-1])),
                    spatial_shape=shape[1:-1], t_in=column.t_in, t_out=1)
    on_grid = spec.replace(spatial_shape=protocol.grid)
    group = Group(len(protocol.grid), protocol.grid, int(protocol.evaluation["channels"]), on_grid)
    mixture = Mixture({column.key: TrajectoryDataset(spec, {"train": pool})}, {group.ndim: group}, column.t_in, 1,
                      on_grid, {column.key: 1.0})
    batch = int(batch_size or protocol.finetune.get("batch_size", 32))
    loader, sampler = training_loader(mixture, "train", batch, seed=seed, num_workers=0,
                                      sampling=str(protocol.finetune.get("sampling", "trajectory")))
    if epochs:
        if sampler.steps_per_epoch() == 0:
            raise UsageError(f"{column.key}: {len(pool)} training trajectories are fewer than one fine-tuning "
                             f"batch of {batch}; lower --finetune-batch-size")
        steps = epochs * sampler.steps_per_epoch()
        log(f"{column.key}: {epochs} epochs are {steps} optimizer steps")
    train = _train_section(protocol, steps, batch)
    objective = next_frames_objective(LOSSES[str(train.loss)], loss_on_padding=bool(train.loss_on_padding))
    noise = None
    scale = float(protocol.finetune.get("noise_scale", 0.0) or 0.0)
    if scale:
        from pdeb_dpot.tasks import make_input_noise

        noise = make_input_noise(scale, "norm")  # DPOT's: scale * ||x||_2 * N(0, I)
    model = copy.deepcopy(pretrained)
    with tempfile.TemporaryDirectory(prefix="pdeb-finetune-") as scratch:
        trainer = Trainer(model, loader, sampler, train, device, Path(scratch), log=log, seed=seed,
                          show_progress=False, input_noise=noise, objective=objective)
        trainer.fit()
    return model


# --------------------------------------------------------------------------- the whole protocol


def reproduce(name: str, checkpoint: str | Path, data_root: str | Path, finetune_steps: int = 0,
              device: str = "auto", published: str | None = None, max_trajectories: int = 0,
              finetune_batch_size: int | None = None, log: Callable[[str], None] = print,
              finetune_epochs: int = 0) -> Reproduction:
    """Evaluate ``checkpoint`` on every dataset of protocol ``name`` found under ``data_root``.

    Args:
        name: Protocol name (``dpot-table1``).
        checkpoint: A released checkpoint (official key names).
        data_root: The folder holding the datasets in the protocol's layout.
        finetune_steps: Also fine-tune a copy on each dataset for this many steps (0 = zero-shot only).
        device: ``auto``, ``cpu`` or ``cuda``.
        published: Published model label to compare with (default: the checkpoint's size).
        max_trajectories: Score at most this many test trajectories per dataset (0 = the protocol's).
        finetune_batch_size: Batch of fine-tuning (default: the protocol's).
        log: Receives progress lines.
        finetune_epochs: Fine-tune for this many epochs of each dataset instead (the published
            fine-tuned cells are 200); not together with ``finetune_steps``.

    Raises:
        UsageError: unknown protocol, no dataset under ``data_root``, a checkpoint that does not fit,
            a negative step or epoch count, or both given.
    """
    from pdebench_core.devices import resolve_device

    for flag, value in (("--finetune-steps", finetune_steps), ("--finetune-epochs", finetune_epochs)):
        if value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    if finetune_steps and finetune_epochs:
        raise UsageError("give --finetune-steps or --finetune-epochs, not both")
    tune = bool(finetune_steps or finetune_epochs)
    length = f"{finetune_epochs} epochs" if finetune_epochs else f"{finetune_steps} steps"
    protocol = load_protocol(name)
    found, absent = locate(protocol, data_root)
    model, size = load_model(protocol, checkpoint)
    target = resolve_device(device)
    model = model.to(target)
    rows = {"zero_shot": published_row_for(protocol, "zero_shot", size, published),
            "finetuned": published_row_for(protocol, "finetuned", size, published) if tune else None}
    cells = {kind: published_cells(protocol, row) if row else {} for kind, row in rows.items()}
    results = []
    for located in found:
        log(f"{located.column.key}: evaluating {located.test}")
        result = evaluate_column(model, protocol, located, target, max_trajectories)
        if tune and located.train is None:
            result.notes.append(f"no training files ({located.column.train}): not fine-tuned")
        elif tune:
            log(f"{located.column.key}: fine-tuning {length} on {located.train}")
            tuned = finetune_column(model, protocol, located, finetune_steps, target, finetune_batch_size, log=log,
                                    epochs=finetune_epochs)
            scored = evaluate_column(tuned, protocol, located, target, max_trajectories, finetuned=True)
            result.finetuned, result.n_finetuned = scored.zero_shot, scored.n
        results.append(result)
    recipe = {**protocol.finetune, **({"batch_size": finetune_batch_size} if finetune_batch_size else {})}
    return Reproduction(protocol, str(checkpoint), size, int(finetune_steps), int(finetune_epochs), str(target),
                        rows, cells, results, absent, recipe if tune else {})
