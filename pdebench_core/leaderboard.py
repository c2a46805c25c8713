"""The leaderboard: local result rows (and published ones) as a pandas table."""

from __future__ import annotations

import json
from typing import Any, Iterable

from pdebench_core.errors import UsageError, did_you_mean

FORMATS = ("table", "markdown", "csv", "json")
ID_COLUMNS = ("source", "model", "dataset", "task", "run_id", "seed", "profile", "n_params", "train_time_s", "device")


def local_frame(rows: Iterable[dict[str, Any]]):
    """One pandas row per result row, one column per metric."""
    import pandas as pd

    records = []
    for row in rows:
        record = {key: row.get(key) for key in ID_COLUMNS if key != "source"}
        record["source"] = "local"
        for name, value in (row.get("metrics") or {}).items():
            record[name] = value
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(ID_COLUMNS))
    return frame


def metric_columns(frame) -> list[str]:
    """Columns holding metric values."""
    return [c for c in frame.columns if c not in ID_COLUMNS]


def filter_frame(frame, data: str | None = None, model: str | None = None, metric: str | None = None,
                 task: str | None = None):
    """Keep rows matching the filters (comma-separated lists) and the chosen metric column."""
    for column, wanted in (("dataset", data), ("model", model), ("task", task)):
        if wanted:
            names = [w.strip() for w in wanted.split(",") if w.strip()]
            frame = frame[frame[column].isin(names)]
    if metric:
        metrics = metric_columns(frame)
        names = [m.strip() for m in metric.split(",") if m.strip()]
        for name in names:
            if name not in metrics:
                raise UsageError(f"no results for metric '{name}'{did_you_mean(name, metrics)}; "
                                 f"available: {', '.join(metrics) or 'none'}")
        frame = frame[[c for c in frame.columns if c in ID_COLUMNS] + names]
        frame = frame.dropna(subset=names, how="all")
    return frame.reset_index(drop=True)


def render(frame, fmt: str) -> str:
    """Render as ``markdown``, ``csv`` or ``json`` text (``table`` is drawn with rich)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2)
    if fmt == "markdown":
        return to_markdown(frame)
    raise UsageError(f"unknown format '{fmt}'{did_you_mean(fmt, FORMATS)}; choose one of {', '.join(FORMATS)}")


def format_value(value: Any) -> str:
    """Numbers to 4 significant digits; missing values empty."""
    if value is None:
        return ""
    try:
        import math

        if isinstance(value, float) and math.isnan(value):
            return ""
    except TypeError:
        pass
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(frame) -> str:
    """A GitHub-flavoured Markdown table."""
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame.iterrows():
        cells = [format_value(row[c]).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
