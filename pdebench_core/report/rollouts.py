"""Rolling a finished run's model out again on a few test trajectories, for the report's figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """Rebuild the run (:func:`pdebench_core.rebuild.rebuild`: the run's own workflow steps) and roll out.

    Returns:
        ``({dataset: Rollout}, notes)``; the notes say which weights were used.

    Raises:
        PdebError: The config, data or checkpoint cannot be rebuilt (the caller reports it).
    """
    import torch

    from pdebench_core.data.normalization import to_physical
    from pdebench_core.data.windows import conform
    from pdebench_core.evaluation import rollout
    from pdebench_core.devices import resolve_device
    from pdebench_core.rebuild import rebuild

    rebuilt = rebuild(info.run_dir, device)
    cfg, datasets, mixture, model, notes = (rebuilt.cfg, rebuilt.datasets, rebuilt.mixture, rebuilt.model,
                                             rebuilt.notes)
    notes += changed_data_notes(info, datasets, cfg)
    target = resolve_device(device)
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


def changed_data_notes(info: RunInfo, datasets: dict[str, Any], cfg: Any) -> list[str]:
    """A note per dataset whose content hash differs from the one its result row recorded: the
    figures then show data the metrics were not measured on (a file changed under its path)."""
    from pdebench_core.data.identity import dataset_identity

    recorded = {str(row.get("dataset")): row.get("dataset_hash") for row in info.rows if row.get("dataset_hash")}
    notes = []
    for name, dataset in datasets.items():
        if name not in recorded:
            continue
        now = dataset_identity(dataset, (cfg.data.get(name) or {}).get("path")).hash
        if now != recorded[name]:
            notes.append(f"{name}: the data changed since the run (hash {recorded[name][:8]} then, {now[:8]} now); "
                         f"the figures show the data as it is now, the metrics were measured on the old data")
    return notes
