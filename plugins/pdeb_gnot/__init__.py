"""GNOT: General Neural Operator Transformer.

Hao et al., "GNOT: A General Neural Operator Transformer for Operator
Learning", ICML 2023. Output points (queries, embedded from their coordinates)
cross-attend to the input function's points and then to each other with
normalised linear attention; every feed-forward layer is a soft mixture of
experts whose gate depends on the point's coordinates (geometric gating).
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
class GNOTConfig:
    """Hyperparameters of GNOT (``model.gnot.<key>``).

    Attributes:
        dim: Token width.
        depth: Blocks; each is cross-attention, mixture-of-experts feed-forward,
            self-attention, mixture-of-experts feed-forward (all pre-norm, residual).
        heads: Attention heads; must divide ``dim``.
        n_experts: Expert feed-forward networks per mixture.
        ffn_mult: Hidden width of each expert as a multiple of ``dim``.
        gate_width: Hidden width of the coordinate-based gating networks.
    """

    dim: int = 128
    depth: int = 3
    heads: int = 4
    n_experts: int = 3
    ffn_mult: int = 2
    gate_width: int = 128


PROFILES = {
    "smoke": {"dim": 16, "depth": 1, "heads": 2, "n_experts": 2, "ffn_mult": 2, "gate_width": 8},
    "small": {"dim": 48, "depth": 2, "heads": 4, "n_experts": 2, "ffn_mult": 2, "gate_width": 32},
    "paper": {"dim": 128, "depth": 3, "heads": 4, "n_experts": 3, "ffn_mult": 2, "gate_width": 128},
}


def build(cfg: GNOTConfig, spec: "DataSpec") -> "nn.Module":
    """Build a GNOT for the data described by ``spec``.

    Args:
        cfg: Hyperparameters (a :class:`GNOTConfig` or an omegaconf object alike).
        spec: Dataset description: fields, spatial shape, ``t_in``, ``t_out``.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: On an unsupported number of spatial axes or invalid sizes.
    """
    check_dims(spec, SUPPORTED_DIMS, "gnot")
    require_positive(cfg, "dim", "depth", "heads", "n_experts", "ffn_mult", "gate_width", model="gnot")
    if int(cfg.dim) % int(cfg.heads):
        raise UsageError(f"model.gnot.heads ({cfg.heads}) must divide dim ({cfg.dim})")

    from pdeb_gnot.model import GNOT

    return GNOT(
        **folded_sizes(spec),
        dim=int(cfg.dim),
        depth=int(cfg.depth),
        heads=int(cfg.heads),
        n_experts=int(cfg.n_experts),
        ffn_mult=int(cfg.ffn_mult),
        gate_width=int(cfg.gate_width),
    )


@hookimpl
def register_models(register):
    """Register the ``gnot`` model."""
    register(
        "gnot",
        build,
        config=GNOTConfig,
        profiles=PROFILES,
        description="GNOT: normalised linear cross/self-attention with coordinate-gated mixture-of-experts FFNs",
        paper="Hao et al., GNOT: A General Neural Operator Transformer for Operator Learning, ICML 2023",
        dims=SUPPORTED_DIMS,
    )


__all__ = ["GNOTConfig", "PROFILES", "build", "register_models"]
