"""What a dataset says about itself, and what a model factory is told."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class DataSpec:
    """Self-description of a PDE dataset, handed to model factories.

    Attributes:
        name: Registered dataset name (``"ns2d"``).
        fields: Channel names in order, e.g. ``("vorticity",)``; ``C == len(fields)``.
        spatial_shape: Grid size per spatial axis, e.g. ``(64, 64)``.
        t_in: Frames the model receives.
        t_out: Frames the model predicts per call.
        dt: Time between stored frames.
        domain: Physical extent per spatial axis, e.g. ``((0, 1), (0, 1))``.
        boundary: Boundary condition name (``"periodic"``, ``"neumann"``, ...).
        params: PDE parameters (viscosity, Mach number, ...).
        horizon: Frames predicted after the first ``t_in`` when rolling out for
            evaluation; ``None`` means every remaining frame of the trajectory.
        n_frames: Frames per stored trajectory.
        channel_mask: Which channels are real (``True``) and which are padding;
            ``None`` means all are real.
        groups: When one model serves datasets of several dimensions (a model
            registered with ``mixed_dims=True``), the spec of each dimension's group,
            in the order of the mixture; empty otherwise.
    """

    name: str
    fields: tuple[str, ...]
    spatial_shape: tuple[int, ...]
    t_in: int = 10
    t_out: int = 1
    dt: float = 1.0
    domain: tuple[tuple[float, float], ...] | None = None
    boundary: str = "periodic"
    params: Mapping[str, Any] = field(default_factory=dict)
    horizon: int | None = None
    n_frames: int | None = None
    channel_mask: tuple[bool, ...] | None = None
    groups: tuple["DataSpec", ...] = ()

    @property
    def n_channels(self) -> int:
        """Number of channels ``C``."""
        return len(self.fields)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.spatial_shape)

    def replace(self, **changes: Any) -> "DataSpec":
        """Return a copy with some attributes changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["params"] = dict(self.params)
        out["groups"] = [group.to_dict() for group in self.groups]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DataSpec":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("fields", "spatial_shape", "channel_mask"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        if kwargs.get("domain") is not None:
            kwargs["domain"] = tuple(tuple(d) for d in kwargs["domain"])
        kwargs["params"] = dict(kwargs.get("params") or {})
        kwargs["groups"] = tuple(cls.from_dict(g) for g in kwargs.get("groups") or ())
        legacy = kwargs["params"].pop("groups", None)
        if legacy and not kwargs["groups"]:  # specs saved when the groups were a parameter
            kwargs["groups"] = tuple(_legacy_group(kwargs, shape) for shape in legacy.values())
        return cls(**kwargs)


def _legacy_group(base: Mapping[str, Any], shape: Mapping[str, Any]) -> DataSpec:
    """One group of an old ``params["groups"]`` entry: the base spec on the group's grid and fields."""
    fields = {**base, "spatial_shape": tuple(shape["spatial_shape"]), "fields": tuple(shape["fields"]),
              "params": {}, "channel_mask": None, "domain": None, "groups": ()}
    return DataSpec(**fields)
