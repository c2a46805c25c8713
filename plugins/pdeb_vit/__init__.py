"""Patch transformer with softmax self-attention (ViT) for 1D, 2D and 3D data.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021. Here it is DPOT's
attention ablation (Hao et al., ICML 2024): DPOT's patch embedding and
up-sampling head around standard pre-norm transformer blocks, so the only
difference from DPOT is softmax attention over patches in place of the
Fourier-domain AFNO mixer (and no temporal aggregation layer: the input frames
are folded into the channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pdebench_core.model_plugin import folded_model, require_grid_divisible
from pdebench_core.models import require_positive_number
from pdebench_core.profiles import profiles_around_defaults

if TYPE_CHECKING:
    from pdebench_core.spec import DataSpec


@dataclass
class ViTConfig:
    """Hyperparameters of the patch transformer (``model.<key>``).

    Attributes:
        patch_size: Patch edge in grid points; every grid size must be divisible by it.
        dim: Token (embedding) width.
        depth: Number of transformer blocks.
        heads: Attention heads; must divide ``dim``.
        mlp_ratio: Hidden width of each block's MLP as a multiple of ``dim``.
        out_hidden: Channels of the up-sampling head before the last 1x1 layers.
        use_grid: Append the normalised coordinates (i / n along an axis of n points) as input channels.
    """

    patch_size: int = 8  # must divide every grid size
    dim: int = 512
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 1.0
    out_hidden: int = 32
    use_grid: bool = True


# `paper` is the config defaults.
PROFILES = profiles_around_defaults(
    ViTConfig, "paper",
    smoke={"patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "out_hidden": 8},
    small={"patch_size": 8, "dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "out_hidden": 32},
)


def patch_arguments(cfg: ViTConfig, spec: "DataSpec") -> dict[str, Any]:
    """The patch transformer's own checks and the grid its positional embedding is made for.

    Args:
        cfg: Hyperparameters (a :class:`ViTConfig` or an omegaconf object alike).
        spec: Dataset description.

    Returns:
        ``{"grid": spec.spatial_shape}``.

    Raises:
        UsageError: On a grid not divisible by the patch size.
    """
    require_grid_divisible(spec, int(cfg.patch_size), "vit", setting="patch_size",
                           reason=f"patch_size={cfg.patch_size}")
    return {"grid": tuple(spec.spatial_shape)}


build, register_models = folded_model(
    "vit", ViTConfig, PROFILES, "pdeb_vit.model:ViT", derive=patch_arguments,
    check=lambda cfg: require_positive_number(cfg, "mlp_ratio", model="vit"),
    heads_divide=("dim",),
    description="Patch transformer with softmax self-attention (DPOT's attention ablation)",
    paper="Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021; ablation in Hao et al., DPOT, ICML 2024",
)

__all__ = ["PROFILES", "ViTConfig", "build", "patch_arguments", "register_models"]
