"""Factorised Fourier Neural Operator (F-FNO) for 1D, 2D and 3D data.

Tran, Mathews, Xie, Ong, "Factorized Fourier Neural Operators", ICLR 2023. Each
layer mixes channels per Fourier mode along one axis at a time and sums the
axes, so its weights grow with ``d * modes`` instead of ``modes ** d``; a
residual feed-forward block follows, and the spectral weights may be shared by
all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pdebench_core.model_plugin import folded_model
from pdebench_core.models import check_min_grid

if TYPE_CHECKING:
    from pdebench_core.spec import DataSpec


@dataclass
class FFNOConfig:
    """Hyperparameters of the F-FNO (``model.<key>``).

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


def fitted_arguments(cfg: FFNOConfig, spec: "DataSpec") -> dict[str, Any]:
    """The F-FNO's own check and the modes per axis that ``spec``'s grid holds.

    Args:
        cfg: Hyperparameters (a :class:`FFNOConfig` or an omegaconf object alike).
        spec: Dataset description.

    Returns:
        ``{"modes": ...}``: ``cfg.modes`` clipped to ``n // 2 + 1`` on every axis of ``n`` points.

    Raises:
        UsageError: On a grid with fewer than two points on an axis.
    """
    check_min_grid(spec, "ffno")
    return {"modes": tuple(min(int(cfg.modes), n // 2 + 1) for n in spec.spatial_shape)}


build, register_models = folded_model(
    "ffno", FFNOConfig, PROFILES, "pdeb_ffno.model:FFNO", derive=fitted_arguments,
    description="Factorised FNO: per-axis spectral mixing, residual feed-forward, optional weight sharing",
    paper="Tran et al., Factorized Fourier Neural Operators, ICLR 2023",
)

__all__ = ["FFNOConfig", "PROFILES", "build", "fitted_arguments", "register_models"]
