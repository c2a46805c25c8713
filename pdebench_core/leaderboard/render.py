"""Rendering the board and the pivot as text: Markdown, CSV, JSON and a self-contained HTML page.

(The terminal tables are drawn by :mod:`.terminal`.) Every format keeps every row; Markdown,
CSV, JSON and HTML also keep every column, provenance included.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Callable, Mapping, Sequence

from pdebench_core import html_page
from pdebench_core.errors import UsageError, did_you_mean

from .board import Board
from .pivot import Pivot, PivotRow, competitors, is_best
from .rows import Row, is_finite_number

FORMATS = ("table", "markdown", "csv", "json", "html")


def check_format(fmt: str) -> None:
    """A one-line usage error for an unknown ``--format``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'{did_you_mean(fmt, FORMATS)}; --format takes one of "
                         f"{', '.join(FORMATS)}")


def format_number(value: Any) -> str:
    """Numbers to 4 significant digits; missing values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_metric(mean: Any, std: Any = None) -> str:
    """``0.0123`` or ``0.0123 ± 0.0004`` (mean and sample standard deviation over seeds);
    a value that is not finite as it is (``nan``, ``inf``)."""
    if isinstance(mean, float) and not math.isfinite(mean):
        return str(mean)
    if not is_finite_number(mean):
        return ""
    text = f"{float(mean):.4g}"
    if is_finite_number(std):
        text += f" ± {float(std):.2g}"
    return text


def note_text(row: Row, brief: bool = False) -> str:
    """What a reader must know before comparing the row: a failed run, a repeated seed, what
    differs from the published cells beside it, a published number not checked against its
    source. ``brief`` counts replaced runs instead of naming them."""
    notes = ["failed: metrics not finite"] if row.failed else []
    notes += row.differs
    if row.repeats:
        replaced = f"{len(row.repeats)} earlier run{'s' if len(row.repeats) > 1 else ''}" if brief \
            else ", ".join(row.repeats)
        notes.append(f"replaces {replaced} ({'same weights' if row.scored_weights else 'same seed'})")
    if row.checked is False:
        notes.append("unchecked against its source")
    return "; ".join(notes)


def rank_text(row: Row) -> str:
    """``3/22``: third of the 22 rows measured alike."""
    if row.rank is None:
        return ""
    return f"{row.rank}/{row.ranked_among or 1}"


def _measured(row: Row, name: str) -> Any:
    measure = row.measure
    return getattr(measure, name) if measure is not None else None


COLUMN_TEXT: dict[str, Callable[[Row], str]] = {
    "rank": rank_text,
    "dataset": lambda r: r.dataset,
    "setting": lambda r: r.setting,
    "model": lambda r: r.model,
    "size": lambda r: r.size or "",
    "source": lambda r: r.source,
    "task": lambda r: r.task,
    "part": lambda r: r.part or "",
    "profile": lambda r: r.profile or "",
    "n": lambda r: format_number(r.n),
    "note": note_text,
    "data": lambda r: r.data_source or "",
    "data_hash": lambda r: (r.dataset_hash or "")[:8],
    "n_train": lambda r: format_number(r.n_train),
    "t_in": lambda r: format_number(_measured(r, "t_in")),
    "horizon": lambda r: format_number(_measured(r, "horizon")),
    "grid": lambda r: _measured(r, "grid") or "",
    "scoring": lambda r: _measured(r, "scoring") or "",
    "run_id": lambda r: r.run_id or "",
}
OPTIONAL = ("setting", "size", "part", "profile", "n", "note", "data", "data_hash", "n_train", "t_in", "horizon",
            "grid", "scoring")
PROVENANCE = ("data", "data_hash", "n_train", "t_in", "horizon", "grid", "scoring")


def cell_text(board: Board, row: Row, column: str) -> str:
    """Text of one cell of the board (metric columns: ``mean ± std``)."""
    if column in board.metrics:
        return format_metric(row.metrics.get(column), row.std.get(column))
    return COLUMN_TEXT[column](row)


def _visible(board: Board, columns: Sequence[str]) -> list[str]:
    """``columns`` without the optional ones that are empty in every row."""
    return [c for c in columns if c not in OPTIONAL or any(COLUMN_TEXT[c](r) for r in board.rows)]


def wide_columns(board: Board) -> list[str]:
    """Every column that has a value somewhere: identity, metrics, note, provenance, run id."""
    head = ["rank", "dataset", "setting", "model", "size", "source", "task", "part", "profile", "n"]
    return _visible(board, head) + board.metrics + _visible(board, ["note", *PROVENANCE, "run_id"])


def record(row: Row) -> dict[str, Any]:
    """A row for JSON: identity, comparison and provenance keys, then one key per metric.

    Metrics that are not finite are ``null`` (the row says ``failed``); standard deviations over
    seeds are under ``std``.
    """
    out: dict[str, Any] = {
        "model": row.model, "dataset": row.dataset, "task": row.task, "part": row.part, "run_id": row.run_id,
        "source": row.source, "source_key": row.source_key, "rank": row.rank, "ranked_among": row.ranked_among,
        "setting": row.setting or None, "size": row.size, "profile": row.profile, "n": row.n,
        "note": note_text(row) or None, "differs": list(row.differs), "failed": row.failed,
        "t_in": _measured(row, "t_in"), "horizon": _measured(row, "horizon"), "grid": _measured(row, "grid"),
        "scoring": _measured(row, "scoring"),
    }
    if row.is_local:
        out.update({key: getattr(row, key) for key in (
            "run_ids", "seed", "seeds", "repeats", "n_params", "train_time_s", "device", "versions", "config_hash",
            "group_hash", "data_hash", "data_source", "dataset_hash", "scored_data_hash", "n_train", "created_at")})
    else:
        out.update({"published_name": row.published_name, "model_key": row.model_key, "citation": row.citation,
                    "url": row.url, "checked": row.checked})
    for name, value in row.metrics.items():
        out[name if name not in out and name != "std" else f"metric:{name}"] = \
            float(value) if is_finite_number(value) else None
    out["std"] = dict(row.std)
    return out


CSV_COLUMNS = ("rank", "ranked_among", "dataset", "setting", "model", "size", "source", "task", "part", "profile",
               "n", "note", "failed", "run_id", "run_ids", "seed", "seeds", "repeats", "n_params", "train_time_s",
               "device", "config_hash", "group_hash", "data_hash", "data_source", "dataset_hash", "scored_data_hash",
               "n_train", "t_in", "horizon", "grid", "scoring", "checked")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _csv(board: Board) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *[c for m in board.metrics for c in (m, f"{m}_std")]])
    for row in board.rows:
        rec = record(row)
        values = [_csv_value(rec.get(c)) for c in CSV_COLUMNS]
        for name in board.metrics:
            values += [_csv_value(row.metrics.get(name)), _csv_value(row.std.get(name))]
        writer.writerow(values)
    return buffer.getvalue()


def _markdown(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def source_line(info: Mapping[str, Any]) -> str:
    """``label: paper, version (date); protocol P; N datasets unchecked; <url>``."""
    parts = [str(info.get("paper") or info.get("citation") or "")]
    if info.get("version"):
        parts.append(f"version: {info['version']}" + (f" ({info['date']})" if info.get("date") else ""))
    if info.get("protocol"):
        parts.append(f"protocol {info['protocol']}")
    if info.get("unchecked"):
        parts.append(f"not checked against the source: {', '.join(info['unchecked'])}")
    if info.get("url"):
        parts.append(str(info["url"]))
    return f"{info.get('label')}: " + "; ".join(p for p in parts if p)


def _markdown_sources(sources: Mapping[str, Mapping[str, Any]]) -> str:
    if not sources:
        return ""
    return "\nSources:\n" + "".join(f"- {source_line(info)}\n" for info in sources.values())


def rank_note(metric: str | None, higher: bool) -> str:
    """The sentence that says how rows are ranked."""
    if not metric:
        return ""
    return (f"Ranked by {metric} ({'higher' if higher else 'lower'} is better) among the rows of the same dataset "
            f"and setting measured alike (t_in, horizon, grid, scoring); rank 3/22 = third of 22. Local rows pool "
            f"runs that differ only in their seed (and in how they were fed, watched and checkpointed): "
            f"mean ± sample std over n seeds.")


def render(board: Board, fmt: str, title: str = "pdeb leaderboard") -> str:
    """Render the board as ``markdown``, ``csv``, ``json`` or ``html`` text (``table``: see
    :mod:`.terminal`)."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps([record(r) for r in board.rows], indent=2, default=str) + "\n"
    if fmt == "csv":
        return _csv(board)
    columns = wide_columns(board)
    body = [[cell_text(board, r, c) for c in columns] for r in board.rows]
    if fmt == "markdown":
        return _markdown(columns, body) + _markdown_sources(board.sources)
    if fmt == "html":
        return board_html(board, columns, title)
    raise UsageError(f"format '{fmt}' is drawn on the terminal; use the terminal renderer")


def _sources_html(sources: Mapping[str, Mapping[str, Any]]) -> str:
    if not sources:
        return ""
    items = "".join(f"<li>{html_page.esc(source_line(info))}</li>" for info in sources.values())
    return f'<h2>Sources</h2><ul class="sources">{items}</ul>'


def board_html(board: Board, columns: Sequence[str], title: str) -> str:
    """One sortable, filterable table of every row and column, the sources below."""
    rows = []
    for row in board.rows:
        cells = []
        for column in columns:
            value = row.metrics.get(column) if column in board.metrics else row.rank if column == "rank" else None
            sort_value = value if is_finite_number(value) else None
            cells.append(html_page.cell(cell_text(board, row, column), strong=column == "rank" and row.rank == 1,
                                        sort_value=sort_value))
        rows.append(cells)
    classes = ["local" if r.is_local else "published" for r in board.rows]
    body = [f'<p class="note">{html_page.esc(rank_note(board.rank_metric, board.higher_is_better))} '
            f'Click a column header to sort; type in the box to filter.</p>',
            html_page.filter_box("board", len(board.rows)),
            html_page.table(columns, rows, "board sortable", "board", classes), _sources_html(board.sources)]
    return html_page.page(title, body, script=html_page.INTERACTIVE_JS)


# --------------------------------------------------------------------------- pivot


def pivot_keys(table: Pivot) -> list[str]:
    """The row-label columns of a pivot; ``size``, ``part`` and ``profile`` only when some row has one."""
    keys = ["model"] + (["size"] if any(r.size for r in table.rows) else []) + ["source", "task"]
    keys += ["part"] if any(r.part for r in table.rows) else []
    return keys + (["profile"] if any(r.profile for r in table.rows) else [])


def pivot_cell(table: Pivot, entry: PivotRow, column: str) -> str:
    """``value ± std (rank)``, with what differs from the published cells of the column in brackets:
    ``0.031 [horizon 40 vs 20]`` (measured otherwise: ranked only among cells measured like it),
    ``0.002 (2) [profile small]``."""
    cell = entry.cells.get(column)
    if cell is None:
        return ""
    text = format_metric(cell.metrics[table.metric], cell.std.get(table.metric))
    if competitors(table, entry, column) > 1:
        text += f" ({entry.ranks[column]})"
    differs = [d for d in cell.differs if not d.startswith("repeat of ")]
    return f"{text} [{'; '.join(differs)}]" if differs else text


def _pivot_json(table: Pivot) -> str:
    out = []
    for entry in table.rows:
        item: dict[str, Any] = {"model": entry.model, "size": entry.size, "source": entry.source, "task": entry.task,
                                "part": entry.part, "profile": entry.profile, "metric": table.metric}
        for column in table.columns:
            cell = entry.cells.get(column)
            item[column] = cell.metrics[table.metric] if cell else None
        item["std"] = {c: cell.std.get(table.metric) for c, cell in entry.cells.items()}
        item["n"] = {c: cell.n for c, cell in entry.cells.items()}
        item["run_id"] = {c: cell.run_id for c, cell in entry.cells.items() if cell.run_id}
        item["differs"] = {c: cell.differs for c, cell in entry.cells.items() if cell.differs}
        item["ranks"] = dict(entry.ranks)
        out.append(item)
    return json.dumps(out, indent=2, default=str) + "\n"


def _pivot_label(entry: PivotRow, key: str) -> str:
    return format_number(getattr(entry, key))


def render_pivot(table: Pivot, fmt: str, title: str = "pdeb leaderboard") -> str:
    """Render a :class:`~.pivot.Pivot` as ``markdown``, ``csv``, ``json`` or ``html`` text."""
    check_format(fmt)
    keys = pivot_keys(table)
    if fmt == "json":
        return _pivot_json(table)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*keys, *table.columns])
        for entry in table.rows:
            cells = [entry.cells.get(c) for c in table.columns]
            writer.writerow([_csv_value(getattr(entry, k)) for k in keys]
                            + [_csv_value(c.metrics[table.metric]) if c else "" for c in cells])
        return buffer.getvalue()
    body = [[_pivot_label(e, k) for k in keys] + [pivot_cell(table, e, c) for c in table.columns] for e in table.rows]
    bold = [[False] * len(keys) + [is_best(table, e, c) for c in table.columns] for e in table.rows]
    if fmt == "markdown":
        marked = [[f"**{text}**" if b and text else text for text, b in zip(line, flags)]
                  for line, flags in zip(body, bold)]
        return _markdown(keys + table.columns, marked) + _markdown_sources(table.sources)
    if fmt == "html":
        return pivot_html(table, keys, body, bold, title)
    raise UsageError(f"format '{fmt}' is drawn on the terminal; use the terminal renderer")


def pivot_html(table: Pivot, keys: Sequence[str], body: Sequence[Sequence[str]],
               bold: Sequence[Sequence[bool]], title: str) -> str:
    """The pivot as one sortable, filterable table, the sources below."""
    rows = []
    for entry, line, flags in zip(table.rows, body, bold):
        values = [None] * len(keys) + [entry.cells[c].metrics[table.metric] if c in entry.cells else None
                                       for c in table.columns]
        rows.append([html_page.cell(text, strong, value) for text, strong, value in zip(line, flags, values)])
    note = (f"Cells: {table.metric} (mean ± std over seeds for local rows), rank among the cells of the column "
            f"measured alike in parentheses, {'higher' if table.higher_is_better else 'lower'} is better; the best "
            f"in bold. A cell in brackets names how it was measured otherwise than the published cells, or the "
            f"data it was scored on (scored data ...) when its column's cells were scored on different data.")
    parts = [f'<p class="note">{html_page.esc(note)}</p>', html_page.filter_box("pivot", len(table.rows)),
             html_page.table([*keys, *table.columns], rows, "board sortable", "pivot",
                             ["local" if e.is_local else "published" for e in table.rows]),
             _sources_html(table.sources)]
    return html_page.page(title, parts, script=html_page.INTERACTIVE_JS)

