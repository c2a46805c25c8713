"""Loading DPOT weights: released checkpoints, our own run checkpoints, 2D -> 3D transfer.

Every file is read with ``torch.load(..., weights_only=True)``: tensors and plain
containers only, never pickled code. Accepted contents:

- ``{'model': state_dict}``, the released DPOT checkpoints (keys may carry the ``module.``
  prefix that DistributedDataParallel adds);
- ``{'model': state_dict, 'config': ..., ...}``, pdeb's run checkpoints;
- a bare state dict.

Loading can be limited to components (the official names: ``patch_embed``, ``pos``,
``blocks``, ``time_agg``, ``cls_head``, ``scale_feats``, ``out``). A positional embedding
trained on another grid is interpolated to the model's grid. Block weights of a model with
fewer spatial dimensions are lifted (1x1 conv kernels gain trailing singleton axes), which
is the official 2D -> 3D transfer; by default it copies the blocks only, as the official
3D fine-tuning does.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from typing import Iterable, Sequence

import torch

from pdebench_core.errors import UsageError
from pdeb_dpot.model import DPOT, resize_pos_embed

COMPONENT_PREFIXES: dict[str, tuple[str, ...]] = {
    "patch_embed": ("patch_embed.",),
    "pos": ("pos_embed",),
    "blocks": ("blocks.",),
    "time_agg": ("time_agg_layer.",),
    "cls_head": ("cls_head.",),
    "scale_feats": ("scale_feats_mu.", "scale_feats_sigma."),
    "out": ("out_layer.",),
}
_ALIASES = {"patch": "patch_embed", "pos_embed": "pos", "time_agg_layer": "time_agg", "out_layer": "out"}
# What the official 3D fine-tuning (finetune3d.py, load_components) copies from a 2D
# checkpoint by default; the time aggregator can be added by naming it.
TRANSFER_COMPONENTS = ("blocks",)
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
_SHOWN = 3  # mismatches named in an error message


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a DPOT checkpoint file into a plain state dict on the CPU.

    Args:
        path: A released DPOT checkpoint, a pdeb run checkpoint or a saved state dict;
            a file or a URL (downloaded once into the cache, see ``pdebench_core.data.remote``),
            or a run id (its newest intact checkpoint, sharded ones assembled).

    Returns:
        Parameter name -> tensor, with wrapper prefixes (``module.``) removed.

    Raises:
        UsageError: missing file, a file that pickles Python objects (e.g. a whole
            ``nn.Module``), an unreadable file, or contents without a state dict.
    """
    from pdebench_core.data.remote import as_url, local_copy, local_or_url

    path = local_or_url(os.fspath(path))  # file:///x is the local path /x; an unknown protocol is refused
    url = as_url(path)
    path = os.path.expanduser(path)
    if not url and not os.path.isfile(path):  # a run id: its newest intact checkpoint, shards assembled
        from pdebench_core.checkpoint import load_checkpoint
        from pdebench_core.weights import resolve_checkpoint

        found = resolve_checkpoint(path)  # else one line naming the fix
        return unwrap_state_dict(load_checkpoint(found), source=str(found))
    local = local_copy(url, why="a checkpoint is read whole") if url else path
    try:
        content = torch.load(local, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:  # the unpickler choked on bytes, not on a class: a damaged file
            raise UsageError(f"cannot read DPOT checkpoint '{path}': not a torch checkpoint "
                             f"or damaged") from None
        raise UsageError(
            f"'{path}' is not a weights-only checkpoint (it pickles Python objects: "
            f"{found.group(1)}); save model.state_dict() instead and load that") from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read DPOT checkpoint '{path}': {reason}") from None
    return unwrap_state_dict(content, source=path)


def unwrap_state_dict(content: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state dict inside loaded checkpoint contents and strip wrapper prefixes.

    Args:
        content: What ``torch.load`` returned.
        source: Name used in error messages.

    Raises:
        UsageError: when no state dict is found.
    """
    state = content
    if isinstance(state, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UsageError(f"'{source}' holds no model state dict (expected {{'model': state_dict}} "
                         f"or a bare state dict)")
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def normalize_components(components: Iterable[str] | str | None) -> tuple[str, ...]:
    """Official component names to load; empty, ``None`` or ``'all'`` means every one.

    Raises:
        UsageError: an unknown component name.
    """
    if components is None or components == "all":
        return tuple(COMPONENT_PREFIXES)
    names = [components] if isinstance(components, str) else list(components)
    if not names or "all" in names:
        return tuple(COMPONENT_PREFIXES)
    out = []
    for name in names:
        name = _ALIASES.get(name, name)
        if name not in COMPONENT_PREFIXES:
            raise UsageError(f"unknown DPOT component '{name}'; choose from "
                             f"{', '.join(COMPONENT_PREFIXES)} (or 'all')")
        out.append(name)
    return tuple(out)


def _selected(keys: Iterable[str], components: Sequence[str]) -> list[str]:
    prefixes = tuple(p for c in components for p in COMPONENT_PREFIXES[c])
    return [k for k in keys if k.startswith(prefixes)]


def _is_block_conv_weight(key: str) -> bool:
    return key.startswith("blocks.") and ".mlp." in key and key.endswith(".weight")


def _adapt(key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Make a checkpoint tensor fit the model where DPOT allows it (else return it as is)."""
    if value.shape == target.shape:
        return value
    if key == "pos_embed" and value.ndim == target.ndim and value.shape[:2] == target.shape[:2]:
        # Trained on another grid: interpolate, as for evaluation at another resolution.
        return resize_pos_embed(value, target.shape[2:]).to(value.dtype)
    return lift_block_kernel(key, value, target)


def lift_block_kernel(key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A block's 1x1 conv kernel of a lower dimension in the shape of ``target`` (trailing
    singleton axes, 2D -> 3D); any other tensor as it is."""
    if _is_block_conv_weight(key) and value.ndim < target.ndim:
        lifted = value.reshape(*value.shape, *([1] * (target.ndim - value.ndim)))
        if lifted.shape == target.shape:
            return lifted
    return value


# What gives a component its shapes, when the rest of the architecture matches.
_SHAPED_BY = {"time_agg": "t_in", "patch_embed": "the channels", "out": "the channels",
              "scale_feats": "the channels", "pos": "the grid", "cls_head": "n_cls"}


def component_of(key: str) -> str | None:
    """The official component a parameter name belongs to (``time_agg_layer.w`` -> ``time_agg``)."""
    return next((c for c, prefixes in COMPONENT_PREFIXES.items() if key.startswith(prefixes)), None)


def _partial_start(components: Sequence[str], own: Iterable[str], wrong_shape: Sequence[str],
                   missing: Sequence[str]) -> str:
    """``"; or start from the rest ...: model.init_components=[...]"`` when only some of the
    model's components fail to fit (the rest is then trained afresh), else ``""``."""
    unfit = {component_of(k) for k in [*wrong_shape, *missing]} - {None}
    present = {component_of(k) for k in own}
    rest = [c for c in components if c in present and c not in unfit]
    if not unfit or not rest or "blocks" in unfit:
        return ""  # the blocks are the model: without them nothing worth starting from is left
    shaped_by = " and ".join(sorted({_SHAPED_BY.get(c, c) for c in unfit}))
    return (f"; or start from the rest and train {', '.join(c for c in COMPONENT_PREFIXES if c in unfit)} "
            f"afresh (shaped by {shaped_by}): model.init_components=[{','.join(rest)}]")


def _describe(state: Mapping[str, torch.Tensor]) -> str:
    from pdeb_dpot import SIZES
    from pdeb_dpot.official import infer_official_config

    try:
        cfg = infer_official_config(state)
    except UsageError:
        return ""
    arch = (cfg["embed_dim"], cfg["depth"], cfg["n_blocks"], cfg["mlp_ratio"], cfg["out_layer_dim"])
    size = next((name for name, preset in SIZES.items() if tuple(preset.values()) == arch), None)
    return (f"; the checkpoint is a {cfg['ndim']}D DPOT{' size ' + repr(size) if size else ''} with "
            f"embed_dim={cfg['embed_dim']}, depth={cfg['depth']}, n_blocks={cfg['n_blocks']}, "
            f"mlp_ratio={cfg['mlp_ratio']}, out_layer_dim={cfg['out_layer_dim']}, "
            f"patch_size={cfg['patch_size']}, in_channels={cfg['in_channels']}, "
            f"in_timesteps={cfg['in_timesteps']}, out_timesteps={cfg['out_timesteps']}, "
            f"n_cls={cfg['n_cls']}, normalize={cfg['normalize']}; "
            + (f"a released size: run with --profile paper model.size={size} (the smoke and small profiles set "
               f"narrower widths), or set the model to match" if size else "set the model to match"))


def mixed_dimensions(state: Mapping[str, torch.Tensor]) -> list[int]:
    """The dimensions of a 2D+3D (or other mixed) checkpoint's models; ``[]`` for a single one."""
    return sorted({int(k.split(".")[1]) for k in state if k.startswith("by_dim.") and k.split(".")[1].isdigit()})


def one_dimension(state: Mapping[str, torch.Tensor], ndim: int, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The weights of one dimension's DPOT out of a 2D+3D checkpoint (``by_dim.<n>.`` entries);
    any other checkpoint is returned as it is.

    A mixed pre-training shares its blocks between dimensions, so each dimension's entries are
    a whole single-dimension DPOT: fine-tuning on one dataset starts from them. When the
    checkpoint has no model of ``ndim`` dimensions, the largest lower one is taken (a 2D -> 3D
    transfer, see :func:`load_pretrained`).

    Raises:
        UsageError: the checkpoint's models are all of more dimensions than ``ndim``.
    """
    dims = mixed_dimensions(state)
    if not dims:
        return dict(state)
    lower = [d for d in dims if d <= ndim]
    if not lower:
        raise UsageError(f"'{source}' holds DPOT for {', '.join(f'{d}D' for d in dims)} data, none for "
                         f"{ndim}D or fewer dimensions to start a {ndim}D model from")
    prefix = f"by_dim.{lower[-1]}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_pretrained(model: DPOT, source: str | os.PathLike | Mapping[str, torch.Tensor],
                    components: Iterable[str] | str | None = None,
                    source_name: str | None = None) -> list[str]:
    """Load DPOT weights into ``model``, all of them or some components.

    Args:
        model: The model to fill.
        source: A checkpoint path or a state dict (official key names).
        components: Official component names to load (see module docstring); ``None``,
            empty or ``'all'`` loads everything. When the checkpoint has fewer spatial
            dimensions than the model (2D -> 3D transfer) and no components are named, the
            official default ``('blocks',)`` applies.
        source_name: Name of the source in error messages (default: the path).

    Returns:
        The parameter names that were loaded.

    Raises:
        UsageError: unreadable file, or keys/shapes that do not fit, naming the first
            mismatches.
    """
    name = source_name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "state dict")
    state = read_state_dict(source) if isinstance(source, (str, os.PathLike)) else \
        unwrap_state_dict(source, name)
    source_ndim = state["pos_embed"].ndim - 2 if "pos_embed" in state else model.arch.ndim
    explicit = components is not None and components != [] and components != ()
    if source_ndim < model.arch.ndim and not explicit:
        components = TRANSFER_COMPONENTS
    components = normalize_components(components)

    own = model.state_dict()
    wanted = _selected(own, components)
    offered = _selected(state, components)
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in offered if k not in own]
    adapted = {k: _adapt(k, state[k], own[k]) for k in wanted if k in state}
    wrong_shape = [k for k, v in adapted.items() if v.shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        problems = []
        if wrong_shape:
            shown = ", ".join(f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                              for k in wrong_shape[:_SHOWN])
            problems.append(f"{len(wrong_shape)} shape mismatch(es): {shown}")
        if missing:
            problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:_SHOWN])}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:_SHOWN])}")
        scope = "" if set(components) == set(COMPONENT_PREFIXES) else f" (components {', '.join(components)})"
        raise UsageError(f"checkpoint '{name}' does not fit the DPOT model{scope}: "
                         f"{'; '.join(problems)}{_describe(state)}{_partial_start(components, own, wrong_shape, missing)}")
    result = model.load_state_dict(adapted, strict=False)
    if result.unexpected_keys:  # cannot happen after the checks above; keep loading honest
        raise UsageError(f"checkpoint '{name}': unexpected keys {result.unexpected_keys[:_SHOWN]}")
    return list(adapted)


def transfer_2d_to_3d(model_3d: DPOT, state_dict_2d: Mapping[str, torch.Tensor] | str | os.PathLike,
                      components: Iterable[str] = TRANSFER_COMPONENTS) -> list[str]:
    """The official 2D -> 3D weight transfer (``load_3d_components_from_2d``).

    Copies the chosen components of a 2D DPOT into a 3D one: block weights (1x1 conv
    kernels gain a trailing axis; mixer and norm weights are dimension-free) and, when
    named, the time aggregator as it is. Everything else keeps its value.

    Args:
        model_3d: The 3D model to fill.
        state_dict_2d: The 2D model's state dict or checkpoint path.
        components: Official component names; by default ``('blocks',)``, the official
            default. ``('blocks', 'time_agg')`` also copies the time aggregator.

    Returns:
        The parameter names that were copied.
    """
    if model_3d.arch.ndim != 3:
        raise UsageError(f"transfer_2d_to_3d needs a 3D DPOT, got a {model_3d.arch.ndim}D one")
    return load_pretrained(model_3d, state_dict_2d, components=list(components))
