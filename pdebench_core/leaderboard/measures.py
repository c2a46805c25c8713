"""How a number was measured, and what differs between two measurements.

A published cell is comparable with a local result only when both were measured alike: the
same input frames (``t_in``), the same rollout horizon, on the same grid, scored the same way
(against the stored data, or against data interpolated to a model's grid), with the same
metric. For published cells, these come from the protocol file their table names in
``sources.yaml`` (``registry/protocols/<name>.yaml``, one column per published dataset); for
local rows, from what the run recorded in its result row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pdebench_core.curated_files import list_at, mapping_at, mappings_at, read_yaml_mapping
from pdebench_core.errors import DataError

PAPER_PROFILE = "paper"


@dataclass(frozen=True)
class Measure:
    """What a number depends on besides the model: ``None`` where it is not recorded.

    Attributes:
        t_in: Input frames before the rollout.
        horizon: Steps rolled out and scored.
        grid: Spatial grid of the scored data, ``"64x64"``.
        scoring: ``native`` (against the data as stored) or ``<mode> on <model grid>``
            (``strided on 128x128``: against the data interpolated to the model's grid); see
            :func:`scoring_label`.
    """

    t_in: int | None = None
    horizon: int | None = None
    grid: str | None = None
    scoring: str | None = None

    @property
    def key(self) -> tuple:
        """What ranks apart: rows are ranked only among rows of the same key."""
        return (self.t_in, self.horizon, self.grid, self.scoring)


def scoring_label(mode: str, model_grid: Sequence[int] | None, native_grid: Sequence[int]) -> str:
    """How a rollout was scored, as numbers are compared: ``native`` when against the data as
    stored, on its own grid (``eval.grid=native``, or a model that sees the data's own grid,
    where the three modes agree); else ``<mode> on <model grid>`` (``strided on 128x128``),
    against the truth interpolated to the model's grid."""
    own_grid = model_grid is None or [int(n) for n in model_grid] == [int(n) for n in native_grid]
    if mode == "native" or own_grid:
        return "native"
    return f"{mode} on {'x'.join(str(int(n)) for n in model_grid)}"


def _text(value: Any) -> str:
    return "?" if value is None else str(value)


def differences(local: Measure, published: Measure | None) -> list[str]:
    """``["horizon 40 vs 20", "grid 32x32 vs 64x64"]``: where ``local`` was measured otherwise.

    A value the local row did not record shows as ``?``; a published cell whose protocol is
    unknown is a difference of its own.
    """
    if published is None:
        return ["published protocol unknown"]
    out = []
    for name in ("t_in", "horizon", "grid", "scoring"):
        mine, theirs = getattr(local, name), getattr(published, name)
        if mine != theirs:
            out.append(f"{name} {_text(mine)} vs {_text(theirs)}")
    return out


def grid_text(grid: Any) -> str | None:
    """``[64, 64]`` or ``"64x64"`` -> ``"64x64"`` (``None`` stays ``None``)."""
    if grid is None or grid == "":
        return None
    if isinstance(grid, str):
        return grid
    return "x".join(str(int(n)) for n in grid)


@dataclass(frozen=True)
class TableProtocol:
    """The measurement of every column of one published table.

    Attributes:
        name: The protocol's name (its file name without ``.yaml``).
        metric: The metric of the table.
        columns: Published dataset name -> :class:`Measure`.
        path: The file read.
    """

    name: str
    metric: str
    columns: Mapping[str, Measure]
    path: Path | None = None

    def measure(self, published_name: str) -> Measure | None:
        """The measure of one published column (``None`` when the protocol lacks it)."""
        return self.columns.get(published_name)


def _protocol_file(name: str, near: Path | None) -> Path | None:
    """``<near>/../protocols/<name>.yaml`` (tables and protocols installed together), else wherever
    :func:`pdebench_core.protocols.find_protocol` finds it."""
    if near is not None:
        sibling = near.parent / "protocols" / f"{name}.yaml"
        if sibling.is_file():
            return sibling
    from pdebench_core.protocols import find_protocol

    return find_protocol(name)


def _column_measures(columns: Iterable[Mapping[str, Any]], evaluation: Mapping[str, Any], path: Path
                     ) -> dict[str, Measure]:
    """Each column's measure; its scoring follows the protocol's ``evaluation`` (``eval_grid``
    on the model ``grid``), ``native`` where the protocol names none or the column's grid is
    the model's."""
    model_grid = evaluation.get("grid")
    mode = str(evaluation.get("eval_grid") or "native")
    out = {}
    for entry in columns:
        try:
            grid = grid_text(entry["grid"])
            native = [int(n) for n in (grid or "").split("x")]  # no grid: ValueError, named below
            scoring = scoring_label(mode, model_grid if model_grid and len(model_grid) == len(native) else None, native)
            out[str(entry["key"])] = Measure(int(entry["t_in"]), int(entry["horizon"]), grid, scoring)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: column '{entry.get('key', '?')}' needs key, t_in, horizon and grid") from None
    return out


def load_table_protocol(name: str, near: Path | None = None) -> TableProtocol | None:
    """Read the measures of protocol ``name`` (``None`` when no file holds it).

    Published columns that average others (``published.averages``) take the measure of their
    members when all members agree.
    """
    path = _protocol_file(name, near)
    if path is None:
        return None
    data = read_yaml_mapping(path)
    evaluation = mapping_at(data.get("evaluation"), path, "evaluation")
    columns = _column_measures(mappings_at(data.get("columns"), path, "columns"), evaluation, path)
    published = mapping_at(data.get("published"), path, "published")
    averages = mapping_at(published.get("averages"), path, "published.averages")
    for key, members in averages.items():
        measures = {columns.get(str(m)) for m in list_at(members, path, f"published.averages.{key}", lone_name=True)}
        if len(measures) == 1 and None not in measures:
            columns[str(key)] = measures.pop()
    metric = str(evaluation.get("metric") or published.get("metric") or "")
    return TableProtocol(str(data.get("name", name)), metric, columns, path)
