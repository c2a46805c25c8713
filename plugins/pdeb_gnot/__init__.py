"""GNOT: General Neural Operator Transformer.

Hao et al., "GNOT: A General Neural Operator Transformer for Operator
Learning", ICML 2023. Output points (queries, embedded from their coordinates)
cross-attend to the input function's points and then to each other with
normalised linear attention; every feed-forward layer is a soft mixture of
experts whose gate depends on the point's coordinates (geometric gating).
"""

from __future__ import annotations

from dataclasses import dataclass

from pdebench_core.model_plugin import folded_model
from pdebench_core.profiles import profiles_around_defaults


@dataclass
class GNOTConfig:
    """Hyperparameters of GNOT (``model.<key>``).

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
    n_experts: int = 3  # weighted at each point by gates of its coordinates
    ffn_mult: int = 2
    gate_width: int = 128


# `paper` is the config defaults.
PROFILES = profiles_around_defaults(
    GNOTConfig, "paper",
    smoke={"dim": 16, "depth": 1, "heads": 2, "n_experts": 2, "ffn_mult": 2, "gate_width": 8},
    small={"dim": 48, "depth": 2, "heads": 4, "n_experts": 2, "ffn_mult": 2, "gate_width": 32},
)


build, register_models = folded_model(
    "gnot", GNOTConfig, PROFILES, "pdeb_gnot.model:GNOT", heads_divide=("dim",),
    description="GNOT: normalised linear cross/self-attention with coordinate-gated mixture-of-experts FFNs",
    paper="Hao et al., GNOT: A General Neural Operator Transformer for Operator Learning, ICML 2023",
)

__all__ = ["GNOTConfig", "PROFILES", "build", "register_models"]
