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
from typing import TYPE_CHECKING

from pdebench_core import hookimpl
from pdebench_core.errors import UsageError
from pdebench_core.models import check_dims, folded_sizes, require_positive

if TYPE_CHECKING:  # torch is imported inside the factory, never at plugin import
    import torch.nn as nn

    from pdebench_core.spec import DataSpec

SUPPORTED_DIMS = (1, 2, 3)


@dataclass
class OFormerConfig:
    """Hyperparameters of the OFormer (``model.oformer.<key>``).

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
    heads: int = 4
    ffn_mult: int = 4
    latent_dim: int = 128
    fourier_features: int = 32
    fourier_scale: float = 1.0
    propagator_width: int = 256


PROFILES = {
    "smoke": {"dim": 16, "depth": 1, "heads": 2, "ffn_mult": 2, "latent_dim": 16, "fourier_features": 8,
              "propagator_width": 16},
    "small": {"dim": 64, "depth": 3, "heads": 4, "ffn_mult": 2, "latent_dim": 64, "fourier_features": 16,
              "propagator_width": 128},
    "paper": {"dim": 128, "depth": 8, "heads": 4, "ffn_mult": 4, "latent_dim": 128, "fourier_features": 32,
              "propagator_width": 256},
}


def build(cfg: OFormerConfig, spec: "DataSpec") -> "nn.Module":
    """Build an OFormer for the data described by ``spec``.

    Args:
        cfg: Hyperparameters (an :class:`OFormerConfig` or an omegaconf object alike).
        spec: Dataset description: fields, spatial shape, ``t_in``, ``t_out``.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: On an unsupported number of spatial axes or invalid sizes.
    """
    check_dims(spec, SUPPORTED_DIMS, "oformer")
    require_positive(cfg, "dim", "depth", "heads", "ffn_mult", "latent_dim", "fourier_features", "propagator_width",
                     model="oformer")
    if int(cfg.dim) % int(cfg.heads) or int(cfg.latent_dim) % int(cfg.heads):
        raise UsageError(
            f"model.oformer.heads ({cfg.heads}) must divide dim ({cfg.dim}) and latent_dim ({cfg.latent_dim})"
        )

    from pdeb_oformer.model import OFormer

    return OFormer(
        **folded_sizes(spec),
        dim=int(cfg.dim),
        depth=int(cfg.depth),
        heads=int(cfg.heads),
        ffn_mult=int(cfg.ffn_mult),
        latent_dim=int(cfg.latent_dim),
        fourier_features=int(cfg.fourier_features),
        fourier_scale=float(cfg.fourier_scale),
        propagator_width=int(cfg.propagator_width),
    )


@hookimpl
def register_models(register):
    """Register the ``oformer`` model."""
    register(
        "oformer",
        build,
        config=OFormerConfig,
        profiles=PROFILES,
        description="OFormer: linear-attention encoder, cross-attention query decoder, latent MLP propagator",
        paper="Li, Meidani, Farimani, Transformer for Partial Differential Equations' Operator Learning, TMLR 2023",
        dims=SUPPORTED_DIMS,
    )


__all__ = ["OFormerConfig", "PROFILES", "build", "register_models"]
