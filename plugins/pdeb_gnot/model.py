"""GNOT: queries at the output points attend to the input function, experts gated by position.

Normalised linear attention: queries and keys pass through a softmax over their
channels (so all scores ``q_i . k_j`` are positive) and the output is
``sum_j (q_i . k_j) v_j / sum_j (q_i . k_j)``, computed as
``q_i (K^T V) / (q_i . sum_j k_j)`` in time linear in the number of points.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp
from pdebench_core.models import grid_coordinates


class NormalizedAttention(nn.Module):
    """Multi-head normalised linear attention from queries to a context.

    Args:
        dim: Token width of queries, context and output.
        heads: Heads; ``dim // heads`` channels each.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, n_query, dim = queries.shape
        q = self.to_q(queries).reshape(batch, n_query, self.heads, self.head_dim).transpose(1, 2)  # (B, H, Nq, Dh)
        k, v = self.to_kv(context).reshape(batch, context.shape[1], 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, Nc, Dh)
        q, k = q.softmax(dim=-1), k.softmax(dim=-1)
        summary = k.transpose(-2, -1) @ v  # (B, H, Dh, Dh)
        normaliser = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, H, Nq, 1)
        mixed = (q @ summary) / normaliser  # (B, H, Nq, Dh)
        return self.out(mixed.transpose(1, 2).reshape(batch, n_query, dim))  # (B, Nq, D)


class GatedExperts(nn.Module):
    """Soft mixture of expert MLPs, weighted per point by a gate on its coordinates.

    Args:
        dim: Token width.
        hidden: Hidden width of each expert.
        n_experts: Number of experts.
        ndim: Coordinate dimensions fed to the gate.
        gate_width: Hidden width of the gate.
    """

    def __init__(self, dim: int, hidden: int, n_experts: int, ndim: int, gate_width: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(two_layer_mlp(dim, hidden, dim) for _ in range(n_experts))
        self.gate = nn.Sequential(
            nn.Linear(ndim, gate_width), nn.GELU(), nn.Linear(gate_width, gate_width), nn.GELU(),
            nn.Linear(gate_width, n_experts),
        )

    def forward(self, h: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        weights = self.gate(coords).softmax(dim=-1)  # (N, E)
        outputs = torch.stack([expert(h) for expert in self.experts], dim=-1)  # (B, N, D, E)
        return (outputs * weights[:, None, :]).sum(dim=-1)  # (B, N, D)


class Block(nn.Module):
    """Cross-attention, experts, self-attention, experts; pre-norm and residual."""

    def __init__(self, dim: int, heads: int, n_experts: int, ffn_mult: int, ndim: int, gate_width: int) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross = NormalizedAttention(dim, heads)
        self.norm_cross_ffn = nn.LayerNorm(dim)
        self.cross_ffn = GatedExperts(dim, ffn_mult * dim, n_experts, ndim, gate_width)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = NormalizedAttention(dim, heads)
        self.norm_self_ffn = nn.LayerNorm(dim)
        self.self_ffn = GatedExperts(dim, ffn_mult * dim, n_experts, ndim, gate_width)

    def forward(self, z: torch.Tensor, context: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        z = z + self.cross(self.norm_query(z), self.norm_context(context))  # (B, N, D)
        z = z + self.cross_ffn(self.norm_cross_ffn(z), coords)  # (B, N, D)
        normed = self.norm_self(z)
        z = z + self.self_attn(normed, normed)  # (B, N, D)
        return z + self.self_ffn(self.norm_self_ffn(z), coords)  # (B, N, D)


class GNOT(FoldedFrameModel):
    """GNOT mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    The output points are the input grid's points; the input function is the
    ``t_in`` frames of every field at each point.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        dim: Token width.
        depth: Blocks.
        heads: Attention heads.
        n_experts: Experts per mixture.
        ffn_mult: Expert hidden width / ``dim``.
        gate_width: Hidden width of the gates.
    """

    label = "GNOT"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, dim: int, depth: int,
                 heads: int, n_experts: int, ffn_mult: int, gate_width: int) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields)
        self.query_embed = two_layer_mlp(ndim, dim, dim)
        self.input_embed = two_layer_mlp(ndim + in_channels, dim, dim)
        self.blocks = nn.ModuleList(
            Block(dim, heads, n_experts, ffn_mult, ndim, gate_width) for _ in range(depth)
        )
        self.head = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, self.out_channels)
        )

    def body(self, h: torch.Tensor) -> torch.Tensor:
        # the coordinates enter as their own inputs (queries, gates), not as appended channels
        batch, *grid, channels = h.shape
        coords = grid_coordinates(grid, h).reshape(-1, self.ndim)  # (N, ndim)
        values = h.reshape(batch, -1, channels)  # (B, N, T*C)
        context = self.input_embed(torch.cat([coords.expand(batch, *coords.shape), values], dim=-1))  # (B, N, D)
        z = self.query_embed(coords).expand(batch, -1, -1)  # (B, N, D)
        for block in self.blocks:
            z = block(z, context, coords)  # (B, N, D)
        return self.head(z)  # (B, N, t_out * C)
