"""Checkpoints: plain state dicts written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pdebench_core.errors import PdebError, UsageError


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    A crash or a full disk while writing leaves any previous file at ``path`` intact.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise PdebError(f"could not write checkpoint {path}: {exc.strerror or exc}; "
                        f"the previous checkpoint is untouched") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; pickled code is refused."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        first = lines[0].split(" was not")[0] if lines else "unsafe content"
        raise UsageError(
            f"checkpoint {path} is not a plain state dict (it holds pickled objects: {first[:160]}); "
            f"save model.state_dict() instead"
        ) from None
    except Exception as exc:
        raise UsageError(f"checkpoint {path} cannot be read: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(state, dict):
        raise UsageError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state
