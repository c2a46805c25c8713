"""Sweeps: ``pdeb run`` over the product of models, datasets, seeds and settings.

* :mod:`.axes` parses what varies and forms the combinations;
* :mod:`.plan` builds and validates every combination's config before any job starts;
* :mod:`.store` owns the sweep directory (``$PDEB_HOME/sweeps/<id>/``): plan, one record per
  combination, logs, lock;
* :mod:`.state` decides what each combination needs (nothing, a run, a resume, a retry);
* :mod:`.jobs` runs one combination, as ``pdeb run`` would, and records it;
* :mod:`.launchers` runs the jobs here, or through submitit locally or on SLURM;
* :mod:`.driver` ties them together (:func:`run_sweep`).
"""

from __future__ import annotations

from .axes import Combination, combinations, split_values
from .driver import Outcome, run_sweep, summarise, sweep_rows, sweep_run_ids
from .launchers import LAUNCHERS, ClusterOptions
from .plan import Plan, Shared, make_plan
from .store import SweepDir, sweep_ids, sweeps_dir

__all__ = [
    "LAUNCHERS", "ClusterOptions", "Combination", "Outcome", "Plan", "Shared", "SweepDir", "combinations",
    "make_plan", "run_sweep", "split_values", "summarise", "sweep_ids", "sweep_rows", "sweep_run_ids", "sweeps_dir",
]
