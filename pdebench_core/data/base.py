"""The dataset object that dataset factories return."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec

SPLITS = ("train", "val", "test")


class TrajectoryDataset:
    """A dataset: a :class:`DataSpec` plus fixed, disjoint splits.

    Args:
        spec: Self-description of the data.
        splits: ``{"train": seq, "val": seq, "test": seq}``; each ``seq[i]`` is a
            float32 trajectory ``(T, *S, C)`` (numpy array or torch tensor).
        fingerprint: Hex digest that identifies the numbers without reading them, when
            known: generated data carries the digest of its generator, generator version
            and every setting that shapes the numbers. ``None`` for data read from files.

    Attributes:
        fingerprint: As given.
        split_fingerprints: ``{split: hex digest}`` identifying each split's numbers alone, when
            the generator can tell (see :meth:`GeneratedDataset.split_fingerprints
            <pdebench_core.data.generation.GeneratedDataset.split_fingerprints>`); empty otherwise.
        notes: How the data was read (a file's parameter over a setting, channels named by
            the layout, a split that did not fit), for the run's log; empty by default.
    """

    def __init__(self, spec: DataSpec, splits: Mapping[str, Sequence], fingerprint: Optional[str] = None) -> None:
        self.spec = spec
        self._splits = dict(splits)
        self.fingerprint = fingerprint
        self.split_fingerprints: dict[str, str] = {}
        self.notes: list[str] = []

    def split(self, name: str) -> Sequence:
        """Trajectories of one split."""
        if name not in self._splits:
            raise UsageError(
                f"dataset '{self.spec.name}' has no split '{name}'; it has {sorted(self._splits)}"
            )
        return self._splits[name]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self._splits.items())
        return f"TrajectoryDataset({self.spec.name}: {sizes})"
