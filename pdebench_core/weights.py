"""Loading model weights from a checkpoint file, a URL or a finished run."""

from __future__ import annotations

import sys
from pathlib import Path

from pdebench_core import paths
from pdebench_core.checkpoint import load_checkpoint
from pdebench_core.data.remote import as_url, local_copy, local_or_url
from pdebench_core.errors import UsageError


def resolve_checkpoint(ref: str) -> Path:
    """A checkpoint path, a URL (downloaded once into the cache), or a run id whose
    ``checkpoints/last.pt`` to use."""
    ref = local_or_url(ref)
    url = as_url(ref)
    if url is not None:
        return local_copy(url, why="a checkpoint is read whole")
    path = Path(ref).expanduser()
    if path.is_file():
        return path
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


def load_weights(model, ref: str) -> None:
    """Load weights into ``model`` strictly, naming the first mismatches on failure.

    A model may name its weights in a checkpoint of another layout through a method
    ``weights_from(state_dict) -> state_dict`` (DPOT picks its dimension out of a 2D+3D
    pre-training); the result is then loaded strictly.
    """
    path = resolve_checkpoint(ref)
    weights = state_dict_of(load_checkpoint(path))
    if callable(getattr(model, "weights_from", None)):
        weights = model.weights_from(weights)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(f"shape {wrong[:3]}")
        raise UsageError(f"checkpoint {path} does not fit this model: {'; '.join(parts)}")
    model.load_state_dict(weights)
