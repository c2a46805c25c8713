"""From dataset objects to the model's spec and to batches of training windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec


@dataclass
class Mixture:
    """The datasets of one run, conformed to one model grid and channel count.

    Attributes:
        datasets: ``{name: dataset}`` in the order given on the command line.
        grid: Model grid per spatial axis.
        n_channels: Channel count after padding.
        t_in: Input frames.
        t_out: Frames predicted per model call during training.
        model_spec: The spec handed to the model factory.
    """

    datasets: dict[str, Any]
    grid: tuple[int, ...]
    n_channels: int
    t_in: int
    t_out: int
    model_spec: DataSpec

    def spec_of(self, name: str) -> DataSpec:
        """A dataset's own spec."""
        return self.datasets[name].spec


def plan_mixture(datasets: Mapping[str, Any], t_out: int, resolution: int = 0) -> Mixture:
    """Decide the common grid and channel count of a mixture.

    All datasets must share the number of spatial axes and ``t_in``; grids are
    interpolated to the first dataset's grid (or ``resolution`` per axis) and channels
    padded to the largest count.
    """
    specs = {name: ds.spec for name, ds in datasets.items()}
    first = next(iter(specs.values()))
    dims = {s.ndim for s in specs.values()}
    if len(dims) > 1:
        listing = ", ".join(f"{n} ({s.ndim}D)" for n, s in specs.items())
        raise UsageError(f"datasets of different dimensions cannot share one model here: {listing}; "
                         f"run them separately")
    t_ins = {s.t_in for s in specs.values()}
    if len(t_ins) > 1:
        raise UsageError(f"datasets disagree on t_in ({sorted(t_ins)}); set data.<name>.t_in to one value")
    grid = tuple([resolution] * first.ndim) if resolution else tuple(first.spatial_shape)
    n_channels = max(s.n_channels for s in specs.values())
    widest = max(specs.values(), key=lambda s: s.n_channels)
    if len(specs) == 1:
        model_spec = first.replace(spatial_shape=grid, t_out=t_out)
    else:
        model_spec = DataSpec(
            name="+".join(specs), fields=widest.fields, spatial_shape=grid, t_in=first.t_in, t_out=t_out,
            dt=first.dt, domain=first.domain, boundary=first.boundary,
            params={"datasets": list(specs)},
        )
    return Mixture(dict(datasets), grid, n_channels, first.t_in, t_out, model_spec)


def check_model_supports(card: Mapping[str, Any], model: str, spec: DataSpec) -> None:
    """Refuse data whose dimension the model's card does not list."""
    dims = card.get("dims")
    if dims is not None and spec.ndim not in tuple(dims):
        raise UsageError(
            f"model '{model}' supports {', '.join(f'{d}D' for d in dims)} data, but '{spec.name}' is "
            f"{spec.ndim}D; pick a model that lists {spec.ndim} in 'pdeb models'"
        )


def training_loader(mixture: Mixture, split: str, batch_size: int, seed: int, num_workers: int = 0,
                    rank: int = 0, world_size: int = 1, grad_accum: int = 1, max_per_dataset: int = 0,
                    pin_memory: bool = False):
    """A DataLoader of ``(x, y, mask)`` micro-batches over the mixture, plus its sampler.

    ``batch_size`` is the global batch of one optimizer step (all ranks, all
    accumulation steps); see :class:`MixtureBatchSampler`.
    """
    import torch

    from pdebench_core.data.mixture import MixtureBatchSampler
    from pdebench_core.data.windows import WindowDataset

    parts, weights, groups = [], [], []
    for name, ds in mixture.datasets.items():
        windows = WindowDataset(ds.split(split), mixture.t_in, mixture.t_out, mixture.grid, mixture.n_channels)
        if len(windows) == 0:
            raise UsageError(
                f"dataset '{name}' has no {split} window of {mixture.t_in}+{mixture.t_out} frames; "
                f"generate more frames or lower t_in"
            )
        parts.append(windows)
        weights.append(_weight_of(ds))
        groups.append(ds.spec.ndim)
    sampler = MixtureBatchSampler([len(p) for p in parts], weights, groups, batch_size, seed=seed,
                                  rank=rank, world_size=world_size, grad_accum=grad_accum,
                                  max_per_dataset=max_per_dataset)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.ConcatDataset(parts), batch_sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, persistent_workers=num_workers > 0,
    )
    return loader, sampler


def _weight_of(ds: Any) -> float:
    return float(getattr(ds, "mixture_weight", 1.0))
