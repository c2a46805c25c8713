"""Generate-once caching of solver output as canonical HDF5."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from pdebench_core import paths
from pdebench_core.data.canonical import write_canonical
from pdebench_core.data.integrity import discard_if_damaged, first_non_finite
from pdebench_core.errors import DataError
from pdebench_core.spec import DataSpec


def key_digest(key: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of generation settings, independent of their order.

    With the generator's name and version in ``key`` it fingerprints the generated
    numbers: equal digests, equal data.
    """
    return hashlib.sha256(json.dumps(dict(key), sort_keys=True, default=str).encode()).hexdigest()


def cache_path(name: str, key: Mapping[str, Any]) -> Path:
    """File under ``$PDEB_HOME/data`` identified by the dataset name and generation settings."""
    return paths.data_dir() / f"{name}-{key_digest(key)[:12]}.h5"


def cached_generate(
    name: str,
    key: Mapping[str, Any],
    generate: Callable[[], tuple[Mapping[str, Any], DataSpec, Mapping[str, Any]]],
) -> Path:
    """Return the cached file for ``(name, key)``, generating it first if missing.

    Args:
        name: Dataset name, used in the file name.
        key: Every setting that changes the generated numbers (resolution, seed, ...).
        generate: Returns ``(splits, spec, provenance)`` as for :func:`write_canonical`.

    Returns:
        Path of the canonical file.
    """
    path = cache_path(name, key)
    discard_if_damaged(path)
    if not path.exists():
        splits, spec, provenance = generate()
        for split, array in splits.items():  # never cache a diverged solver's output
            bad = first_non_finite(array[i] for i in range(int(array.shape[0])))
            if bad is not None:
                raise DataError(f"generated data for '{name}' has NaN or Inf values in split '{split}', "
                                f"trajectory {bad}; the solver diverged: lower its time step or change the settings")
        write_canonical(path, splits, spec, {**dict(provenance), "settings": dict(key)})
    return path


