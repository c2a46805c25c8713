"""Guarding evaluation splits against leaking into training data."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from pdebench_core.errors import UsageError


def _digest(trajectories, i: int, start: int = 0, length: int = 1) -> str:
    """Hash of frames ``start:start+length`` of trajectory ``i`` (reads only those frames)."""
    if hasattr(trajectories, "window"):
        frames = trajectories.window(i, start, length)
    else:
        frames = trajectories[i][start:start + length]
    return hashlib.sha1(np.ascontiguousarray(np.asarray(frames, dtype=np.float32)).tobytes()).hexdigest()


def check_no_leakage(datasets: Mapping[str, Any], train_split: str = "train", eval_split: str = "test") -> None:
    """Refuse a run whose training trajectories include one it is evaluated on (see
    :func:`shared_trajectory`)."""
    found = shared_trajectory(datasets, datasets, train_split, eval_split)
    if found is not None:
        name, index, source, source_index = found
        raise UsageError(
            f"{eval_split} trajectory {index} of '{name}' is also {train_split} trajectory {source_index} "
            f"of '{source}': the run would be evaluated on data it trains on; change the splits or "
            f"set task.allow_test_overlap=true")


def shared_trajectory(trained: Mapping[str, Any], evaluated: Mapping[str, Any], train_split: str = "train",
                      eval_split: str = "test") -> tuple[str, int, str, int] | None:
    """The first evaluation trajectory that is also a training trajectory:
    ``(dataset, index, training dataset, its index)``, or ``None``.

    Compares every evaluation trajectory of every dataset of ``evaluated`` with every training
    trajectory of every dataset of ``trained`` (two datasets may read the same file, or
    generate the same physics): first by the bytes of their first frame, then, where those
    agree, by the next two frames. Parameter sweeps (the Well's Rayleigh-Benard and shear
    flow, for instance) start several trajectories from one initial condition under other
    parameters: those share a first frame but are different data.
    """
    starts: dict[str, list[tuple[str, int]]] = {}
    for name, dataset in trained.items():
        train = dataset.split(train_split)
        for index in range(len(train)):
            starts.setdefault(_digest(train, index), []).append((name, index))
    continued: dict[tuple[str, int], str] = {}  # the next frames of train trajectories with a shared start
    for name, dataset in evaluated.items():
        scored = dataset.split(eval_split)
        for index in range(len(scored)):
            candidates = starts.get(_digest(scored, index), [])
            if not candidates:
                continue
            later = _digest(scored, index, 1, 2)
            for source, source_index in candidates:
                key = (source, source_index)
                if key not in continued:
                    continued[key] = _digest(trained[source].split(train_split), source_index, 1, 2)
                if continued[key] == later:
                    return name, index, source, source_index
    return None
