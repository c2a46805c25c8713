"""Guarding evaluation splits against leaking into training data."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from pdebench_core.errors import UsageError


def _fingerprints(trajectories) -> dict[str, int]:
    """Hash of each trajectory's first frame -> its index (reads one frame per trajectory)."""
    out = {}
    for i in range(len(trajectories)):
        first = trajectories.window(i, 0, 1) if hasattr(trajectories, "window") else trajectories[i][:1]
        array = np.ascontiguousarray(np.asarray(first, dtype=np.float32))
        out[hashlib.sha1(array.tobytes()).hexdigest()] = i
    return out


def check_no_leakage(datasets: Mapping[str, Any], train_split: str = "train", eval_split: str = "test") -> None:
    """Refuse a run whose training trajectories include one it is evaluated on.

    Compares every evaluation trajectory of every dataset with every training
    trajectory of every dataset in the run (two datasets may read the same file, or
    generate the same physics), by the bytes of their first frame.
    """
    seen: dict[str, tuple[str, int]] = {}
    for name, dataset in datasets.items():
        for digest, index in _fingerprints(dataset.split(train_split)).items():
            seen.setdefault(digest, (name, index))
    for name, dataset in datasets.items():
        for digest, index in _fingerprints(dataset.split(eval_split)).items():
            if digest in seen:
                source, source_index = seen[digest]
                raise UsageError(
                    f"{eval_split} trajectory {index} of '{name}' is also {train_split} trajectory {source_index} "
                    f"of '{source}': the run would be evaluated on data it trains on; change the splits or "
                    f"set task.allow_test_overlap=true"
                )
