"""From dataset objects to the model's spec and to batches of training windows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec

if TYPE_CHECKING:
    from pdebench_core.registry import Component


@dataclass
class Group:
    """Datasets sharing a number of spatial axes, conformed to one grid and channel count.

    Attributes:
        ndim: Spatial dimensions.
        grid: Model grid per spatial axis.
        n_channels: Channel count after padding.
        spec: The spec a model sees for this group.
    """

    ndim: int
    grid: tuple[int, ...]
    n_channels: int
    spec: DataSpec


@dataclass
class Mixture:
    """The datasets of one run and how they are fed to one model.

    Datasets of the same dimension are interpolated to one grid and padded to one
    channel count. Datasets of different dimensions form separate groups; only a model
    registered with ``mixed_dims=True`` accepts several groups (batches never mix them).

    Attributes:
        datasets: ``{name: dataset}`` in the order given on the command line.
        groups: ``{ndim: Group}``.
        t_in: Input frames.
        t_out: Frames predicted per model call during training.
        model_spec: The spec handed to the model factory: the first group's spec, with
            ``groups`` holding every group's spec when there are several.
        weights: Sampling weight per dataset (``data.<name>.weight``).
    """

    datasets: dict[str, Any]
    groups: dict[int, Group]
    t_in: int
    t_out: int
    model_spec: DataSpec
    weights: dict[str, float] = field(default_factory=dict)

    def group_of(self, name: str) -> Group:
        """The group a dataset belongs to."""
        return self.groups[self.datasets[name].spec.ndim]

    @property
    def grid(self) -> tuple[int, ...]:
        """Grid of the first group (the only one for single-dimension runs)."""
        return next(iter(self.groups.values())).grid

    @property
    def n_channels(self) -> int:
        """Channel count of the first group."""
        return next(iter(self.groups.values())).n_channels


def plan_mixture(datasets: Mapping[str, Any], t_out: int, resolution: int = 0,
                 weights: Mapping[str, float] | None = None) -> Mixture:
    """Decide grids and channel counts of a mixture.

    All datasets must share ``t_in``. Within a group of equal dimension, grids are
    interpolated to the first dataset's grid (or ``resolution`` per axis) and channels
    padded to the largest count.
    """
    specs = {name: ds.spec for name, ds in datasets.items()}
    t_ins = {s.t_in for s in specs.values()}
    if len(t_ins) > 1:
        raise UsageError(f"datasets disagree on t_in ({sorted(t_ins)}); set data.<name>.t_in to one value")
    by_ndim: dict[int, list[DataSpec]] = {}
    for spec in specs.values():
        by_ndim.setdefault(spec.ndim, []).append(spec)
    groups: dict[int, Group] = {}
    for ndim, members in by_ndim.items():
        first = members[0]
        grid = tuple([resolution] * ndim) if resolution else tuple(first.spatial_shape)
        widest = max(members, key=lambda s: s.n_channels)
        if len(members) == 1:
            spec = first.replace(spatial_shape=grid, t_out=t_out)
        else:
            spec = DataSpec(
                name="+".join(s.name for s in members), fields=widest.fields, spatial_shape=grid,
                t_in=first.t_in, t_out=t_out, dt=first.dt, domain=first.domain, boundary=first.boundary,
                params={"datasets": [s.name for s in members]},
            )
        groups[ndim] = Group(ndim, grid, widest.n_channels, spec)
    model_spec = next(iter(groups.values())).spec
    if len(groups) > 1:
        model_spec = model_spec.replace(groups=tuple(g.spec for g in groups.values()))
    return Mixture(dict(datasets), groups, next(iter(t_ins)), t_out, model_spec,
                   {name: float((weights or {}).get(name, 1.0)) for name in datasets})


def pad_for_model(mixture: Mixture, model: Any) -> Mixture:
    """The mixture with each group padded to the channels the model pads its inputs to.

    A model that fills absent channels itself (DPOT reads a fixed channel count and pads
    with ones) says how many through a method ``padded_channels(ndim) -> int``. Batches then
    carry those padding channels, as the official DPOT pipeline's do: the loss covers them
    when ``train.loss_on_padding`` is on, and input noise reaches them. Without the method,
    or where it returns no more than the data holds, the mixture is unchanged.
    """
    padded = getattr(model, "padded_channels", None)
    if not callable(padded):
        return mixture
    groups = {ndim: replace(group, n_channels=max(group.n_channels, int(padded(ndim) or 0)))
              for ndim, group in mixture.groups.items()}
    return replace(mixture, groups=groups)


def check_mixture_fits(model: "Component", mixture: Mixture) -> None:
    """Refuse data the registered model does not accept (its ``dims``, ``mixed_dims``)."""
    for dataset in mixture.datasets.values():
        check_model_supports(model, dataset.spec)
    if len(mixture.groups) > 1 and not model.mixed_dims:
        listing = ", ".join(f"{n} ({ds.spec.ndim}D)" for n, ds in mixture.datasets.items())
        raise UsageError(f"model '{model.name}' cannot train on datasets of different dimensions at once: {listing}; "
                         f"run them separately or use a model with mixed-dimension support (dpot)")


def check_model_supports(model: "Component", spec: DataSpec) -> None:
    """Refuse data whose dimension the registered model's ``dims`` do not list."""
    if not model.supports(spec.ndim):
        raise UsageError(
            f"model '{model.name}' supports {', '.join(f'{d}D' for d in model.dims)} data, but '{spec.name}' is "
            f"{spec.ndim}D; pick a model that lists {spec.ndim} in 'pdeb models'"
        )


def training_loader(mixture: Mixture, split: str, batch_size: int, seed: int, num_workers: int = 0,
                    prefetch_factor: int = 2,
                    rank: int = 0, world_size: int = 1, grad_accum: int = 1, max_per_dataset: int = 0,
                    pin_memory: bool = False, sampling: str = "window", t_ar: int = 1, device=None):
    """A DataLoader of ``(x, y, mask)`` micro-batches over the mixture, plus its sampler.

    ``batch_size`` is the global batch of one optimizer step (all ranks, all
    accumulation steps); see :class:`MixtureBatchSampler`, which also explains
    ``sampling`` (``window`` or ``trajectory``). Each window holds ``t_in`` input frames
    and ``t_ar * t_out`` target frames, enough for ``t_ar`` auto-regressive calls. With
    ``device``, every window is served from tensors on that device
    (:mod:`pdebench_core.data.device_windows`) instead of a DataLoader.
    """
    import torch

    from pdebench_core.data.mixture import MixtureBatchSampler
    from pdebench_core.data.windows import WindowDataset

    targets = mixture.t_out * t_ar
    parts, weights, groups = [], [], []
    for name, ds in mixture.datasets.items():
        group = mixture.group_of(name)
        windows = WindowDataset(ds.split(split), mixture.t_in, targets, group.grid, group.n_channels)
        if len(windows) == 0:
            raise UsageError(
                f"dataset '{name}' has no {split} window of {mixture.t_in}+{targets} frames "
                f"(t_in + task.t_ar x train.t_out); generate more frames, or lower t_in or task.t_ar"
            )
        parts.append(windows)
        weights.append(mixture.weights.get(name, 1.0))
        groups.append(ds.spec.ndim)
    sampler = MixtureBatchSampler([len(p) for p in parts], weights, groups, batch_size, seed=seed,
                                  rank=rank, world_size=world_size, grad_accum=grad_accum,
                                  max_per_dataset=max_per_dataset, trajectories=[p.n_trajectories for p in parts],
                                  sampling=sampling)
    starved = sampler.starved_groups()
    if starved and len(set(groups)) > 1:  # one group alone: the sampler says so when it yields nothing
        names = [name for name, ds in mixture.datasets.items() if ds.spec.ndim == starved[0]]
        count = sum(sampler.samples_per_epoch(k) for k, group in enumerate(groups) if group == starved[0])
        raise UsageError(f"the {starved[0]}D data ({', '.join(names)}) gives {count} training windows per epoch, "
                         f"fewer than one batch (train.batch_size={batch_size}), and batches never mix "
                         f"dimensions: the model's {starved[0]}D part would never train; lower train.batch_size, "
                         f"or add {starved[0]}D trajectories (n_train) or weight")
    if device is not None:  # train.data_on_device: windows gathered where the model runs
        from pdebench_core.data.device_windows import DeviceLoader, DeviceWindows

        return DeviceLoader(DeviceWindows(parts, device), sampler), sampler
    if num_workers > 0:
        quiet_resource_sharer_resets()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.ConcatDataset(parts), batch_sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
    return loader, sampler


def quiet_resource_sharer_resets() -> None:
    """Leave out the traceback multiprocessing prints when a loader worker's connection is cut.

    A worker hands batches over through multiprocessing's resource sharer, whose serving thread
    reports any error through ``sys.excepthook`` itself. When a run is stopped (Ctrl-C, a
    scheduler's SIGTERM) its connections are reset mid-transfer and that thread would print a
    ``ConnectionResetError`` traceback above pdeb's own line; the stop is reported by pdeb.
    Installed once, before the workers are forked, so they inherit it; any other exception
    still reaches the previous hook.
    """
    import os
    import sys
    import traceback

    previous = sys.excepthook
    if getattr(previous, "drops_resource_sharer_resets", False):
        return
    sharer = os.path.join("multiprocessing", "resource_sharer.py")

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        if issubclass(kind, (ConnectionError, EOFError)) and any(
                frame.filename.endswith(sharer) for frame in traceback.extract_tb(tb)):
            return
        previous(kind, value, tb)

    hook.drops_resource_sharer_resets = True
    sys.excepthook = hook
