"""Run provenance, reproduction and the self-contained HTML report of one run.

* :mod:`.provenance`: what a run left behind (:func:`load_run`) and the command that reruns it
  (:func:`reproduction`);
* :mod:`.rollouts`: the run's model rolled out again on a few test trajectories;
* :mod:`.figures`: error curves, fields and radially averaged spectra as PNGs;
* :mod:`.page`: the HTML page (:func:`build_report`), built with the HTML helpers the
  leaderboard uses too (:mod:`pdebench_core.html_page`).
"""

from __future__ import annotations

from .figures import (MAX_CHANNELS_SHOWN, SNAPSHOTS, error_curve_figure, field_figure, png_data_uri, radial_spectrum,
                      snapshot_steps, spectrum_figure)
from .page import build_report, metric_tables, overview, render_report
from .provenance import (LAUNCH_OPTIONS, Reproduction, RunInfo, config_differences, known_run_ids, launch_options,
                         load_run, new_repro_id, reproduction)
from .rollouts import Rollout, rerun_rollouts

__all__ = [
    "LAUNCH_OPTIONS", "MAX_CHANNELS_SHOWN", "SNAPSHOTS", "Reproduction", "Rollout", "RunInfo", "build_report",
    "config_differences", "error_curve_figure", "field_figure", "known_run_ids", "launch_options", "load_run",
    "metric_tables", "new_repro_id", "overview", "png_data_uri", "radial_spectrum", "render_report", "reproduction",
    "rerun_rollouts", "snapshot_steps", "spectrum_figure",
]
