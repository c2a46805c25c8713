"""Persistence baseline: the last input frame, repeated.

The forecast every learned solver must beat. It has no parameters and needs no
training; its error measures how much the solution changes over the evaluation
horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pdebench_core.model_plugin import ALL_DIMS, model_registration
from pdebench_core.models import check_dims

if TYPE_CHECKING:  # torch is imported inside the factory, never at plugin import
    import torch.nn as nn

    from pdebench_core.spec import DataSpec


@dataclass
class PersistenceConfig:
    """Persistence has no hyperparameters; the empty section ``model.persistence``
    exists so it is configured like every other model."""


def build(cfg: PersistenceConfig, spec: "DataSpec") -> "nn.Module":
    """Build the persistence model for ``spec``.

    Args:
        cfg: The (empty) configuration.
        spec: Dataset description; ``t_out`` and the number of spatial axes are used.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: If the data has an unsupported number of spatial axes.
    """
    check_dims(spec, ALL_DIMS, "persistence")
    from pdeb_persistence.model import Persistence

    return Persistence(t_out=spec.t_out, ndim=spec.ndim)


register_models = model_registration(
    "persistence", build, PersistenceConfig, {"smoke": {}, "small": {}, "paper": {}},
    description="Repeats the last input frame t_out times; no parameters, no training.",
    paper="Persistence (naive) forecast, the floor every PDE surrogate must beat",
)


__all__ = ["PersistenceConfig", "build", "register_models"]
