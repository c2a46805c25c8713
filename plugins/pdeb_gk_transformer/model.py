"""Galerkin Transformer: tokens are grid points, attention is ``Q (K^T V) / n``.

Keys and values are layer-normalised per head (the Galerkin normalisation that
replaces the softmax), so ``K^T V / n`` is a ``d_head x d_head`` matrix whose
entries are averages over the grid; the cost is linear in the number of points.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp


class GalerkinAttention(nn.Module):
    """Multi-head Galerkin-type linear attention.

    Args:
        dim: Token width.
        heads: Heads; ``dim // heads`` channels each.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        # per-head affine parameters of the key and value layer norms
        self.k_scale = nn.Parameter(torch.ones(heads, 1, self.head_dim))
        self.k_shift = nn.Parameter(torch.zeros(heads, 1, self.head_dim))
        self.v_scale = nn.Parameter(torch.ones(heads, 1, self.head_dim))
        self.v_shift = nn.Parameter(torch.zeros(heads, 1, self.head_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = h.shape
        q, k, v = self.qkv(h).reshape(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # each (B, H, N, Dh)
        k = F.layer_norm(k, (self.head_dim,)) * self.k_scale + self.k_shift  # (B, H, N, Dh)
        v = F.layer_norm(v, (self.head_dim,)) * self.v_scale + self.v_shift  # (B, H, N, Dh)
        context = k.transpose(-2, -1) @ v / tokens  # (B, H, Dh, Dh)
        mixed = q @ context  # (B, H, N, Dh)
        return self.out(mixed.transpose(1, 2).reshape(batch, tokens, dim))  # (B, N, D)


class EncoderLayer(nn.Module):
    """``h + attn(h)``, then ``h + FFN(LN(h))``."""

    def __init__(self, dim: int, heads: int, ffn_mult: int) -> None:
        super().__init__()
        self.attn = GalerkinAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.ffn = two_layer_mlp(dim, ffn_mult * dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(h)  # (B, N, D)
        return h + self.ffn(self.norm(h))  # (B, N, D)


class GalerkinTransformer(FoldedFrameModel):
    """Galerkin Transformer mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        dim: Token width.
        depth: Encoder layers.
        heads: Attention heads.
        ffn_mult: Feed-forward hidden width / ``dim``.
        decoder_width: Hidden width of the decoder.
        use_grid: Append normalised coordinates to every token.
    """

    label = "Galerkin Transformer"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, dim: int, depth: int,
                 heads: int, ffn_mult: int, decoder_width: int, use_grid: bool = True) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields, use_grid)
        self.embed = nn.Linear(self.body_channels, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn_mult) for _ in range(depth))
        self.decoder = two_layer_mlp(dim, decoder_width, self.out_channels)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        h = self.embed(h.reshape(h.shape[0], -1, h.shape[-1]))  # (B, N, D): every grid point is a token
        for layer in self.layers:
            h = layer(h)  # (B, N, D)
        return self.decoder(h)  # (B, N, t_out * C)
