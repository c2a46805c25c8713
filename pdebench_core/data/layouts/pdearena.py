"""Reader for PDEArena Navier-Stokes 2D files (Gupta & Brandstetter, 2022).

Each ``.h5`` file holds one or more of the groups ``train``, ``valid``, ``test``;
each group has ``u`` (smoke density), ``vx``, ``vy``, each ``(n, T, 128, 128)``
(float64 as PDEArena writes them), plus ``t`` ``(n, T)``, ``dt`` ``(n,)``, ``x``, ``y``
and ``buo_y`` ``(n,)``, the buoyancy factor of each trajectory. The published sets are
folders of many such shards; a folder is read as the concatenation of its ``.h5`` files
in name order. Channels are ``u, vx, vy``; ``valid`` becomes ``val``.

Two sets share this layout:

* **NavierStokes2D** (``pdearena-ns``): buoyancy 0.5 everywhere, 14 frames 6.0 apart
  (every fourth solver step), 5200/1300/1300 trajectories;
* **NavierStokes2D conditioned** (``pdearena-ns-cond``): each shard of 32 trajectories
  has its own buoyancy drawn from U(0.2, 0.5) (the value is also in the file name,
  ``NavierStokes2D_<split>_<seed>_<buoyancy>_<n>.h5``), 56 frames 1.5 apart,
  6656/1664/1664 trajectories.

:func:`ns_variant` tells them apart; the buoyancy becomes the ``buoyancy`` parameter of
the spec (one value, or ``[min, max]`` when it varies), and :func:`buoyancy_of` gives the
value of every trajectory of a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pdebench_core.data.layouts.common import Found, H5Files, Reader, Trajectories, uniform_step
from pdebench_core.errors import DataError

GROUPS = {"train": "train", "valid": "val", "test": "test"}
FIELDS = ("u", "vx", "vy")
#: Buoyancy of the unconditioned set (PDEArena's smoke configuration).
NS_BUOYANCY = 0.5
#: Range the conditioned set draws each shard's buoyancy from.
COND_BUOYANCY_RANGE = (0.2, 0.5)
#: Frames per trajectory of the unconditioned and the conditioned set.
NS_FRAMES, COND_FRAMES = 14, 56
#: Two buoyancy values closer than this are the same (file names round to 5 decimals).
BUOYANCY_TOLERANCE = 5e-6


def is_pdearena_group(group) -> bool:
    """Whether an h5py group holds PDEArena Navier-Stokes arrays."""
    import h5py

    return isinstance(group, h5py.Group) and all(k in group for k in FIELDS)


@dataclass(frozen=True)
class Shard:
    """One group of one file: ``n`` trajectories, with their buoyancy when stored."""

    path: str
    group: str
    n: int
    buoyancy: tuple[float, ...] | None = None


class ShardsReader(Reader):
    """One split spread over shards, concatenated in order.

    Attributes:
        buoyancy: The buoyancy of every trajectory (``None`` when a shard stores none).
    """

    def __init__(self, shards: Sequence[Shard], shape: tuple[int, ...], dtype: str, label: str) -> None:
        self.shards = list(shards)
        self.starts = []
        total = 0
        for shard in self.shards:
            self.starts.append(total)
            total += shard.n
        self.n = total
        self.traj_shape = tuple(int(s) for s in shape[1:]) + (len(FIELDS),)
        self.dtype = dtype
        self.label = label
        self.files = H5Files()
        stored = [s.buoyancy for s in self.shards]
        self.buoyancy = None if any(b is None for b in stored) else tuple(v for b in stored for v in b)

    def _read(self, index: int, frames: slice):
        import bisect

        import numpy as np

        number = bisect.bisect_right(self.starts, index) - 1
        shard = self.shards[number]
        g = self.files.get(shard.path)[shard.group]
        local = index - self.starts[number]
        return np.stack([g[k][local, frames] for k in FIELDS], axis=-1)  # (t, X, Y, 3)


def _shard_files(path: str) -> list[Path]:
    p = Path(path)
    files = sorted(q for q in p.iterdir() if q.suffix in (".h5", ".hdf5")) if p.is_dir() else [p]
    if not files:
        raise DataError(f"{path}: no .h5 files")
    return files


def _shard_of(q: Path, group: str, g) -> Shard:
    import numpy as np

    if len({g[k].shape for k in FIELDS}) != 1:
        raise DataError(f"{q}:/{group}: u, vx and vy differ in shape")
    if g["u"].ndim != 4:
        raise DataError(f"{q}:/{group}: 'u' has shape {g['u'].shape}; expected (n, T, X, Y)")
    n = int(g["u"].shape[0])
    buoyancy = None
    if "buo_y" in g:
        values = np.asarray(g["buo_y"][:], dtype=np.float64).reshape(-1)
        if values.size != n:
            raise DataError(f"{q}:/{group}: 'buo_y' has {values.size} values for {n} trajectories")
        buoyancy = tuple(float(v) for v in values)
    return Shard(str(q), group, n, buoyancy)


def _frame_step(g, notes: list[str]) -> float | None:
    """Time between frames: the ``dt`` array when stored (PDEArena's own), else ``t``'s spacing."""
    if "dt" in g and g["dt"].size:
        return float(g["dt"][0])
    if "t" in g and g["t"].shape[-1] > 1:
        return uniform_step(g["t"][0], "t", notes)
    return None


def open_pdearena(path: str) -> Found:
    """Describe a PDEArena file or folder of shards (metadata and buoyancy only)."""
    splits: dict[str, list[Shard]] = {}
    shape = dtype = dt = None
    notes: list[str] = []
    shard_files = _shard_files(path)
    files = H5Files(max_open=4)
    for q in shard_files:
        f = files.get(str(q))
        for group, split in GROUPS.items():
            if group not in f or not is_pdearena_group(f[group]):
                continue
            g = f[group]
            shard = _shard_of(q, group, g)
            if shape is None:
                shape, dtype, dt = tuple(g["u"].shape), str(g["u"].dtype), _frame_step(g, notes)
            elif tuple(g["u"].shape[1:]) != shape[1:]:
                raise DataError(f"{q}:/{group}: trajectories {g['u'].shape[1:]} differ from {shape[1:]}")
            splits.setdefault(split, []).append(shard)
    files.close()
    if not splits:
        raise DataError(f"{path}: no train/valid/test groups with u, vx, vy")
    pools = {s: Trajectories(ShardsReader(shards, shape, dtype, f"{path} ({s})")) for s, shards in splits.items()}
    if len(shard_files) > 1:
        notes.append(f"{len(shard_files)} shard files")
    params = buoyancy_params([v for pool in pools.values() for v in (buoyancy_of(pool) or [])], notes)
    return Found(layout="pdearena", path=path, pools=pools, fields=FIELDS, dt=dt, params=params, notes=notes)


def buoyancy_of(pool: Trajectories) -> list[float] | None:
    """The buoyancy of each trajectory of a PDEArena split, or ``None`` if not stored.

    Args:
        pool: A split from :func:`open_pdearena` (or a subset of one, such as a split of
            the dataset ``pdearena-ns-cond`` builds).
    """
    values = getattr(getattr(pool, "reader", None), "buoyancy", None)
    return None if values is None else [values[i] for i in pool.indices]


def buoyancy_params(values: Sequence[float], notes: list[str]) -> dict[str, object]:
    """The spec's ``buoyancy``: the single value, or ``[min, max]`` when it varies."""
    if not values:
        return {}
    distinct = _distinct(values)
    if len(distinct) == 1:
        return {"buoyancy": distinct[0]}
    notes.append(f"buoyancy varies per trajectory: {len(distinct)} values in [{distinct[0]:.5g}, {distinct[-1]:.5g}]")
    return {"buoyancy": [distinct[0], distinct[-1]]}


def _variant_by_buoyancy(values: Sequence[float]) -> str:
    """``"ns"`` when every buoyancy is the unconditioned set's, else ``"ns-cond"``."""
    distinct = _distinct([float(v) for v in values])
    plain = len(distinct) == 1 and abs(distinct[0] - NS_BUOYANCY) <= BUOYANCY_TOLERANCE
    return "ns" if plain else "ns-cond"


def _distinct(values: Sequence[float]) -> list[float]:
    out: list[float] = []
    for v in sorted(values):
        if not out or v - out[-1] > BUOYANCY_TOLERANCE:
            out.append(float(v))
    return out


def variant_of(found: Found) -> str | None:
    """``"ns-cond"``, ``"ns"`` or ``None`` for what :func:`~pdebench_core.data.layouts.open_layout` found.

    PDEArena shards: conditioned when the stored buoyancy varies or differs from 0.5
    (without ``buo_y``: when trajectories have 56 frames). DPOT's preprocessed folders
    (``dpot`` layout, three channels, two spatial axes): by DPOT's folder name
    (``ns2d_cond_pda``, ``ns2d_pda``), else 56 frames -> conditioned, 14 -> unconditioned.
    Canonical files (``pdeb data convert`` of either): by the buoyancy their spec states, when
    their channels are PDEArena's. Anything else is ``None``.
    """
    shape = found.traj_shape
    if found.layout == "pdearena":
        values = [v for pool in found.pools.values() for v in (buoyancy_of(pool) or [])]
        if values:
            return _variant_by_buoyancy(values)
        return "ns-cond" if shape[0] == COND_FRAMES else "ns"
    if found.layout == "canonical":
        spec = found.spec or {}
        buoyancy = (spec.get("params") or {}).get("buoyancy")
        if buoyancy is None or tuple(spec.get("fields") or ()) != FIELDS:
            return None
        return _variant_by_buoyancy(buoyancy if isinstance(buoyancy, (list, tuple)) else [buoyancy])
    if found.layout != "dpot" or len(shape) != 4 or shape[-1] != len(FIELDS):
        return None
    names = {Path(found.path).name, Path(found.path).parent.name}
    if "ns2d_cond_pda" in names:
        return "ns-cond"
    if "ns2d_pda" in names:
        return "ns"
    return {COND_FRAMES: "ns-cond", NS_FRAMES: "ns"}.get(shape[0])


def ns_variant(path: str | Path) -> str | None:
    """Which PDEArena Navier-Stokes set ``path`` holds: ``"ns"``, ``"ns-cond"`` or ``None``.

    Reads metadata only; ``None`` also for paths that are unreadable or in another layout.
    See :func:`variant_of` for the rules.
    """
    from pdebench_core.data.layouts.loading import open_layout

    try:
        found = open_layout(path)
    except DataError:
        return None
    return variant_of(found)
