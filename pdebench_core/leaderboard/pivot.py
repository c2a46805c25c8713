"""The pivot: a model x dataset table of one metric, like the papers' tables.

A local cell sits beside the published cells of its column, and is ranked with them, only
when it was measured alike (``t_in``, horizon, grid). Otherwise it shows its value with the
difference named (``0.031 [horizon 40 vs 20]``) and is ranked only among the cells measured
like it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .board import DEFAULT_METRIC, Board, _rank_group, is_repeat, metric_directions
from .rows import Row, is_finite_number


@dataclass
class PivotRow:
    """One row of the pivot: a model of one source (and task, part, size, profile).

    Attributes:
        source: ``local`` or the published table's label.
        source_key: ``local`` or the table's key.
        model: The model.
        size: Its parameter count label.
        task: Task or published group.
        part: Part of the published table.
        profile: Profile of local runs.
        cells: Column label -> the board row whose value the cell shows.
        ranks: Column label -> rank among the cells measured alike.
    """

    source: str
    source_key: str | None
    model: str
    size: str | None
    task: str
    part: str | None
    profile: str | None
    cells: dict[str, Row] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        """A row of local results."""
        return self.source == "local"


@dataclass
class Pivot:
    """A model x dataset table of one metric.

    Attributes:
        metric: The metric in the cells.
        columns: Column labels (``dataset`` or ``dataset (setting)``).
        rows: The rows, published tables first in their own order, then local rows by model.
        higher_is_better: Direction of the metric.
        sources: As in :class:`~.board.Board`.
    """

    metric: str
    columns: list[str]
    rows: list[PivotRow]
    higher_is_better: bool = False
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def column_label(row: Row) -> str:
    """``ns2d`` or ``cfd2d (M=1.0 eta=zeta=0.1)``."""
    return f"{row.dataset} ({row.setting})" if row.setting else row.dataset


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def _entry_for(table: dict[tuple, PivotRow], row: Row) -> PivotRow:
    # the part keeps a model listed twice in one table (DPOT-S in Table 1) on two rows; a local
    # experiment measured otherwise than the published cells gets a row of its own
    key = (row.source, row.model, row.size or "", row.task, row.part or "", row.profile or "", tuple(row.differs))
    if key not in table:
        table[key] = PivotRow(row.source, row.source_key, row.model, row.size, row.task, row.part, row.profile)
    return table[key]


def _published_column_order(columns: list[str], rows: Sequence[Row]) -> list[str]:
    """Published columns in the order of their tables, then local-only columns alphabetically."""
    order = []
    for row in rows:
        label = column_label(row)
        if not row.is_local and label in columns and label not in order:
            order.append(label)
    return order + sorted(c for c in columns if c not in order)


def _rank_columns(rows: Sequence[PivotRow], columns: Sequence[str], metric: str, higher: bool) -> None:
    """Competition ranking per column among the cells measured alike: 1 + strictly better cells."""
    for column in columns:
        groups: dict[tuple, list[float]] = {}
        for entry in rows:
            cell = entry.cells.get(column)
            if cell is not None:
                groups.setdefault(_rank_group(cell), []).append(cell.metrics[metric])
        for entry in rows:
            cell = entry.cells.get(column)
            if cell is not None:
                values = groups[_rank_group(cell)]
                entry.ranks[column] = 1 + sum(1 for v in values if _better(v, cell.metrics[metric], higher))


def pivot(board: Board, metric: str | None = None) -> Pivot:
    """Rows = (source, model, size, task, part, profile), columns = datasets, cells = ``metric``.

    When several local experiments fall into one cell (e.g. two learning rates), the best one
    is shown. Failed runs and repeated runs hold no cell.
    """
    metric = metric or board.rank_metric or DEFAULT_METRIC
    higher = metric_directions([metric])[metric]
    columns: list[str] = []
    table: dict[tuple, PivotRow] = {}
    in_order = sorted(board.rows, key=lambda r: (r.is_local, r.order))
    for row in in_order:  # published first, in the order of their tables
        value = row.metrics.get(metric)
        if row.failed or not is_finite_number(value) or is_repeat(row):
            continue
        column = column_label(row)
        if column not in columns:
            columns.append(column)
        entry = _entry_for(table, row)
        held = entry.cells.get(column)
        if held is None or _better(value, held.metrics[metric], higher):
            entry.cells[column] = row
    ordered = _published_column_order(columns, in_order)
    rows = [e for e in table.values() if not e.is_local]
    rows += sorted((e for e in table.values() if e.is_local),
                   key=lambda e: (e.model, e.size or "", e.task, e.profile or "", _differs_of(e)))
    _rank_columns(rows, ordered, metric, higher)
    present = {e.source for e in rows}
    return Pivot(metric, ordered, rows, higher, {k: v for k, v in board.sources.items() if k in present})


def _differs_of(entry: PivotRow) -> tuple:
    return tuple(next(iter(entry.cells.values())).differs) if entry.cells else ()


def competitors(table: Pivot, entry: PivotRow, column: str) -> int:
    """Cells of ``column`` ranked together with ``entry``'s cell."""
    cell = entry.cells[column]
    return sum(1 for e in table.rows if column in e.cells and _rank_group(e.cells[column]) == _rank_group(cell))


def is_best(table: Pivot, entry: PivotRow, column: str) -> bool:
    """Bold-worthy: rank 1 among more than one cell measured alike."""
    return entry.ranks.get(column) == 1 and competitors(table, entry, column) > 1
