"""Check a canonical pdeb file: structure, metadata and every value.

``verify_file(path)`` returns a list of :class:`Problem` (empty when the file is
sound). It checks the attributes (``pdeb_format``, ``format_version``, ``spec``,
``provenance``), that each split is a float32 ``(N, T, *S, C)`` array chunked one
trajectory per chunk, that splits agree in grid and channels and match the spec,
and then reads the data one block of frames at a time to find NaN/Inf values,
constant frames (every value equal, the mark of unwritten or blown-up data) and
trajectories that appear in more than one split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pdebench_core.data.integrity import stored_split_digests
from pdebench_core.data.layouts.common import BLOCK_BYTES, first_line, frame_blocks
from pdebench_core.diskspace import human_bytes

SPLITS = ("train", "val", "test")
#: Per split and kind, how many trajectories are reported one by one.
MAX_REPORTS = 10


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`verify_file`.

    Attributes:
        severity: ``"error"`` (the file is wrong) or ``"warning"`` (legal but suspect).
        message: What is wrong, in one line.
        split: The split concerned, if any.
        trajectory: Index of the trajectory within the split, if any.
        frames: Frame indices concerned, if any (possibly abridged).
    """

    severity: str
    message: str
    split: str | None = None
    trajectory: int | None = None
    frames: tuple[int, ...] | None = None

    @property
    def where(self) -> str:
        """Location such as ``train[3]``, ``test`` or ``file``."""
        if self.split is None:
            return "file"
        return self.split if self.trajectory is None else f"{self.split}[{self.trajectory}]"

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {"severity": self.severity, "where": self.where, "split": self.split,
                "trajectory": self.trajectory, "frames": list(self.frames) if self.frames else None,
                "message": self.message}


def _frames_text(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    runs: list[str] = []
    start = prev = frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ", ".join(runs)


def _check_attributes(f, problems: list[Problem]) -> dict | None:
    from pdebench_core.data.canonical import format_version_problem, parse_spec

    fmt = f.attrs.get("pdeb_format")
    if fmt is None:
        problems.append(Problem("error", "missing attribute 'pdeb_format' (not a canonical pdeb file)"))
    elif fmt != "canonical":
        problems.append(Problem("error", f"attribute pdeb_format is {fmt!r}, expected 'canonical'"))
    version_problem = format_version_problem(f.attrs.get("format_version"))
    if version_problem is not None:
        problems.append(Problem("error", version_problem))
    if f.attrs.get("provenance") is None:
        problems.append(Problem("warning", "missing attribute 'provenance' (generator, version, seed)"))
    else:
        try:
            json.loads(f.attrs["provenance"])
        except (TypeError, ValueError) as exc:
            problems.append(Problem("error", f"attribute 'provenance' is not valid JSON ({first_line(exc)})"))
    raw = f.attrs.get("spec")
    if raw is None:
        problems.append(Problem("error", "missing attribute 'spec'"))
        return None
    spec, problem = parse_spec(raw)
    if problem is not None:
        problems.append(Problem("error", problem))
    return spec


def _check_structure(f, spec: dict | None, problems: list[Problem]) -> list[str]:
    """Structural checks; returns the splits whose contents can be scanned."""
    import h5py
    import numpy as np

    present = [s for s in SPLITS if s in f]
    extra = [k for k in f.keys() if k not in SPLITS]
    if extra:
        problems.append(Problem("warning", f"unexpected top-level keys: {', '.join(extra)}"))
    if not present:
        problems.append(Problem("error", "no split: expected at least one of train, val, test"))
        return []
    if "train" not in present:
        problems.append(Problem("warning", "no train split: a model cannot train on this file (it can be scored)"))
    scannable = []
    for split in present:
        ds = f[split]
        if not isinstance(ds, h5py.Dataset):
            problems.append(Problem("error", "is a group, expected an array (N, T, *S, C)", split))
            continue
        if not 4 <= ds.ndim <= 6:
            problems.append(Problem("error", f"shape {ds.shape}, expected (N, T, *S, C) with 1-3 spatial axes", split))
            continue
        if ds.dtype != np.float32:
            problems.append(Problem("error", f"dtype {ds.dtype}, expected float32", split))
        if ds.shape[0] == 0:
            problems.append(Problem("warning", "is empty", split))
        elif ds.chunks != (1,) + ds.shape[1:]:
            problems.append(Problem("warning", f"chunks {ds.chunks}, expected one trajectory per chunk "
                                    f"{(1,) + ds.shape[1:]} (slow random access)", split))
        if ds.compression:
            problems.append(Problem("warning", f"compressed with {ds.compression} (reads are several times slower)",
                                    split))
        elif _mostly_unwritten(ds):
            # Reported from metadata, before any scan: reading a huge declared but empty array
            # would take for ever and only find fill values.
            problems.append(Problem("error", f"declares {human_bytes(ds.size * ds.dtype.itemsize)} but stores "
                                    f"{human_bytes(ds.id.get_storage_size())}: most of it was never written "
                                    f"(an interrupted write?); not scanned", split))
            continue
        scannable.append(split)
    shapes = {s: f[s].shape for s in scannable}
    grids = {s: shape[2:] for s, shape in shapes.items()}
    if len(set(grids.values())) > 1:
        problems.append(Problem("error", "splits differ in grid or channels: "
                                + ", ".join(f"{s} {g}" for s, g in grids.items())))
    frames = {s: shape[1] for s, shape in shapes.items()}
    if len(set(frames.values())) > 1:
        problems.append(Problem("warning", "splits differ in frames per trajectory: "
                                + ", ".join(f"{s} {t}" for s, t in frames.items())))
    if spec is not None and scannable:
        _check_spec_against(spec, shapes[scannable[0]], problems)
    return scannable


def _mostly_unwritten(ds) -> bool:
    """An uncompressed array holding less than half of the bytes its shape declares."""
    declared = ds.size * ds.dtype.itemsize
    return declared > 0 and ds.id.get_storage_size() < declared // 2


def _check_spec_against(spec: dict, shape: tuple[int, ...], problems: list[Problem]) -> None:
    from pdebench_core.data.canonical import spec_mismatches

    problems.extend(Problem("error", mismatch) for mismatch in spec_mismatches(spec, shape))
    n_frames = shape[1]
    t_in, horizon = spec.get("t_in", 10), spec.get("horizon")
    if isinstance(t_in, int) and t_in >= n_frames:
        problems.append(Problem("warning", f"spec t_in {t_in} leaves no frame to predict ({n_frames} frames)"))
    if isinstance(t_in, int) and isinstance(horizon, int) and t_in + horizon > n_frames:
        problems.append(Problem("warning", f"spec horizon {horizon} after t_in {t_in} exceeds the {n_frames} frames"))


def _scan(f, split: str, problems: list[Problem], seen: dict[bytes, tuple[str, int]]) -> None:
    """Read ``split`` block by block: non-finite values, constant frames, repeated trajectories,
    and bytes that no longer match the checksum stored when the file was written."""
    import numpy as np

    expected = stored_split_digests(f).get(split)
    content = hashlib.sha256()  # over the trajectories in order: what split_digest computes

    ds = f[split]
    n, n_frames = ds.shape[0], ds.shape[1]
    frame_bytes = 4
    for s in ds.shape[2:]:
        frame_bytes *= s
    blocks = frame_blocks(n_frames, frame_bytes, BLOCK_BYTES)
    counts = {"nonfinite": 0, "constant": 0}
    for i in range(n):
        digest = hashlib.blake2b(digest_size=16)
        bad_frames: list[int] = []
        n_bad = 0
        const_frames: list[int] = []
        const_values: set[float] = set()
        for frames in blocks:
            block = np.asarray(ds[i, frames], dtype=np.float32)  # (t, *S, C)
            digest.update(block.tobytes())
            content.update(np.ascontiguousarray(block).tobytes())
            flat = block.reshape(block.shape[0], -1)
            finite = np.isfinite(flat)
            if not finite.all():
                per_frame = (~finite).sum(axis=1)
                n_bad += int(per_frame.sum())
                bad_frames += [frames.start + int(t) for t in np.flatnonzero(per_frame)]
            ok = finite.all(axis=1)
            constant = ok & (flat.min(axis=1) == flat.max(axis=1))
            for t in np.flatnonzero(constant):
                const_frames.append(frames.start + int(t))
                const_values.add(float(flat[t, 0]))
        if bad_frames:
            counts["nonfinite"] += 1
            if counts["nonfinite"] <= MAX_REPORTS:
                problems.append(Problem("error", f"{n_bad} NaN/Inf values in frames {_frames_text(bad_frames)}",
                                        split, i, tuple(bad_frames[:100])))
        if const_frames:
            counts["constant"] += 1
            if counts["constant"] <= MAX_REPORTS:
                values = ", ".join(f"{v:g}" for v in sorted(const_values)[:3])
                problems.append(Problem("error", f"constant frames {_frames_text(const_frames)} (every value "
                                        f"{values}): unwritten or blown-up data?", split, i, tuple(const_frames[:100])))
        key = digest.digest()
        if key in seen:
            other_split, other = seen[key]
            severity = "error" if other_split != split else "warning"
            what = "the splits overlap" if other_split != split else "duplicate trajectory"
            problems.append(Problem(severity, f"identical to {other_split}[{other}] ({what})", split, i))
        else:
            seen[key] = (split, i)
    for kind, text in (("nonfinite", "with NaN/Inf values"), ("constant", "with constant frames")):
        if counts[kind] > MAX_REPORTS:
            problems.append(Problem("error", f"... and {counts[kind] - MAX_REPORTS} more trajectories {text}", split))
    if expected is not None and content.hexdigest() != expected:
        problems.append(Problem("error", "the values no longer match the checksum stored when the file was written "
                                "(damaged on disk or edited); write the file again", split))


def _refuse_other_layout(path: str | Path) -> None:
    """A file of another layout is not a damaged canonical one: say what it is, in one line."""
    from pdebench_core.data.layouts import detect_layout
    from pdebench_core.errors import DataError

    try:
        layout = detect_layout(path)
    except DataError:
        return  # no known layout either: the structural checks say what is missing
    if layout != "canonical":
        raise DataError(f"{path} is a {layout} file, not a canonical pdeb one; 'pdeb data info {path}' checks "
                        f"that it reads, or 'pdeb data convert {path} OUT.h5' writes a canonical copy to verify")


def verify_file(path: str | Path, scan: bool = True) -> list[Problem]:
    """Check a canonical file; an empty list means no problem was found.

    Args:
        path: The canonical HDF5 file.
        scan: Also read every value (one block of frames at a time); ``False`` checks
            the structure and metadata only.

    Returns:
        The problems found, structural ones first.

    Raises:
        DataError: the file is one of another layout (PDEBench, the Well, ...).
    """
    import h5py

    from pdebench_core.data.remote import as_url, open_for_reading
    from pdebench_core.errors import DataError

    problems: list[Problem] = []
    try:
        url = as_url(path)
        f = h5py.File(open_for_reading(url) if url else path, "r")  # a URL is read by ranges
    except DataError as exc:
        return [Problem("error", str(exc))]
    except (OSError, ValueError) as exc:
        return [Problem("error", f"cannot open {path} as HDF5: {first_line(exc)}")]
    with f:
        if "pdeb_format" not in f.attrs:
            _refuse_other_layout(path)
        try:
            spec = _check_attributes(f, problems)
            splits = _check_structure(f, spec, problems)
            if scan:
                seen: dict[bytes, tuple[str, int]] = {}
                for split in splits:
                    _scan(f, split, problems, seen)
        except (OSError, KeyError, RuntimeError) as exc:
            problems.append(Problem("error", f"unreadable data: {first_line(exc)}"))
    return problems
