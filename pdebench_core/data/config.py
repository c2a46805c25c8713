"""Settings every dataset shares; dataset plugins subclass :class:`DatasetConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class DatasetConfig:
    """Common per-dataset settings (``data.<name>.<key>`` on the command line).

    Attributes:
        path: A published file or folder to read instead of generating data.
        format: Layout of ``path``; ``"auto"`` detects it.
        n_train: Trajectories in the train split.
        n_val: Trajectories in the validation split.
        n_test: Trajectories in the test split.
        resolution: Grid points per spatial axis of generated data (0 = the dataset's default).
        seed: Seed of the generator; the same seed gives the same data.
        t_in: Frames a model receives.
        horizon: Frames rolled out after the first ``t_in`` at evaluation (None = all).
        weight: Relative sampling weight in a pre-training mixture.
        preload: Read the whole split into memory (small sets only).
    """

    path: Optional[str] = None
    format: str = "auto"
    n_train: int = 64
    n_val: int = 8
    n_test: int = 8
    resolution: int = 0
    seed: int = 0
    t_in: int = 10
    horizon: Optional[int] = None
    weight: float = 1.0
    preload: bool = False
