"""Convert any supported layout into a canonical pdeb file, streaming.

Nothing larger than one block (``BLOCK_BYTES``, a trajectory or a few of its
frames) is held in memory: the destination datasets are created up front, chunked
one trajectory per chunk, and filled piece by piece. The file is written under a
temporary name and renamed at the end by :class:`~pdebench_core.data.canonical.CanonicalWriter`,
which :func:`~pdebench_core.data.canonical.write_canonical` writes with too.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pdebench_core.data.canonical import CanonicalWriter
from pdebench_core.data.layouts.common import BLOCK_BYTES, frame_blocks
from pdebench_core.diskspace import check_free_space
from pdebench_core.data.layouts.loading import (SPLITS, SplitWarning, as_spec, check_fits_dataset, make_spec,
                                                open_layout, plan_splits)
from pdebench_core.errors import DataError
from pdebench_core.progress import progress as show_progress
from pdebench_core.spec import DataSpec


def convert(src: str | os.PathLike, dest: str | os.PathLike, format: str = "auto", name: str | None = None,
            counts: Mapping[str, int | None] | None = None,
            spec_defaults: DataSpec | Mapping[str, Any] | None = None,
            progress: bool = False, overwrite: bool = True,
            layout_fields: Mapping[str, Sequence[str]] | None = None, must_fit: bool = False) -> Path:
    """Convert a published file or folder into a canonical pdeb file.

    Args:
        src: Source file or folder in any supported layout.
        dest: Canonical file to write (replaced atomically if it exists).
        format: Layout of ``src`` (``"auto"`` detects it).
        name: Dataset name stored in the spec (default: the source's file stem).
        counts: Trajectories per split; ``None`` (or a missing/``None`` entry) keeps
            the file's own splits whole and cuts unsplit files 80/10/10.
        spec_defaults: Field names, parameters, boundary... for what the file lacks.
        progress: Show a progress bar on standard error when it is a terminal.
        overwrite: Replace an existing ``dest`` file (else refuse it).
        layout_fields: Field names by layout, for layouts that store channels unnamed in an
            order of their own (see :func:`~pdebench_core.data.layouts.make_spec`).
        must_fit: Refuse a file of another spatial dimension or channel count than
            ``spec_defaults`` states (they are a registered dataset's).

    Returns:
        ``dest`` as a :class:`Path`.

    Raises:
        DataError: ``dest`` is ``src``, exists and is not a regular file (a folder, a
            device), or exists while ``overwrite`` is off.
    """
    from pdebench_core import __version__

    src, dest = Path(src), Path(dest)
    _check_destination(src, dest, overwrite)
    wanted = _wanted_counts(counts)
    found = open_layout(src, format)
    try:
        plan, messages = plan_splits({k: len(v) for k, v in found.pools.items()}, wanted)
    except DataError as exc:
        raise DataError(f"{src}: {exc}; ask for fewer (--n-val 0 --n-test 0 keeps every trajectory for "
                        f"training)") from None
    for message in messages:  # the split sizes differ from those asked for: say so
        warnings.warn(f"{src}: {message}", SplitWarning, stacklevel=2)
    if isinstance(spec_defaults, Mapping):
        spec_defaults = as_spec(spec_defaults, name or str(spec_defaults.get("name") or src.stem))
    name = name or (spec_defaults.name if spec_defaults else src.stem)
    defaults = as_spec(spec_defaults, name)
    if must_fit:
        check_fits_dataset(found, name, defaults, fix="give --name a dataset of this data, or another name")
    spec = make_spec(found, name, defaults, check=False, layout_fields=layout_fields)
    if must_fit and not found.dt:
        found.notes.append(f"the file states no time step: dt {spec.dt:g} is dataset '{name}''s")
    if spec.t_in >= spec.n_frames > 1:  # keep the stored default usable; runs set t_in anyway
        found.notes.append(f"t_in {spec.t_in} leaves no frame to predict; stored t_in {spec.n_frames - 1}")
        spec = spec.replace(t_in=spec.n_frames - 1)
    if spec.horizon is not None and spec.t_in + spec.horizon > spec.n_frames:
        spec = spec.replace(horizon=spec.n_frames - spec.t_in)
    provenance = {
        "generator": "pdeb data convert", "version": __version__, "source": str(src),
        "layout": found.layout, "notes": list(found.notes) + messages,
        "source_splits": {s: {"pool": pool, "start": r.start, "stop": r.stop} for s, (pool, r) in plan.items()},
    }
    traj_shape = found.traj_shape
    total = sum(len(r) for _, r in plan.values())
    check_free_space(dest.parent, total * 4 * math.prod(traj_shape), f"converting {src.name}")
    # A bar on a terminal only: in a log, an error stays the one line written.
    bar = progress and sys.stderr is not None and sys.stderr.isatty()
    with CanonicalWriter(dest, spec, provenance) as writer, \
            show_progress(f"converting to {dest.name}", total, bar) as advance:
        for split in SPLITS:
            if split in plan:
                writer.create(split, len(plan[split][1]), traj_shape)
        for pool in dict.fromkeys(p for p, _ in plan.values()):
            targets = {s: r for s, (p, r) in plan.items() if p == pool}
            reader = found.pools[pool].reader
            if hasattr(reader, "read_frames"):
                _copy_frame_major(reader, targets, writer, advance)
            else:
                _copy_trajectory_major(found.pools[pool], targets, writer, advance)
    return dest


def _check_destination(src: Path, dest: Path, overwrite: bool) -> None:
    """Refuse a destination that is the source, not a regular file, or taken (without ``overwrite``)."""
    if src.resolve() == dest.resolve():
        raise DataError(f"{dest}: convert would overwrite its own source")
    if dest.exists() and not dest.is_file():
        raise DataError(f"{dest} exists and is not a regular file; write the canonical file to a new path")
    if dest.exists() and not overwrite:
        raise DataError(f"{dest} already exists; pass --force to replace it, or choose another path")


def _wanted_counts(counts: Mapping[str, int | None] | None) -> dict[str, int | None]:
    """Trajectories asked for per split (``None``: the rule's share), after checking them."""
    wanted = {s: (counts or {}).get(s) for s in SPLITS}
    for split, count in wanted.items():
        if count is not None and (count < 0 or (split == "train" and count == 0)):
            least = 1 if split == "train" else 0
            raise DataError(f"{count} {split} trajectories (--n-{split}): a split holds at least {least}"
                            + (" (a model trains on it)" if split == "train" else ""))
    return wanted


def _copy_trajectory_major(pool, targets: Mapping[str, range], writer: CanonicalWriter,
                           advance: Callable[[float], None]) -> None:
    shape = pool.shape
    frame_bytes = 4
    for s in shape[1:]:
        frame_bytes *= s
    blocks = frame_blocks(shape[0], frame_bytes)
    for split, indices in targets.items():
        for j, index in enumerate(indices):
            for frames in blocks:
                writer.write(split, j, pool.window(index, frames.start, frames.stop - frames.start), start=frames.start)
            advance(1)


def _copy_frame_major(reader, targets: Mapping[str, range], writer: CanonicalWriter,
                      advance: Callable[[float], None]) -> None:
    """For layouts whose trajectory axis varies fastest on disk: read whole frame planes."""
    n_frames = reader.traj_shape[0]
    plane_bytes = reader.traj_bytes // max(n_frames, 1) * reader.n
    for frames in frame_blocks(n_frames, plane_bytes, budget=4 * BLOCK_BYTES):
        planes = reader.read_frames(frames)  # (N, t, *S, C)
        for split, indices in targets.items():
            for j, index in enumerate(indices):
                writer.write(split, j, planes[index], start=frames.start)
    advance(sum(len(indices) for indices in targets.values()))
