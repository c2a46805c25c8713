"""The leaderboard row, and local rows made from the results store.

A :class:`Row` is one line of the leaderboard: a published number (a cell of a paper's
table) or a local result (one run, or runs pooled over seeds). Local rows carry their
provenance: where the data came from and its content hash, the train trajectories, the
horizon, ``t_in`` and grid the number was measured with, the profile and the model's actual
parameter count, from which ``size`` is derived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from pdebench_core.settings import experiment_digest

from .measures import PAPER_PROFILE, Measure, grid_text, scoring_label

LOCAL = "local"


@dataclass
class Row:
    """One leaderboard row (published or local).

    Attributes:
        source: ``local`` or the published table's label (its citation in short).
        source_key: ``local`` or the table's key in ``sources.yaml`` (``dpot``, ``pdebench``).
        model: Registered model name (local) or the paper's label (published).
        dataset: Our dataset name.
        task: The task that produced a local row; a published row's group
            (``baseline``, ``pretrained`` = zero-shot, ``finetuned``).
        setting: PDE parameters of a published number, or of the published setting a local
            run matches (``""`` when none).
        model_key: The registered model a published label maps to.
        part: The part of the published table (DPOT's Table 1 has three).
        size: Parameter count as papers print it (``0.42M``): from the model's actual count for
            local rows, the paper's column for published ones.
        profile: Profile of a local run (``smoke``, ``small``, ``paper``).
        metrics: Metric values (local pooled rows: the mean over seeds).
        std: Sample standard deviation over seeds (``None`` for one seed).
        failed: A local run whose metrics are not finite (never pooled, never ranked).
        run_id: The run (the newest of a pooled row).
        run_ids: Every run counted in the row.
        seed: The seed (``None`` for a pooled row).
        seeds: The distinct seeds counted.
        n: Number of distinct seeds pooled (local rows).
        repeats: Runs left out because a newer run repeated their seed.
        n_params: The model's parameter count.
        train_time_s: Training time (mean over pooled runs).
        device: Where it ran.
        versions: Package versions of the run.
        config_hash: Hash of the resolved config.
        group_hash: Hash of the resolved config without seed, run id and operational settings
            (:func:`seedless_hash`).
        data_hash: Content hash of everything the run saw (pooled rows share it).
        data_source: ``generated`` or the file the data was read from.
        dataset_hash: Content hash of this row's dataset.
        n_train: Train trajectories of this row's dataset.
        t_in: Input frames of the rollout.
        horizon: Steps rolled out and scored.
        grid: Spatial grid of the scored data (``64x64``).
        scoring: How the rollout was scored: ``native`` or ``<mode> on <model grid>`` (see
            :class:`~.measures.Measure`).
        scored_data_hash: Content hash of the trajectories the row was scored on (the
            evaluation split alone).
        data_group: What a local row is ranked among besides its measure: its scored data's
            hash in a column without published cells, ``None`` beside published cells (whose
            setting says what data they stand for).
        weights_of_run: For an ``evaluate`` row, the run whose weights it scored (``None``
            when they came from elsewhere).
        scored_weights: For a row of a task that trains nothing, the weights it scored (its
            ``task.checkpoint``): two evaluations of the same weights are one sample, whatever
            their seeds.
        created_at: When the row was written.
        published_name: The dataset's name in the published table.
        citation: Full citation of the published table.
        url: Link to it.
        averaged: A published column that averages several settings (never matched).
        checked: Whether the published number was checked against its source (``None``: not
            recorded).
        published_measure: How the published number was measured (its protocol column).
        differs: What differs from the published cells of the same dataset (``horizon 40 vs 20``,
            ``profile smoke``).
        rank: Position among the rows measured alike, 1 = best.
        ranked_among: How many rows share that ranking.
        order: Position in the published tables (keeps the papers' order in the pivot).
    """

    source: str
    source_key: str
    model: str
    dataset: str
    task: str = ""
    setting: str = ""
    model_key: str | None = None
    part: str | None = None
    size: str | None = None
    profile: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    std: dict[str, float | None] = field(default_factory=dict)
    failed: bool = False
    run_id: str | None = None
    run_ids: list[str] = field(default_factory=list)
    seed: int | None = None
    seeds: list[int] = field(default_factory=list)
    n: int | None = None
    repeats: list[str] = field(default_factory=list)
    n_params: int | None = None
    train_time_s: float | None = None
    device: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    config_hash: str | None = None
    group_hash: str | None = None
    data_hash: str | None = None
    data_source: str | None = None
    dataset_hash: str | None = None
    n_train: int | None = None
    t_in: int | None = None
    horizon: int | None = None
    grid: str | None = None
    scoring: str | None = None
    scored_data_hash: str | None = None
    data_group: str | None = None
    weights_of_run: str | None = None
    scored_weights: str | None = None
    created_at: str | None = None
    published_name: str | None = None
    citation: str | None = None
    url: str | None = None
    averaged: bool = False
    checked: bool | None = None
    published_measure: Measure | None = None
    differs: list[str] = field(default_factory=list)
    rank: int | None = None
    ranked_among: int | None = None
    order: int = 0

    def __getitem__(self, name: str) -> Any:
        """Read access by field name (``row["model"]``), as for the dictionaries rows once were."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    @property
    def is_local(self) -> bool:
        """A result of this machine's results store."""
        return self.source == LOCAL

    @property
    def measure(self) -> Measure | None:
        """How the row's numbers were measured (``None`` for a published row without protocol)."""
        if self.is_local:
            return Measure(self.t_in, self.horizon, self.grid, self.scoring)
        return self.published_measure

    @property
    def paper_scale(self) -> bool:
        """Published rows, and local runs of the ``paper`` profile."""
        return not self.is_local or self.profile == PAPER_PROFILE


def is_finite_number(value: Any) -> bool:
    """A real, finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def size_label(n_params: Any) -> str | None:
    """A parameter count as papers print it: ``420000`` -> ``0.42M``, ``7e6`` -> ``7M``,
    ``1.03e9`` -> ``1.03B``, ``4505`` -> ``4.5K``."""
    if not is_finite_number(n_params) or n_params <= 0:
        return None
    n = float(n_params)
    if n >= 1e9:
        return f"{n / 1e9:.3g}B"
    if n >= 1e5:
        millions = n / 1e6
        return f"{millions:.2g}M" if millions < 10 else f"{millions:.0f}M"
    if n >= 1e3:
        return f"{n / 1e3:.2g}K"
    return str(int(n))


def seedless_hash(config: Mapping[str, Any] | None, fallback: str = "") -> str:
    """Hash of a resolved run config with ``run.seed``, the run id and the operational
    settings (sinks, logging, checkpoints, data loading) left out
    (:func:`~pdebench_core.settings.experiment_digest`).

    Runs with the same seedless hash (and model, dataset, task, data hash) are repeats of one
    experiment with different seeds, pooled into one leaderboard row.
    """
    if not config:
        return fallback
    return experiment_digest(config)


def _int_or_none(value: Any) -> int | None:
    return int(value) if is_finite_number(value) else None


def local_row(stored: Mapping[str, Any], setting: str = "") -> Row:
    """The leaderboard row of one stored result row (not yet pooled over seeds)."""
    config = stored.get("config") or {}
    extra = stored.get("extra") or {}
    raw = dict(stored.get("metrics") or {})
    metrics = {str(k): float(v) for k, v in raw.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    horizon = stored.get("horizon") if stored.get("horizon") is not None else extra.get("horizon")
    run_id = stored.get("run_id")
    return Row(
        source=LOCAL, source_key=LOCAL, model=str(stored.get("model")), model_key=str(stored.get("model")),
        dataset=str(stored.get("dataset")), task=str(stored.get("task")), setting=setting,
        size=size_label(stored.get("n_params")), profile=stored.get("profile"), metrics=metrics,
        std={name: None for name in metrics}, failed=any(not math.isfinite(v) for v in metrics.values()),
        run_id=run_id, run_ids=[run_id], seed=stored.get("seed"),
        seeds=[stored["seed"]] if stored.get("seed") is not None else [], n=1,
        n_params=_int_or_none(stored.get("n_params")), train_time_s=stored.get("train_time_s"),
        device=stored.get("device"), versions=dict(stored.get("versions") or {}),
        config_hash=stored.get("config_hash"),
        group_hash=seedless_hash(config, fallback=str(stored.get("config_hash") or run_id)),
        data_hash=stored.get("data_hash"), data_source=stored.get("data_source"),
        dataset_hash=stored.get("dataset_hash"), n_train=_int_or_none(stored.get("n_train")),
        t_in=_int_or_none(stored.get("t_in")), horizon=_int_or_none(horizon),
        grid=grid_text(stored.get("grid")), scoring=extra.get("scoring") or _scoring_of_older_row(stored),
        scored_data_hash=extra.get("scored_data_hash"), weights_of_run=extra.get("weights_of_run"),
        scored_weights=_scored_weights(config, str(stored.get("task"))),
        created_at=stored.get("created_at"),
    )


def _scored_weights(config: Mapping[str, Any], task: str) -> str | None:
    """The ``task.checkpoint`` of a run whose task trains nothing (an evaluation), else ``None``."""
    from pdebench_core import plugins
    from pdebench_core.errors import PdebError

    task_section = config.get("task")
    checkpoint = task_section.get("checkpoint") if isinstance(task_section, Mapping) else None
    if not checkpoint:
        return None
    try:
        trains = plugins.registries()["task"].get(task).trains
    except PdebError:  # a task of a plugin no longer installed: taken to train
        return None
    return None if trains else str(checkpoint)


def _scoring_of_older_row(stored: Mapping[str, Any]) -> str | None:
    """The scoring of a row written before it was recorded, from its config: ``native`` when
    ``eval.grid=native`` or the model saw the data's own grid (no ``train.resolution``, and
    the only dataset of the run, or a resolution equal to the grid); ``None`` when the config
    cannot tell."""
    config = stored.get("config") or {}
    mode = str(((config.get("eval") or {}).get("grid")) or "model")
    grid = grid_text(stored.get("grid"))
    if grid is None:
        return None
    native = [int(n) for n in grid.split("x")]
    resolution = (config.get("train") or {}).get("resolution")
    if resolution:
        return scoring_label(mode, [int(resolution)] * len(native), native)
    return "native" if mode == "native" or len(config.get("data") or {}) == 1 else None


def local_rows(store_rows: Iterable[Mapping[str, Any]], setting_of=None) -> list[Row]:
    """One row per stored result row; ``setting_of(stored)`` names the published setting it matches."""
    return [local_row(stored, setting_of(stored) if setting_of else "") for stored in store_rows]


def ordered_metrics(rows: Sequence[Row], first: str) -> list[str]:
    """Metric names, ``first`` first, then in order of appearance."""
    seen: list[str] = []
    for row in rows:
        for name in row.metrics:
            if name not in seen:
                seen.append(name)
    if first in seen:
        seen.remove(first)
        seen.insert(0, first)
    return seen
