"""Datasets that a plugin generates with its own solver.

A generating dataset plugin declares what is its own -- its settings dataclass, its
solver, the spec of its data, its profiles and a generator version -- in a
:class:`GeneratedDataset`, and this module does the rest: the cache key (every
setting that changes the numbers, derived from the dataclass), per-trajectory seeds,
splits, batching, progress, ``path=`` (read a published file instead), the common
checks of the settings and the generate/cache/verify cycle. The pieces it is built
from are public too:

- :func:`solver_device` turns a ``device`` setting into a checked torch device;
- :func:`trajectory_seed` derives one trajectory's seed by hashing its identity, so
  splits are disjoint and a trajectory does not depend on batching or split sizes;
- :func:`generate_splits` runs a batched ``solve(jobs, advance)`` over every
  ``(split, index)`` job with a progress bar (:func:`progress_bar`) and assembles the
  splits, large ones in memory-mapped scratch files (:func:`allocate_split`);
- :func:`cached_dataset` generates once into the canonical HDF5 cache and returns a
  dataset whose splits read that file lazily; :func:`read_published` reads a
  published file through the core's layout readers instead.

Nothing heavy is imported at module level, so plugins may import this module freely.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from pdebench_core.data.config import USAGE_SETTINGS, as_dataclass, settings_of
from pdebench_core.errors import UsageError
from pdebench_core.profiles import profiles_around_defaults

if TYPE_CHECKING:  # only for annotations: importing this module stays cheap
    import numpy as np
    import torch

    from pdebench_core.data.base import TrajectoryDataset
    from pdebench_core.spec import DataSpec

SPLIT_NAMES = ("train", "val", "test")
# Above this many bytes a split is assembled in a scratch file instead of memory.
IN_MEMORY_LIMIT = 1 << 30
#: Settings that change how data is generated but never its numbers: left out of cache keys
#: unless a dataset says otherwise (:attr:`GeneratedDataset.exclude`).
GENERATION_ONLY = ("batch_size", "device", "progress")
SOLVER_DTYPES = ("float32", "float64")

#: Split sizes of every generated dataset's ``smoke`` profile: each split exists, and tests stay fast.
SMOKE_SPLITS = {"n_train": 4, "n_val": 2, "n_test": 2}

Job = tuple[str, int]
"""One trajectory to generate: ``(split, index within the split)``."""


@dataclass(frozen=True)
class ExplicitScheme:
    """The limits of an explicit time-stepping solver, checked before any compute.

    A :class:`GeneratedDataset` declaring one refuses a grid, end time or Courant number
    the scheme cannot honour; its config needs ``resolution``, ``t_end`` and ``cfl``.

    Attributes:
        max_cfl: The largest stable Courant number of the scheme.
        min_resolution: The fewest cells per axis the scheme's stencil needs.
    """

    max_cfl: float
    min_resolution: int = 1

    #: The settings a config stepped by an explicit scheme must have.
    SETTINGS = ("resolution", "t_end", "cfl")

    def check(self, cfg: Any, where: str) -> None:
        """Refuse ``cfg`` unless the scheme can step it.

        Args:
            cfg: Settings with ``resolution``, ``t_end`` and ``cfl``.
            where: The settings' full name for error messages, e.g. ``"data.dr2d"``.

        Raises:
            UsageError: ``resolution < min_resolution``, ``t_end <= 0`` or ``cfl`` outside ``(0, max_cfl]``.
        """
        if int(cfg.resolution) < self.min_resolution:
            raise UsageError(f"{where}.resolution must be at least {self.min_resolution}, got {cfg.resolution}")
        if not float(cfg.t_end) > 0:
            raise UsageError(f"{where}.t_end must be positive, got {cfg.t_end}")
        if not 0 < float(cfg.cfl) <= self.max_cfl:
            raise UsageError(f"{where}.cfl must be in (0, {self.max_cfl:g}] for this scheme to stay stable, "
                             f"got {cfg.cfl}")


def smoke_profile(config: type, n_frames: int, **overrides: Any) -> dict[str, Any]:
    """The ``smoke`` profile of a dataset stored as ``n_frames`` frames on ``[0, t_end]``.

    It keeps the defaults' frame spacing over fewer frames, so a smoke run steps the same
    physics for a shorter time, and uses :data:`SMOKE_SPLITS`.

    Args:
        config: The config dataclass, with ``t_end`` and ``n_frames`` defaults.
        n_frames: Frames of a smoke trajectory.
        **overrides: Further settings of the profile, e.g. a coarser ``resolution``.

    Returns:
        The profile's overrides of the config defaults.
    """
    _require_fields(config, ("t_end", "n_frames"), f"smoke_profile({getattr(config, '__name__', config)})")
    defaults = config()
    if int(defaults.n_frames) < 2:
        raise ValueError(f"smoke_profile: {config.__name__}'s default n_frames ({defaults.n_frames}) has no "
                         f"frame spacing; write the smoke profile's t_end by hand")
    spacing = float(defaults.t_end) / (int(defaults.n_frames) - 1)
    return {"n_frames": n_frames, "t_end": round((n_frames - 1) * spacing, 12), **SMOKE_SPLITS, **overrides}


def _field_names(config: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


def _require_fields(config: type, names: Sequence[str], who: str) -> None:
    """Refuse a config dataclass that lacks any of ``names``, in one line naming them."""
    have = _field_names(config) if dataclasses.is_dataclass(config) else set()
    missing = [name for name in names if name not in have]
    if missing:
        name = getattr(config, "__name__", config)
        raise UsageError(f"{who}: {name} needs the settings {', '.join(names)} (it lacks {', '.join(missing)})")


def _resolution_default(config: type) -> int:
    """The default of the config's ``resolution`` field (0 when it has none)."""
    field_ = {f.name: f for f in dataclasses.fields(config)}.get("resolution")
    return int(field_.default) if field_ is not None and field_.default is not dataclasses.MISSING else 0


def split_sizes(cfg: Any) -> dict[str, int]:
    """Trajectories per split of a :class:`~pdebench_core.data.config.DatasetConfig`.

    Args:
        cfg: A dataset config (or an omegaconf object) with ``n_train``, ``n_val`` and ``n_test``.

    Returns:
        ``{"train": n_train, "val": n_val, "test": n_test}`` as plain ints.
    """
    return {"train": int(cfg.n_train), "val": int(cfg.n_val), "test": int(cfg.n_test)}


def solver_device(name: str, where: str = "device") -> "torch.device":
    """The torch device a solver runs on, checked before any compute.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), or any torch device string
            such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        where: The setting's full name for error messages, e.g. ``"data.ns2d.device"``.

    Returns:
        The resolved :class:`torch.device`.

    Raises:
        UsageError: ``name`` is not a torch device, or names CUDA on a machine without it.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"{where}='{name}' is not a torch device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{where}='{name}' but this machine has no usable CUDA device; use auto or cpu")
    return device


def trajectory_seed(namespace: str, *parts: Any) -> int:
    """A 63-bit seed derived by hashing ``namespace`` and the parts that identify a trajectory.

    The seed is the first eight bytes (little-endian) of the SHA-256 of
    ``"namespace:part1:part2:..."`` with the top bit cleared, so it suits
    ``torch.Generator.manual_seed`` and ``numpy.random.default_rng``. Hashing, rather
    than counting, keeps splits disjoint and makes each trajectory independent of how
    many others are generated and how they are batched.

    Args:
        namespace: Fixed prefix that separates generators, e.g. ``"pdeb-dr2d"``.
        *parts: What identifies the trajectory, in a fixed order, e.g. ``seed, split, index``;
            each is written with ``str``.

    Returns:
        An int in ``[0, 2**63)``.
    """
    text = ":".join([namespace, *(str(part) for part in parts)])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def wants_progress(show_progress: Optional[bool], configured: bool) -> bool:
    """Whether to show progress (a bar on a terminal, periodic lines in a log).

    Args:
        show_progress: An explicit choice (``True``/``False``) wins.
        configured: The config's ``progress`` setting.

    Returns:
        ``True`` to show progress.
    """
    if show_progress is not None:
        return bool(show_progress)
    return bool(configured)


def progress_bar(description: str, total: float, enabled: bool):
    """Progress driven through an ``advance(amount)`` callback (see :func:`pdebench_core.progress.progress`).

    Args:
        description: Text shown with the progress.
        total: Work to do, in any unit: an int (frames, trajectories) is shown as
            ``done/total``, a float (simulated time) as a percentage.
        enabled: ``False`` shows nothing and yields a callback that does nothing.
    """
    from pdebench_core.progress import progress

    return progress(description, total, enabled)


def allocate_split(shape: Sequence[int], scratch: Optional[str], split: str,
                   limit: int = IN_MEMORY_LIMIT) -> "np.ndarray":
    """An uninitialised float32 array for one split: in memory, or a memory-mapped scratch file when large.

    Args:
        shape: ``(n, T, *S, C)`` of the split.
        scratch: Folder for large splits (``<scratch>/<split>.npy``); ``None`` keeps
            every split in memory.
        split: Split name, used for the scratch file's name.
        limit: Largest split in bytes kept in memory when ``scratch`` is given.

    Returns:
        A ``numpy.ndarray`` or a ``numpy.memmap`` of that shape.
    """
    import os

    import numpy as np

    shape = tuple(int(n) for n in shape)
    if scratch is not None and 4 * int(np.prod(shape)) > limit:
        return np.lib.format.open_memmap(os.path.join(scratch, f"{split}.npy"), mode="w+",
                                         dtype=np.float32, shape=shape)
    return np.empty(shape, dtype=np.float32)


#: A solver's working set per trajectory in a batch, in stored trajectories (state, stages, spectra).
SOLVER_WORKING_SET = 4


def check_generation_fits(sizes: Mapping[str, int], trajectory_shape: Sequence[int], batch_size: int, label: str,
                          scratch: Optional[str], limit: int = IN_MEMORY_LIMIT,
                          working_shape: Optional[Sequence[int]] = None) -> None:
    """Refuse a generation whose splits and solver batch cannot fit in memory, or whose file cannot
    fit on the disk, before anything is allocated (e.g. ``resolution=100000``).

    Args:
        sizes: Trajectories per split.
        trajectory_shape: ``(T, *S, C)`` of one stored trajectory.
        batch_size: Trajectories solved together.
        label: What is generated, for the message.
        scratch: Folder for splits larger than ``limit`` (they go to disk, not memory).
        limit: See :func:`allocate_split`.
        working_shape: Shape of one trajectory's solver state when it differs from the stored
            frames (a finer solver grid); the stored shape otherwise.
    """
    import math

    from pdebench_core import paths
    from pdebench_core.diskspace import check_free_space
    from pdebench_core.memory import check_fits_in_memory

    trajectory = 4 * math.prod(int(n) for n in trajectory_shape)
    spilled = sum(n * trajectory for n in sizes.values() if scratch is not None and n * trajectory > limit)
    total = sum(n * trajectory for n in sizes.values())
    state = 4 * math.prod(int(n) for n in working_shape) if working_shape is not None else trajectory
    needed = total - spilled + min(batch_size, max(sizes.values(), default=0)) * state * SOLVER_WORKING_SET
    check_fits_in_memory(needed, f"generating {label} (trajectories of shape {tuple(trajectory_shape)})",
                         "lower the resolution, the frames or the number of trajectories")
    check_free_space(paths.data_dir(), total + spilled, f"generating {label}", largest_file=total)


def generate_splits(
    sizes: Mapping[str, int],
    trajectory_shape: Sequence[int],
    solve: Callable[[list[Job], Callable[[float], None]], Any],
    *,
    batch_size: int,
    label: str,
    work_per_trajectory: float = 1,
    show_progress: bool = False,
    scratch: Optional[str] = None,
    limit: int = IN_MEMORY_LIMIT,
    working_shape: Optional[Sequence[int]] = None,
) -> dict[str, "np.ndarray"]:
    """Solve every ``(split, index)`` job in batches and assemble the splits.

    Jobs run in a fixed order (``train``, ``val``, ``test``, each by index) and in
    consecutive batches of ``batch_size``; a solver whose trajectories depend only on
    their job gives the same numbers for any batch size.

    Args:
        sizes: Trajectories per split, e.g. :func:`split_sizes`; splits come out in this order.
        trajectory_shape: ``(T, *S, C)`` of one stored trajectory.
        solve: ``solve(jobs, advance)`` returns the trajectories of ``jobs`` as an array
            ``(len(jobs), T, *S, C)`` (anything ``numpy`` can copy from), calling
            ``advance(amount)`` as work gets done.
        batch_size: Jobs per call of ``solve`` (at least 1).
        label: What is generated, e.g. the dataset name; the progress bar reads
            ``"<label>: <n> trajectories"``.
        work_per_trajectory: Units of work one trajectory reports through ``advance``
            (frames, simulated time, ...); the bar's total is this times the job count.
            An int gives a ``done/total`` bar, a float a percentage.
        show_progress: Draw the progress bar.
        scratch: Folder for splits larger than ``limit`` bytes (see :func:`allocate_split`).
        limit: Largest split in bytes kept in memory when ``scratch`` is given.
        working_shape: One trajectory's solver state when larger than its stored frames
            (see :func:`check_generation_fits`).

    Returns:
        ``{split: float32 array (n, T, *S, C)}`` for every split of ``sizes``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_generation_fits(sizes, trajectory_shape, batch_size, label, scratch, limit, working_shape)
    out = {split: allocate_split((n, *trajectory_shape), scratch, split, limit) for split, n in sizes.items()}
    jobs = [(split, i) for split, n in sizes.items() for i in range(n)]
    description = f"{label}: {len(jobs)} trajectories"
    with progress_bar(description, len(jobs) * work_per_trajectory, show_progress) as advance:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start:start + batch_size]
            solution = solve(batch, advance)  # (b, T, *S, C)
            _check_solution_shape(solution, (len(batch), *trajectory_shape), label)
            for row, (split, i) in enumerate(batch):
                out[split][i] = solution[row]
    return out


def _check_solution_shape(solution: Any, expected: tuple[int, ...], label: str) -> None:
    """Refuse a solver's batch of another shape than ``expected`` (a bug of the plugin's solver)."""
    import numpy as np

    from pdebench_core.errors import PluginError

    shape = tuple(solution.shape) if hasattr(solution, "shape") else np.shape(solution)  # a list of arrays too
    if shape != expected:
        raise PluginError(f"generating {label}: the solver returned shape {shape} for {expected[0]} trajectories; "
                          f"expected {expected}: (b, T, *S, C) with the spec's n_frames, grid and one channel "
                          f"per field")


def torch_dtype(name: str) -> "torch.dtype":
    """``torch.float32`` for ``"float32"``, else ``torch.float64`` (a ``solver_dtype`` setting)."""
    import torch

    return torch.float32 if name == "float32" else torch.float64


def cached_dataset(
    name: str,
    key: Mapping[str, Any],
    spec: "DataSpec",
    generate: Callable[[Optional[str]], Mapping[str, Any]],
    provenance: Mapping[str, Any],
    *,
    preload: bool = False,
    stored_spec: Optional["DataSpec"] = None,
    splits: Sequence[str] = SPLIT_NAMES,
) -> "TrajectoryDataset":
    """A dataset read lazily from the canonical cache file, generated first when missing.

    Args:
        name: Cache name, the file's prefix (``$PDEB_HOME/data/<name>-<hash>.h5``).
        key: Every setting that changes the generated numbers, and nothing else.
        spec: The returned dataset's spec.
        generate: ``generate(scratch)`` returns ``{split: array (n, T, *S, C)}``; ``scratch``
            is a temporary folder next to the cache for splits too large for memory.
        provenance: Written into the file's attributes (generator, version, seed, ...).
        preload: Read each split into memory instead of lazily.
        stored_spec: Spec written into the file (defaults to ``spec``), e.g. when presets
            with other names share one file.
        splits: Splits of the returned dataset.

    Returns:
        A :class:`~pdebench_core.data.base.TrajectoryDataset` over
        :class:`~pdebench_core.data.canonical.H5Trajectories`, whose ``fingerprint``
        is the digest of ``key`` (:func:`~pdebench_core.data.cache.key_digest`).
    """
    import os
    import tempfile

    from pdebench_core import paths
    from pdebench_core.data.base import TrajectoryDataset
    from pdebench_core.data.cache import cache_path, cached_generate, key_digest
    from pdebench_core.locks import remove_left_by_dead_writers
    from pdebench_core.data.canonical import H5Trajectories
    from pdebench_core.data.integrity import discard_if_damaged

    path = cache_path(name, key)
    discard_if_damaged(path)
    if not path.exists():
        paths.data_dir().mkdir(parents=True, exist_ok=True)
        remove_left_by_dead_writers(paths.data_dir())
        prefix = f".scratch-{os.getpid()}-{name}-"  # the pid tells a later run whether it is stale
        with tempfile.TemporaryDirectory(prefix=prefix, dir=paths.data_dir()) as scratch:
            path = cached_generate(name, key, lambda: (generate(scratch), stored_spec or spec, provenance))
    return TrajectoryDataset(spec, {split: H5Trajectories(path, split, preload=preload) for split in splits},
                             fingerprint=key_digest(key))


def read_published(cfg: Any, name: str, defaults: "DataSpec",
                   layout_fields: Optional[Mapping[str, Sequence[str]]] = None) -> "TrajectoryDataset":
    """Read ``cfg.path`` (a published file or folder) through the core's layout readers.

    Args:
        cfg: The dataset config; ``path``, ``format``, split sizes and ``t_in`` are used.
        name: Registered dataset name.
        defaults: What the file does not say about itself (fields, domain, boundary,
            parameters, ...). A file of another spatial dimension or channel count than
            ``defaults`` states is refused.
        layout_fields: Field names by layout, for layouts that store channels unnamed in an
            order of their own (see :func:`pdebench_core.data.layouts.make_spec`).

    Returns:
        The dataset read from the file.
    """
    from pdebench_core.data.layouts import load_path

    return load_path(cfg, name, defaults, layout_fields)


@dataclass
class SolverBatch:
    """Trajectories that a dataset's solver integrates together (see :class:`GeneratedDataset`).

    Attributes:
        jobs: ``(split, index)`` of each trajectory.
        seeds: One seed per trajectory, a hash of its identity (:meth:`GeneratedDataset.seed`):
            draw its initial state from ``torch.Generator().manual_seed(seed)``.
        device: Where to solve (the checked ``device`` setting).
        dtype: Solver precision (the ``solver_dtype`` setting).
        advance: Report work done, summed over the batch, in the units of
            :attr:`GeneratedDataset.work_per_trajectory` (by default: one per frame after the
            initial one, and trajectory).
    """

    jobs: list[Job]
    seeds: list[int]
    device: "torch.device"
    dtype: "torch.dtype"
    advance: Callable[[float], None]

    def __len__(self) -> int:
        return len(self.jobs)


@dataclass(eq=False)
class GeneratedDataset:
    """A dataset generated by its plugin's solver: what is particular to it, declared once.

    The plugin declares its settings, its solver and the spec of its data; everything
    else is done here: the cache key is every field of the settings dataclass except
    :data:`~pdebench_core.data.config.USAGE_SETTINGS` and :attr:`exclude`, plus the
    generator and its :attr:`version`, so a new setting enters the key without a line
    of plugin code; each trajectory's seed is a hash of ``(seed, split, index)``;
    ``path`` reads a published file instead; common settings are checked before any
    compute; data is generated once, verified (no NaN) and cached as canonical HDF5.

    Calling the object is the dataset factory, so it is what the plugin registers
    (:meth:`register`). Datasets it builds carry a ``fingerprint``: the hex digest of
    the cache key.

    Attributes:
        name: Registered dataset name.
        config: Settings dataclass, a subclass of
            :class:`~pdebench_core.data.config.DatasetConfig` with ``batch_size``,
            ``device``, ``progress`` and ``solver_dtype`` fields.
        solve: ``solve(cfg, batch)`` returns the trajectories of a :class:`SolverBatch`,
            an array ``(len(batch), T, *S, C)`` (numpy, or a CPU tensor); ``cfg`` is a
            dataclass instance with ``resolution`` resolved.
        spec: ``spec(cfg)``: the :class:`~pdebench_core.spec.DataSpec` of generated data
            with these settings: fields, grid, ``n_frames``, ``dt``, domain, boundary and
            parameters (``name``, ``t_in`` and ``horizon`` are filled in here).
        version: Generator version, part of the cache key: bump it whenever a change to the
            solver or the sampling changes the numbers, so stale files are not reused.
        default_resolution: What ``resolution=0`` stands for (default: the config's own
            ``resolution`` default, which a generated dataset's config sets).
        profiles: ``{"smoke": {...}, "small": {...}, "paper": {...}}``, overrides of the
            config defaults; leave it out to have them made from :attr:`smoke` and
            :attr:`paper`, with the config defaults as ``small``.
        smoke: The ``smoke`` profile's overrides, on top of :data:`SMOKE_SPLITS`. Where the
            settings store ``n_frames`` frames on ``[0, t_end]`` and ``smoke`` sets
            ``n_frames`` alone, ``t_end`` follows so the frames keep the defaults' spacing
            (:func:`smoke_profile`).
        paper: The ``paper`` profile's overrides (the published setting).
        scheme: The limits of an explicit time-stepping solver (:class:`ExplicitScheme`),
            checked here; ``None`` for other solvers.
        check: ``check(cfg, where)`` raises :class:`~pdebench_core.errors.UsageError` for
            settings the solver cannot honour; frames, horizon, split sizes, batch size,
            ``solver_dtype``, ``device`` and the :attr:`scheme`'s limits are checked here.
        provenance: Written into the cache file, e.g. ``{"version": __version__, "reference": ...}``.
        family: Generator name: ``pdeb_<family>`` in cache keys and provenance, ``pdeb-<family>``
            as the seed namespace (default: ``name``).
        cache_name: Prefix of the cache file (default: ``name``); datasets sharing it share
            files for equal settings.
        seed_parts: Inserted before ``seed`` in each trajectory's seed.
        identity: Constant cache-key entries that tell this data apart besides its settings.
        exclude: Settings, besides the usage ones, that never change the numbers.
        default_horizon: Frames rolled out at evaluation when ``horizon`` is unset (capped
            by the frames after ``t_in``); ``None``: all of them.
        work_per_trajectory: ``f(cfg)``: the progress one trajectory reports through
            ``advance`` (default: its frames after the first).
        working_shape: ``f(cfg)``: one trajectory's solver state when larger than its
            stored frames (a finer solver grid), for the memory check.
        auto_batch_size: ``f(cfg, device)``: the batch when ``batch_size=0``; without it
            ``batch_size`` must be at least 1.
        layout_fields: Field names by layout for ``path=`` files that store channels unnamed
            in another order than :attr:`spec`'s (``{"dpot": ("Vx", "Vy", "density",
            "pressure")}``); the channels keep the file's order, named as they are.
    """

    name: str
    config: type
    solve: Callable[[Any, SolverBatch], Any]
    spec: Callable[[Any], "DataSpec"]
    version: int
    _: KW_ONLY  # the rest by name only: a positional call of an older field order fails at once
    default_resolution: int = 0
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Any] = field(default_factory=dict)
    scheme: Optional[ExplicitScheme] = None
    check: Optional[Callable[[Any, str], None]] = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    family: str = ""
    cache_name: str = ""
    seed_parts: tuple = ()
    identity: Mapping[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = GENERATION_ONLY
    default_horizon: Optional[int] = None
    work_per_trajectory: Optional[Callable[[Any], float]] = None
    working_shape: Optional[Callable[[Any], Sequence[int]]] = None
    auto_batch_size: Optional[Callable[[Any, "torch.device"], int]] = None
    layout_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # True when `profiles` was made from `smoke` and `paper`: a variant makes it again.
    _made_profiles: bool = field(default=False, init=False, repr=False, compare=False)
    _derived_resolution: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.config, type) and dataclasses.is_dataclass(self.config)):
            raise TypeError(f"dataset '{self.name}': config must be a dataclass class, got {self.config!r}; "
                            f"for other defaults, give a subclass that changes them")
        missing = [name for name in (*GENERATION_ONLY, "solver_dtype") if name not in _field_names(self.config)]
        if missing:
            raise TypeError(f"dataset '{self.name}': {self.config.__name__} lacks the generation settings "
                            f"{', '.join(missing)}; derive it from pdebench_core.data.config.GeneratedConfig")
        self.family = self.family or self.name
        self.cache_name = self.cache_name or self.name
        if not self.default_resolution:
            self.default_resolution, self._derived_resolution = _resolution_default(self.config), True
        if self.default_resolution < 1:
            raise ValueError(f"dataset '{self.name}': resolution=0 must stand for a grid; give the config a "
                             f"'resolution' default of at least 1, or default_resolution=")
        if self.scheme is not None:
            _require_fields(self.config, ExplicitScheme.SETTINGS, f"dataset '{self.name}' declares an ExplicitScheme")
        if self.profiles and (self.smoke or self.paper):
            raise ValueError(f"dataset '{self.name}': declare profiles= or smoke=/paper=, not both")
        if not self.profiles:
            self.profiles, self._made_profiles = self._profiles_from_overrides(), True

    def _profiles_from_overrides(self) -> dict[str, dict[str, Any]]:
        smoke = {**SMOKE_SPLITS, **self.smoke}
        names = {f.name for f in dataclasses.fields(self.config)}
        if {"t_end", "n_frames"} <= names and "n_frames" in self.smoke and "t_end" not in self.smoke:
            smoke = smoke_profile(self.config, **self.smoke)
        return profiles_around_defaults(self.config, "small", smoke=smoke, paper=dict(self.paper))

    def variant(self, **changes: Any) -> "GeneratedDataset":
        """A copy with some attributes changed (a preset: another name, config and profiles).

        Profiles made from :attr:`smoke` and :attr:`paper` are made again, from the
        variant's config defaults; a variant given ``profiles=`` takes them as they are,
        and one given ``smoke=`` or ``paper=`` makes them from those.
        """
        if "profiles" in changes:
            changes.setdefault("smoke", {})
            changes.setdefault("paper", {})
        elif self._made_profiles or "smoke" in changes or "paper" in changes:
            changes["profiles"] = {}
        if self._derived_resolution and "default_resolution" not in changes:
            changes["default_resolution"] = 0  # the variant's own config says it again
        return dataclasses.replace(self, **changes)

    # --- settings ------------------------------------------------------------------------------

    def settings(self, cfg: Any) -> Any:
        """``cfg`` (dataclass, omegaconf object or mapping) as a dataclass with ``resolution`` resolved."""
        plain = as_dataclass(cfg, self.config)
        if not int(plain.resolution):
            plain = dataclasses.replace(plain, resolution=self.default_resolution)
        return plain

    def config_for(self, profile: str = "small", **changes: Any) -> Any:
        """The settings of a profile, with ``changes`` on top.

        Raises:
            UsageError: ``profile`` is not one of :attr:`profiles`.
        """
        if profile not in self.profiles:
            raise UsageError(f"dataset '{self.name}' has no profile '{profile}'; it has {', '.join(self.profiles)}")
        return self.config(**{**self.profiles[profile], **changes})

    def cache_key(self, cfg: Any) -> dict[str, Any]:
        """Every setting that changes the generated numbers, the generator and its version."""
        settings = settings_of(self.settings(cfg), (*USAGE_SETTINGS, *self.exclude))
        return {"generator": f"pdeb_{self.family}", "generator_version": self.version, **self.identity, **settings}

    def fingerprint(self, cfg: Any) -> str:
        """Hex digest of :meth:`cache_key`: equal for equal numbers, without generating them."""
        from pdebench_core.data.cache import key_digest

        return key_digest(self.cache_key(cfg))

    def split_fingerprints(self, cfg: Any) -> dict[str, str]:
        """``{split: hex digest}`` of what one split's trajectories depend on: :meth:`cache_key`
        without the other splits' sizes. Each trajectory's seed depends only on its split and
        index (:meth:`seed`), and batching never changes the numbers, so a split holds the
        same trajectories whatever the sizes of the others."""
        from pdebench_core.data.cache import key_digest

        sizes = split_sizes(self.settings(cfg))
        shared = {k: v for k, v in self.cache_key(cfg).items() if k not in {f"n_{split}" for split in sizes}}
        return {split: key_digest({**shared, "split": split, "n": n}) for split, n in sizes.items()}

    def seed(self, cfg: Any, split: str, index: int) -> int:
        """Seed of one trajectory: a hash of ``(family, *seed_parts, seed, split, index)``."""
        return trajectory_seed(f"pdeb-{self.family}", *self.seed_parts, int(cfg.seed), split, index)

    def make_spec(self, cfg: Any) -> "DataSpec":
        """The checked spec of data generated with these settings.

        Raises:
            UsageError: For settings the generator cannot honour (see :attr:`check`).
        """
        settings = self.settings(cfg)
        where = f"data.{self.name}"
        if self.scheme is not None:
            self.scheme.check(settings, where)
        if self.check is not None:
            self.check(settings, where)
        physics = self.spec(settings)
        frames, t_in = int(physics.n_frames), int(settings.t_in)
        if frames <= t_in:
            raise UsageError(f"{where}: trajectories of {frames} frames leave nothing to predict after "
                             f"t_in={t_in}; generate more frames or lower t_in")
        if settings.horizon is not None and not 0 < int(settings.horizon) <= frames - t_in:
            raise UsageError(f"{where}.horizon must be in 1..{frames - t_in}, got {settings.horizon}")
        self._check_generation_settings(settings, where)
        return physics.replace(name=self.name, t_in=t_in, horizon=self._horizon(settings, frames))

    def _horizon(self, settings: Any, frames: int) -> int:
        """The configured horizon, else :attr:`default_horizon` capped by the frames after ``t_in``."""
        if settings.horizon is not None:
            return int(settings.horizon)
        return min(self.default_horizon or frames, frames - int(settings.t_in))

    def _check_generation_settings(self, settings: Any, where: str) -> None:
        least_batch = 0 if self.auto_batch_size is not None else 1
        if min(split_sizes(settings).values()) < 0 or int(settings.batch_size) < least_batch:
            raise UsageError(f"{where}: split sizes must be >= 0 and batch_size >= {least_batch}")
        dtype = getattr(settings, "solver_dtype", "float32")
        if dtype not in SOLVER_DTYPES:
            raise UsageError(f"{where}.solver_dtype must be 'float32' or 'float64', got '{dtype}'")
        solver_device(str(getattr(settings, "device", "auto")), f"{where}.device")

    # --- generating and building ---------------------------------------------------------------

    def generate(self, cfg: Any, show_progress: Optional[bool] = None, scratch: Optional[str] = None,
                 limit: Optional[int] = None) -> dict[str, "np.ndarray"]:
        """Solve every trajectory of every split (no cache involved).

        Args:
            cfg: The settings.
            show_progress: Force progress on or off; ``None`` follows ``cfg.progress``.
            scratch: Folder for splits too large for memory (memory-mapped ``.npy`` files).
            limit: Largest split in bytes kept in memory when ``scratch`` is given
                (default :data:`IN_MEMORY_LIMIT`).

        Returns:
            ``{"train": array, "val": array, "test": array}``, float32 ``(n, T, *S, C)``.
        """
        settings = self.settings(cfg)
        spec = self.spec(settings)
        device = solver_device(str(getattr(settings, "device", "auto")), f"data.{self.name}.device")
        dtype = torch_dtype(getattr(settings, "solver_dtype", "float32"))
        batch_size = int(settings.batch_size)
        if batch_size == 0 and self.auto_batch_size is not None:
            batch_size = self.auto_batch_size(settings, device)

        def solve(jobs: list[Job], advance: Callable[[float], None]) -> Any:
            seeds = [self.seed(settings, split, index) for split, index in jobs]
            return self.solve(settings, SolverBatch(list(jobs), seeds, device, dtype, advance))

        working = self.working_shape(settings) if self.working_shape is not None else None
        work = self.work_per_trajectory(settings) if self.work_per_trajectory else int(spec.n_frames) - 1
        return generate_splits(
            split_sizes(settings), (int(spec.n_frames), *spec.spatial_shape, len(spec.fields)), solve,
            batch_size=batch_size, label=self.name, work_per_trajectory=work,
            show_progress=wants_progress(show_progress, bool(getattr(settings, "progress", False))),
            scratch=scratch, limit=IN_MEMORY_LIMIT if limit is None else limit, working_shape=working,
        )

    def __call__(self, cfg: Any) -> "TrajectoryDataset":
        """The dataset factory: cached generated data, or the published file ``cfg.path``.

        Args:
            cfg: The settings (an omegaconf object from the core, or a dataclass).

        Returns:
            A :class:`~pdebench_core.data.base.TrajectoryDataset` read lazily from HDF5.
        """
        settings = self.settings(cfg)
        if settings.path:
            return read_published(settings, self.name, self.published_defaults(settings), self.layout_fields)
        spec = self.make_spec(settings)
        provenance = {**dict(self.provenance), "generator": f"pdeb_{self.family}",
                      "generator_version": self.version, "seed": int(settings.seed)}
        dataset = cached_dataset(self.cache_name, self.cache_key(settings), spec,
                                 lambda scratch: self.generate(settings, scratch=scratch), provenance,
                                 preload=bool(settings.preload), stored_spec=spec.replace(name=self.cache_name))
        dataset.split_fingerprints = self.split_fingerprints(settings)
        return dataset

    def published_defaults(self, cfg: Any) -> "DataSpec":
        """What a published file does not say about itself: fields, domain, boundary, parameters.

        The file decides its grid and frames; ``horizon`` is the configured one, else
        :attr:`default_horizon`.
        """
        settings = self.settings(cfg)
        horizon = settings.horizon if settings.horizon is not None else self.default_horizon
        return self.spec(settings).replace(name=self.name, t_in=int(settings.t_in), horizon=horizon, n_frames=None)

    def register(self, register: Callable[..., None], **card: Any) -> None:
        """Register this dataset through a ``register_datasets`` hook's ``register``, with its card.

        What the data says of itself is not written twice: ``dims``, ``fields``, ``dt``,
        ``boundary`` and ``horizon`` default to those of the ``small`` profile's data (a card
        entry given here wins, e.g. a boundary described in words). :attr:`spec` is then
        called here, so it should import nothing heavy (torch) when called: listing commands
        register every plugin.
        """
        if not {"dims", "fields", "dt", "boundary", "horizon"} <= set(card):
            settings = self.settings(self.config(**self.profiles.get("small", {})))
            physics = self.spec(settings)
            card = {"dims": len(physics.spatial_shape), "fields": list(physics.fields), "dt": physics.dt,
                    "boundary": physics.boundary, "horizon": self._horizon(settings, int(physics.n_frames)), **card}
        register(self.name, self, config=self.config, profiles=self.profiles, **card)
