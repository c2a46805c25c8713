"""What identifies the data a run saw: a content fingerprint plus the split plan.

Two runs share a data hash exactly when they saw the same trajectories in the same splits:

* generated data is identified by its ``fingerprint`` (the digest of every data-affecting
  setting and the generator's version, the same digest that names its cache file);
* data read from a file (``path=``) by the SHA-256 of the file's bytes (every file, with its
  relative name, for a folder), streamed once and remembered by path, size and modification
  time, so a second run does not read the file again;
* data a plugin reads one file per trajectory (``FileTrajectories``) by each file's bytes and
  its name in their common folder;
* generated data of a plugin that exposes no fingerprint by the bytes of the cache file its
  splits are read from, and in-memory data by the bytes of its trajectories.

A file given with ``path=`` is always hashed by its bytes, whatever the dataset says of itself.
The split plan says which trajectories form each split (their indices in the source), so a
different ``n_train`` or another split of the same file changes the hash. Only when none of
the above is possible does the hash fall back to the spec and the split sizes, with a note.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

SPLITS = ("train", "val", "test")
CHUNK_BYTES = 8 * 2**20
GENERATED = "generated"
IN_MEMORY = "in memory"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DataIdentity:
    """The identity of one dataset of a run.

    Attributes:
        source: The name of the file or folder the data was read from, ``generated``,
            ``in memory`` (trajectories a plugin made itself) or ``unknown``.
        hash: 16 hex digits: content fingerprint plus split plan.
        basis: What the content part is: ``fingerprint``, ``file``, ``files`` (one file per
            trajectory), ``cache file``, ``arrays`` or ``spec`` (the fallback that does not see
            the values).
        note: Why the fallback was used (``None`` otherwise).
        n_train: Trajectories in the train split.
    """

    source: str
    hash: str
    basis: str
    note: str | None = None
    n_train: int = 0


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _files_of(path: Path) -> list[tuple[str, Path]]:
    """``(name, file)`` pairs: the file itself (its name does not count: a renamed copy is the same
    data), or every file under a folder by relative name."""
    if path.is_file():
        return [("", path)]
    return [(str(p.relative_to(path)), p) for p in sorted(path.rglob("*")) if p.is_file()]


def file_content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes (of every file and its relative name, for a folder).

    The result is remembered next to the other data checks, keyed by the path, size and
    modification time of every file read, so it is computed once per version of the data.
    """
    from pdebench_core.data.integrity import file_identity, remember, remembered
    from pdebench_core.data.remote import as_url, stat

    url = as_url(path)
    if url is not None:  # streamed data: the server's version of the file, not its bytes (never all read)
        version = json.dumps(stat(url).identity(), sort_keys=True)
        return "url-" + hashlib.sha256(version.encode()).hexdigest()
    root = Path(path)
    identity = file_identity(root)
    known = (remembered("content", identity) or {}).get("sha256")
    if known:
        return str(known)
    digest = hashlib.sha256()
    for name, file in _files_of(root):
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(CHUNK_BYTES), b""):
                digest.update(block)
    value = digest.hexdigest()
    remember("content", identity, {"sha256": value})
    return value


def _pool_of(trajectories: Any, roots: Sequence[str]) -> str:
    """Which stored array a split reads, without the folder it lies in (moving data keeps its hash)."""
    from pdebench_core.data.layouts.common import split_label

    key = getattr(trajectories, "key", None) or getattr(getattr(trajectories, "reader", None), "key", None)
    label = str(getattr(trajectories, "path", "") or "")
    root = next((r for r in roots if r and label.startswith(r)), None)
    if root:
        label = label[len(root):].lstrip("/\\")
    else:
        label = Path(split_label(label)[0]).name if label else ""
    return f"{label}|{key or ''}"


def split_plan(dataset: Any, roots: Sequence[str] = ()) -> dict[str, Any]:
    """``{split: {"pool", "n", "indices"}}``: which trajectories of the source form each split.

    ``roots`` are prefixes (the data's path as given and resolved) left out of the pool names.
    """
    plan = {}
    for split in SPLITS:
        try:
            trajectories = dataset.split(split)
        except Exception:  # a dataset without this split
            continue
        indices = getattr(trajectories, "indices", None)
        plan[split] = {
            "pool": _pool_of(trajectories, roots),
            "n": len(trajectories),
            "indices": _digest(list(indices)) if indices is not None else None,
        }
    return plan


def _shape_of(dataset: Any) -> dict[str, Any]:
    """What the reader made of the data (fields, grid, frames); horizon and ``t_in`` only say
    how the trajectories are used, so they are left out."""
    spec = getattr(dataset, "spec", None)
    if spec is None:
        return {}
    return {"fields": list(spec.fields), "spatial_shape": list(spec.spatial_shape), "n_frames": spec.n_frames}


def _source_files(dataset: Any) -> list[str]:
    """Files the splits are read from, when every split reads a file (generated data's cache)."""
    from pdebench_core.data.layouts.common import split_label

    files = set()
    for split in SPLITS:
        try:
            label = getattr(dataset.split(split), "path", None)
        except Exception:
            continue
        if not label:
            return []
        file = split_label(label)[0]
        if not Path(file).exists():
            return []
        files.add(file)
    return sorted(files)


def _arrays_hash(dataset: Any) -> str:
    """SHA-256 of every trajectory's float32 bytes, split by split."""
    import numpy as np

    digest = hashlib.sha256()
    for split in SPLITS:
        try:
            trajectories = dataset.split(split)
        except Exception:
            continue
        digest.update(split.encode())
        for trajectory in trajectories:
            if hasattr(trajectory, "detach"):
                trajectory = trajectory.detach().cpu().numpy()
            digest.update(np.ascontiguousarray(trajectory, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _split_files(dataset: Any) -> dict[str, list[Path]]:
    """``{split: files}`` when every split reads one trajectory per file (``FileTrajectories``)."""
    found = {}
    for split in SPLITS:
        try:
            files = getattr(dataset.split(split), "files", None)
        except Exception:  # a dataset without this split
            continue
        if files is None:
            return {}
        found[split] = [Path(f) for f in files]
    return found if any(found.values()) else {}


def _folder_of(files: Mapping[str, list[Path]]) -> Path:
    import os

    return Path(os.path.commonpath([str(f.resolve().parent) for listed in files.values() for f in listed]))


def _content(dataset: Any, path: str | None) -> tuple[str, str, str | None, str]:
    """``(basis, content digest, note, source label)`` for one dataset, by the first rule that
    applies. The label says where the data came from, for the leaderboard: the file or folder
    read, ``generated`` for data pdeb generated (a fingerprint, or files in pdeb's data
    cache), ``in memory`` for trajectories a plugin made itself, ``unknown`` when they could
    not be read."""
    if path:
        return "file", file_content_hash(path), None, Path(path).name
    fingerprint = getattr(dataset, "fingerprint", None)
    if fingerprint:
        return "fingerprint", str(fingerprint), None, GENERATED
    per_file = _split_files(dataset)
    if per_file:  # the bytes of each file, by its name in the common folder (moving the folder keeps the hash)
        folder = _folder_of(per_file)
        return "files", _digest({split: [(str(f.resolve().relative_to(folder)), file_content_hash(f)) for f in files]
                                 for split, files in per_file.items()}), None, folder.name
    files = _source_files(dataset)
    if files:
        return "cache file", _digest([file_content_hash(f) for f in files]), None, _cache_files_label(files)
    try:
        return "arrays", _arrays_hash(dataset), None, IN_MEMORY
    except Exception as exc:  # data that cannot be read here: say what the hash rests on
        note = (f"data hash from the spec and split sizes only: the trajectories could not be read "
                f"({type(exc).__name__}), so two different data sets of one spec would share it")
        return "spec", _digest(getattr(dataset.spec, "to_dict", dict)()), note, UNKNOWN


def _cache_files_label(files: list[str]) -> str:
    """``generated`` for files in pdeb's data cache, else the name of their common folder (a
    plugin's own canonical files)."""
    from pdebench_core import paths

    resolved = [Path(f).resolve() for f in files]
    cache = paths.data_dir().resolve()
    if all(cache in f.parents for f in resolved):
        return GENERATED
    return Path(os.path.commonpath([str(f.parent) for f in resolved])).name


def dataset_identity(dataset: Any, path: str | None = None) -> DataIdentity:
    """The identity of one dataset.

    Args:
        dataset: A dataset object (``spec``, ``split(name)``, optionally ``fingerprint``).
        path: The file or folder it was read from (``data.<name>.path``), or ``None``.
    """
    basis, content, note, source = _content(dataset, path)
    plan = split_plan(dataset, (str(path), str(Path(path).resolve())) if path else ())
    value = _digest({"basis": basis, "content": content, "plan": plan, "shape": _shape_of(dataset)})[:16]
    return DataIdentity(source, value, basis, note, int((plan.get("train") or {}).get("n", 0)))


def combined_hash(identities: Mapping[str, DataIdentity]) -> str:
    """One hash for everything a run saw: every dataset's name and identity."""
    return _digest(sorted((name, ident.hash) for name, ident in identities.items()))[:16]


def dataset_identities(datasets: Mapping[str, Any], paths: Mapping[str, str | None] | None = None,
                       ) -> dict[str, DataIdentity]:
    """:func:`dataset_identity` of every dataset, ``paths`` giving the file each was read from."""
    return {name: dataset_identity(ds, (paths or {}).get(name)) for name, ds in datasets.items()}


def grid_label(shape: Sequence[int]) -> str:
    """``(64, 64)`` -> ``"64x64"``."""
    return "x".join(str(int(n)) for n in shape)
