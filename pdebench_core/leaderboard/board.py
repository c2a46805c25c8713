"""The board: local rows pooled over seeds, compared with the published cells, filtered, ranked.

Pooling puts together only runs of one experiment: equal config apart from the seed, the run
id and the operational settings (sinks, logging, checkpoints, data loading:
:func:`pdebench_core.settings.experiment_digest`), equal data hash, distinct seeds; ``n``
counts the seeds. A run that repeats a seed (an evaluation, its weights) replaces the earlier
run of that seed. A run whose metrics are not finite is shown as failed, on its own, and never
pooled or ranked.

Rows are ranked only among rows measured alike: the same dataset and setting, and the same
``t_in``, horizon, grid and scoring. A local row that was measured otherwise than the published
cells of its dataset names the difference (``horizon 40 vs 20``), as does a local row of a
profile smaller than ``paper`` (``profile smoke``), and is ranked apart from them.

Local rows measured alike but scored on different trajectories (their evaluation split's
content hash differs: another viscosity, another test file) say so (``scored data
1a2b3c4d``). Where a dataset has no published cells they are also ranked apart; beside
published cells, the published setting says what data the numbers stand for, and they are
ranked with them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from pdebench_core.errors import UsageError, did_you_mean

from .measures import differences
from .published import PublishedTables, load_published, local_setting, published_rows, source_summary
from .rows import LOCAL, Row, is_finite_number, local_rows, ordered_metrics

SOURCES = ("local", "published", "all")
DEFAULT_METRIC = "l2re"


@dataclass
class Board:
    """Filtered, ranked rows ready to render.

    Attributes:
        rows: The rows, grouped by dataset and ranked.
        metrics: Metric columns shown, in order.
        rank_metric: The metric ranks are computed from (``None`` when no row has one).
        higher_is_better: Direction of ``rank_metric``.
        sources: ``{label: summary}`` of the published tables present (see
            :func:`~.published.source_summary`).
    """

    rows: list[Row]
    metrics: list[str]
    rank_metric: str | None
    higher_is_better: bool = False
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def local(self) -> list[Row]:
        """The local rows."""
        return [r for r in self.rows if r.is_local]

    @property
    def published(self) -> list[Row]:
        """The published rows."""
        return [r for r in self.rows if not r.is_local]


# --------------------------------------------------------------------------- pooling


def _sample(row: Row) -> Any:
    """What makes a row one sample of its experiment: its seed; for an evaluation of saved
    weights, those weights (evaluating them again with another seed is no new sample)."""
    if row.scored_weights:
        return ("weights", row.scored_weights)
    return row.seed if row.seed is not None else ("run", row.run_id)


def _newest_per_seed(members: Sequence[Row]) -> tuple[list[Row], list[str]]:
    """The newest run of each sample (in store order) and the ids of the runs they replace."""
    kept: dict[Any, Row] = {}
    replaced: list[str] = []
    for row in members:
        key = _sample(row)
        if key in kept:
            replaced.append(str(kept[key].run_id))
        kept[key] = row
    return sorted(kept.values(), key=lambda r: members.index(r)), replaced


def _pool(members: Sequence[Row]) -> Row:
    kept, replaced = _newest_per_seed(members)
    latest = kept[-1]
    names = sorted({m for r in kept for m in r.metrics})
    means, stds = {}, {}
    for name in names:
        values = [r.metrics[name] for r in kept if name in r.metrics]
        means[name] = statistics.fmean(values)
        stds[name] = statistics.stdev(values) if len(values) > 1 else None
    times = [r.train_time_s for r in kept if is_finite_number(r.train_time_s)]
    return replace(
        latest, metrics=means, std=stds, n=len(kept), run_ids=[str(r.run_id) for r in kept], repeats=replaced,
        seeds=sorted({r.seed for r in kept if r.seed is not None}), seed=latest.seed if len(kept) == 1 else None,
        train_time_s=statistics.fmean(times) if times else None,
        device=", ".join(sorted({str(r.device) for r in kept if r.device})) or None,
    )


def pool_seeds(rows: Sequence[Row]) -> list[Row]:
    """Pool local rows of one experiment run with different seeds.

    Rows share an experiment when model, dataset, setting, task, the seedless config hash and
    the data hash agree. Each metric becomes the mean over the distinct seeds (the newest run
    of a seed counts; earlier runs of that seed are listed in ``repeats``), ``std`` holds the
    sample standard deviation (``None`` for one seed) and ``n`` the number of seeds. Failed rows
    (non-finite metrics) stay on their own.
    """
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        key = ("failed", row.run_id, row.dataset, row.task) if row.failed else (
            row.model, row.dataset, row.setting, row.task, row.group_hash, row.data_hash)
        groups.setdefault(key, []).append(row)
    return [_pool(members) for members in groups.values()]


def mark_repeats(rows: Sequence[Row]) -> list[Row]:
    """For the per-run view: an earlier run whose seed a newer run of the same experiment
    repeats is kept, but marked (``repeat of <newer run>``) and left out of the ranks."""
    out = list(rows)
    newest: dict[tuple, int] = {}
    for position, row in enumerate(out):
        sample = _sample(row)
        if row.failed or (isinstance(sample, tuple) and sample[0] == "run"):
            continue
        key = (row.model, row.dataset, row.setting, row.task, row.group_hash, row.data_hash, sample)
        if key in newest:
            earlier = out[newest[key]]
            out[newest[key]] = replace(earlier, differs=[*earlier.differs, f"repeat of {row.run_id}"])
        newest[key] = position
    return out


def is_repeat(row: Row) -> bool:
    """Marked by :func:`mark_repeats` or :func:`mark_rescored`: shown, never ranked."""
    return any(text.startswith(("repeat of ", "scores the weights of ")) for text in row.differs)


def mark_rescored(rows: Sequence[Row]) -> None:
    """An ``evaluate`` row that scored the weights of a run whose own row stands in the same
    ranking (same model, dataset, setting, measure and data) is marked (``scores the weights of
    <run> again``) and left out of the ranks: one model counts once."""
    ranked: dict[tuple, set[str]] = {}
    for row in rows:
        if row.is_local and not row.failed:
            ranked.setdefault((row.model, _rank_group(row)), set()).update(row.run_ids)
    for row in rows:
        source = row.weights_of_run
        if source and row.is_local and source not in row.run_ids and source in ranked.get((row.model, _rank_group(row)),
                                                                                            set()):
            row.differs = [*row.differs, f"scores the weights of {source} again"]


# --------------------------------------------------------------------------- comparison and ranks


def _reference(published: Sequence[Row], metric: str | None) -> Row | None:
    """The published row whose protocol a local row of the same column is compared with."""
    candidates = [r for r in published if not r.averaged and (metric is None or metric in r.metrics)]
    return candidates[0] if candidates else None


def compare_with_published(rows: Sequence[Row], metric: str | None) -> None:
    """Set ``differs`` of every local row that has published cells beside it (same dataset and
    setting, holding ``metric``): what was measured otherwise, and a profile below ``paper``."""
    beside: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if not row.is_local:
            beside.setdefault((row.dataset, row.setting), []).append(row)
    for row in rows:
        if not row.is_local or row.failed:
            continue
        reference = _reference(beside.get((row.dataset, row.setting), []), metric)
        if reference is None:
            continue
        found = differences(row.measure, reference.published_measure)
        if not row.paper_scale:
            found.append(f"profile {row.profile or '?'}")
        row.differs = [d for d in row.differs if d.startswith("repeat of ")] + found


def _rank_group(row: Row) -> tuple:
    measure = row.measure
    return (row.dataset, row.setting, measure.key if measure is not None else ("no protocol", row.source_key),
            row.data_group)


def group_by_scored_data(rows: Sequence[Row], published_columns: set[tuple[str, str]]) -> None:
    """Where local rows measured alike were scored on different trajectories, each names its
    data in ``differs`` (``scored data 1a2b3c4d``, or ``scored data unrecorded`` for rows
    written before it was recorded). In a column without published cells such rows are also
    ranked apart (``data_group``); beside published cells, the published setting says what
    data the numbers stand for, and they are ranked with them."""
    alike: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.is_local and not row.failed:
            alike.setdefault(_rank_group(row), []).append(row)
    for members in alike.values():
        if len({row.scored_data_hash for row in members}) < 2:
            continue
        for row in members:
            data = row.scored_data_hash or "unrecorded"
            row.differs = [*row.differs, f"scored data {data[:8]}"]
            if (row.dataset, row.setting) not in published_columns:
                row.data_group = data


def assign_ranks(rows: Sequence[Row], metric: str, higher_is_better: bool = False) -> None:
    """Set ``rank`` (1 = best, ties share) and ``ranked_among`` within each group of rows measured
    alike (dataset, setting, ``t_in``, horizon, grid). Failed rows, repeated runs and rows
    without ``metric`` get none."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        row.rank, row.ranked_among = None, None
        if row.failed or is_repeat(row) or not is_finite_number(row.metrics.get(metric)):
            continue
        groups.setdefault(_rank_group(row), []).append(row)
    for members in groups.values():
        ordered = sorted(members, key=lambda r: r.metrics[metric], reverse=higher_is_better)
        for position, row in enumerate(ordered):
            earlier = ordered[position - 1] if position else None
            tied = earlier is not None and earlier.metrics[metric] == row.metrics[metric]
            row.rank = earlier.rank if tied else position + 1
            row.ranked_among = len(ordered)


def metric_directions(names: Iterable[str]) -> dict[str, bool]:
    """``{metric: higher_is_better}`` as the metrics were registered (lower is better if unknown)."""
    out = {name: False for name in names}
    try:
        from pdebench_core import plugins

        registry = plugins.registries()["metric"]
        for name in out:
            if name in registry:
                out[name] = registry.get(name).higher_is_better
    except Exception:  # a broken plugin must not take the leaderboard down; default: lower is better
        pass
    return out


# --------------------------------------------------------------------------- filters


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


@dataclass(frozen=True)
class _Filter:
    kind: str
    flag: str
    wanted: tuple[str, ...]
    values: Any  # row -> the names it answers to
    fold: bool = False


def _closest(name: str, available: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else `` (closest: 'x')``; empty when nothing is left."""
    import difflib

    near = did_you_mean(name, available)
    if near or not available:
        return near
    ranked = sorted(available, key=lambda a: -difflib.SequenceMatcher(None, name.lower(), a.lower()).ratio())
    return f" (closest: '{ranked[0]}')"


def _apply(rows: list[Row], filt: _Filter, applied: list[str]) -> list[Row]:
    """Keep the rows ``filt`` names; a name no remaining row answers to is a usage error naming
    the closest name among them."""
    if not filt.wanted:
        return rows
    fold = (lambda s: s.lower()) if filt.fold else (lambda s: s)
    available = sorted({v for r in rows for v in filt.values(r) if v})
    pool = {fold(a) for a in available}
    for name in filt.wanted:
        if fold(name) not in pool:
            context = f" among the rows of {' '.join(applied)}" if applied else ""
            listing = ", ".join(available) or "none"
            raise UsageError(f"no results for {filt.kind} '{name}'{context}{_closest(name, available)}; "
                             f"{filt.flag} takes a comma-separated list of: {listing}")
    wanted = {fold(n) for n in filt.wanted}
    applied.append(f"{filt.flag} {','.join(filt.wanted)}")
    return [r for r in rows if any(fold(v) in wanted for v in filt.values(r) if v)]


def filter_rows(rows: list[Row], data: str | None, model: str | None, task: str | None,
                metric: str | None) -> list[Row]:
    """Apply ``--data``, ``--model``, ``--task`` and ``--metric`` in turn (see :func:`_apply`)."""
    applied: list[str] = []
    for filt in (
        _Filter("dataset", "--data", tuple(_names(data)), lambda r: [r.dataset]),
        _Filter("model", "--model", tuple(_names(model)), lambda r: [r.model, r.model_key or ""], fold=True),
        _Filter("task", "--task", tuple(_names(task)), lambda r: [r.task]),
        _Filter("metric", "--metric", tuple(_names(metric)), lambda r: list(r.metrics)),
    ):
        rows = _apply(rows, filt, applied)
    return rows


# --------------------------------------------------------------------------- the board


def _choose_sources(tables: PublishedTables, source: str) -> tuple[bool, list[Row], list[Row]]:
    """``(local wanted, chosen published rows, every published row)``."""
    choices = list(SOURCES) + list(tables.sources)
    if source not in choices:
        raise UsageError(f"unknown source '{source}'{did_you_mean(source, choices)}; "
                         f"--source takes one of {', '.join(choices)}")
    every = published_rows(tables)
    chosen = [] if source == LOCAL else every if source in SOURCES else [r for r in every if r.source_key == source]
    return source in (LOCAL, "all"), chosen, every


def _settings_of(every_published: Sequence[Row]) -> dict[str, list[str]]:
    """Published settings per dataset that a local run may line up with."""
    settings: dict[str, list[str]] = {}
    for row in every_published:
        if row.setting and not row.averaged and row.setting not in settings.setdefault(row.dataset, []):
            settings[row.dataset].append(row.setting)
    return settings


def _sort_key(row: Row, group_has_published: set[tuple]) -> tuple:
    group = _rank_group(row)
    return (row.dataset, row.setting, group not in group_has_published, str(group[2]), str(group[3]),
            row.rank is None, row.rank or 0, row.is_local, row.model.lower())


def collect(store_rows: Iterable[Mapping[str, Any]] | None = None, *, source: str = "all",
            data: str | None = None, model: str | None = None, metric: str | None = None,
            task: str | None = None, per_run: bool = False, tables: PublishedTables | None = None) -> Board:
    """Build the leaderboard: local rows (pooled over seeds) and published rows, filtered and ranked.

    Args:
        store_rows: Result-store rows (default: read ``ResultsStore().rows()``).
        source: ``local``, ``published`` or ``all`` (or a published source key, e.g. ``dpot``).
        data: Comma-separated dataset names to keep.
        model: Comma-separated model names to keep; matches published labels (``FNO``,
            case-insensitive) and the registered name they map to (``fno``).
        metric: Comma-separated metrics to show; the first one ranks rows (default ``l2re``).
        task: Comma-separated tasks to keep (published rows carry the paper's group).
        per_run: Show every run on its own (repeated seeds marked) instead of pooling seeds.
        tables: The published tables (default: :func:`load_published`).

    Raises:
        UsageError: A filter names nothing that exists among the rows left (with the closest name).
    """
    tables = tables if tables is not None else load_published()
    if store_rows is None:
        from pdebench_core.results import ResultsStore

        store_rows = ResultsStore().rows()
    want_local, published, every = _choose_sources(tables, source)
    settings = _settings_of(every)
    local = local_rows(store_rows, lambda s: local_setting(tables, str(s.get("dataset")), s.get("config"),
                                                            settings.get(str(s.get("dataset")), ()))) \
        if want_local else []
    local = mark_repeats(local) if per_run else pool_seeds(local)
    rows = published + local
    for position, row in enumerate(rows):
        row.order = position  # the published tables' own order, kept for the pivot
    rows = filter_rows(rows, data, model, task, metric)
    wanted_metrics = _names(metric)
    shown = wanted_metrics or ordered_metrics(rows, DEFAULT_METRIC)
    rank_metric = shown[0] if shown else None
    higher = metric_directions([rank_metric]).get(rank_metric, False) if rank_metric else False
    compare_with_published(rows, rank_metric)
    group_by_scored_data(rows, {(r.dataset, r.setting) for r in every})
    mark_rescored(rows)
    if rank_metric:
        assign_ranks(rows, rank_metric, higher)
    with_published = {_rank_group(r) for r in rows if not r.is_local}
    rows.sort(key=lambda r: _sort_key(r, with_published))
    sources = {}
    for row in rows:
        if not row.is_local and row.source not in sources:
            sources[row.source] = source_summary(tables, row.source_key)
    return Board(rows, shown, rank_metric, higher, sources)
