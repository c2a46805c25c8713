"""OFormer: operator transformer with an encoder, a query decoder and a latent propagator.

Li, Meidani, Farimani, "Transformer for Partial Differential Equations' Operator
Learning", TMLR 2023 (arXiv:2205.13671). The encoder attends over the input
points (Galerkin-type linear attention), the decoder lets every output point
query the encoding by cross-attention from a Fourier-feature embedding of its
coordinates, and a residual MLP marches the latent state one step per output
frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from pdebench_core.model_plugin import folded_model
from pdebench_core.profiles import profiles_around_defaults


@dataclass
class OFormerConfig:
    """Hyperparameters of the OFormer (``model.<key>``).

    Attributes:
        dim: Token width of the encoder.
        depth: Encoder layers (linear attention plus feed-forward, both residual).
        heads: Attention heads in encoder and decoder; must divide ``dim`` and ``latent_dim``.
        ffn_mult: Feed-forward hidden width as a multiple of the token width.
        latent_dim: Width of the decoder's per-point latent state.
        fourier_features: Random Fourier frequencies used to embed the query
            coordinates (the embedding has ``2 * fourier_features`` inputs).
        fourier_scale: Standard deviation of those frequencies (in cycles per
            unit of the normalised 0..1 coordinates).
        propagator_width: Hidden width of the residual MLP that advances the
            latent state by one frame.
    """

    dim: int = 128
    depth: int = 8
    heads: int = 4  # in encoder and decoder, so it divides dim and latent_dim
    ffn_mult: int = 4
    latent_dim: int = 128
    fourier_features: int = 32
    fourier_scale: float = 1.0
    propagator_width: int = 256


# `paper` is the config defaults.
PROFILES = profiles_around_defaults(
    OFormerConfig, "paper",
    smoke={"dim": 16, "depth": 1, "heads": 2, "ffn_mult": 2, "latent_dim": 16, "fourier_features": 8,
           "propagator_width": 16},
    small={"dim": 64, "depth": 3, "heads": 4, "ffn_mult": 2, "latent_dim": 64, "fourier_features": 16,
           "propagator_width": 128},
)


build, register_models = folded_model(
    "oformer", OFormerConfig, PROFILES, "pdeb_oformer.model:OFormer", heads_divide=("dim", "latent_dim"),
    description="OFormer: linear-attention encoder, cross-attention query decoder, latent MLP propagator",
    paper="Li, Meidani, Farimani, Transformer for Partial Differential Equations' Operator Learning, TMLR 2023",
)

__all__ = ["OFormerConfig", "PROFILES", "build", "register_models"]
