"""Generate-once caching of solver output as canonical HDF5."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from pdebench_core import paths
from pdebench_core.data.canonical import write_canonical
from pdebench_core.spec import DataSpec


def cache_path(name: str, key: Mapping[str, Any]) -> Path:
    """File under ``$PDEB_HOME/data`` identified by the dataset name and generation settings."""
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return paths.data_dir() / f"{name}-{digest}.h5"


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
    if not path.exists():
        splits, spec, provenance = generate()
        write_canonical(path, splits, spec, {**dict(provenance), "settings": dict(key)})
    return path
