"""Checks for the tests of dataset plugins: the dataset contract, registration, cache keys.

Each check raises ``AssertionError`` with a message that says what is wrong; they read
every trajectory into memory, so use them on ``smoke``-sized data. Import them from
:mod:`pdebench_core.testing`, which re-exports them.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from pdebench_core.profiles import PROFILE_NAMES

SPLITS = ("train", "val", "test")
# Card entries every registered dataset fills in (``pdeb data list`` and the docs show them).
DATASET_CARD_KEYS = ("description", "pde", "dims", "fields", "resolution", "dt", "boundary", "parameters",
                     "source", "license", "horizon")


def _as_numpy(item: Any, where: str):
    """A trajectory as a numpy array, refusing anything that is not float32."""
    import numpy as np

    if hasattr(item, "detach") and hasattr(item, "dtype"):  # a torch tensor
        import torch

        assert item.dtype == torch.float32, f"{where}: dtype {item.dtype}, expected float32"
        return item.detach().cpu().numpy()
    assert isinstance(item, np.ndarray), f"{where}: a {type(item).__name__}, expected a numpy array or torch tensor"
    assert item.dtype == np.float32, f"{where}: dtype {item.dtype}, expected float32"
    return item


def split_arrays(dataset: Any, splits: Iterable[str] = SPLITS) -> dict[str, Any]:
    """Every trajectory of each split, stacked.

    Args:
        dataset: An object with ``.split(name)`` returning a sequence of trajectories.
        splits: Splits to read.

    Returns:
        ``{split: numpy array (n, T, *S, C)}``; an empty split gives shape ``(0,)``.
    """
    import numpy as np

    arrays = {}
    for split in splits:
        trajectories = dataset.split(split)
        items = [_as_numpy(trajectories[i], f"{split}[{i}]") for i in range(len(trajectories))]
        arrays[split] = np.stack(items) if items else np.empty((0,), dtype=np.float32)
    return arrays


def assert_splits_disjoint(arrays: Mapping[str, Any], *, frame: Optional[int] = None,
                           min_distance: float = 0.0) -> None:
    """Assert that no trajectory appears twice, within a split or across splits.

    Args:
        arrays: ``{split: array (n, T, *S, C)}``, e.g. from :func:`split_arrays`.
        frame: Compare only this frame of each trajectory (``0``: the initial states);
            ``None`` compares whole trajectories.
        min_distance: Least max-abs difference between any two trajectories; ``0``
            only requires them not to be identical.

    Raises:
        AssertionError: Naming the two trajectories that coincide.
    """
    import numpy as np

    labelled = [(f"{split}[{i}]", np.asarray(a[i] if frame is None else a[i][frame]))
                for split, a in arrays.items() for i in range(len(a))]
    seen: dict[bytes, str] = {}
    for label, values in labelled:
        key = np.ascontiguousarray(values).tobytes()
        assert key not in seen, f"{label} is identical to {seen[key]}: splits must hold distinct trajectories"
        seen[key] = label
    if min_distance > 0 and len(labelled) > 1:
        stacked = np.stack([values for _, values in labelled]).reshape(len(labelled), -1)
        distances = np.abs(stacked[:, None] - stacked[None]).max(axis=-1)  # (n, n)
        np.fill_diagonal(distances, np.inf)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        assert distances[i, j] > min_distance, (
            f"{labelled[i][0]} and {labelled[j][0]} differ by at most {distances[i, j]:.3g} "
            f"(need > {min_distance:g}): near-duplicate trajectories")


def assert_same_splits(first: Mapping[str, Any], second: Mapping[str, Any]) -> None:
    """Assert that two sets of split arrays are bit-identical (same splits, shapes and values).

    Args:
        first: ``{split: array}``, e.g. from :func:`split_arrays`.
        second: The same for another build.

    Raises:
        AssertionError: Naming the first split that differs.
    """
    import numpy as np

    assert set(first) == set(second), f"splits differ: {sorted(first)} vs {sorted(second)}"
    for split in first:
        assert np.shape(first[split]) == np.shape(second[split]), (
            f"{split}: shape {np.shape(first[split])} vs {np.shape(second[split])}")
        assert np.array_equal(first[split], second[split]), f"{split}: the values differ"


def check_dataset_contract(
    dataset: Any,
    *,
    expected_fields: Optional[Sequence[str]] = None,
    spatial_shape: Optional[Sequence[int]] = None,
    n_frames: Optional[int] = None,
    split_sizes: Optional[Mapping[str, int]] = None,
    lazy: bool = True,
    disjoint_frame: Optional[int] = None,
    min_distance: float = 0.0,
) -> dict[str, Any]:
    """Assert that a built dataset keeps the dataset contract, and return its splits.

    Checked: ``.spec`` is a :class:`~pdebench_core.spec.DataSpec` with 1 to 3 spatial
    axes and as many channels as fields; the splits ``train``, ``val`` and ``test``
    exist; every trajectory is float32 ``(T, *S, C)`` matching the spec, finite, with
    more frames than ``t_in``; no trajectory appears twice in or across splits; and,
    with ``lazy``, the splits are sequences read on access rather than lists or arrays
    held in memory.

    Args:
        dataset: What a dataset factory returned.
        expected_fields: The spec's field names, in order.
        spatial_shape: The spec's (and every trajectory's) spatial shape.
        n_frames: Frames of every trajectory; by default ``spec.n_frames`` when set.
        split_sizes: Trajectories per split, e.g. ``{"train": 4, "val": 2, "test": 2}``.
        lazy: Require lazily read splits (as :class:`~pdebench_core.data.canonical.H5Trajectories`).
        disjoint_frame: Compare only this frame when checking that trajectories are
            distinct (see :func:`assert_splits_disjoint`); ``None``: whole trajectories.
        min_distance: Least max-abs difference between any two trajectories.

    Returns:
        ``{split: numpy array (n, T, *S, C)}`` for further checks.

    Raises:
        AssertionError: On the first broken rule, saying which.
    """
    import numpy as np

    from pdebench_core.spec import DataSpec

    spec = dataset.spec
    assert isinstance(spec, DataSpec), f"dataset.spec is a {type(spec).__name__}, expected a DataSpec"
    fields = tuple(spec.fields)
    assert fields and all(isinstance(f, str) and f for f in fields), f"spec.fields must name every channel: {fields}"
    if expected_fields is not None:
        assert fields == tuple(expected_fields), f"spec.fields {fields}, expected {tuple(expected_fields)}"
    shape = tuple(spec.spatial_shape)
    assert 1 <= len(shape) <= 3 and all(isinstance(n, int) and n > 0 for n in shape), (
        f"spec.spatial_shape {shape} must be 1 to 3 positive ints")
    if spatial_shape is not None:
        assert shape == tuple(spatial_shape), f"spec.spatial_shape {shape}, expected {tuple(spatial_shape)}"
    frames = n_frames if n_frames is not None else spec.n_frames

    for split in SPLITS:
        trajectories = dataset.split(split)
        assert hasattr(trajectories, "__len__") and hasattr(trajectories, "__getitem__"), (
            f"split '{split}' is a {type(trajectories).__name__}, not a sequence")
        if split_sizes is not None and split in split_sizes:
            assert len(trajectories) == split_sizes[split], (
                f"split '{split}' has {len(trajectories)} trajectories, expected {split_sizes[split]}")
        if lazy:
            in_memory = isinstance(trajectories, (list, tuple, np.ndarray)) or hasattr(trajectories, "detach")
            assert not in_memory, (f"split '{split}' is a {type(trajectories).__name__} held in memory; "
                                   "return a lazily read sequence such as FileTrajectories or H5Trajectories")

    arrays = split_arrays(dataset)
    for split, array in arrays.items():
        if len(array) == 0:
            continue
        assert array.ndim == 3 + len(shape), (
            f"{split}: trajectories of rank {array.ndim - 1}, expected (T, *S, C) of rank {2 + len(shape)}")
        assert array.shape[2:-1] == shape, f"{split}: spatial shape {array.shape[2:-1]}, spec says {shape}"
        assert array.shape[-1] == len(fields), f"{split}: {array.shape[-1]} channels for {len(fields)} fields"
        if frames is not None:
            assert array.shape[1] == frames, f"{split}: {array.shape[1]} frames, expected {frames}"
        assert array.shape[1] > spec.t_in, f"{split}: {array.shape[1]} frames leave nothing after t_in={spec.t_in}"
        assert np.isfinite(array).all(), f"{split}: non-finite values"
    assert_splits_disjoint(arrays, frame=disjoint_frame, min_distance=min_distance)
    return arrays


@contextmanager
def generation_forbidden(owner: Any, attribute: str = "generate") -> Iterator[None]:
    """Within the block, calling ``owner.<attribute>`` fails the test (to prove a cache is read).

    Args:
        owner: The object whose generator must not run: a
            :class:`~pdebench_core.data.generation.GeneratedDataset` (its ``generate``), or a module.
        attribute: Name of the generating function.

    Yields:
        Nothing; the original function is restored on exit.
    """
    original = getattr(owner, attribute)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{attribute}() ran although the cache holds these settings")

    setattr(owner, attribute, refuse)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


def check_dataset_registration(
    register_datasets: Callable[[Callable[..., None]], None],
    name: str,
    *,
    factory: Optional[Callable[..., Any]] = None,
    config: Optional[type] = None,
    card_keys: Sequence[str] = DATASET_CARD_KEYS,
) -> dict[str, Any]:
    """Assert that a plugin's ``register_datasets`` hook registers ``name`` with a full card.

    Checked: ``name`` is registered (once); the factory and config class are the
    given ones; the card fills in every key of ``card_keys``; ``dims`` is 1 to 3 and
    ``fields`` a list of names; profiles ``smoke``, ``small`` and ``paper`` exist, set
    only fields of the config, and merge into its omegaconf schema.

    Args:
        register_datasets: The plugin's hook implementation.
        name: The dataset name to look for.
        factory: The factory it must register (not checked when ``None``).
        config: The config class it must register (not checked when ``None``).
        card_keys: Card entries that must be present and non-empty (``horizon`` may be ``None``:
            every frame after ``t_in``).

    Returns:
        ``{"factory": ..., "config": ..., "profiles": ..., "card": {...}}`` as registered.

    Raises:
        AssertionError: On the first broken rule, saying which.
    """
    from omegaconf import OmegaConf

    found: dict[str, list[dict[str, Any]]] = {}

    def register(dataset_name: str, dataset_factory: Callable[..., Any], config: Optional[type] = None,
                 profiles: Optional[Mapping[str, Mapping[str, Any]]] = None, **card: Any) -> None:
        found.setdefault(dataset_name, []).append(
            {"factory": dataset_factory, "config": config, "profiles": profiles, "card": card})

    register_datasets(register)
    assert name in found, f"'{name}' is not registered; the hook registered {sorted(found)}"
    assert len(found[name]) == 1, f"'{name}' is registered {len(found[name])} times"
    entry = found[name][0]
    if factory is not None:
        assert entry["factory"] is factory, f"'{name}' registered factory {entry['factory']!r}, expected {factory!r}"
    if config is not None:
        assert entry["config"] is config, f"'{name}' registered config {entry['config']!r}, expected {config!r}"
    card = entry["card"]
    for key in card_keys:
        if key == "horizon" and key in card:  # None says "every frame after t_in", a value like any other
            continue
        assert card.get(key) not in (None, "", [], ()), f"'{name}': card entry '{key}' is missing or empty"
    if "dims" in card:  # register(dims=...) takes one dimension or several
        dims = (card["dims"],) if isinstance(card["dims"], int) else tuple(card["dims"])
        assert dims and all(d in (1, 2, 3) for d in dims), f"'{name}': dims={card['dims']!r}, expected 1, 2 or 3"
    if "fields" in card:
        assert isinstance(card["fields"], list) and all(isinstance(f, str) for f in card["fields"]), (
            f"'{name}': card fields must be a list of names, got {card['fields']!r}")
    profiles = entry["profiles"] or {}
    assert set(PROFILE_NAMES) <= set(profiles), f"'{name}': profiles {sorted(profiles)} lack one of {PROFILE_NAMES}"
    schema = entry["config"]
    if schema is not None and dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        for profile, overrides in profiles.items():
            unknown = set(overrides) - known
            assert not unknown, f"'{name}' profile '{profile}' sets unknown keys {sorted(unknown)}"
            OmegaConf.merge(OmegaConf.structured(schema), dict(overrides))  # raises on a badly typed value
    return entry


def check_cache_key(dataset: Any) -> dict[str, Any]:
    """Assert that a generated dataset's cache key follows every setting that changes its numbers.

    Each field of the dataset's config is changed in turn (numbers scaled and shifted,
    strings extended, booleans flipped; fields that default to ``None`` are skipped):
    the key must change for every field it does not exclude, and stay the same for
    every field it excludes.

    Args:
        dataset: A :class:`~pdebench_core.data.generation.GeneratedDataset`.

    Returns:
        The key of the config defaults.

    Raises:
        AssertionError: Naming the field whose change the key missed, or should have ignored.
    """
    from pdebench_core.data.config import USAGE_SETTINGS

    base = dataset.config()
    key = dataset.cache_key(base)
    ignored = set(USAGE_SETTINGS) | set(dataset.exclude)
    for field in dataclasses.fields(base):
        value = getattr(base, field.name)
        if value is None:
            continue
        changed = dataset.cache_key(dataclasses.replace(base, **{field.name: _another_value(value)}))
        if field.name in ignored:
            assert changed == key, f"'{dataset.name}': '{field.name}' is excluded but changes the cache key"
        else:
            assert changed != key, f"'{dataset.name}': changing '{field.name}' leaves the cache key unchanged"
    return key


def check_generated_dataset(dataset: Any, cfg: Any, batch_sizes: Sequence[int] = (1, 3)) -> dict[str, Any]:
    """Assert what a generated dataset promises its users, on ``smoke``-sized settings.

    Checked: the cache key follows every setting that changes the numbers
    (:func:`check_cache_key`); a second build that changes only how the data is used or
    generated (``t_in``, ``batch_size``, ``device="cpu"``, ``preload``) reads the cache
    without generating and carries the same ``fingerprint``; and other batch sizes give
    the same numbers, bit for bit. Run it in an empty ``PDEB_HOME`` (:func:`private_home`).

    Args:
        dataset: A :class:`~pdebench_core.data.generation.GeneratedDataset`.
        cfg: Its settings, e.g. ``dataset.config_for("smoke")``.
        batch_sizes: Batch sizes whose numbers must equal the first build's.

    Returns:
        ``{split: numpy array (n, T, *S, C)}`` of the first build.

    Raises:
        AssertionError: On the first broken promise, saying which.
    """
    check_cache_key(dataset)
    first = dataset(cfg)
    arrays = split_arrays(first)
    assert first.fingerprint == dataset.fingerprint(cfg), f"'{dataset.name}': the fingerprint is not the key's digest"
    usage_only = {"t_in": max(1, int(cfg.t_in) - 1), "batch_size": int(cfg.batch_size) + 1, "device": "cpu",
                  "preload": True}
    with generation_forbidden(dataset):
        again = dataset(dataclasses.replace(cfg, **usage_only))
    assert again.fingerprint == first.fingerprint, f"'{dataset.name}': usage settings changed the fingerprint"
    assert_same_splits(arrays, split_arrays(again))
    import numpy as np

    for batch_size in batch_sizes:
        other = dataset.generate(dataclasses.replace(cfg, batch_size=batch_size), show_progress=False)
        for split, values in arrays.items():
            assert np.array_equal(values, other[split]), (
                f"'{dataset.name}': batch_size={batch_size} changes the numbers of split '{split}'")
    return arrays


def _another_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return type(value)(value * 2 + 1)
    return f"{value}-other"
