"""Patch transformer: patch embedding, softmax self-attention blocks, up-sampling head.

The frames and fields (plus coordinates) are folded into channels and cut into
non-overlapping patches of ``patch_size`` points per axis; a learned positional
embedding is added (interpolated when the grid differs from the one the model
was built for); pre-norm transformer blocks mix the patches; a transposed
convolution brings every token back to its patch of grid points.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_UP = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention over all tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = h.shape
        q, k, v = self.qkv(h).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)  # each (B, H, N, Dh)
        mixed = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, Dh)
        return self.out(mixed.transpose(1, 2).reshape(batch, tokens, dim))  # (B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block: ``h + attn(LN(h))``, then ``h + MLP(LN(h))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = two_layer_mlp(dim, hidden, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.norm1(h))  # (B, N, D)
        return h + self.mlp(self.norm2(h))  # (B, N, D)


class ViT(FoldedFrameModel):
    """Patch transformer mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Args:
        ndim, in_channels, out_frames, n_fields: Folded sizes, see :class:`FoldedFrameModel`.
        grid: Spatial shape the positional embedding is made for.
        patch_size: Patch edge in grid points.
        dim: Token width.
        depth: Transformer blocks.
        heads: Attention heads.
        mlp_ratio: MLP hidden width / ``dim``.
        out_hidden: Channels of the up-sampling head.
        use_grid: Append normalised coordinates to the input.
    """

    label = "ViT"

    def __init__(self, ndim: int, grid: tuple[int, ...], in_channels: int, out_frames: int, n_fields: int,
                 patch_size: int, dim: int, depth: int, heads: int, mlp_ratio: float, out_hidden: int,
                 use_grid: bool = True) -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields, use_grid)
        self.patch_size = patch_size
        conv = _CONV[ndim]
        self.patch_embed = nn.Sequential(
            conv(self.body_channels, dim, patch_size, stride=patch_size),
            nn.GELU(),
            conv(dim, dim, 1),
        )
        patches = tuple(n // patch_size for n in grid)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, dim, *patches))  # (1, D, *P)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(
            _UP[ndim](dim, out_hidden, patch_size, stride=patch_size),
            nn.GELU(),
            conv(out_hidden, out_hidden, 1),
            nn.GELU(),
            conv(out_hidden, self.out_channels, 1),
        )

    def body(self, h: torch.Tensor) -> torch.Tensor:
        batch, grid = h.shape[0], h.shape[1:-1]
        if any(n % self.patch_size for n in grid):
            raise ValueError(f"ViT with patch_size={self.patch_size} cannot take grid {tuple(grid)}")
        h = self.patch_embed(h.movedim(-1, 1))  # (B, D, *P)
        patches = h.shape[2:]
        pos = self.pos_embed
        if pos.shape[2:] != patches:  # another resolution: resample the learned embedding
            pos = F.interpolate(pos, size=patches, mode=_INTERPOLATION[self.ndim], align_corners=False)
        h = (h + pos).flatten(2).transpose(1, 2)  # (B, N, D)
        for block in self.blocks:
            h = block(h)  # (B, N, D)
        h = self.norm(h).transpose(1, 2).reshape(batch, -1, *patches)  # (B, D, *P)
        return self.head(h).movedim(1, -1)  # (B, *S, t_out * C)
