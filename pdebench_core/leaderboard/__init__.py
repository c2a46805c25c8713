"""The leaderboard: local result rows beside published reference numbers.

* :mod:`.published` reads the published tables of ``registry/published/`` (paper, version,
  date, protocol) into rows;
* :mod:`.measures` says how a number was measured (``t_in``, horizon, grid) and what differs;
* :mod:`.rows` holds the typed :class:`Row` and makes local rows from the results store;
* :mod:`.board` pools seeds, compares local rows with the published cells, filters and ranks;
* :mod:`.pivot` turns a board into a model x dataset table like the papers';
* :mod:`.render` writes Markdown, CSV, JSON and HTML; :mod:`.terminal` draws the tables.

Nothing here imports torch or pandas, so ``pdeb leaderboard`` answers at once.
"""

from __future__ import annotations

from .board import DEFAULT_METRIC, SOURCES, Board, assign_ranks, collect, metric_directions, pool_seeds
from .measures import Measure, differences, scoring_label
from .pivot import Pivot, PivotRow, column_label, pivot
from .published import (PublishedTables, load_published, local_setting, parse_setting, published_dir,
                        published_dirs, published_rows, source_summary)
from .render import FORMATS, check_format, format_metric, format_number, record, render, render_pivot
from .rows import LOCAL, Row, seedless_hash, size_label
from .terminal import print_default, print_pivot, print_wide

# The name the published tables were read with before they had a class of their own; callers
# outside the leaderboard still use it.

__all__ = [
    "DEFAULT_METRIC", "FORMATS", "LOCAL", "SOURCES", "Board", "Measure", "Pivot", "PivotRow", "PublishedTables", "Row",
    "assign_ranks", "check_format", "collect", "column_label", "differences", "format_metric", "format_number",
    "load_published", "local_setting", "metric_directions", "parse_setting", "pivot",
    "pool_seeds", "print_default", "print_pivot", "print_wide", "published_dir", "published_dirs", "published_rows",
    "record", "render", "render_pivot", "scoring_label", "seedless_hash", "size_label", "source_summary",
]
