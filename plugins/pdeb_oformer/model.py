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

from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp
from pdebench_core.models import grid_coordinates


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


class EncoderLayer(nn.Module):
    """``h + attn(h, h)``, then ``h + FFN(LN(h))``."""

    def __init__(self, dim: int, heads: int, ffn_mult: int) -> None:
        super().__init__()
        self.attn = LinearAttention(dim, dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.ffn = two_layer_mlp(dim, ffn_mult * dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(h, h)  # (B, N, D)
        return h + self.ffn(self.norm(h))  # (B, N, D)


class OFormer(FoldedFrameModel):
    """OFormer mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        dim: Encoder token width.
        depth: Encoder layers.
        heads: Attention heads.
        ffn_mult: Feed-forward hidden width / token width.
        latent_dim: Decoder latent width.
        fourier_features: Random Fourier frequencies of the query embedding.
        fourier_scale: Their standard deviation.
        propagator_width: Hidden width of the propagator MLP.
    """

    label = "OFormer"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, dim: int, depth: int,
                 heads: int, ffn_mult: int, latent_dim: int, fourier_features: int, fourier_scale: float,
                 propagator_width: int) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields)
        self.embed = two_layer_mlp(in_channels + ndim, dim, dim)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn_mult) for _ in range(depth))
        self.encoder_norm = nn.LayerNorm(dim)
        # fixed random frequencies, stored with the weights so a checkpoint reproduces the embedding
        self.register_buffer("frequencies", fourier_scale * torch.randn(ndim, fourier_features))
        self.query_embed = two_layer_mlp(2 * fourier_features, latent_dim, latent_dim)
        self.cross_attn = LinearAttention(latent_dim, dim, heads)
        self.cross_norm = nn.LayerNorm(latent_dim)
        self.cross_ffn = two_layer_mlp(latent_dim, ffn_mult * latent_dim, latent_dim)
        self.propagator_norm = nn.LayerNorm(latent_dim)
        self.propagator = two_layer_mlp(latent_dim, propagator_width, latent_dim)
        self.readout = two_layer_mlp(latent_dim, latent_dim // 2, n_fields)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        # the coordinates enter the encoder tokens and, Fourier-embedded, the decoder queries
        batch, *grid, channels = h.shape
        coords = grid_coordinates(grid, h).reshape(-1, self.ndim)  # (N, ndim)
        h = self.embed(torch.cat([h.reshape(batch, -1, channels), coords.expand(batch, *coords.shape)], dim=-1))
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
        return torch.stack(frames, dim=2).flatten(2)  # (B, N, t_out * C), frame-major like a folded output
