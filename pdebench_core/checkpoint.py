"""Checkpoints: plain state dicts written atomically, read with ``weights_only=True``.

Two formats:

- a single file (``step-N.pt``, ``last.pt``, ``best.pt``) holding the whole state: what
  one process and DDP runs write;
- a sharded checkpoint (FSDP runs): a directory per checkpoint in which every process writes
  its own shards with ``torch.distributed.checkpoint`` (``model/``, ``optimizer/``), next to
  ``trainer.pt`` with everything else (step, schedule, every rank's random state, config).
  ``last.pt`` and ``best.pt`` are then copies of that ``trainer.pt``; their entry ``sharded``
  names the directory. :func:`load_checkpoint` assembles the full weights of such a
  checkpoint in one process, and :func:`export_full_checkpoint` writes them as one file.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from pdebench_core.diskspace import write_failed
from pdebench_core.errors import UsageError
from pdebench_core.signals import stop_behind

SHARDED = "sharded"  # the entry of a manifest naming its sharded directory
TRAINER_STATE = "trainer.pt"  # everything but the shards, inside a sharded directory
INTEGRITY = "integrity"  # the entry holding the checksum of everything else


class DamagedCheckpoint(UsageError):
    """A checkpoint whose contents no longer match the checksum stored when it was written."""


def state_digest(state: Any) -> str:
    """SHA-256 over every tensor's bytes (with its key path, dtype and shape) and every plain
    value of a (nested) state dict, in a fixed order."""
    import hashlib
    import json

    import torch

    digest = hashlib.sha256()

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{prefix}|{t.dtype}|{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}.{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{prefix}[{i}]", item)
        else:
            digest.update(f"{prefix}={json.dumps(value, sort_keys=True, default=str)}".encode())

    visit("", {k: v for k, v in state.items() if k != INTEGRITY})
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    A crash or a full disk while writing leaves any previous file at ``path`` intact.
    """
    import torch

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where the checkpoints folder should be, no permission
        raise write_failed(path, exc, "the previous checkpoint is untouched") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    state = {**state, INTEGRITY: {"sha256": state_digest(state)}}  # verified by read_checkpoint
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk surfaces from torch.save as either
        stop = stop_behind(exc)
        if stop is not None:  # a signal's stop met halfway, not a failed write
            raise stop from None
        raise write_failed(path, exc, "the previous checkpoint is untouched") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _torch_version_allowed():
    """Let ``weights_only`` loading accept a ``TorchVersion`` (a plain str subclass), which
    earlier pdeb versions stored as torch's version: scoped on torch >= 2.5, process-wide on
    2.4 (``add_safe_globals``); torch 2.3 has no allow-list, and refuses such a file."""
    import contextlib

    import torch

    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):
        return serialization.safe_globals([torch.torch_version.TorchVersion])
    if hasattr(serialization, "add_safe_globals"):
        serialization.add_safe_globals([torch.torch_version.TorchVersion])
    return contextlib.nullcontext()


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read one checkpoint file with ``weights_only=True`` as it is (a sharded checkpoint's
    manifest without its weights); pickled code is refused."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        with _torch_version_allowed():
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        if not lines:  # the unpickler choked on the bytes themselves (a web page, a text file)
            raise DamagedCheckpoint(f"checkpoint {path} cannot be read: it is not a torch checkpoint (a web page, "
                                    f"a text file or damaged bytes?)") from None
        first = lines[0].split(" was not")[0]
        raise UsageError(
            f"checkpoint {path} is not a plain state dict (it holds pickled objects: {first[:160]}); "
            f"save model.state_dict() instead"
        ) from None
    except PermissionError as exc:
        raise UsageError(f"checkpoint {path} cannot be opened ({exc.strerror}); fix its permissions") from None
    except Exception as exc:  # empty, truncated or corrupt bytes: torch's zip reader refuses them
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:200] or type(exc).__name__
        raise DamagedCheckpoint(f"checkpoint {path} cannot be read ({reason}): it is truncated or damaged") from None
    if not isinstance(state, dict):
        raise UsageError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    stored = state.pop(INTEGRITY, None)
    if isinstance(stored, dict) and stored.get("sha256") != state_digest(state):
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: its contents no longer match the checksum "
                                f"stored when it was written")
    return state


def is_training_state(state: dict[str, Any]) -> bool:
    """Whether a checkpoint holds what training continues from (a step, weights), not bare weights."""
    return isinstance(state.get("step"), int) and (isinstance(state.get("model"), dict) or SHARDED in state)


class IntactCheckpoint(NamedTuple):
    """A checkpoint found intact, and what was read to tell (so it need not be read again).

    Attributes:
        path: The file (a sharded checkpoint's manifest, ``trainer.pt``).
        state: Its contents, as :func:`read_checkpoint` returns them.
    """

    path: Path
    state: dict


def newest_intact(folder: str | os.PathLike, warn=print) -> IntactCheckpoint | None:
    """The checkpoint to continue from: ``last.pt`` when intact, else the newest intact
    ``step-*`` checkpoint (saying which and why through ``warn``); None when there is none.

    A file that cannot be read, fails its checksum, or holds no training state (bare
    weights saved over ``last.pt``, a folder in its place) is passed over.

    Raises:
        DamagedCheckpoint: no checkpoint in ``folder`` can be used.
    """
    folder = Path(folder)
    candidates = [folder / "last.pt"] + sorted((p for p in folder.glob("step-*") if not p.name.startswith(".")),
                                               reverse=True)
    unusable: list[str] = []
    for path in (p for p in candidates if p.exists()):
        manifest = path / TRAINER_STATE if path.is_dir() else path
        try:
            state = read_checkpoint(manifest)
        except UsageError as exc:  # damaged bytes, a folder without a manifest, no permission
            unusable.append(f"{path.name}: {exc}")
            continue
        if not is_training_state(state):
            unusable.append(f"{path.name}: holds no training state (no step or weights)")
            continue
        if unusable:
            warn(f"warning: passed over {'; '.join(unusable)}; using {path.name}")
        return IntactCheckpoint(manifest, state)
    if unusable:
        raise DamagedCheckpoint(f"no checkpoint in {folder} can be used ({'; '.join(unusable)}); start a new run "
                                f"instead (without --resume, under another --run-id)")
    return None


def load_checkpoint(path: str | os.PathLike, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; pickled code is refused.

    A sharded checkpoint (its manifest, or its directory) comes back with the full model
    weights under ``model``, assembled in this process without a process group.

    Args:
        path: The checkpoint file, or a sharded checkpoint's directory.
        state: What :func:`read_checkpoint` already read from ``path`` (it is not read again).
    """
    path = Path(path).expanduser()
    if path.is_dir() and (path / TRAINER_STATE).is_file():
        path = path / TRAINER_STATE
    state = read_checkpoint(path) if state is None else state
    if SHARDED in state:
        state["model"] = full_weights(sharded_directory(path, state))
    return state


def sharded_directory(manifest: Path, state: dict[str, Any]) -> Path:
    """The directory a sharded checkpoint's manifest (or ``trainer.pt``) refers to."""
    folder = manifest.parent.parent if manifest.name == TRAINER_STATE else manifest.parent
    directory = folder / str(state[SHARDED])
    if not (directory / "model").is_dir():
        raise UsageError(f"checkpoint {manifest} refers to the sharded checkpoint {directory}, which is missing "
                         f"or incomplete")
    return directory


def save_sharded(folder: Path, name: str, model, optimizer, state: dict[str, Any], is_main: bool) -> Path:
    """Every process writes its shards of ``model`` and ``optimizer`` to ``folder/name``.

    A collective call. The directory appears complete or not at all: the shards go to a
    partial directory that rank 0 renames once every rank has written.

    Args:
        folder: The run's checkpoint folder (shared by every process).
        name: Directory name, e.g. ``step-00000100``.
        model: The FSDP-sharded model.
        optimizer: Its optimizer, or None.
        state: Everything else (plain data), written to ``trainer.pt`` with ``sharded: name``.
        is_main: Whether this process is rank 0.

    Returns:
        The directory.
    """
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    final, partial = folder / name, folder / f".{name}.partial"
    try:
        if is_main:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        dist.barrier()
        dcp.save(get_model_state_dict(model), checkpoint_id=partial / "model")
        if optimizer is not None:
            dcp.save(get_optimizer_state_dict(model, optimizer), checkpoint_id=partial / "optimizer")
        dist.barrier()  # every rank's shards are on disk
        if is_main:
            save_checkpoint({**state, SHARDED: name}, partial / TRAINER_STATE)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            for stale in folder.glob(".*.partial"):  # left by a save that a lost process broke off
                shutil.rmtree(stale, ignore_errors=True)
        dist.barrier()  # the directory exists before any rank may read it back
    except (OSError, RuntimeError) as exc:
        from pdebench_core.distributed import is_peer_failure

        if is_peer_failure(exc):
            raise  # a lost process, not the disk: the run reports which rank stopped
        raise write_failed(final, exc, "the previous checkpoint is untouched") from None
    return final


def load_sharded(directory: Path, model, optimizer) -> None:
    """Every process reads its shards of a :func:`save_sharded` checkpoint (a collective call).

    The optimizer gets back exactly the states it had: parameters that had no state when
    the checkpoint was written (never trained yet, e.g. one dimension of a mixture) have none.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict, set_model_state_dict)

    weights = get_model_state_dict(model)
    dcp.load(weights, checkpoint_id=directory / "model")
    set_model_state_dict(model, weights)
    if optimizer is None or not (directory / "optimizer").is_dir():
        return
    # The template holds a state for every parameter (torch initialises them all); keep
    # only those the checkpoint has, keyed "state.<parameter name>.<entry>".
    saved = dcp.FileSystemReader(directory / "optimizer").read_metadata().state_dict_metadata
    with_state = {key[len("state."):].rsplit(".", 1)[0] for key in saved if key.startswith("state.")}
    states = get_optimizer_state_dict(model, optimizer)
    dcp.load(states, checkpoint_id=directory / "optimizer",
             planner=dcp.DefaultLoadPlanner(allow_partial_load=True))
    states["state"] = {name: value for name, value in states["state"].items() if name in with_state}
    _set_optimizer_states(model, optimizer, states, with_state, StateDictOptions(strict=False))


def load_full_optimizer_state(model, optimizer, saved: dict[str, Any]) -> None:
    """Give a sharded model's optimizer the state a one-process run saved (torch's own
    ``optimizer.state_dict()``, parameters numbered in the order of its groups); each rank
    keeps the part of its shards. Parameters without a saved state get none."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    names = {parameter: _plain_name(name) for name, parameter in model.named_parameters()}
    shape = [len(group["params"]) for group in optimizer.param_groups]
    if [len(group["params"]) for group in saved["param_groups"]] != shape:
        raise UsageError(f"the checkpoint's optimizer has parameter groups of other sizes than this run's {shape}; "
                         f"resume it with the settings it was written with")
    number_to_name = {}
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups):
        number_to_name.update(zip(saved_group["params"], (names[p] for p in group["params"])))
    states = {"state": {number_to_name[number]: value for number, value in saved["state"].items()},
              "param_groups": [{**group, "params": [number_to_name[n] for n in group["params"]]}
                               for group in saved["param_groups"]]}
    _set_optimizer_states(model, optimizer, states, set(states["state"]),
                          StateDictOptions(full_state_dict=True, strict=False))


def _set_optimizer_states(model, optimizer, states: dict[str, Any], with_state: set[str], options) -> None:
    """``set_optimizer_state_dict`` with only the parameters in ``with_state`` left holding a state:
    torch gives every parameter one first (a zero step), which a parameter that had none when the
    checkpoint was written must not keep (its first real step would then count as its second)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, states, options=options)
    for name, parameter in model.named_parameters():
        if _plain_name(name) not in with_state:
            optimizer.state.pop(parameter, None)


def _plain_name(name: str) -> str:
    """A parameter's name without the wrappers' prefixes (``_orig_mod.`` of torch.compile)."""
    return ".".join(part for part in name.split(".") if part not in ("_orig_mod", "module"))


def full_weights(directory: Path) -> dict[str, Any]:
    """The full model state dict of a sharded checkpoint, read in this one process."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(directory / "model")
    try:
        entries = reader.read_metadata().state_dict_metadata
        weights = {key: torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
                   for key, meta in entries.items() if isinstance(meta, TensorStorageMetadata)}
        with warnings.catch_warnings():  # one process without a process group is the intent here
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(weights, storage_reader=reader, no_dist=True)
    except Exception as exc:  # a damaged directory: name it instead of a deep traceback
        raise UsageError(f"sharded checkpoint {directory} cannot be read: {str(exc).splitlines()[0][:200]}") from None
    return weights


def export_full_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Write a sharded (FSDP) checkpoint as one ordinary checkpoint file, e.g. for release.

    Runs in one process, without a process group or GPUs. The file holds the full weights
    under ``model`` and the run's config, spec, versions and step, but no optimizer state;
    every pdeb command that takes a checkpoint file reads it.

    Args:
        source: The manifest (``checkpoints/last.pt`` or ``best.pt`` of an FSDP run), a
            ``trainer.pt`` or the sharded directory itself.
        destination: The file to write.

    Returns:
        ``destination``.
    """
    state = load_checkpoint(source)
    for key in (SHARDED, "optimizer", "rng", "noise_rng"):
        state.pop(key, None)
    return save_checkpoint(state, Path(destination).expanduser())
