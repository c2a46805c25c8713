"""Loading model weights from a checkpoint file, a URL or a finished run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from pdebench_core import paths
from pdebench_core.checkpoint import load_checkpoint
from pdebench_core.data.remote import as_url, local_copy, local_or_url
from pdebench_core.errors import UsageError, path_error_line


def resolve_checkpoint(ref: str) -> Path:
    """A checkpoint path, a URL (downloaded once into the cache), or a run id whose
    ``checkpoints/last.pt`` to use."""
    ref = local_or_url(ref)
    url = as_url(ref)
    if url is not None:
        return local_copy(url, why="a checkpoint is read whole")
    path = Path(ref).expanduser()
    try:
        if path.is_file():
            return path
    except OSError as exc:  # a name too long, a file where a folder belongs
        raise UsageError(f"checkpoint {path_error_line(exc) or exc}") from None
    from pdebench_core.checkpoint import newest_intact
    from pdebench_core.rundir import RunDir

    run = RunDir(paths.runs_dir() / ref) if "/" not in ref and ref not in (".", "..") else None
    if run is not None and run.path.is_dir() and not run.checkpoints.is_dir():
        raise UsageError(f"run '{ref}' has no checkpoints (it trained no weights, e.g. an evaluate run); give a "
                         f"run that trained, or a .pt path")
    if run is not None and run.checkpoints.is_dir():
        found = newest_intact(run.checkpoints, warn=lambda line: print(line, file=sys.stderr))  # a damaged last.pt
        if found is not None:
            return found.path
        raise UsageError(f"run '{ref}' has no checkpoint in {run.checkpoints}; give another run or a .pt path")
    if "/" in ref or path.suffix in (".pt", ".pth", ".ckpt", ".bin"):  # meant as a file
        raise UsageError(f"checkpoint file '{ref}' does not exist; check the path (or give a run id from "
                         f"'pdeb runs')")
    raise UsageError(f"no checkpoint file or run named '{ref}'; give a .pt path, a URL or a run id from "
                     f"'pdeb runs'")


def state_dict_of(state: dict) -> dict:
    """The model weights inside a checkpoint: ours and the official ``{'model': ...}`` format,
    or a bare state dict; a ``module.`` prefix (from DataParallel/DDP) is removed."""
    weights = state.get("model", state)
    if not isinstance(weights, dict):
        raise UsageError("checkpoint has no state dict under 'model'")
    if weights and all(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items()}
    return weights


def load_weights(model, ref: str, config: Mapping[str, Any] | None = None) -> Path:
    """Load weights into ``model`` strictly, naming the first mismatches on failure.

    A model may name its weights in a checkpoint of another layout through a method
    ``weights_from(state_dict) -> state_dict`` (DPOT picks its dimension out of a 2D+3D
    pre-training); the result is then loaded strictly.

    Args:
        model: The built model.
        ref: A checkpoint file, a URL or a run id (see :func:`resolve_checkpoint`).
        config: This run's resolved config: a checkpoint that does not fit is then refused
            with the settings its own run had otherwise (profile, model, input frames, grid).

    Returns:
        The checkpoint file read (for a run id, its newest intact checkpoint).
    """
    path = resolve_checkpoint(ref)
    checkpoint = load_checkpoint(path)
    weights = state_dict_of(checkpoint)
    if callable(getattr(model, "weights_from", None)):
        weights = model.weights_from(weights)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [f"{k}: checkpoint {tuple(weights[k].shape)}, model {tuple(v.shape)}" for k, v in own.items()
             if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"the model has {missing[:3]} that the checkpoint lacks")
        if unexpected:
            parts.append(f"the checkpoint has {unexpected[:3]} that the model lacks")
        if wrong:
            parts.append(f"shapes differ: {'; '.join(wrong[:3])}")
        hint = fit_hint(checkpoint.get("config") if isinstance(checkpoint, Mapping) else None, config)
        raise UsageError(f"checkpoint {path} does not fit this model: {'; '.join(parts)}{hint}")
    model.load_state_dict(weights)
    return path


#: Settings that shape a model's weights, besides ``model.*``.
_SHAPING = ("run.profile", "train.resolution", "train.t_out")


def fit_hint(written_with: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str:
    """``"; its run had run.profile=smoke, model.embed_dim=32 (this run: small, 128): ..."``:
    the settings that shape the weights and differ between the checkpoint's run and this one,
    with what to do. Empty when the checkpoint stores no config or none of them differs."""
    if not isinstance(written_with, Mapping) or not isinstance(now, Mapping):
        return ""
    from pdebench_core.resume import changes

    differing = {key: values for key, values in changes(written_with, now).items()
                 if key in _SHAPING or key.startswith("model.") and key not in ("model.init", "model.init_components")}
    t_in = [{s.get("t_in") for s in (config.get("data") or {}).values() if isinstance(s, Mapping)}
            for config in (written_with, now)]
    if t_in[0] and t_in[1] and t_in[0] != t_in[1]:
        differing["data.<name>.t_in"] = tuple(", ".join(str(v) for v in sorted(side, key=str)) for side in t_in)
    if not differing:
        return ""
    shown = list(differing.items())[:4]
    theirs = ", ".join(f"{key}={old}" for key, (old, _) in shown)
    ours = ", ".join(str(new) for _, (_, new) in shown)
    more = f" and {len(differing) - len(shown)} more" if len(differing) > len(shown) else ""
    profile = f" (--profile {differing['run.profile'][0]})" if "run.profile" in differing else ""
    return (f"; its run had {theirs}{more} (this run: {ours}): give the same settings{profile}, or for dpot "
            f"start from it with model.init, which resizes the positional embedding to this grid and names "
            f"the model.init_components that leave out the parts that do not fit")


def run_of_checkpoint(ref: str | None) -> str | None:
    """The id of the run whose weights ``ref`` names: a run id, or a file in a run's
    ``checkpoints`` folder; ``None`` for anything else (a released file, a URL)."""
    if not ref or as_url(local_or_url(str(ref))) is not None:
        return None
    runs = paths.runs_dir()
    if "/" not in str(ref) and (runs / str(ref)).is_dir():
        return str(ref)
    try:
        path = Path(str(ref)).expanduser().resolve()
        inside = path.relative_to(runs.resolve()).parts
    except (OSError, ValueError):  # outside the runs folder, or a name the system refuses
        return None
    return inside[0] if len(inside) >= 3 and inside[1] == "checkpoints" else None
