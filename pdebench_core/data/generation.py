"""Shared machinery of dataset plugins that generate their data with a built-in solver.

A generating dataset plugin keeps what is its own (the config, the initial conditions,
the solver and the cache key) and delegates the rest here:

- :func:`solver_device` turns a ``device`` setting into a checked torch device;
- :func:`trajectory_seed` derives one trajectory's seed by hashing its identity, so
  splits are disjoint and a trajectory does not depend on batching or split sizes;
- :func:`generate_splits` runs a batched ``solve(jobs, advance)`` over every
  ``(split, index)`` job with a progress bar (:func:`progress_bar`) and assembles the
  splits, large ones in memory-mapped scratch files (:func:`allocate_split`);
  :func:`generate_from_config` reads its settings from a dataset config;
- :func:`check_frames_and_sizes` refuses settings common to generators before any compute;
- :func:`cached_dataset` generates once into the canonical HDF5 cache and returns a
  dataset whose splits read that file lazily; :func:`read_published` reads a
  published file through the core's layout readers instead.

Nothing heavy is imported at module level, so plugins may import this module freely.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

from pdebench_core.errors import UsageError

if TYPE_CHECKING:  # only for annotations: importing this module stays cheap
    import numpy as np
    import torch

    from pdebench_core.data.base import TrajectoryDataset
    from pdebench_core.spec import DataSpec

SPLIT_NAMES = ("train", "val", "test")
# Above this many bytes a split is assembled in a scratch file instead of memory.
IN_MEMORY_LIMIT = 1 << 30

Job = tuple[str, int]
"""One trajectory to generate: ``(split, index within the split)``."""


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
    check_free_space(paths.data_dir(), total + spilled, f"generating {label}")


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

    Returns:
        ``{split: float32 array (n, T, *S, C)}`` for every split of ``sizes``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_generation_fits(sizes, trajectory_shape, batch_size, label, scratch, limit)
    out = {split: allocate_split((n, *trajectory_shape), scratch, split, limit) for split, n in sizes.items()}
    jobs = [(split, i) for split, n in sizes.items() for i in range(n)]
    description = f"{label}: {len(jobs)} trajectories"
    with progress_bar(description, len(jobs) * work_per_trajectory, show_progress) as advance:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start:start + batch_size]
            solution = solve(batch, advance)  # (b, T, *S, C)
            for row, (split, i) in enumerate(batch):
                out[split][i] = solution[row]
    return out


def generate_from_config(
    cfg: Any,
    trajectory_shape: Sequence[int],
    solve: Callable[[list[Job], Callable[[float], None]], Any],
    *,
    label: str,
    work_per_trajectory: float = 1,
    show_progress: Optional[bool] = None,
    scratch: Optional[str] = None,
    limit: int = IN_MEMORY_LIMIT,
    batch_size: Optional[int] = None,
) -> dict[str, "np.ndarray"]:
    """:func:`generate_splits` with split sizes, batch size and progress taken from a dataset config.

    Args:
        cfg: A dataset config with ``n_train``, ``n_val``, ``n_test``, ``batch_size`` and ``progress``.
        trajectory_shape: ``(T, *S, C)`` of one stored trajectory.
        solve: ``solve(jobs, advance)``, as for :func:`generate_splits`.
        label: Progress bar label, e.g. the dataset name.
        work_per_trajectory: Units of work one trajectory reports through ``advance``.
        show_progress: Force the progress bar on or off; ``None`` follows ``cfg.progress``
            on a terminal (see :func:`wants_progress`).
        scratch: Folder for splits larger than ``limit`` bytes.
        limit: Largest split in bytes kept in memory when ``scratch`` is given.
        batch_size: Overrides ``cfg.batch_size`` (e.g. when the plugin chooses it itself).

    Returns:
        ``{"train": array, "val": array, "test": array}``, float32 ``(n, T, *S, C)``.
    """
    return generate_splits(
        split_sizes(cfg), trajectory_shape, solve, label=label, work_per_trajectory=work_per_trajectory,
        batch_size=int(cfg.batch_size) if batch_size is None else int(batch_size),
        show_progress=wants_progress(show_progress, cfg.progress), scratch=scratch, limit=limit,
    )


def check_frames_and_sizes(cfg: Any, where: str) -> None:
    """Refuse frame counts, horizon, solver precision and split sizes a generator cannot honour.

    Expects the fields ``n_frames``, ``t_in``, ``horizon``, ``solver_dtype``, ``n_train``,
    ``n_val``, ``n_test`` and ``batch_size``.

    Args:
        cfg: The dataset config.
        where: The config section for error messages, e.g. ``"data.dr2d"``.

    Raises:
        UsageError: ``n_frames <= t_in``; ``horizon`` outside ``1..n_frames - t_in``;
            ``solver_dtype`` not float32/float64; a negative split size or ``batch_size < 1``.
    """
    frames, t_in = int(cfg.n_frames), int(cfg.t_in)
    if frames <= t_in:
        raise UsageError(f"{where}: n_frames={cfg.n_frames} leaves nothing to predict after "
                         f"t_in={cfg.t_in}; raise n_frames")
    if cfg.horizon is not None and not 0 < int(cfg.horizon) <= frames - t_in:
        raise UsageError(f"{where}.horizon must be in 1..{frames - t_in}")
    if cfg.solver_dtype not in ("float32", "float64"):
        raise UsageError(f"{where}.solver_dtype must be 'float32' or 'float64', got '{cfg.solver_dtype}'")
    if min(cfg.n_train, cfg.n_val, cfg.n_test) < 0 or cfg.batch_size < 1:
        raise UsageError(f"{where}: split sizes must be >= 0 and batch_size >= 1")


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
        :class:`~pdebench_core.data.canonical.H5Trajectories`.
    """
    import os
    import tempfile

    from pdebench_core import paths
    from pdebench_core.data.base import TrajectoryDataset
    from pdebench_core.data.cache import cache_path, cached_generate, remove_stale_scratch
    from pdebench_core.data.canonical import H5Trajectories
    from pdebench_core.data.integrity import discard_if_damaged

    path = cache_path(name, key)
    discard_if_damaged(path)
    if not path.exists():
        paths.data_dir().mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(paths.data_dir())
        prefix = f".scratch-{os.getpid()}-{name}-"  # the pid tells a later run whether it is stale
        with tempfile.TemporaryDirectory(prefix=prefix, dir=paths.data_dir()) as scratch:
            path = cached_generate(name, key, lambda: (generate(scratch), stored_spec or spec, provenance))
    return TrajectoryDataset(spec, {split: H5Trajectories(path, split, preload=preload) for split in splits})


def read_published(cfg: Any, name: str, defaults: "DataSpec") -> "TrajectoryDataset":
    """Read ``cfg.path`` (a published file or folder) through the core's layout readers.

    Args:
        cfg: The dataset config; ``path``, ``format``, split sizes and ``t_in`` are used.
        name: Registered dataset name.
        defaults: What the file does not say about itself (fields, domain, boundary,
            parameters, ...).

    Returns:
        The dataset read from the file.
    """
    from pdebench_core.data.layouts import load_path

    return load_path(cfg, name, defaults)
