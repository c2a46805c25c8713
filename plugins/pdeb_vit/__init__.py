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
from typing import TYPE_CHECKING

from pdebench_core import hookimpl
from pdebench_core.errors import UsageError
from pdebench_core.models import check_dims, folded_sizes, require_positive

if TYPE_CHECKING:  # torch is imported inside the factory, never at plugin import
    import torch.nn as nn

    from pdebench_core.spec import DataSpec

SUPPORTED_DIMS = (1, 2, 3)


@dataclass
class ViTConfig:
    """Hyperparameters of the patch transformer (``model.vit.<key>``).

    Attributes:
        patch_size: Patch edge in grid points; every grid size must be divisible by it.
        dim: Token (embedding) width.
        depth: Number of transformer blocks.
        heads: Attention heads; must divide ``dim``.
        mlp_ratio: Hidden width of each block's MLP as a multiple of ``dim``.
        out_hidden: Channels of the up-sampling head before the last 1x1 layers.
        use_grid: Append the normalised coordinates (i / n along an axis of n points) as input channels.
    """

    patch_size: int = 8
    dim: int = 512
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 1.0
    out_hidden: int = 32
    use_grid: bool = True


PROFILES = {
    "smoke": {"patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0, "out_hidden": 8},
    "small": {"patch_size": 8, "dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "out_hidden": 32},
    "paper": {"patch_size": 8, "dim": 512, "depth": 4, "heads": 4, "mlp_ratio": 1.0, "out_hidden": 32},
}


def build(cfg: ViTConfig, spec: "DataSpec") -> "nn.Module":
    """Build a patch transformer for the data described by ``spec``.

    Args:
        cfg: Hyperparameters (a :class:`ViTConfig` or an omegaconf object alike).
        spec: Dataset description: fields, spatial shape, ``t_in``, ``t_out``.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: On an unsupported number of spatial axes, a grid not divisible
            by the patch size, or invalid sizes.
    """
    check_dims(spec, SUPPORTED_DIMS, "vit")
    require_positive(cfg, "patch_size", "dim", "depth", "heads", "out_hidden", model="vit")
    if float(cfg.mlp_ratio) <= 0:
        raise UsageError(f"model.vit.mlp_ratio must be positive, got {cfg.mlp_ratio}")
    if int(cfg.dim) % int(cfg.heads):
        raise UsageError(f"model.vit.heads ({cfg.heads}) must divide model.vit.dim ({cfg.dim})")
    if any(n % int(cfg.patch_size) for n in spec.spatial_shape):
        raise UsageError(
            f"model 'vit' needs grid sizes divisible by patch_size={cfg.patch_size}; dataset "
            f"'{spec.name}' has {tuple(spec.spatial_shape)} (change model.vit.patch_size or resize the data)"
        )

    from pdeb_vit.model import ViT

    return ViT(
        **folded_sizes(spec),
        grid=tuple(spec.spatial_shape),
        patch_size=int(cfg.patch_size),
        dim=int(cfg.dim),
        depth=int(cfg.depth),
        heads=int(cfg.heads),
        mlp_ratio=float(cfg.mlp_ratio),
        out_hidden=int(cfg.out_hidden),
        use_grid=bool(cfg.use_grid),
    )


@hookimpl
def register_models(register):
    """Register the ``vit`` model."""
    register(
        "vit",
        build,
        config=ViTConfig,
        profiles=PROFILES,
        description="Patch transformer with softmax self-attention (DPOT's attention ablation)",
        paper="Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021; ablation in Hao et al., DPOT, ICML 2024",
        dims=SUPPORTED_DIMS,
    )


__all__ = ["PROFILES", "ViTConfig", "build", "register_models"]
