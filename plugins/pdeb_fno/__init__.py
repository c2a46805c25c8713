"""Fourier Neural Operator (FNO) for 1D, 2D and 3D data.

Li et al., "Fourier Neural Operator for Parametric Partial Differential
Equations", ICLR 2021. The input frames and channels are folded into the lifted
channel dimension, as in the paper's Navier-Stokes experiments; the model then
predicts ``t_out`` frames at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pdebench_core.errors import UsageError
from pdebench_core.model_plugin import folded_model
from pdebench_core.models import check_min_grid
from pdebench_core.profiles import profiles_around_defaults

if TYPE_CHECKING:
    from pdebench_core.spec import DataSpec


@dataclass
class FNOConfig:
    """Hyperparameters of the FNO (``model.<key>``).

    Attributes:
        width: Channels of the hidden representation after lifting.
        modes: Fourier modes kept per spatial axis. On every axis but the last the
            ``modes`` lowest positive and the ``modes`` lowest negative
            frequencies are kept; on the last (real-FFT) axis the ``modes`` lowest
            non-negative ones. Clipped to what the data grid holds.
        n_layers: Number of Fourier layers (spectral convolution plus pointwise
            linear skip, GELU after every layer but the last).
        projection_width: Hidden width of the two-layer pointwise projection
            from ``width`` to ``t_out * C`` outputs.
        padding: Zero grid points appended to the end of every spatial axis
            before the Fourier layers and cropped after them; use a few for
            non-periodic boundaries, 0 for periodic data.
        use_grid: Append the normalised coordinates (i / n along an axis of n points) as extra
            input channels.
    """

    width: int = 20
    modes: int = 12
    n_layers: int = 4
    projection_width: int = 128
    padding: int = 0  # periodic data needs none; non-periodic data a few points
    use_grid: bool = True


# `small` and `paper` are the config defaults: the FNO paper's Navier-Stokes setting.
PROFILES = profiles_around_defaults(
    FNOConfig, "paper",
    smoke={"width": 8, "modes": 4, "n_layers": 2, "projection_width": 16},
    small={},
)


def fitted_modes(modes: int, grid: tuple[int, ...]) -> tuple[int, ...]:
    """Modes per axis that a grid of size ``grid`` can hold.

    Args:
        modes: Requested modes per axis.
        grid: Spatial grid size, padding included.

    Returns:
        ``min(modes, n // 2)`` on every axis but the last (so the positive and
        negative frequency blocks never overlap) and ``min(modes, n // 2 + 1)``
        on the last one (the non-negative half of a real FFT).
    """
    return tuple(min(modes, n // 2) for n in grid[:-1]) + (min(modes, grid[-1] // 2 + 1),)


def check_padding(cfg: FNOConfig) -> None:
    """Refuse a negative ``padding``, before any data is made."""
    if int(cfg.padding) < 0:
        raise UsageError(f"model.padding must be >= 0, got {cfg.padding}")


def padded_arguments(cfg: FNOConfig, spec: "DataSpec") -> dict[str, Any]:
    """The FNO's own checks and the modes per axis that the padded grid holds.

    Args:
        cfg: Hyperparameters (an :class:`FNOConfig` or an omegaconf object alike).
        spec: Dataset description.

    Returns:
        ``{"modes": ...}`` from :func:`fitted_modes` on the grid plus ``padding``.

    Raises:
        UsageError: On a grid too coarse for the spectral layers.
    """
    check_min_grid(spec, "fno", padding=int(cfg.padding))
    grid = tuple(n + int(cfg.padding) for n in spec.spatial_shape)
    return {"modes": fitted_modes(int(cfg.modes), grid)}


build, register_models = folded_model(
    "fno", FNOConfig, PROFILES, "pdeb_fno.model:FNO", derive=padded_arguments, check=check_padding,
    positive=("width", "modes", "n_layers", "projection_width"),  # padding may be 0
    description="Fourier Neural Operator: lift, spectral convolutions with pointwise skips, project",
    paper="Li et al., Fourier Neural Operator for Parametric Partial Differential Equations, ICLR 2021",
)

__all__ = ["FNOConfig", "PROFILES", "build", "check_padding", "fitted_modes", "padded_arguments", "register_models"]
