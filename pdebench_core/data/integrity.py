"""Checks that data is sound before a model sees it: finite values and intact cache files.

Both checks read the data once, streaming one trajectory at a time, and remember the
outcome in a small stamp under ``$PDEB_HOME/data/.checks`` keyed by what was read (the
file's path, size and modification time, and which trajectories), so a dataset is
scanned again only when its files change.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pdebench_core import paths
from pdebench_core.errors import DataError

STAMP_VERSION = 1


def _stamp_dir() -> Path:
    return paths.data_dir() / ".checks"


def file_identity(path: str | os.PathLike) -> dict[str, Any] | None:
    """``{path, size, mtime_ns}`` of a file, or of every file under a folder; None if absent.

    For a URL: ``{url, size, etag, last_modified}`` as the server states them (one
    request; None when it cannot be reached), so a check is repeated only when the
    server's version of the file changes.
    """
    from pdebench_core.data.remote import as_url, stat

    url = as_url(path)
    if url is not None:
        try:
            return stat(url).identity()
        except DataError:
            return None
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return {"path": str(path.resolve()), "files": stats}
    return None


def _stamp_path(kind: str, identity: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps([kind, STAMP_VERSION, identity], sort_keys=True).encode()).hexdigest()[:24]
    return _stamp_dir() / f"{kind}-{digest}.json"


def remembered(kind: str, identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored outcome of check ``kind`` for ``identity`` (None: never checked, or changed since)."""
    if identity is None:
        return None
    stamp = _stamp_path(kind, identity)
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def remember(kind: str, identity: dict[str, Any] | None, outcome: dict[str, Any]) -> None:
    """Store the outcome of a check (best effort: a read-only home only costs a re-scan)."""
    if identity is None:
        return
    stamp = _stamp_path(kind, identity)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(outcome))
        os.replace(tmp, stamp)
    except OSError:
        pass


def first_non_finite(trajectories: Iterable[Any]) -> int | None:
    """Index of the first trajectory holding NaN or Inf (reads one trajectory at a time)."""
    for index, trajectory in enumerate(trajectories):
        if not np.isfinite(np.asarray(trajectory)).all():
            return index
    return None


def _split_identity(trajectories: Sequence) -> dict[str, Any] | None:
    """What a lazy split reads (file identity and trajectory indices), or None for in-memory data."""
    from pdebench_core.data.layouts.common import split_label

    source = getattr(trajectories, "path", None)
    file, dataset = split_label(source) if source else ("", None)
    identity = file_identity(file) if source else None
    if identity is not None and dataset is not None:
        identity["dataset"] = dataset
    if identity is None:
        return None
    indices = getattr(trajectories, "indices", None)
    identity["key"] = getattr(trajectories, "key", None)
    identity["indices"] = hashlib.sha256(json.dumps(list(indices or [])).encode()).hexdigest()[:16]
    identity["n"] = len(trajectories)
    return identity


def check_shapes(name: str, dataset: Any, splits: Sequence[str] = ("train", "val", "test")) -> None:
    """Refuse a dataset whose trajectories are not ``(T, *S, C)`` as its spec says.

    The first trajectory of each split is compared with ``spec.spatial_shape`` and
    ``spec.fields`` (only its shape is read where the split knows it).

    Raises:
        DataError: Naming the split, the shape found and the shape the spec implies.
    """
    from pdebench_core.data.trajectories import LazyTrajectories

    spec = dataset.spec
    for split in splits:
        trajectories = dataset.split(split)
        if len(trajectories) == 0:
            continue
        lazy = isinstance(trajectories, LazyTrajectories)  # knows one trajectory's shape
        shape = tuple(trajectories.shape) if lazy else tuple(np.shape(trajectories[0]))
        wanted = (*spec.spatial_shape, len(spec.fields))
        if len(shape) != len(wanted) + 1 or tuple(shape[1:]) != wanted:
            raise DataError(
                f"dataset '{name}': split '{split}' holds trajectories of shape {tuple(shape)}, but its spec "
                f"says (T, {', '.join(map(str, wanted))}): time first, then the grid {list(spec.spatial_shape)}, "
                f"then one channel per field ({', '.join(spec.fields)}); fix the dataset or its spec")


def check_finite(name: str, dataset: Any, splits: Sequence[str] = ("train", "val", "test")) -> None:
    """Refuse a dataset whose trajectories hold NaN or Inf, naming file, split and trajectory.

    Args:
        name: The dataset's name in the run.
        dataset: An object with ``.split(name)``.
        splits: Splits to check.

    Raises:
        DataError: At the first non-finite trajectory.
    """
    for split in splits:
        trajectories = dataset.split(split)
        identity = _split_identity(trajectories)
        if (remembered("finite", identity) or {}).get("finite"):
            continue
        bad = first_non_finite(trajectories)
        if bad is not None:
            source = getattr(trajectories, "path", None)
            where = f" ({source})" if source else ""
            raise DataError(f"dataset '{name}'{where}: split '{split}' trajectory {bad} holds NaN or Inf values; "
                            f"fix or drop that trajectory (a solver that diverged needs a smaller time step)")
        remember("finite", identity, {"finite": True})


def split_digest(array: Any, chunk_trajectories: int = 1) -> str:
    """SHA-256 of a split's float32 bytes, read ``chunk_trajectories`` at a time."""
    digest = hashlib.sha256()
    for start in range(0, int(array.shape[0]), chunk_trajectories):
        block = np.ascontiguousarray(array[start:start + chunk_trajectories], dtype=np.float32)
        digest.update(block.tobytes())
    return digest.hexdigest()


def stored_split_digests(handle: Any) -> dict[str, str]:
    """``{split: sha256}`` a canonical writer stored in an open file (``content_sha256``), or ``{}``
    for a file written without them (or whose record is unreadable)."""
    try:
        stored = json.loads(handle.attrs.get("content_sha256", "{}"))
    except (TypeError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def canonical_file_damage(path: Path) -> str | None:
    """Why a canonical cache file is unusable (unreadable, truncated, bytes that no longer
    match the digest stored when it was written), or None when it is intact."""
    import h5py

    identity = file_identity(path)
    if (remembered("intact", identity) or {}).get("intact"):
        return None
    try:
        with h5py.File(path, "r") as f:
            stored = stored_split_digests(f)
            for key, expected in stored.items():
                if split_digest(f[key]) != expected:
                    return f"split '{key}' does not match the checksum stored when it was written"
            if not stored:  # written before checksums: at least every split must be readable
                for key in f:
                    if f[key].shape[0]:
                        np.asarray(f[key][-1])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    remember("intact", identity, {"intact": True})
    return None


def discard_if_damaged(path: Path) -> bool:
    """Delete a damaged cache file (saying so on stderr); True when it was removed."""
    if not path.exists():
        return False
    reason = canonical_file_damage(path)
    if reason is None:
        return False
    print(f"cached data {path} is damaged ({reason}); generating it again", file=sys.stderr)
    path.unlink(missing_ok=True)
    return True
