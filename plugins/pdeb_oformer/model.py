"""OFormer: encode the input points, let output points query them, march in latent space.

- Encoder: every grid point is a token (its ``t_in * C`` values and coordinates);
  layers of Galerkin-type linear attention (layer-normalised keys and values,
  no softmax) and feed-forward blocks.
- Decoder: each output point embeds its coordinates with random Fourier
  features and an MLP, then cross-attends to the encoded tokens.
- Propagator: a residual MLP (shared by all steps) advances the per-point latent
  state once per output frame; a small MLP reads each frame out.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from pdebench_core.models import check_folded_input, fold_time, grid_coordinates


class LinearAttention(nn.Module):
    """Multi-head Galerkin-type attention ``Q (LN(K)^T LN(V)) / n`` from queries to a context.

    Args:
        query_dim: Width of the query tokens (and of the output).
        context_dim: Width of the context tokens.
        heads: Heads; ``query_dim // heads`` channels each.
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = query_dim // heads
        self.to_q = nn.Linear(query_dim, query_dim)
        self.to_kv = nn.Linear(context_dim, 2 * query_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)
        self.v_norm = nn.LayerNorm(self.head_dim)
        self.out = nn.Linear(query_dim, query_dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, n_query, width = queries.shape
        n_context = context.shape[1]
        q = self.to_q(queries).reshape(batch, n_query, self.heads, self.head_dim).transpose(1, 2)  # (B, H, Nq, Dh)
        k, v = self.to_kv(context).reshape(batch, n_context, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # each (B, H, Nc, Dh)
        summary = self.k_norm(k).transpose(-2, -1) @ self.v_norm(v) / n_context  # (B, H, Dh, Dh)
        mixed = q @ summary  # (B, H, Nq, Dh)
        return self.out(mixed.transpose(1, 2).reshape(batch, n_query, width))  # (B, Nq, D)


def _mlp(width: int, hidden: int, out: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width if out is None else out))


class EncoderLayer(nn.Module):
    """``h + attn(h, h)``, then ``h + FFN(LN(h))``."""

    def __init__(self, dim: int, heads: int, ffn_mult: int) -> None:
        super().__init__()
        self.attn = LinearAttention(dim, dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.ffn = _mlp(dim, ffn_mult * dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(h, h)  # (B, N, D)
        return h + self.ffn(self.norm(h))  # (B, N, D)


class OFormer(nn.Module):
    """OFormer mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim: Spatial dimensions (1, 2 or 3).
        in_channels: ``t_in * C``.
        out_frames: ``t_out``: propagator steps per call.
        n_fields: ``C``.
        dim: Encoder token width.
        depth: Encoder layers.
        heads: Attention heads.
        ffn_mult: Feed-forward hidden width / token width.
        latent_dim: Decoder latent width.
        fourier_features: Random Fourier frequencies of the query embedding.
        fourier_scale: Their standard deviation.
        propagator_width: Hidden width of the propagator MLP.
    """

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, dim: int, depth: int,
                 heads: int, ffn_mult: int, latent_dim: int, fourier_features: int, fourier_scale: float,
                 propagator_width: int) -> None:
        super().__init__()
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_frames = out_frames
        self.n_fields = n_fields
        self.embed = nn.Sequential(nn.Linear(in_channels + ndim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn_mult) for _ in range(depth))
        self.encoder_norm = nn.LayerNorm(dim)
        # fixed random frequencies, stored with the weights so a checkpoint reproduces the embedding
        self.register_buffer("frequencies", fourier_scale * torch.randn(ndim, fourier_features))
        self.query_embed = nn.Sequential(
            nn.Linear(2 * fourier_features, latent_dim), nn.GELU(), nn.Linear(latent_dim, latent_dim)
        )
        self.cross_attn = LinearAttention(latent_dim, dim, heads)
        self.cross_norm = nn.LayerNorm(latent_dim)
        self.cross_ffn = _mlp(latent_dim, ffn_mult * latent_dim)
        self.propagator_norm = nn.LayerNorm(latent_dim)
        self.propagator = _mlp(latent_dim, propagator_width)
        self.readout = nn.Sequential(
            nn.Linear(latent_dim, latent_dim // 2), nn.GELU(), nn.Linear(latent_dim // 2, n_fields)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_folded_input(x, self.ndim, self.in_channels, self.n_fields, "OFormer")
        batch, t_in, *grid, n_fields = x.shape
        coords = grid_coordinates(grid, x).reshape(-1, self.ndim)  # (N, ndim)
        values = fold_time(x).reshape(batch, -1, t_in * n_fields)  # (B, N, T*C)
        h = self.embed(torch.cat([values, coords.expand(batch, *coords.shape)], dim=-1))  # (B, N, D)
        for layer in self.encoder:
            h = layer(h)  # (B, N, D)
        h = self.encoder_norm(h)  # (B, N, D)

        angles = 2 * math.pi * coords @ self.frequencies.to(coords.dtype)  # (N, F)
        queries = self.query_embed(torch.cat([angles.sin(), angles.cos()], dim=-1))  # (N, L)
        queries = queries.expand(batch, *queries.shape)  # (B, N, L)
        z = queries + self.cross_attn(queries, h)  # (B, N, L)
        z = z + self.cross_ffn(self.cross_norm(z))  # (B, N, L)
        frames = []
        for _ in range(self.out_frames):
            z = z + self.propagator(self.propagator_norm(z))  # (B, N, L)
            frames.append(self.readout(z))  # (B, N, C)
        out = torch.stack(frames, dim=1)  # (B, t_out, N, C)
        return out.reshape(batch, self.out_frames, *grid, n_fields)  # (B, t_out, *S, C)
