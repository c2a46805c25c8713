"""DPOT, the Auto-Regressive Denoising Operator Transformer (Hao et al., ICML 2024).

One implementation for 1, 2 and 3 spatial dimensions. Module and parameter names follow
the official code (thu-ml/DPOT ``models/dpot.py`` and ``models/dpot3d.py``), so official
state dicts load with ``strict=True``; the official layout ``(B, *S, T, C)`` differs from
ours, ``(B, T, *S, C)``, only at the boundary (see :mod:`pdeb_dpot.official`).

``DPOT(DPOTArchitecture(...))`` builds a network: the dataclass holds every setting that
decides its parameters and forward pass, checked once when it is created.

Forward pass, for ``x`` of shape ``(B, T_in, *S, C)``:

1. pad missing channels with ones up to ``in_channels`` (the official convention);
2. optionally normalise per sample and channel (``normalize``);
3. append coordinate channels (each spatial axis and time, ``linspace(0, 1)``);
4. embed each frame by patches, add a learned positional embedding;
5. aggregate the ``T_in`` frames into one latent field (:class:`TimeAggregator`, which
   folds the embedding's last linear layer into its own, so the per-frame latents are never
   formed);
6. ``depth`` blocks ``z + MLP(GN(FourierMixer(GN(z))))``;
7. project back to ``T_out * C_out`` channels at full resolution.

Every layer that acts on channels alone (the patch embedding, the block MLPs, the output
head) runs as a matmul over a channels-last tensor, with the official parameter shapes kept;
the latent field stays channels-last through the blocks (GroupNorm and the mixer accept that
layout), and an exact-GELU followed by a linear layer recomputes the GELU in backward instead
of saving it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from pdebench_core.devices import autocast_enabled, keep_float32
from pdebench_core.errors import UsageError
from pdeb_dpot import TIME_AGGREGATIONS
from pdeb_dpot.mixer import FourierMixer, make_activation

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass
class DPOTArchitecture:
    """Everything that decides a DPOT network's parameters and forward pass.

    The field names are those of the official constructors (``DPOTNet``, ``DPOTNet3D``).

    Attributes:
        ndim: Spatial dimensions (1, 2 or 3).
        img_size: Grid the model is built for (one int for every axis, or one per axis); it
            sizes the positional embedding, which is interpolated for any other grid.
        patch_size: Patch edge ``P``; every spatial size must be a multiple of it.
        in_channels: Channels the model reads; inputs with fewer are padded with ones.
        out_channels: Channels it predicts per frame (official models use ``in_channels``).
        in_timesteps: Input frames ``T_in``.
        out_timesteps: Frames predicted per call ``T_out``.
        embed_dim: Latent width ``D`` (a multiple of 8 and of ``n_blocks``).
        depth: Number of blocks.
        n_blocks: Mixer heads (channel groups of the block-diagonal spectral MLP).
        mlp_ratio: Block MLP width as a multiple of ``D``.
        out_layer_dim: Width of the output head.
        modes: Fourier modes kept per axis: one int, or one per axis. The official 3D model
            keeps ``(modes, modes, 8)``; pass that tuple for 3D.
        n_cls: Outputs of the dataset-class head (untrained in DPOT, kept for checkpoints).
        normalize: Normalise each sample and channel over space and time, with an AdaIN-like
            latent scale and shift predicted from the statistics, and undo it on the output.
        act: Activation of the embedding, block MLPs and heads.
        time_agg: ``"exp_mlp"`` (official) or ``"mlp"``.
        symmetric_modes: Keep ``|k| < modes`` on two-sided FFT axes (not official).
        mixer_act: Activation inside the mixer; None means ``act`` (the official 3D code
            always uses GELU there).

    Raises:
        UsageError: on creation, for settings no DPOT can have; ``img_size`` and ``modes``
            become one value per axis.
    """

    ndim: int = 2
    img_size: Union[int, Sequence[int]] = 128
    patch_size: int = 8
    in_channels: int = 4
    out_channels: int = 4
    in_timesteps: int = 10
    out_timesteps: int = 1
    embed_dim: int = 512
    depth: int = 4
    n_blocks: int = 4
    mlp_ratio: float = 1.0
    out_layer_dim: int = 32
    modes: Union[int, Sequence[int]] = 32
    n_cls: int = 12
    normalize: bool = False
    act: str = "gelu"
    time_agg: str = "exp_mlp"
    symmetric_modes: bool = False
    mixer_act: Optional[str] = None

    def __post_init__(self) -> None:
        if self.ndim not in _CONV:
            raise UsageError(f"DPOT supports 1, 2 or 3 spatial dimensions, not {self.ndim}")
        self.img_size = _per_axis(self.img_size, self.ndim)
        self.modes = _per_axis(self.modes, self.ndim)
        if len(self.img_size) != self.ndim or len(self.modes) != self.ndim:
            raise UsageError(f"img_size {self.img_size} and modes {self.modes} need one value per "
                             f"axis ({self.ndim})")
        if self.embed_dim % 8 or self.embed_dim % self.n_blocks:
            raise UsageError(f"DPOT embed_dim {self.embed_dim} must be a multiple of 8 (GroupNorm "
                             f"groups) and of n_blocks {self.n_blocks}")
        if self.normalize and self.out_channels != self.in_channels:
            raise UsageError("DPOT normalize=True needs out_channels == in_channels (the output is "
                             "de-normalised with the input statistics)")
        check_divisible(self.img_size, self.patch_size)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The latent grid ``s = img_size / patch_size``."""
        return tuple(n // self.patch_size for n in self.img_size)


def _per_axis(value: Union[int, Sequence[int]], ndim: int) -> tuple[int, ...]:
    return (int(value),) * ndim if isinstance(value, int) else tuple(int(v) for v in value)


def resize_pos_embed(pos_embed: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
    """Interpolate a positional embedding ``(1, D, *s)`` to another latent grid.

    Args:
        pos_embed: The learned embedding.
        latent_shape: The wanted grid ``s'``.

    Returns:
        ``(1, D, *s')``; the input itself when the grid already matches.
    """
    latent_shape = tuple(int(n) for n in latent_shape)
    if tuple(pos_embed.shape[2:]) == latent_shape:
        return pos_embed
    mode = _INTERPOLATION[pos_embed.ndim - 2]
    return F.interpolate(pos_embed, size=latent_shape, mode=mode, align_corners=False)


class _GeluLinear(torch.autograd.Function):
    """``F.linear(gelu(x), weight, bias)`` that saves ``x`` only and recomputes ``gelu(x)`` for backward.

    Autograd would save both ``x`` (for GELU's derivative) and ``gelu(x)`` (for the weight
    gradient); recomputing the cheap activation halves what this pair keeps.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(x), weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        x, weight = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_weight = rows.t() @ F.gelu(x).reshape(-1, x.shape[-1])  # (out, in)
        grad_x = torch.ops.aten.gelu_backward(grad @ weight, x)  # (..., in)
        return grad_x, grad_weight, rows.sum(0) if ctx.has_bias else None


def _autocast_on(x: torch.Tensor) -> bool:
    """Whether autocast is on for ``x``'s device (devices without autocast, e.g. ``meta``, have none)."""
    try:
        return autocast_enabled(x.device.type)
    except RuntimeError:
        return False


def act_linear(act: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(act(x), weight, bias)`` over the last axis; ``weight`` is ``(out, in)``, ``bias`` may be ``None``.

    Exact GELU outside autocast runs as :class:`_GeluLinear` (fewer saved activations, the
    same numbers); anything else runs as written.
    """
    exact_gelu = type(act) is nn.GELU and act.approximate == "none"
    if exact_gelu and not _autocast_on(x) and torch.is_grad_enabled():
        return _GeluLinear.apply(x, weight, bias)
    return F.linear(act(x), weight, bias)


class PatchEmbed(nn.Module):
    """Per-frame patch embedding: Conv(kernel=stride=P) -> act -> 1x1 Conv.

    The modules keep the official convolutions (and so their state-dict keys and shapes).
    :meth:`forward` runs the patch convolution as a matmul over patches laid out
    channels-last, since a stride-P convolution with a P-wide kernel is a matmul on
    non-overlapping patches, and returns its output: the activation and the 1x1 convolution
    are applied by :class:`TimeAggregator`, which folds that linear layer into its own.

    Args:
        ndim: Spatial dimensions.
        in_chans: Input channels (data channels plus coordinate channels).
        hidden: Channels after the patch convolution (official: ``C_out * P + ndim + 1``).
        embed_dim: Latent width ``D``.
        patch_size: Patch edge ``P``.
        act: Activation name.
    """

    def __init__(self, ndim: int, in_chans: int, hidden: int, embed_dim: int, patch_size: int,
                 act: str) -> None:
        super().__init__()
        conv = _CONV[ndim]
        self.ndim, self.patch_size = ndim, patch_size
        self.proj = nn.Sequential(
            conv(in_chans, hidden, kernel_size=patch_size, stride=patch_size),
            make_activation(act),
            conv(hidden, embed_dim, kernel_size=1, stride=1),
        )

    def forward(self, x: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
        """The patch convolution of ``x`` ``(B, T, *S, C)`` and of the channels ``shared``
        ``(1, T, *S, C')`` that every sample has alike (DPOT's coordinates), which follow
        ``x``'s channels in the official layout; returns ``(B, *s, T, hidden)`` with ``s = S / P``.

        The convolution is linear in its input channels, so the shared channels' part is
        computed once and broadcast over the batch instead of being concatenated to every sample.
        """
        patch_conv = self.proj[0]
        P, C = self.patch_size, x.shape[-1]
        weight = patch_conv.weight.movedim(1, -1)  # (hidden, *P, C + C')
        hidden = F.linear(to_patches(x, P), weight[..., :C].flatten(1), patch_conv.bias)  # (B, *s, T, hidden)
        if shared is not None:
            hidden = hidden + F.linear(to_patches(shared, P), weight[..., C:].flatten(1))  # + (1, *s, T, hidden)
        return hidden


def to_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, T, *S, C)`` -> ``(B, *s, T, P^ndim * C)``, each patch flattened as ``(*P, C)``.

    Channels stay innermost, so the one copy moves runs of ``P * C`` contiguous values; a
    patch convolution is then ``F.linear(patches, weight.movedim(1, -1).flatten(1), bias)``.
    """
    B, T, *spatial, C = x.shape
    ndim, P = len(spatial), patch_size
    split = [B, T] + [n for size in spatial for n in (size // P, P)] + [C]
    coarse = [2 + 2 * i for i in range(ndim)]  # the s axes
    fine = [3 + 2 * i for i in range(ndim)]  # the P axes
    order = [0, *coarse, 1, *fine, 2 + 2 * ndim]  # (B, *s, T, *P, C)
    latent = [size // P for size in spatial]
    return x.reshape(split).permute(order).reshape(B, *latent, T, C * P ** ndim)


class TimeAggregator(nn.Module):
    """Collapse ``T`` latent frames into one: ``z = sum_t W_t^T (z_t * cos(gamma * t))``.

    Args:
        n_timesteps: Input frames ``T``.
        width: Latent width ``D``.
        kind: ``"exp_mlp"`` (official default, with the learned frequencies ``gamma``
            initialised to ``2^linspace(-10, 10, D)`` and ``t = linspace(0, 1, T)``) or
            ``"mlp"`` (no temporal modulation).
    """

    def __init__(self, n_timesteps: int, width: int, kind: str = "exp_mlp") -> None:
        super().__init__()
        if kind not in TIME_AGGREGATIONS:
            raise UsageError(f"unknown time aggregation '{kind}'; choose one of {', '.join(TIME_AGGREGATIONS)}")
        self.kind = kind
        self.w = nn.Parameter(torch.randn(n_timesteps, width, width) / (n_timesteps * width ** 0.5))
        if kind == "exp_mlp":
            self.gamma = nn.Parameter(2 ** torch.linspace(-10, 10, width).unsqueeze(0))  # (1, D)
            keep_float32(self.gamma)  # up to 2^10: cos(t * gamma) of a bf16-rounded gamma is noise

    def forward(self, hidden: torch.Tensor, act: nn.Module, embed_weight: torch.Tensor,
                embed_bias: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Aggregate the latent frames ``z_t = act(hidden_t) @ embed_weight^T + embed_bias + shift``.

        In DPOT the frames are the output of the patch embedding's last layer (a linear map
        from ``H`` to ``D`` channels) plus the positional embedding ``shift``. Everything from
        that layer to the aggregation is linear, so it folds into one ``(T * H, D)`` matrix and
        the ``(B, N, T, D)`` frames are never formed::

            sum_t W_t^T ((P a_t + p + s) * m_t) = sum_t (P^T diag(m_t) W_t)^T a_t + (sum_t diag(m_t) W_t)^T (p + s)

        with ``a_t = act(hidden_t)``, ``P`` = ``embed_weight``, ``p`` = ``embed_bias``, ``s`` =
        ``shift`` and ``m_t = cos(gamma t)``. That saves the ``(B*N, T*D) @ (T*D, D)`` product
        of the straightforward form, most of the embedding's cost.

        Args:
            hidden: ``(B, N, T, H)``, the patch convolution's output, before ``act``.
            act: The embedding's activation.
            embed_weight: ``(D, H)``.
            embed_bias: ``(D,)``.
            shift: ``(N, D)``, added to every sample and frame.

        Returns:
            ``(B, N, D)``.
        """
        B, N, T, H = hidden.shape
        w = self.w  # (T, D_in, D_out)
        D = w.shape[-1]
        if self.kind == "exp_mlp":
            t = torch.linspace(0, 1, T, device=w.device).unsqueeze(-1)  # (T, 1)
            # An elementwise product, not a matmul, so autocast never runs this in bf16:
            # gamma reaches 2^10 and cos() of a rounded argument is noise.
            modulation = torch.cos(t * self.gamma.float()).to(w.dtype)  # (T, D_in)
        else:
            modulation = torch.ones(T, D, device=w.device, dtype=w.dtype)
        # The modulation scales the small factors, never W itself: W is the largest tensor here.
        embed_rows = embed_weight.t().unsqueeze(0) * modulation.unsqueeze(1)  # (T, H, D_in): P^T diag(m_t)
        folded = torch.matmul(embed_rows, w)  # (T, H, D_out)
        frames = act_linear(act, hidden.reshape(B, N, T * H), folded.reshape(T * H, D).t(), None)  # (B, N, D)
        modulated_sum = torch.einsum("td,tde->de", modulation, w)  # (D_in, D_out): sum_t diag(m_t) W_t
        return frames + (embed_bias + shift) @ modulated_sum  # + (N, D), alike for every sample


class PointwiseConv(nn.Module):
    """A 1x1 convolution that accepts any number of spatial axes, run as a matmul.

    The weight keeps the shape of an ``ndim``-D 1x1 convolution, e.g. ``(out, in, 1, 1)`` in
    2D, and its initialisation, so official state dicts load unchanged; an input with any
    number of axes sees it as an ``(out, in)`` matrix. That keeps a block dimension-agnostic,
    so one block can serve 2D and 3D data alike (:mod:`pdeb_dpot.multidim`).
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        template = _CONV[ndim](in_channels, out_channels, kernel_size=1)  # the standard initialisation
        self.weight = template.weight  # (out, in, *1)
        self.bias = template.bias  # (out,)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size=1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, *S)`` -> ``(B, out, *S)``; no copy when ``x`` is laid out channels-last."""
        return self.channels_last(x.movedim(1, -1)).movedim(-1, 1)

    def channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in)`` -> ``(..., out)``: one GEMM."""
        return F.linear(x, self.weight.flatten(1), self.bias)


class Block(nn.Module):
    """``z + MLP(GN(FourierMixer(GN(z))))`` with GroupNorm(8, D) and a 1x1-conv MLP.

    Nothing in it depends on the number of spatial axes except the mixer's mode budget, so
    one block serves several dimensions once the mixer has a budget for each. It reads and
    writes ``(B, D, *s)``; given a channels-last tensor (as :class:`DPOT` passes), its output
    is channels-last too and the MLP runs as two GEMMs without a copy.
    """

    def __init__(self, arch: DPOTArchitecture) -> None:
        super().__init__()
        width, hidden = arch.embed_dim, int(arch.embed_dim * arch.mlp_ratio)
        self.norm1 = nn.GroupNorm(8, width)
        self.filter = FourierMixer(width, arch.n_blocks, arch.modes, act=arch.mixer_act or arch.act,
                                   symmetric=arch.symmetric_modes)
        self.norm2 = nn.GroupNorm(8, width)
        self.mlp = nn.Sequential(PointwiseConv(arch.ndim, width, hidden), make_activation(arch.act),
                                 PointwiseConv(arch.ndim, hidden, width))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        mixed = self.filter(self.norm1(z))  # (B, D, *s), includes the mixer's inner skip
        expand, act, contract = self.mlp
        h = self.norm2(mixed).movedim(1, -1)  # (B, *s, D)
        h = act_linear(act, expand.channels_last(h), contract.weight.flatten(1), contract.bias)  # (B, *s, D)
        return z + h.movedim(-1, 1)  # (B, D, *s), z's layout


class DPOT(nn.Module):
    """DPOT for 1, 2 or 3 spatial dimensions; maps ``(B, T_in, *S, C)`` to ``(B, T_out, *S, C)``.

    Args:
        arch: The architecture; kept as ``self.arch``.
    """

    def __init__(self, arch: DPOTArchitecture) -> None:
        super().__init__()
        self.arch = arch
        D, P, act = arch.embed_dim, arch.patch_size, arch.act
        n_coords = arch.ndim + 1  # one per spatial axis, plus time
        self.patch_embed = PatchEmbed(arch.ndim, arch.in_channels + n_coords,
                                      arch.out_channels * P + n_coords, D, P, act)
        self.pos_embed = nn.Parameter(torch.zeros(1, D, *arch.latent_shape))  # (1, D, *s)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(arch) for _ in range(arch.depth)])
        if arch.normalize:
            self.scale_feats_mu = nn.Linear(2 * arch.in_channels, D)
            self.scale_feats_sigma = nn.Linear(2 * arch.in_channels, D)
        self.cls_head = nn.Sequential(
            nn.Linear(D, D), make_activation(act),
            nn.Linear(D, D), make_activation(act),
            nn.Linear(D, arch.n_cls),
        )
        # DPOT never trains the class head (its loss weight is 0); freezing it keeps it out
        # of optimisers and lets DDP run without find_unused_parameters.
        self.cls_head.requires_grad_(False)
        self.time_agg_layer = TimeAggregator(arch.in_timesteps, D, arch.time_agg)
        conv, width = _CONV[arch.ndim], arch.out_layer_dim
        self.out_layer = nn.Sequential(
            _CONV_TRANSPOSE[arch.ndim](D, width, kernel_size=P, stride=P),
            make_activation(act),
            conv(width, width, kernel_size=1),
            make_activation(act),
            conv(width, arch.out_channels * arch.out_timesteps, kernel_size=1),
        )

    def padded_channels(self, ndim: int) -> int:
        """Channels inputs of ``ndim`` axes are padded to with ones (``in_channels``), when
        the model predicts as many; 0 otherwise. The core pads batches to it, so the loss
        and the input noise see the padding as in the official recipe."""
        same = ndim == self.arch.ndim and self.arch.out_channels == self.arch.in_channels
        return self.arch.in_channels if same else 0

    def weights_from(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's weights as this model names them: this dimension's DPOT out of a
        2D+3D pre-training (read by ``task.checkpoint``; see :func:`pdeb_dpot.checkpoint.one_dimension`)."""
        from pdeb_dpot.checkpoint import lift_block_kernel, mixed_dimensions, one_dimension

        dims = mixed_dimensions(state)
        if not dims:
            return state  # a single-dimension checkpoint, loaded as it is
        if self.arch.ndim not in dims:
            raise UsageError(f"the checkpoint holds DPOT for {', '.join(f'{d}D' for d in dims)} data, not "
                             f"{self.arch.ndim}D; start a {self.arch.ndim}D model from it with model.init=FILE, "
                             f"which copies its blocks (task.checkpoint loads a whole model)")
        own = self.state_dict()  # a block shared with a lower dimension is stored in that one's shape
        return {k: lift_block_kernel(k, v, own[k]) if k in own else v
                for k, v in one_dimension(state, self.arch.ndim).items()}

    def forward(self, x: torch.Tensor, return_cls_logits: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict the next ``T_out`` frames.

        Args:
            x: ``(B, T_in, *S, C)`` with ``C <= in_channels``; any ``S`` divisible by the
                patch size.
            return_cls_logits: Also return the dataset-class logits ``(B, n_cls)``.

        Returns:
            ``(B, T_out, *S, C)`` (only the real channels when the input was padded), and the
            logits when asked.
        """
        arch = self.arch
        B, T, *spatial, C = x.shape
        self._check_input(x.shape)
        if C < arch.in_channels:
            # Official convention: absent channels are constant ones.
            pad = x.new_ones(B, T, *spatial, arch.in_channels - C)
            x = torch.cat([x, pad], dim=-1)  # (B, T, *S, C_in)
        if arch.normalize:
            reduce_dims = tuple(range(1, x.ndim - 1))  # time and space
            mu = x.mean(dim=reduce_dims, keepdim=True)  # (B, 1, *1, C_in)
            sigma = x.std(dim=reduce_dims, keepdim=True) + 1e-6  # (B, 1, *1, C_in)
            x = (x - mu) / sigma  # (B, T, *S, C_in)
        coordinates = self._coordinates(T, spatial, x)  # (1, T, *S, ndim + 1), alike for every sample
        hidden = self.patch_embed(x, coordinates)  # (B, *s, T, H)
        latent = hidden.shape[1:-2]
        pos = resize_pos_embed(self.pos_embed, latent).flatten(2)[0].t()  # (prod(s), D)
        _, act, pointwise = self.patch_embed.proj
        z = self.time_agg_layer(hidden.flatten(1, -3), act, pointwise.weight.flatten(1), pointwise.bias,
                                pos)  # (B, prod(s), D)
        z = z.reshape(B, *latent, arch.embed_dim)  # (B, *s, D)
        if arch.normalize:
            stats = torch.cat([mu, sigma], dim=-1).reshape(B, -1)  # (B, 2 C_in)
            ones = (1,) * arch.ndim
            latent_scale = self.scale_feats_sigma(stats).view(B, *ones, -1)  # (B, *1, D)
            latent_shift = self.scale_feats_mu(stats).view(B, *ones, -1)  # (B, *1, D)
            z = latent_scale * z + latent_shift  # (B, *s, D)
        z = z.movedim(-1, 1)  # (B, D, *s), laid out channels-last
        for block in self.blocks:
            z = block(z)  # (B, D, *s)
        y = self._head(z.movedim(1, -1))  # (B, T_out, *S, C_out)
        if arch.normalize:
            y = y * sigma + mu  # (B, T_out, *S, C_out)
        if arch.out_channels == arch.in_channels and C < arch.in_channels:
            y = y[..., :C]  # drop the padding channels
        y = y.contiguous()
        if return_cls_logits:
            logits = self.cls_head(z.mean(dim=tuple(range(2, z.ndim))))  # (B, n_cls)
            return y, logits
        return y

    def _head(self, z: torch.Tensor) -> torch.Tensor:
        """The output layer on channels-last latents: ``(B, *s, D)`` -> ``(B, T_out, *S, C_out)``.

        The transposed convolution (kernel = stride = P) is a matmul to ``P^ndim * width``
        values per latent cell, which are then pixels of its patch, ``(B, *s, *P, width)``
        (one copy, of the weight or of the activations, whichever is smaller); the 1x1
        convolutions act on those pixels where they lie, and one copy at the end puts the
        patches in place.
        """
        arch = self.arch
        unpatch, act1, mix, act2, out = self.out_layer
        B, *latent, D = z.shape
        P, ndim = arch.patch_size, arch.ndim
        patch = [P] * ndim
        if B * math.prod(latent) < D:
            # Fewer activations than weights: lay out the output pixel-major and copy it.
            y = F.linear(z, unpatch.weight.flatten(1).t(), unpatch.bias.repeat_interleave(P ** ndim))
            y = y.unflatten(-1, (-1, *patch)).movedim(-1 - ndim, -1).contiguous()  # (B, *s, *P, width)
        else:
            # Fewer weights: permute the weight so the matmul writes width last.
            weight = unpatch.weight.movedim(1, -1).reshape(D, -1)  # (D, P^ndim * width)
            y = F.linear(z, weight.t(), unpatch.bias.repeat(P ** ndim)).unflatten(-1, (*patch, -1))
        y = act_linear(act1, y, mix.weight.flatten(1), mix.bias)  # (B, *s, *P, width)
        y = act_linear(act2, y, out.weight.flatten(1), out.bias)  # (B, *s, *P, T_out * C_out)
        y = y.unflatten(-1, (arch.out_timesteps, arch.out_channels))  # (B, *s, *P, T_out, C_out)
        interleaved = [axis for i in range(ndim) for axis in (1 + i, 1 + ndim + i)]  # s_0, P_0, s_1, P_1, ...
        order = [0, 1 + 2 * ndim, *interleaved, 2 + 2 * ndim]  # (B, T_out, s_0, P_0, ..., C_out)
        spatial = [n * P for n in latent]
        return y.permute(order).reshape(B, arch.out_timesteps, *spatial, arch.out_channels)

    def _check_input(self, shape: torch.Size) -> None:
        arch = self.arch
        if len(shape) != arch.ndim + 3:
            raise UsageError(f"DPOT ({arch.ndim}D) expects input (B, T, {', '.join('S' * arch.ndim)}, C), "
                             f"got shape {tuple(shape)}")
        T, spatial, C = shape[1], tuple(shape[2:-1]), shape[-1]
        if T != arch.in_timesteps:
            raise UsageError(f"DPOT was built for {arch.in_timesteps} input frames, got {T}")
        if C > arch.in_channels:
            raise UsageError(f"input has {C} channels but the DPOT model reads at most "
                             f"{arch.in_channels}; set in_channels >= {C}")
        check_divisible(spatial, arch.patch_size)

    @staticmethod
    def _coordinates(time: int, spatial: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """Coordinate channels ``(1, T, *S, ndim + 1)``, alike for every sample: each spatial
        axis, then time, in [0, 1]."""
        sizes = (*spatial, time)
        out_shape = (1, time, *spatial, 1)
        grids = []
        for axis, n in enumerate(sizes):
            # Computed in float64 and rounded, like the official numpy grid, and on the device
            # itself: a host-to-device copy here would synchronise every forward pass.
            exact = torch.float64 if like.device.type != "mps" else torch.float32
            line = torch.linspace(0, 1, n, dtype=exact, device=like.device).to(like.dtype)
            view = [1] * (len(spatial) + 3)
            view[1 if axis == len(spatial) else 2 + axis] = n
            grids.append(line.view(view).expand(out_shape))
        return torch.cat(grids, dim=-1)


def check_divisible(spatial: Sequence[int], patch_size: int) -> None:
    """Raise a one-line :class:`UsageError` unless every size is a multiple of the patch size."""
    bad = [n for n in spatial if n % patch_size]
    if bad:
        raise UsageError(f"DPOT needs every spatial size divisible by patch_size {patch_size}, got "
                         f"{tuple(spatial)}; resize the data with train.resolution=N (a multiple of "
                         f"{patch_size}), or choose a model.patch_size that divides them")
