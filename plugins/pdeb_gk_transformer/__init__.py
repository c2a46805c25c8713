"""Galerkin Transformer: linear, softmax-free attention over grid points.

Cao, "Choose a Transformer: Fourier or Galerkin", NeurIPS 2021. Every grid point
is a token; the Galerkin-type attention ``Q (LN(K)^T LN(V)) / n`` costs
``O(n d^2)`` instead of ``O(n^2 d)``, so whole fields of thousands of points
fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from pdebench_core.model_plugin import folded_model
from pdebench_core.profiles import profiles_around_defaults


@dataclass
class GKTransformerConfig:
    """Hyperparameters of the Galerkin Transformer (``model.<key>``).

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
    heads: int = 4  # each head keeps a (dim / heads)^2 matrix K^T V / n
    ffn_mult: int = 4
    decoder_width: int = 256
    use_grid: bool = True


# `paper` is the config defaults.
PROFILES = profiles_around_defaults(
    GKTransformerConfig, "paper",
    smoke={"dim": 16, "depth": 1, "heads": 2, "ffn_mult": 2, "decoder_width": 16},
    small={"dim": 64, "depth": 4, "heads": 4, "ffn_mult": 2, "decoder_width": 128},
)


build, register_models = folded_model(
    "gk-transformer", GKTransformerConfig, PROFILES, "pdeb_gk_transformer.model:GalerkinTransformer",
    heads_divide=("dim",),
    description="Galerkin Transformer: softmax-free linear attention with normalised keys and values",
    paper="Cao, Choose a Transformer: Fourier or Galerkin, NeurIPS 2021",
)

__all__ = ["GKTransformerConfig", "PROFILES", "build", "register_models"]
