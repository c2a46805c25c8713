"""Rolling a finished run's model out again on a few test trajectories, for the report's figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .provenance import RunInfo


@dataclass
class Rollout:
    """Predictions and targets of a few test trajectories of one dataset.

    Attributes:
        dataset: Dataset name.
        fields: Channel names.
        pred: ``(B, steps, *S, C)`` numpy array.
        true: Same shape.
        t_in: Frames given to the model before the rollout.
    """

    dataset: str
    fields: list[str]
    pred: Any
    true: Any
    t_in: int


def rerun_rollouts(info: RunInfo, n_trajectories: int = 2, device: str = "cpu") -> tuple[dict[str, Rollout], list[str]]:
    """Rebuild the run's datasets and model from its config, load its weights and roll out.

    Returns:
        ``({dataset: Rollout}, notes)``; the notes say which weights were used.

    Raises:
        PdebError: The config, data or checkpoint cannot be rebuilt (the caller reports it).
    """
    import torch

    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.data.pipeline import plan_mixture
    from pdebench_core.data.normalization import to_physical
    from pdebench_core.data.windows import conform
    from pdebench_core.evaluation import rollout
    from pdebench_core.rundir import RunDir
    from pdebench_core.spec import DataSpec
    from pdebench_core.weights import resolve_checkpoint, state_dict_of

    cfg = build_config(config_file=RunDir(info.run_dir).config_file)
    datasets = {name: _dataset(name, section) for name, section in cfg.data.items()}
    mixture = plan_mixture(datasets, t_out=int(cfg.train.t_out), resolution=int(cfg.train.resolution))
    notes = []
    state = None
    if info.checkpoint is not None:
        state = _load_state(info.checkpoint)
        notes.append(f"weights: {info.checkpoint.relative_to(info.run_dir)}")
    elif cfg.task.get("checkpoint"):
        path = resolve_checkpoint(str(cfg.task.checkpoint))
        state = _load_state(path)
        notes.append(f"weights: {path} (task.checkpoint)")
    spec = mixture.model_spec
    if state is not None and isinstance(state.get("spec"), Mapping):
        spec = DataSpec.from_dict(state["spec"])
    model = plugins.get("model", cfg.model.name).factory(cfg.model, spec)
    if state is not None:
        model.load_state_dict(state_dict_of(state))
    elif any(p.requires_grad for p in model.parameters()):
        notes.append("no checkpoint: the model was rolled out as built from its config (untrained weights "
                     "unless the model loads them itself)")
    else:
        notes.append("no checkpoint: the model has no trained weights (e.g. persistence); rolled out as built")
    target = torch.device(device)
    model = model.to(target).eval()
    out = {}
    split = str(cfg.eval.split)
    for name, dataset in datasets.items():
        trajectories = dataset.split(split)
        count = min(int(n_trajectories), len(trajectories))
        if count == 0:
            notes.append(f"{name}: the {split} split is empty; nothing to roll out")
            continue
        real, group = dataset.spec.n_channels, mixture.group_of(name)
        batch = torch.stack([conform(trajectories[i], group.grid, group.n_channels)
                             for i in range(count)]).to(target)  # (B, T, *S, C)
        mask = torch.arange(group.n_channels, device=target) < real  # padded channels are never fed back
        horizon = int(cfg.eval.horizon) or int(dataset.spec.horizon or 0)
        available = batch.shape[1] - mixture.t_in
        steps = available if not horizon else min(horizon, available)
        if steps <= 0:
            notes.append(f"{name}: trajectories are too short to roll out")
            continue
        pred = rollout(model, batch[:, :mixture.t_in], steps, mixture.t_out, str(cfg.eval.precision),
                       channel_mask=mask)  # (B, steps, *S, C)
        true = batch[:, mixture.t_in:mixture.t_in + steps]  # (B, steps, *S, C)
        norm = getattr(dataset, "normalization", None)  # figures show physical values
        pred, true = to_physical(pred, norm), to_physical(true, norm)
        out[name] = Rollout(name, list(dataset.spec.fields), pred[..., :real].cpu().numpy(),
                            true[..., :real].cpu().numpy(), mixture.t_in)
    return out, notes


def _load_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``, also accepting a ``TorchVersion`` (a ``str``
    subclass) among its version information, as checkpoints of earlier pdeb versions stored."""
    import torch

    from pdebench_core.checkpoint import load_checkpoint

    allowed = [torch.torch_version.TorchVersion]
    with torch.serialization.safe_globals(allowed):
        return load_checkpoint(path)


def _dataset(name: str, section: Any):
    """A run's dataset as it trained on it (normalised when ``data.<name>.normalize`` was set)."""
    from pdebench_core import plugins

    dataset = plugins.get("dataset", name).factory(section)
    if section.get("normalize"):
        from pdebench_core.data.normalization import normalized

        dataset = normalized(dataset)
    return dataset
