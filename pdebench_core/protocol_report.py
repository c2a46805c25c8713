"""Print a :class:`~pdebench_core.protocol_runs.Reproduction`: our numbers beside the published
cells, the relative difference, the protocol used, and the datasets that were absent."""

from __future__ import annotations

import csv
import io
import json
import statistics
from typing import Any

from pdebench_core.errors import UsageError, did_you_mean
from pdebench_core.protocol_runs import Reproduction

FORMATS = ("table", "markdown", "csv", "json")
KINDS = ("zero_shot", "finetuned")


def relative_difference(ours: float | None, published: float | None) -> float | None:
    """``ours / published - 1`` (``None`` when either is missing)."""
    if ours is None or published is None or published == 0:
        return None
    return ours / published - 1.0


def _row(column: str, dataset: str, n: int, horizon: int, values: dict[str, float | None],
         published: dict[str, float | None], notes: str, n_finetuned: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"column": column, "dataset": dataset, "n": n, "n_finetuned": n_finetuned,
                           "horizon": horizon}
    for kind in KINDS:
        row[kind] = values.get(kind)
        row[f"published_{kind}"] = published.get(kind)
        row[f"relative_difference_{kind}"] = relative_difference(values.get(kind), published.get(kind))
    row["notes"] = notes
    return row


def table_rows(rep: Reproduction) -> list[dict[str, Any]]:
    """One row per dataset found, then one per published average whose members were all found."""
    rows = []
    by_key = {r.column.key: r for r in rep.results}
    for result in rep.results:
        key = result.column.key
        values = {"zero_shot": result.zero_shot, "finetuned": result.finetuned}
        published = {kind: rep.published[kind].get(key) for kind in KINDS}
        rows.append(_row(key, result.column.dataset, result.n, result.horizon, values, published,
                         "; ".join(result.notes), result.n_finetuned))
    for key, members in (rep.protocol.published.get("averages") or {}).items():
        if not all(m in by_key for m in members):
            continue
        parts = [by_key[m] for m in members]
        values = {kind: statistics.fmean(getattr(p, kind) for p in parts)
                  if all(getattr(p, kind) is not None for p in parts) else None for kind in KINDS}
        published = {kind: rep.published[kind].get(key) for kind in KINDS}
        tuned = [p.n_finetuned for p in parts]
        rows.append(_row(key, f"mean of {', '.join(members)}", sum(p.n for p in parts), parts[0].horizon,
                         values, published, "", None if None in tuned else sum(tuned)))
    return rows


def _label(row: dict[str, Any] | None) -> str:
    if not row:
        return "none"
    return f"{row['model']} (Table 1 part {row['part']})" if row.get("part") else str(row["model"])


def protocol_lines(rep: Reproduction) -> list[str]:
    """What was run and what it is compared with, one fact per line."""
    from pdebench_core import leaderboard

    proto, ev = rep.protocol, rep.protocol.evaluation
    source = leaderboard.load_published().sources.get(str(proto.published["source"]), {})
    size = f"DPOT size '{rep.size}'" if rep.size else "an architecture of no released DPOT size"
    lines = [
        f"protocol {proto.name}: {proto.title} ({proto.path.name})",
        f"checkpoint {rep.checkpoint}: {size}; device {rep.device}",
        f"each dataset resized to {'x'.join(map(str, proto.grid))} ({ev.get('interpolation', 'bilinear')}), "
        f"channels padded to {ev['channels']} with ones and reset at every step, t_in and horizon per dataset, "
        f"scored with {ev.get('metric', 'l2re')} at the points of the dataset's own grid "
        f"(eval.grid={ev.get('eval_grid', 'strided')}), {ev.get('precision', 'fp32')}",
        f"zero-shot compared with {_label(rep.rows['zero_shot'])}" + (
            "" if rep.rows["zero_shot"] else " (no released size matches; choose a row with --published DPOT-Ti)"),
    ]
    if _finetuned(rep):
        lines.append(f"fine-tuned {_length(rep)} per dataset "
                     f"({', '.join(f'{k} {v}' for k, v in rep.recipe.items())}), scored on the official "
                     f"fine-tuning's test set (test_size), compared with "
                     f"{_label(rep.rows['finetuned'])}, which was fine-tuned for 200 epochs")
    lines.append(f"published: {source.get('label', proto.published['source'])}; "
                 f"{' '.join(str(source.get('version', '')).split())}")
    if rep.absent:
        lines.append("absent (not evaluated): " + ", ".join(f"{c.key} ({c.test})" for c in rep.absent))
    return lines


def _finetuned(rep: Reproduction) -> bool:
    return bool(rep.finetune_steps or rep.finetune_epochs)


def _length(rep: Reproduction) -> str:
    return f"{rep.finetune_epochs} epochs" if rep.finetune_epochs else f"{rep.finetune_steps} steps"


def _columns(rep: Reproduction) -> list[str]:
    columns = ["column", "dataset", "n", "horizon", "zero_shot", "published_zero_shot",
               "relative_difference_zero_shot"]
    if _finetuned(rep):
        columns += ["n_finetuned", "finetuned", "published_finetuned", "relative_difference_finetuned"]
    return columns + ["notes"]


def _text(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key.startswith("relative_difference"):
        return f"{value:+.1%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _headers(rep: Reproduction) -> dict[str, str]:
    ft = f"fine-tuned ({_length(rep)})"
    return {"column": "column", "dataset": "dataset", "n": "n", "n_finetuned": "n (fine-tuned)",
            "horizon": "horizon", "zero_shot": "ours",
            "published_zero_shot": "published", "relative_difference_zero_shot": "rel. diff", "finetuned": ft,
            "published_finetuned": "published (200 epochs)", "relative_difference_finetuned": "rel. diff",
            "notes": "notes"}


def render(rep: Reproduction, fmt: str) -> str:
    """``markdown``, ``csv`` or ``json`` text (``table`` is drawn by :func:`print_reproduction`)."""
    check_format(fmt)
    rows, columns = table_rows(rep), _columns(rep)
    if fmt == "json":
        return json.dumps({
            "protocol": rep.protocol.name, "checkpoint": rep.checkpoint, "size": rep.size, "device": rep.device,
            "finetune_steps": rep.finetune_steps, "finetune_epochs": rep.finetune_epochs, "compared_with": rep.rows, "settings": protocol_lines(rep),
            "rows": [{k: r[k] for k in columns} for r in rows],
            "absent": [{"column": c.key, "dataset": c.dataset, "expected": c.test} for c in rep.absent],
        }, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if r[k] is None else r[k] for k in columns] for r in rows])
        return buffer.getvalue()
    if fmt == "markdown":
        names = _headers(rep)
        lines = ["| " + " | ".join(names[c] for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(_text(c, r[c]).replace("|", "\\|") for c in columns) + " |" for r in rows]
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {line}" for line in protocol_lines(rep)) + "\n"
    raise UsageError("format 'table' is drawn on the terminal; use print_reproduction")


def print_reproduction(rep: Reproduction, console=None) -> None:
    """Draw the comparison as a rich table, the protocol lines below it."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    names, columns = _headers(rep), _columns(rep)
    table = Table(title=f"pdeb reproduce {rep.protocol.name}")
    for column in columns:
        table.add_column(names[column], overflow="fold")
    for row in table_rows(rep):
        table.add_row(*[_text(c, row[c]) for c in columns])
    console.print(table)
    for line in protocol_lines(rep):
        console.print(line, markup=False, highlight=False)


def check_format(fmt: str) -> None:
    """A one-line usage error for an unknown ``--format``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'{did_you_mean(fmt, FORMATS)}; --format takes one of "
                         f"{', '.join(FORMATS)}")
