"""Galerkin Transformer: linear, softmax-free attention over grid points.

Cao, "Choose a Transformer: Fourier or Galerkin", NeurIPS 2021. Every grid point
is a token; the Galerkin-type attention ``Q (LN(K)^T LN(V)) / n`` costs
``O(n d^2)`` instead of ``O(n^2 d)``, so whole fields of thousands of points
fit.
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
class GKTransformerConfig:
    """Hyperparameters of the Galerkin Transformer (``model.gk-transformer.<key>``).

    Attributes:
        dim: Token width.
        depth: Encoder layers (Galerkin attention plus feed-forward, both residual).
        heads: Attention heads; must divide ``dim``.
        ffn_mult: Hidden width of each feed-forward block as a multiple of ``dim``.
        decoder_width: Hidden width of the pointwise two-layer decoder.
        use_grid: Append the normalised coordinates (0..1 per axis) to every token.
    """

    dim: int = 128
    depth: int = 8
    heads: int = 4
    ffn_mult: int = 4
    decoder_width: int = 256
    use_grid: bool = True


PROFILES = {
    "smoke": {"dim": 16, "depth": 1, "heads": 2, "ffn_mult": 2, "decoder_width": 16},
    "small": {"dim": 64, "depth": 4, "heads": 4, "ffn_mult": 2, "decoder_width": 128},
    "paper": {"dim": 128, "depth": 8, "heads": 4, "ffn_mult": 4, "decoder_width": 256},
}


def build(cfg: GKTransformerConfig, spec: "DataSpec") -> "nn.Module":
    """Build a Galerkin Transformer for the data described by ``spec``.

    Args:
        cfg: Hyperparameters (a :class:`GKTransformerConfig` or an omegaconf object alike).
        spec: Dataset description: fields, spatial shape, ``t_in``, ``t_out``.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: On an unsupported number of spatial axes or invalid sizes.
    """
    check_dims(spec, SUPPORTED_DIMS, "gk-transformer")
    require_positive(cfg, "dim", "depth", "heads", "ffn_mult", "decoder_width", model="gk-transformer")
    if int(cfg.dim) % int(cfg.heads):
        raise UsageError(f"model.gk-transformer.heads ({cfg.heads}) must divide dim ({cfg.dim})")

    from pdeb_gk_transformer.model import GalerkinTransformer

    return GalerkinTransformer(
        **folded_sizes(spec),
        dim=int(cfg.dim),
        depth=int(cfg.depth),
        heads=int(cfg.heads),
        ffn_mult=int(cfg.ffn_mult),
        decoder_width=int(cfg.decoder_width),
        use_grid=bool(cfg.use_grid),
    )


@hookimpl
def register_models(register):
    """Register the ``gk-transformer`` model."""
    register(
        "gk-transformer",
        build,
        config=GKTransformerConfig,
        profiles=PROFILES,
        description="Galerkin Transformer: softmax-free linear attention with normalised keys and values",
        paper="Cao, Choose a Transformer: Fourier or Galerkin, NeurIPS 2021",
        dims=SUPPORTED_DIMS,
    )


__all__ = ["GKTransformerConfig", "PROFILES", "build", "register_models"]
