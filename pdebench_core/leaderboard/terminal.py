"""The leaderboard on the terminal (rich tables).

The default view puts the local runs first, in a table that fits 100 columns (rank, dataset,
model, the task or table part where rows differ in it, size, seeds, the ranking metric, a note,
the run id), and summarises the published
tables below it; ``--wide`` draws every row and every column; ``--pivot`` the model x dataset
table. Run ids never wrap, so they can be copied into ``pdeb report`` and ``pdeb reproduce``.
"""

from __future__ import annotations

from typing import Any, Sequence

from .board import Board
from .pivot import Pivot, column_label, is_best
from .render import (PROVENANCE, cell_text, format_number, note_text, pivot_cell, pivot_keys, rank_note,
                     source_line, wide_columns)
from .rows import Row

DEFAULT_WIDTH = 100


def _console(console=None):
    from rich.console import Console

    return console or Console()


def _fitted(console, width: int):
    """A console of ``width`` columns writing where ``console`` writes."""
    from rich.console import Console

    return Console(file=console.file, width=width, force_terminal=console.is_terminal,
                   color_system=console.color_system if console.is_terminal else None)


def _table(columns: Sequence[str], title: str | None, caption: str | None, lines: Sequence[Sequence[str]]):
    """A rich table of ``lines`` (cell texts): run ids never wrap; dataset, note, source and
    setting wrap between words, never inside one (a name cut in two reads as two names)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, caption=caption or None, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                  caption_justify="left")
    for position, column in enumerate(columns):
        cells = [line[position] for line in lines]
        if column == "run_id":  # copied into other commands: never wrapped, never cut
            table.add_column(column, no_wrap=True, min_width=max([len(c) for c in cells] + [len(column)]))
        elif column in ("note", "dataset", "source", "setting"):
            longest_word = max([len(word) for cell in cells for word in cell.split()] + [len(column)])
            table.add_column(column, overflow="fold", ratio=1, min_width=longest_word)
        else:
            table.add_column(column, no_wrap=True)
    return table


def _add_rows(table, lines: Sequence[Sequence[str]], bold: Sequence[Sequence[bool]], local: Sequence[bool]) -> None:
    from rich.text import Text

    for line, marks, is_local in zip(lines, bold, local):
        table.add_row(*[Text(v, style="bold" if m else "") for v, m in zip(line, marks)],
                      style="green" if is_local else None)


def _compact_columns(board: Board, rows: Sequence[Row], per_run: bool) -> list[str]:
    """The 100-column view's columns; ``task`` and ``part`` only where two rows of one dataset
    and model differ in them (a pre-trained and a fine-tuned DPOT, or the two parts of a
    paper's table, would otherwise look like the same row twice)."""
    metric = [board.rank_metric] if board.rank_metric else []
    varying = [c for c in ("task", "part") if _tells_apart(board, rows, c)]
    if per_run:
        return ["rank", "dataset", "model", *varying, "size", "profile", *PROVENANCE, *metric, "note", "run_id"]
    return ["rank", "dataset", "model", *varying, "size", "n", *metric, "note", "run_id"]


def _tells_apart(board: Board, rows: Sequence[Row], column: str) -> bool:
    """Whether two rows of the same dataset and model differ in ``column``."""
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        value = cell_text(board, row, column)
        if seen.setdefault((column_label(row), row.model), value) != value:
            return True
    return False


def _compact_cell(board: Board, row: Row, column: str, markers: dict[str, str]) -> str:
    """Cell text of the 100-column view; a note becomes a marker (``[1]``) explained below the table."""
    if column == "dataset":
        return column_label(row)
    if column == "note":
        text = note_text(row, brief=True)
        return markers.setdefault(text, f"[{len(markers) + 1}]") if text else ""
    return cell_text(board, row, column)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _summary_lines(board: Board) -> list[str]:
    """One line per published table present: what it holds, its protocol, how to list it."""
    lines = []
    for label, info in board.sources.items():
        rows = [r for r in board.published if r.source == label]
        key = info.get("key") or label
        unchecked = f"; {len(info['unchecked'])} datasets unchecked" if info.get("unchecked") else ""
        protocol = f", protocol {info['protocol']}" if info.get("protocol") else ""
        lines.append(f"{key} = {label}: {len(rows)} {info.get('metric') or ''} numbers on "
                     f"{_count(len({r.dataset for r in rows}), 'dataset')}{protocol}{unchecked}; "
                     f"'pdeb leaderboard --source {key} --wide' lists them")
    return lines


def print_default(board: Board, console=None, per_run: bool = False, list_published: bool = False,
                  title: str = "local runs") -> None:
    """Local rows first, in at most 100 columns; the published tables summarised below.

    Without local rows, the published rows are listed when ``list_published`` (a published
    source was asked for), else summarised.
    """
    from rich.text import Text

    console = _console(console)
    rows = board.local or (board.published if list_published else [])
    if not rows:
        out = _fitted(console, min(console.width, DEFAULT_WIDTH) if console.is_terminal else DEFAULT_WIDTH)
        out.print("no results (run 'pdeb run ...' first, or widen the filters)" if not board.published else
                  "no local runs here yet ('pdeb run --model fno --data ns2d --profile smoke' makes one)")
        for line in _summary_lines(board):
            out.print(Text(line, style="dim"))
        return
    if not board.local:
        title = "published rows"
    columns = _compact_columns(board, rows, per_run)
    markers: dict[str, str] = {}
    lines = [[_compact_cell(board, r, c, markers) for c in columns] for r in rows]
    table = _table(columns, title, rank_note(board.rank_metric, board.higher_is_better), lines)
    _add_rows(table, lines, [[c == "rank" and r.rank == 1 for c in columns] for r in rows],
              [r.is_local for r in rows])
    width = min(console.width, DEFAULT_WIDTH) if console.is_terminal and not per_run else DEFAULT_WIDTH
    widths = _width_range(console, table)
    out = _fitted(console, max(width, widths.maximum if per_run else widths.minimum))
    out.print(table)
    for text, marker in markers.items():
        out.print(Text(f"{marker} {text}"))
    if board.local:
        for line in _summary_lines(board):
            out.print(Text(line, style="dim"))


def _width_range(console, table):
    """The table's ``Measurement``: ``.minimum``, the narrowest width that cuts no word or run id;
    ``.maximum``, the width it takes when nothing wraps."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), table)


def _print_wide_table(console, table) -> None:
    """On a terminal as wide as it is; elsewhere (a file, a pipe) as wide as the table needs."""
    if not console.is_terminal:
        console = _fitted(console, max(console.width, _width_range(console, table).maximum))
    console.print(table)


def _short_sources(rows: Sequence[Any]) -> dict[str, str]:
    """Citation label -> short source key, for the rows present."""
    return {r.source: r.source_key or r.source for r in rows if not r.is_local}


def print_wide(board: Board, console=None, title: str = "leaderboard") -> None:
    """Every row and every column; published sources by their short key, cited below."""
    from rich.text import Text

    console = _console(console)
    if not board.rows:
        console.print("no results (run 'pdeb run ...' first, or widen the filters)")
        return
    short = _short_sources(board.rows)
    columns = wide_columns(board)
    lines = [[short.get(r.source, r.source) if c == "source" else cell_text(board, r, c) for c in columns]
             for r in board.rows]
    table = _table(columns, title, rank_note(board.rank_metric, board.higher_is_better), lines)
    _add_rows(table, lines, [[c == "rank" and r.rank == 1 for c in columns] for r in board.rows],
              [r.is_local for r in board.rows])
    _print_wide_table(console, table)
    for label, info in board.sources.items():
        console.print(Text(f"{short.get(label, label)} = {source_line(info)}", style="dim"))


def print_pivot(table: Pivot, console=None, title: str = "leaderboard") -> None:
    """The model x dataset table; the best cell of each column in bold."""
    from rich.text import Text

    console = _console(console)
    if not table.rows:
        console.print("no results (run 'pdeb run ...' first, or widen the filters)")
        return
    short = {e.source: e.source_key or e.source for e in table.rows if not e.is_local}
    keys = pivot_keys(table)
    lines = [[short.get(e.source, e.source) if k == "source" else format_number(getattr(e, k)) for k in keys]
             + [pivot_cell(table, e, c) for c in table.columns] for e in table.rows]
    bold = [[False] * len(keys) + [is_best(table, e, c) for c in table.columns] for e in table.rows]
    caption = (f"{table.metric}, {'higher' if table.higher_is_better else 'lower'} is better; (rank) among the "
               f"cells of the column measured alike; [..] names how a cell was measured otherwise than the "
               f"published cells, or the data it was scored on when its column's cells were scored on different data")
    rich_table = _table(keys + table.columns, title, caption, lines)
    _add_rows(rich_table, lines, bold, [e.is_local for e in table.rows])
    _print_wide_table(console, rich_table)
    for label, info in table.sources.items():
        console.print(Text(f"{short.get(label, label)} = {source_line(info)}", style="dim"))
