"""Galerkin Transformer: tokens are grid points, attention is ``Q (K^T V) / n``.

Keys and values are layer-normalised per head (the Galerkin normalisation that
replaces the softmax), so ``K^T V / n`` is a ``d_head x d_head`` matrix whose
entries are averages over the grid; the cost is linear in the number of points.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdebench_core.models import append_coordinates, check_folded_input, fold_time, unfold_time


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
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(h)  # (B, N, D)
        return h + self.ffn(self.norm(h))  # (B, N, D)


class GalerkinTransformer(nn.Module):
    """Galerkin Transformer mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim: Spatial dimensions (1, 2 or 3).
        in_channels: ``t_in * C``.
        out_frames: ``t_out``.
        n_fields: ``C``.
        dim: Token width.
        depth: Encoder layers.
        heads: Attention heads.
        ffn_mult: Feed-forward hidden width / ``dim``.
        decoder_width: Hidden width of the decoder.
        use_grid: Append normalised coordinates to every token.
    """

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, dim: int, depth: int,
                 heads: int, ffn_mult: int, decoder_width: int, use_grid: bool = True) -> None:
        super().__init__()
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_frames = out_frames
        self.n_fields = n_fields
        self.use_grid = use_grid
        self.embed = nn.Linear(in_channels + (ndim if use_grid else 0), dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn_mult) for _ in range(depth))
        self.decoder = nn.Sequential(
            nn.Linear(dim, decoder_width), nn.GELU(), nn.Linear(decoder_width, out_frames * n_fields)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_folded_input(x, self.ndim, self.in_channels, self.n_fields, "Galerkin Transformer")
        batch, grid = x.shape[0], x.shape[2:-1]
        h = fold_time(x)  # (B, *S, T*C)
        if self.use_grid:
            h = append_coordinates(h)  # (B, *S, T*C + ndim)
        h = self.embed(h.reshape(batch, -1, h.shape[-1]))  # (B, N, D)
        for layer in self.layers:
            h = layer(h)  # (B, N, D)
        out = self.decoder(h)  # (B, N, t_out * C)
        return unfold_time(out, grid, self.out_frames)  # (B, t_out, *S, C)
