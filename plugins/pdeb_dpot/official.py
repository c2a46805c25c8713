"""Compatibility with the official DPOT code (thu-ml/DPOT): constructor arguments and layouts.

``build_official(kwargs)`` takes the keyword arguments of the official ``DPOTNet`` (2D) or
``DPOTNet3D`` and returns our :class:`pdeb_dpot.model.DPOT` with the same parameter names
and shapes and the same numbers. The official models read ``(B, *S, T, C)``; ours reads
``(B, T, *S, C)``: :func:`from_official_layout` and :func:`to_official_layout` convert.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from pdebench_core.errors import UsageError
from pdeb_dpot.model import DPOT, DPOTArchitecture

# Defaults of the official constructors, so a partial argument dict means the same thing.
OFFICIAL_DEFAULTS_2D: dict[str, Any] = dict(
    img_size=224, patch_size=16, mixing_type="afno", in_channels=1, out_channels=4,
    in_timesteps=1, out_timesteps=1, n_blocks=4, embed_dim=768, out_layer_dim=32, depth=12,
    modes=32, mlp_ratio=1.0, n_cls=12, normalize=False, act="gelu", time_agg="exp_mlp",
)
OFFICIAL_DEFAULTS_3D: dict[str, Any] = {**OFFICIAL_DEFAULTS_2D, "out_channels": 3, "n_cls": 1}
# The official 3D mixer keeps this many modes on the third spatial axis, whatever `modes` is.
OFFICIAL_3D_LAST_AXIS_MODES = 8


def build_official(kwargs: Mapping[str, Any], ndim: int = 2) -> DPOT:
    """Build our DPOT from the official constructor arguments.

    Args:
        kwargs: Arguments of the official ``DPOTNet`` / ``DPOTNet3D`` (``img_size``,
            ``patch_size``, ``in_channels``, ``embed_dim``, ...; missing ones take the
            official defaults).
        ndim: 2 for ``DPOTNet``, 3 for ``DPOTNet3D`` (1 builds the natural 1D analogue).

    Returns:
        A model whose ``state_dict`` has the official keys and shapes, mapping
        ``(B, T_in, *S, C)`` to ``(B, T_out, *S, C_out)``.

    Raises:
        UsageError: an argument the official constructor does not have, or an unsupported
            mixer type.
    """
    return DPOT(official_architecture(kwargs, ndim))


def official_architecture(kwargs: Mapping[str, Any], ndim: int = 2) -> DPOTArchitecture:
    """The :class:`DPOTArchitecture` of the official constructor arguments (see :func:`build_official`)."""
    defaults = OFFICIAL_DEFAULTS_3D if ndim == 3 else OFFICIAL_DEFAULTS_2D
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise UsageError(f"not an official DPOT argument: {', '.join(unknown)}")
    args = {**defaults, **kwargs}
    if args.pop("mixing_type") != "afno":
        raise UsageError("only the official 'afno' mixing_type exists in DPOT")
    modes = args.pop("modes")
    if ndim == 3:
        modes = (modes, modes, OFFICIAL_3D_LAST_AXIS_MODES)
    # The official 3D mixer always uses GELU, whatever `act` says.
    return DPOTArchitecture(ndim=ndim, modes=modes, mixer_act="gelu" if ndim == 3 else None, **args)


def from_official_layout(x: torch.Tensor) -> torch.Tensor:
    """``(B, *S, T, C)`` (official) -> ``(B, T, *S, C)`` (ours)."""
    return x.movedim(-2, 1)


def to_official_layout(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, *S, C)`` (ours) -> ``(B, *S, T, C)`` (official)."""
    return x.movedim(1, -2)


def infer_official_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Read the official constructor arguments off a state dict's shapes.

    ``modes`` cannot be read (no parameter depends on it) and is left out; ``img_size`` is
    the grid the positional embedding was trained on (first axis).

    Args:
        state_dict: Official keys (without a ``module.`` prefix).

    Returns:
        The arguments, plus ``"ndim"``.

    Raises:
        UsageError: when the keys are not those of a DPOT model.
    """
    try:
        pos = state_dict["pos_embed"]
        patch = state_dict["patch_embed.proj.0.weight"]
        ndim = pos.ndim - 2
        embed_dim = pos.shape[1]
        patch_size = patch.shape[-1]
        out_channels = (patch.shape[0] - ndim - 1) // patch_size
        depth = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
        config = dict(
            img_size=pos.shape[2] * patch_size,
            patch_size=patch_size,
            in_channels=patch.shape[1] - ndim - 1,
            out_channels=out_channels,
            in_timesteps=state_dict["time_agg_layer.w"].shape[0],
            out_timesteps=state_dict["out_layer.4.weight"].shape[0] // out_channels,
            n_blocks=state_dict["blocks.0.filter.w1"].shape[1] if depth else 1,
            embed_dim=embed_dim,
            out_layer_dim=state_dict["out_layer.0.weight"].shape[1],
            depth=depth,
            mlp_ratio=state_dict["blocks.0.mlp.0.weight"].shape[0] / embed_dim if depth else 1.0,
            n_cls=state_dict["cls_head.4.weight"].shape[0],
            normalize="scale_feats_mu.weight" in state_dict,
            time_agg="exp_mlp" if "time_agg_layer.gamma" in state_dict else "mlp",
        )
    except (KeyError, IndexError) as exc:
        raise UsageError(f"not a DPOT state dict (no '{exc.args[0]}')") from None
    if config["mlp_ratio"] == int(config["mlp_ratio"]):
        config["mlp_ratio"] = int(config["mlp_ratio"])
    config["ndim"] = ndim
    return config
