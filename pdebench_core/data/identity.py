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

Each split also gets a hash of its own (:attr:`DataIdentity.split_hashes`): equal exactly
when the split holds the same trajectories, whatever the other splits hold. Two runs that
trained on different data but were scored on the same test trajectories share the test
split's hash, which is what the leaderboard ranks on. Generated data gets it from the
dataset's ``split_fingerprints`` where the generator states them (each trajectory's numbers
depending only on its split and index); where it cannot be told apart from the rest of the
data (a plugin's cache file, the spec fallback) the split's hash changes with the whole
dataset's, which may rank apart rows scored alike but never ranks together rows scored on
different trajectories.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

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
        split_hashes: ``{split: 16 hex digits}``, the identity of each split's trajectories alone.
    """

    source: str
    hash: str
    basis: str
    note: str | None = None
    n_train: int = 0
    split_hashes: Mapping[str, str] = field(default_factory=dict)


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


def _present_splits(dataset: Any) -> Iterator[tuple[str, Any]]:
    """``(split, trajectories)`` for each split the dataset has, in train, val, test order."""
    for split in SPLITS:
        try:
            trajectories = dataset.split(split)
        except Exception:  # a dataset without this split
            continue
        yield split, trajectories


def split_plan(dataset: Any, roots: Sequence[str] = ()) -> dict[str, Any]:
    """``{split: {"pool", "n", "indices"}}``: which trajectories of the source form each split.

    ``roots`` are prefixes (the data's path as given and resolved) left out of the pool names.
    """
    plan = {}
    for split, trajectories in _present_splits(dataset):
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


def _split_sources(dataset: Any) -> dict[str, str | None]:
    """``{split: file}``: the file each split of the dataset reads, by its reader's label
    (``None`` for a split whose trajectories name no file)."""
    from pdebench_core.data.layouts.common import split_label

    sources = {}
    for split, trajectories in _present_splits(dataset):
        label = getattr(trajectories, "path", None)
        sources[split] = split_label(str(label))[0] if label else None
    return sources


def _source_files(dataset: Any) -> list[str]:
    """Files the splits are read from, when every split reads a file (generated data's cache)."""
    files = _split_sources(dataset).values()
    if any(file is None or not Path(file).exists() for file in files):
        return []
    return sorted(set(files))


def _arrays_hashes(dataset: Any) -> tuple[str, dict[str, str]]:
    """SHA-256 of every trajectory's float32 bytes, split by split, and of each split's alone."""
    import numpy as np

    digest, per_split = hashlib.sha256(), {}
    for split, trajectories in _present_splits(dataset):
        digest.update(split.encode())
        own = hashlib.sha256()
        for trajectory in trajectories:
            if hasattr(trajectory, "detach"):
                trajectory = trajectory.detach().cpu().numpy()
            data = np.ascontiguousarray(trajectory, dtype=np.float32).tobytes()
            digest.update(data)
            own.update(data)
        per_split[split] = own.hexdigest()
    return digest.hexdigest(), per_split


def _split_files(dataset: Any) -> dict[str, list[Path]]:
    """``{split: files}`` when every split reads one trajectory per file (``FileTrajectories``)."""
    found = {}
    for split, trajectories in _present_splits(dataset):
        files = getattr(trajectories, "files", None)
        if files is None:
            return {}
        found[split] = [Path(f) for f in files]
    return found if any(found.values()) else {}


def _folder_of(files: Mapping[str, list[Path]]) -> Path:
    import os

    return Path(os.path.commonpath([str(f.resolve().parent) for listed in files.values() for f in listed]))


@dataclass(frozen=True)
class _Content:
    """What a dataset's hash rests on (see :func:`_content`)."""

    basis: str
    digest: str
    source: str
    note: str | None = None
    per_split: Mapping[str, Any] = field(default_factory=dict)  # each split's own content, where known


def _content(dataset: Any, path: str | None) -> _Content:
    """What the data is, by the first rule that applies. The source label says where it came
    from, for the leaderboard: the file or folder read, ``generated`` for data pdeb generated
    (a fingerprint, or files in pdeb's data cache), ``in memory`` for trajectories a plugin
    made itself, ``unknown`` when they could not be read."""
    if path:
        beside = _files_read_beside(dataset, path)  # DPOT's test file, paired with the train file given
        digest = file_content_hash(path) if not beside else _digest(
            [file_content_hash(path), *[(Path(f).name, file_content_hash(f)) for f in beside]])
        return _Content("file", digest, Path(path).name)
    fingerprint = getattr(dataset, "fingerprint", None)
    if fingerprint:
        return _Content("fingerprint", str(fingerprint), GENERATED,
                        per_split=dict(getattr(dataset, "split_fingerprints", None) or {}))
    per_file = _split_files(dataset)
    if per_file:  # the bytes of each file, by its name in the common folder (moving the folder keeps the hash)
        folder = _folder_of(per_file)
        listed = {split: [(str(f.resolve().relative_to(folder)), file_content_hash(f)) for f in files]
                  for split, files in per_file.items()}
        return _Content("files", _digest(listed), folder.name, per_split=listed)
    files = _source_files(dataset)
    if files:
        return _Content("cache file", _digest([file_content_hash(f) for f in files]), _cache_files_label(files))
    try:
        whole, per_split = _arrays_hashes(dataset)
        return _Content("arrays", whole, IN_MEMORY, per_split=per_split)
    except Exception as exc:  # data that cannot be read here: say what the hash rests on
        note = (f"data hash from the spec and split sizes only: the trajectories could not be read "
                f"({type(exc).__name__}), so two different data sets of one spec would share it")
        return _Content("spec", _digest(getattr(dataset.spec, "to_dict", dict)()), UNKNOWN, note)


def _files_read_beside(dataset: Any, path: str) -> list[str]:
    """Local files the splits read besides ``path`` (and outside it, for a folder): the test
    file a layout pairs with the train file it was given. Their bytes are part of the data."""
    if "://" in str(path):
        return []
    given = Path(path).resolve()
    found = set()
    for file in filter(None, _split_sources(dataset).values()):
        resolved = Path(file).resolve()
        if resolved.is_file() and resolved != given and given not in resolved.parents:
            found.add(str(resolved))
    return sorted(found)


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
    content = _content(dataset, path)
    plan = split_plan(dataset, (str(path), str(Path(path).resolve())) if path else ())
    shape = _shape_of(dataset)
    value = _digest({"basis": content.basis, "content": content.digest, "plan": plan, "shape": shape})[:16]
    return DataIdentity(content.source, value, content.basis, content.note, int((plan.get("train") or {}).get("n", 0)),
                        _split_hashes(content, plan, shape))


def _split_hashes(content: _Content, plan: Mapping[str, Any], shape: Mapping[str, Any]) -> dict[str, str]:
    """Each split's own identity: its content alone where the basis tells it apart, else the
    whole content with the split's place in the plan."""
    out = {}
    for split, placed in plan.items():
        if split in content.per_split:
            own = {"basis": content.basis, "split": split, "content": content.per_split[split], "shape": shape}
        else:
            own = {"basis": content.basis, "split": split, "content": content.digest, "plan": placed, "shape": shape}
        out[split] = _digest(own)[:16]
    return out


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
