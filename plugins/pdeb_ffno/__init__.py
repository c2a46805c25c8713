"""Factorised Fourier Neural Operator (F-FNO) for 1D, 2D and 3D data.

Tran, Mathews, Xie, Ong, "Factorized Fourier Neural Operators", ICLR 2023. Each
layer mixes channels per Fourier mode along one axis at a time and sums the
axes, so its weights grow with ``d * modes`` instead of ``modes ** d``; a
residual feed-forward block follows, and the spectral weights may be shared by
all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pdebench_core import hookimpl
from pdebench_core.models import check_dims, check_min_grid, folded_sizes, require_positive

if TYPE_CHECKING:  # torch is imported inside the factory, never at plugin import
    import torch.nn as nn

    from pdebench_core.spec import DataSpec

SUPPORTED_DIMS = (1, 2, 3)


@dataclass
class FFNOConfig:
    """Hyperparameters of the F-FNO (``model.ffno.<key>``).

    Attributes:
        width: Channels of the hidden representation.
        modes: Lowest Fourier modes kept along each axis by the per-axis spectral
            convolutions (clipped to ``n // 2 + 1`` of the grid).
        n_layers: Number of factorised Fourier layers.
        ff_mult: Hidden width of each layer's feed-forward block, as a multiple of ``width``.
        share_weights: One set of per-axis spectral weights used by every layer
            (the paper's weight-sharing variant); the feed-forward blocks stay per layer.
        projection_width: Hidden width of the two-layer output projection.
        use_grid: Append the normalised coordinates (i / n along an axis of n points) as input channels.
    """

    width: int = 64
    modes: int = 16
    n_layers: int = 8
    ff_mult: int = 4
    share_weights: bool = False
    projection_width: int = 128
    use_grid: bool = True


PROFILES = {
    "smoke": {"width": 8, "modes": 4, "n_layers": 2, "ff_mult": 2, "projection_width": 16},
    "small": {"width": 32, "modes": 12, "n_layers": 4, "ff_mult": 2, "projection_width": 64},  # CPU-sized
    "paper": {"width": 64, "modes": 16, "n_layers": 8, "ff_mult": 4, "projection_width": 128},  # the defaults
}


def build(cfg: FFNOConfig, spec: "DataSpec") -> "nn.Module":
    """Build an F-FNO for the data described by ``spec``.

    Args:
        cfg: Hyperparameters (a :class:`FFNOConfig` or an omegaconf object alike).
        spec: Dataset description: fields, spatial shape, ``t_in``, ``t_out``.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: On an unsupported number of spatial axes or invalid sizes.
    """
    check_dims(spec, SUPPORTED_DIMS, "ffno")
    require_positive(cfg, "width", "modes", "n_layers", "ff_mult", "projection_width", model="ffno")
    check_min_grid(spec, "ffno")

    from pdeb_ffno.model import FFNO

    modes = tuple(min(int(cfg.modes), n // 2 + 1) for n in spec.spatial_shape)
    return FFNO(
        **folded_sizes(spec),
        width=int(cfg.width),
        modes=modes,
        n_layers=int(cfg.n_layers),
        ff_mult=int(cfg.ff_mult),
        share_weights=bool(cfg.share_weights),
        projection_width=int(cfg.projection_width),
        use_grid=bool(cfg.use_grid),
    )


@hookimpl
def register_models(register):
    """Register the ``ffno`` model."""
    register(
        "ffno",
        build,
        config=FFNOConfig,
        profiles=PROFILES,
        description="Factorised FNO: per-axis spectral mixing, residual feed-forward, optional weight sharing",
        paper="Tran et al., Factorized Fourier Neural Operators, ICLR 2023",
        dims=SUPPORTED_DIMS,
    )


__all__ = ["FFNOConfig", "PROFILES", "build", "register_models"]
