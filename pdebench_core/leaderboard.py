"""The leaderboard: local result rows beside published reference numbers.

Rows come from two places:

* the local results store (one row per run, dataset and task), where runs that differ
  only in their seed are pooled into one row showing mean, standard deviation and count;
* the published tables in ``registry/published/`` (see ``sources.yaml`` there), each row
  labelled with its citation in the ``source`` column.

Everything here is plain Python (csv, json, yaml): no pandas or torch import, so that
``pdeb leaderboard`` answers at once. Rows are dictionaries; :func:`collect` builds,
filters and ranks them, :func:`pivot` turns them into a model x dataset table like the
papers', and :func:`render` / :func:`render_pivot` print them in every format.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pdebench_core.errors import DataError, UsageError, did_you_mean

FORMATS = ("table", "markdown", "csv", "json", "html")
SOURCES = ("local", "published", "all")
DEFAULT_METRIC = "l2re"
LOCAL = "local"

# Parts of a run config that never change the numbers: left out when pooling seeds.
SEED_KEYS = ("seed", "run_id", "sinks")

# Keys of a row that are not metric values (a metric with one of these names is prefixed in JSON).
ROW_KEYS = (
    "rank", "model", "size", "dataset", "setting", "task", "part", "source", "profile", "n", "run_id", "run_ids",
    "seed", "seeds", "n_params", "params", "train_time_s", "device", "versions", "config_hash", "group_hash",
    "data_hash", "created_at", "published_name", "model_key", "source_key", "citation", "url", "std", "order",
    "averaged", "metric",
)


# --------------------------------------------------------------------------- published numbers


def published_dirs() -> list[Path]:
    """Where the published tables may live, most specific first (see :func:`paths.registry_dirs`)."""
    from pdebench_core import paths

    return paths.registry_dirs("published")


def published_dir() -> Path | None:
    """The first folder of :func:`published_dirs` holding ``sources.yaml`` (``None`` if none does)."""
    for path in published_dirs():
        if (path / "sources.yaml").is_file():
            return path
    return None


@dataclass
class Registry:
    """The parsed ``sources.yaml``: sources, dataset and model name mappings.

    Attributes:
        directory: Folder of the files.
        sources: ``{key: {file, label, citation, url, metric, layout, ...}}``.
        datasets: Published dataset name -> ``{dataset, setting, aliases, averaged}``.
        setting_keys: Parameter name in a setting -> config keys of our datasets.
        models: Published model label -> registered model name (or ``None``).
    """

    directory: Path | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    setting_keys: dict[str, list[str]] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)


def load_registry(directory: str | Path | None = None) -> Registry:
    """Read ``sources.yaml`` from ``directory`` (default: :func:`published_dir`).

    Returns an empty registry when no published folder is found, so local rows still show.
    """
    import yaml

    folder = Path(directory) if directory is not None else published_dir()
    if folder is None or not (folder / "sources.yaml").is_file():
        return Registry(directory=folder)
    try:
        data = yaml.safe_load((folder / "sources.yaml").read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{folder / 'sources.yaml'} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return Registry(
        directory=folder,
        sources=dict(data.get("sources") or {}),
        datasets={str(k): dict(v or {}) for k, v in (data.get("datasets") or {}).items()},
        setting_keys={str(k): list(v or []) for k, v in (data.get("setting_keys") or {}).items()},
        models={str(k): v for k, v in (data.get("models") or {}).items()},
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    """CSV rows as dicts; lines starting with ``#`` are the source's own comments."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    return list(csv.DictReader(lines))


def _number(text: str | None) -> float | None:
    if text is None or not str(text).strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_setting(text: str) -> dict[str, float]:
    """``"M=1.0 eta=zeta=0.1"`` -> ``{"M": 1.0, "eta": 0.1, "zeta": 0.1}``; words that are not
    ``name=number`` are ignored."""
    out: dict[str, float] = {}
    for token in str(text or "").replace(",", " ").split():
        parts = token.split("=")
        if len(parts) < 2:
            continue
        value = _number(parts[-1])
        if value is None:
            continue
        for name in parts[:-1]:
            if name:
                out[name] = value
    return out


def _published_entries(reg: Registry, name: str) -> list[tuple[str, str, bool]]:
    """``(our dataset, setting, averaged)`` for a published dataset name, aliases included."""
    mapping = reg.datasets.get(name)
    if mapping is None:  # not in the mapping file: keep the name, in our spelling
        return [(name.replace("_", "-"), "", False)]
    ours = str(mapping.get("dataset") or name)
    setting = str(mapping.get("setting") or "")
    averaged = bool(mapping.get("averaged", False))
    names = [ours] + [str(a) for a in mapping.get("aliases") or []]
    return [(n, setting, averaged) for n in names]


def _published_row(reg: Registry, key: str, spec: Mapping[str, Any], model: str, task: str, params: str,
                   published_name: str, dataset: str, setting: str, averaged: bool, value: float,
                   part: str | None = None) -> dict[str, Any]:
    return {
        "source": str(spec.get("label") or key), "source_key": key, "citation": spec.get("citation"),
        "url": spec.get("url"), "model": model, "model_key": reg.models.get(model), "size": None,
        "dataset": dataset, "setting": setting, "averaged": averaged, "published_name": published_name,
        "task": task, "part": part, "profile": None, "params": params, "n": None, "run_id": None, "run_ids": [],
        "metrics": {str(spec.get("metric") or "value"): value}, "std": {},
    }


def published_rows(reg: Registry | None = None) -> list[dict[str, Any]]:
    """Every published number as a leaderboard row (one row per model, dataset and setting)."""
    reg = reg if reg is not None else load_registry()
    rows: list[dict[str, Any]] = []
    for key, spec in reg.sources.items():
        path = (reg.directory or Path(".")) / str(spec.get("file", ""))
        if not path.is_file():
            raise DataError(f"published table {path} named in sources.yaml is missing")
        records = _read_csv(path)
        if spec.get("layout") == "long":
            for rec in records:
                value = _number(rec.get(spec["value_column"]))
                if value is None:
                    continue
                name = rec[spec["dataset_column"]].strip()
                own_setting = (rec.get(spec.get("setting_column", "")) or "").strip()
                for dataset, setting, averaged in _published_entries(reg, name):
                    rows.append(_published_row(reg, key, spec, str(spec.get("model", "")), str(spec.get("task", "")),
                                               str(rec.get(spec.get("params_column", "")) or ""), name, dataset,
                                               own_setting or setting, averaged, value))
        else:
            part_column = spec.get("part_column")
            meta = {spec.get("model_column", "model"), spec.get("task_column", "group"),
                    spec.get("params_column", "params"), part_column}
            for rec in records:
                model = rec[spec.get("model_column", "model")].strip()
                task = (rec.get(spec.get("task_column", "group")) or spec.get("task") or "").strip()
                params = (rec.get(spec.get("params_column", "params")) or "").strip()
                part = ((rec.get(part_column) or "").strip() or None) if part_column else None
                for name, text in rec.items():
                    if name in meta:
                        continue
                    value = _number(text)
                    if value is None:  # empty: not reported
                        continue
                    for dataset, setting, averaged in _published_entries(reg, name):
                        rows.append(_published_row(reg, key, spec, model, task, params, name, dataset, setting,
                                                   averaged, value, part))
    return rows


# --------------------------------------------------------------------------- local rows


def seedless_hash(config: Mapping[str, Any] | None, fallback: str = "") -> str:
    """Hash of a resolved run config with ``run.seed``, ``run.run_id`` and ``run.sinks`` left out.

    Runs with the same seedless hash (and model, dataset, task) are repeats of one
    experiment with different seeds, pooled into one leaderboard row.
    """
    if not config:
        return fallback
    data = json.loads(json.dumps(config, default=str))
    run = data.get("run")
    if isinstance(run, dict):
        for key in SEED_KEYS:
            run.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def local_setting(reg: Registry, dataset: str, config: Mapping[str, Any] | None,
                  candidates: Iterable[str]) -> str:
    """The published setting a local run matches, from its dataset config (``""`` if none).

    A setting matches when every parameter it names (through ``setting_keys``) equals the
    run's dataset config value; exactly one candidate must match.
    """
    section = ((config or {}).get("data") or {}).get(dataset) or {}
    if not isinstance(section, Mapping):
        return ""
    matches = []
    for setting in candidates:
        wanted = parse_setting(setting)
        if not wanted:
            continue
        ok = True
        for name, value in wanted.items():
            keys = reg.setting_keys.get(name, [name])
            found = next((section[k] for k in keys if k in section and section[k] is not None), None)
            try:
                if found is None or not math.isclose(float(found), value, rel_tol=1e-6, abs_tol=1e-12):
                    ok = False
                    break
            except (TypeError, ValueError):
                ok = False
                break
        if ok:
            matches.append(setting)
    return matches[0] if len(matches) == 1 else ""


def local_rows(store_rows: Iterable[Mapping[str, Any]], reg: Registry | None = None,
               settings: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """One leaderboard row per stored result row (not yet pooled over seeds).

    Args:
        store_rows: Rows of :class:`pdebench_core.results.ResultsStore`.
        reg: The published registry (for setting matching).
        settings: Published settings per dataset that a local run may match.
    """
    reg = reg if reg is not None else Registry()
    out = []
    for row in store_rows:
        config = row.get("config") or {}
        extra = row.get("extra") or {}
        model_cfg = config.get("model") or {}
        size = extra.get("size") if extra.get("size") is not None else model_cfg.get("size")
        dataset = str(row.get("dataset"))
        metrics = {str(k): float(v) for k, v in (row.get("metrics") or {}).items() if _is_number(v)}
        out.append({
            "source": LOCAL, "source_key": LOCAL, "model": str(row.get("model")), "model_key": str(row.get("model")),
            "size": str(size) if size is not None else None, "dataset": dataset,
            "setting": local_setting(reg, dataset, config, (settings or {}).get(dataset, ())),
            "task": str(row.get("task")), "part": None, "profile": row.get("profile"), "run_id": row.get("run_id"),
            "run_ids": [row.get("run_id")], "seed": row.get("seed"), "seeds": [row.get("seed")],
            "n_params": row.get("n_params"), "params": human_count(row.get("n_params")),
            "train_time_s": row.get("train_time_s"), "device": row.get("device"), "versions": row.get("versions"),
            "config_hash": row.get("config_hash"),
            "group_hash": seedless_hash(config, fallback=str(row.get("config_hash") or row.get("run_id"))),
            "data_hash": row.get("data_hash"), "created_at": row.get("created_at"), "n": 1,
            "metrics": metrics, "std": {},
        })
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def human_count(n: Any) -> str:
    """``1234567`` -> ``"1.2M"``, the way papers print parameter counts."""
    if not _is_number(n):
        return ""
    n = float(n)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}"


def pool_seeds(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pool local rows of the same experiment run with different seeds.

    Rows share an experiment when model, dataset, task and the seedless config hash agree.
    Each metric becomes the mean over the runs that report it, ``std`` holds the sample
    standard deviation (``None`` for a single run) and ``n`` the number of runs. The newest
    run names the pooled row (``run_id``); all ids are in ``run_ids``.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["model"], row["dataset"], row["task"], row["group_hash"])
        groups.setdefault(key, []).append(row)
    pooled = []
    for members in groups.values():
        if len(members) == 1:
            only = dict(members[0])
            only["std"] = {name: None for name in only["metrics"]}
            pooled.append(only)
            continue
        latest = dict(members[-1])
        names = sorted({m for r in members for m in r["metrics"]})
        latest["metrics"], latest["std"] = {}, {}
        for name in names:
            values = [r["metrics"][name] for r in members if name in r["metrics"]]
            latest["metrics"][name] = statistics.fmean(values)
            latest["std"][name] = statistics.stdev(values) if len(values) > 1 else None
        latest["n"] = len(members)
        latest["run_ids"] = [r["run_id"] for r in members]
        latest["seeds"] = sorted({r["seed"] for r in members if r["seed"] is not None})
        latest["seed"] = None
        times = [r["train_time_s"] for r in members if _is_number(r["train_time_s"])]
        latest["train_time_s"] = statistics.fmean(times) if times else None
        latest["device"] = ", ".join(sorted({str(r["device"]) for r in members if r["device"]})) or None
        pooled.append(latest)
    return pooled


# --------------------------------------------------------------------------- filters and ranks


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _check_names(kind: str, wanted: list[str], available: Iterable[str], flag: str,
                 fold: bool = False) -> None:
    available = sorted({a for a in available if a})
    pool = {a.lower() for a in available} if fold else set(available)
    for name in wanted:
        if (name.lower() if fold else name) not in pool:
            listing = ", ".join(available) or "none"
            raise UsageError(f"no results for {kind} '{name}'{did_you_mean(name, available)}; "
                             f"{flag} takes a comma-separated list of: {listing}")


def metric_directions(names: Iterable[str]) -> dict[str, bool]:
    """``{metric: higher_is_better}`` from the registered metric cards (lower is better if unknown)."""
    out = {name: False for name in names}
    try:
        from pdebench_core import plugins

        registry = plugins.registries()["metric"]
        for name in out:
            if name in registry:
                out[name] = bool(registry.get(name).card.get("higher_is_better", False))
    except Exception:  # a broken plugin must not take the leaderboard down; default: lower is better
        pass
    return out


def assign_ranks(rows: list[dict[str, Any]], metric: str, higher_is_better: bool = False) -> None:
    """Set ``row["rank"]`` within each (dataset, setting) by ``metric`` (1 = best, ties share)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        row["rank"] = None
        value = row["metrics"].get(metric)
        if _is_number(value):
            groups.setdefault((row["dataset"], row["setting"]), []).append(row)
    for members in groups.values():
        ordered = sorted(members, key=lambda r: r["metrics"][metric], reverse=higher_is_better)
        for position, row in enumerate(ordered):
            earlier = ordered[position - 1] if position else None
            if earlier is not None and earlier["metrics"][metric] == row["metrics"][metric]:
                row["rank"] = earlier["rank"]
            else:
                row["rank"] = position + 1


@dataclass
class Board:
    """Filtered, ranked rows ready to render.

    Attributes:
        rows: Row dictionaries (see :func:`local_rows` / :func:`published_rows`).
        metrics: Metric columns shown, in order.
        rank_metric: The metric ranks are computed from (``None`` when no row has one).
        higher_is_better: Direction of ``rank_metric``.
        sources: ``{label: {citation, url}}`` of the published sources present.
    """

    rows: list[dict[str, Any]]
    metrics: list[str]
    rank_metric: str | None
    higher_is_better: bool = False
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def collect(store_rows: Iterable[Mapping[str, Any]] | None = None, *, source: str = "all",
            data: str | None = None, model: str | None = None, metric: str | None = None,
            task: str | None = None, per_run: bool = False, registry: Registry | None = None) -> Board:
    """Build the leaderboard: local rows (pooled over seeds) and published rows, filtered and ranked.

    Args:
        store_rows: Result-store rows (default: read ``ResultsStore().rows()``).
        source: ``local``, ``published`` or ``all`` (or a published source key, e.g. ``dpot``).
        data: Comma-separated dataset names to keep.
        model: Comma-separated model names to keep; matches published labels (``FNO``,
            case-insensitive) and the registered name they map to (``fno``).
        metric: Comma-separated metrics to show; the first one ranks rows
            (default: rank by ``l2re``).
        task: Comma-separated tasks to keep (published rows carry the paper's group:
            ``baseline``, ``pretrained`` (zero-shot results of a pre-trained model),
            ``finetuned``).
        per_run: Show every run on its own instead of pooling seeds.
        registry: Published registry (default: :func:`load_registry`).

    Raises:
        UsageError: A filter names nothing that exists (with a suggestion).
    """
    reg = registry if registry is not None else load_registry()
    if store_rows is None:
        from pdebench_core.results import ResultsStore

        store_rows = ResultsStore().rows()
    source_choices = list(SOURCES) + list(reg.sources)
    if source not in source_choices:
        raise UsageError(f"unknown source '{source}'{did_you_mean(source, source_choices)}; "
                         f"--source takes one of {', '.join(source_choices)}")
    every_published = published_rows(reg)
    published = every_published if source != LOCAL else []
    if source not in SOURCES:
        published = [r for r in published if r["source_key"] == source]
    settings: dict[str, list[str]] = {}  # published settings a local run may line up with
    for row in every_published:
        if row["setting"] and not row["averaged"] and row["setting"] not in settings.setdefault(row["dataset"], []):
            settings[row["dataset"]].append(row["setting"])
    local = local_rows(store_rows, reg, settings) if source in (LOCAL, "all") else []
    if not per_run:
        local = pool_seeds(local)
    rows = published + local
    for position, row in enumerate(rows):
        row["order"] = position  # the published tables' own order, kept for the pivot

    # filters are checked against every row of the chosen sources, so a typo gets a suggestion
    wanted_data, wanted_models, wanted_tasks, wanted_metrics = _names(data), _names(model), _names(task), _names(metric)
    _check_names("dataset", wanted_data, (r["dataset"] for r in rows), "--data")
    _check_names("model", wanted_models, [r["model"] for r in rows] + [r["model_key"] or "" for r in rows],
                 "--model", fold=True)
    _check_names("task", wanted_tasks, (r["task"] for r in rows), "--task")
    _check_names("metric", wanted_metrics, _ordered_metrics(rows), "--metric")
    if wanted_data:
        rows = [r for r in rows if r["dataset"] in wanted_data]
    if wanted_models:
        folded = {m.lower() for m in wanted_models}
        rows = [r for r in rows if r["model"].lower() in folded or (r["model_key"] or "").lower() in folded]
    if wanted_tasks:
        rows = [r for r in rows if r["task"] in wanted_tasks]
    if wanted_metrics:
        rows = [r for r in rows if any(m in r["metrics"] for m in wanted_metrics)]
        shown = wanted_metrics
    else:
        shown = _ordered_metrics(rows)
    rank_metric = wanted_metrics[0] if wanted_metrics else (
        DEFAULT_METRIC if DEFAULT_METRIC in shown else (shown[0] if shown else None))
    higher = metric_directions([rank_metric]).get(rank_metric, False) if rank_metric else False
    if rank_metric:
        assign_ranks(rows, rank_metric, higher)
    else:
        for row in rows:
            row["rank"] = None
    rows.sort(key=lambda r: (r["dataset"], r["setting"], r["rank"] is None, r["rank"] or 0,
                             r["source"] != LOCAL, r["model"].lower()))
    sources = {}
    for row in rows:
        if row["source"] != LOCAL:
            sources[row["source"]] = {"citation": row.get("citation"), "url": row.get("url")}
    return Board(rows, shown, rank_metric, higher, sources)


def _ordered_metrics(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Metric names, ``l2re`` first, then in order of appearance."""
    seen: list[str] = []
    for row in rows:
        for name in row["metrics"]:
            if name not in seen:
                seen.append(name)
    if DEFAULT_METRIC in seen:
        seen.remove(DEFAULT_METRIC)
        seen.insert(0, DEFAULT_METRIC)
    return seen


# --------------------------------------------------------------------------- pivot


@dataclass
class Pivot:
    """A model x dataset table of one metric.

    Attributes:
        metric: The metric in the cells.
        columns: Column labels (``dataset`` or ``dataset (setting)``).
        rows: ``{"model", "size", "source", "task", "part", "profile", "cells": {column: row}}`` where
            each cell holds the leaderboard row whose value it shows (and ``"ranks"``).
        higher_is_better: Direction of the metric.
        sources: As in :class:`Board`.
    """

    metric: str
    columns: list[str]
    rows: list[dict[str, Any]]
    higher_is_better: bool = False
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def column_label(row: Mapping[str, Any]) -> str:
    """``ns2d`` or ``cfd2d (M=1.0 eta=zeta=0.1)``."""
    return f"{row['dataset']} ({row['setting']})" if row.get("setting") else str(row["dataset"])


def pivot(board: Board, metric: str | None = None) -> Pivot:
    """Rows = (source, model, size, task, profile), columns = datasets, cells = ``metric``.

    When several local experiments fall into one cell (e.g. two learning rates), the best
    one is shown. Published rows keep the order of their tables and come first; local rows
    follow, sorted by model.
    """
    metric = metric or board.rank_metric or DEFAULT_METRIC
    higher = metric_directions([metric])[metric]
    columns: list[str] = []
    table: dict[tuple, dict[str, Any]] = {}
    in_order = sorted(board.rows, key=lambda r: (r["source"] == LOCAL, r.get("order", 0)))
    for row in in_order:  # published first, in the order of their tables
        value = row["metrics"].get(metric)
        if not _is_number(value):
            continue
        column = column_label(row)
        if column not in columns:
            columns.append(column)
        # the part keeps a model listed twice in one table (DPOT-S in Table 1) on two rows
        key = (row["source"], row["model"], row.get("size") or "", row["task"], row.get("part") or "",
               row.get("profile") or "")
        entry = table.setdefault(key, {"source": key[0], "source_key": row.get("source_key"), "model": key[1],
                                       "size": key[2] or None, "task": key[3], "part": key[4] or None,
                                       "profile": key[5] or None, "cells": {}, "ranks": {}})
        held = entry["cells"].get(column)
        if held is None or (value > held["metrics"][metric] if higher else value < held["metrics"][metric]):
            entry["cells"][column] = row
    ordered_columns = _published_column_order(columns, in_order)
    rows = [e for e in table.values() if e["source"] != LOCAL]
    rows += sorted((e for e in table.values() if e["source"] == LOCAL),
                   key=lambda e: (e["model"], e["size"] or "", e["task"], e["profile"] or ""))
    for column in ordered_columns:  # competition ranking: 1 + number of strictly better cells
        values = [e["cells"][column]["metrics"][metric] for e in rows if column in e["cells"]]
        for entry in rows:
            if column in entry["cells"]:
                mine = entry["cells"][column]["metrics"][metric]
                entry["ranks"][column] = 1 + sum(1 for v in values if _better(v, mine, higher))
    present = {e["source"] for e in rows}
    return Pivot(metric, ordered_columns, rows, higher, {k: v for k, v in board.sources.items() if k in present})


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def _published_column_order(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """Published columns in the order of their tables, then local-only columns alphabetically."""
    published_order = []
    for row in rows:
        if row["source"] != LOCAL:
            label = column_label(row)
            if label in columns and label not in published_order:
                published_order.append(label)
    return published_order + sorted(c for c in columns if c not in published_order)


# --------------------------------------------------------------------------- rendering


def format_number(value: Any) -> str:
    """Numbers to 4 significant digits; missing values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_metric(mean: Any, std: Any = None) -> str:
    """``0.0123`` or ``0.0123 ± 0.0004`` (mean and sample standard deviation over seeds)."""
    if not _is_number(mean):
        return ""
    text = f"{float(mean):.4g}"
    if _is_number(std):
        text += f" ± {float(std):.2g}"
    return text


def _visible(rows: list[dict[str, Any]], key: str) -> bool:
    return any(r.get(key) not in (None, "", []) for r in rows)


def display_columns(board: Board) -> list[str]:
    """Columns of the human-readable views (table, Markdown, HTML), empty ones left out."""
    columns = ["rank", "dataset"]
    if _visible(board.rows, "setting"):
        columns.append("setting")
    columns.append("model")
    if _visible(board.rows, "size"):
        columns.append("size")
    columns += ["source", "task"]
    if _visible(board.rows, "part"):
        columns.append("part")
    if _visible(board.rows, "profile"):
        columns.append("profile")
    columns += ["n", "params", *board.metrics, "run_id"]
    return columns


def display_cells(board: Board, row: Mapping[str, Any]) -> list[str]:
    """Text of one row for :func:`display_columns`."""
    cells = []
    for column in display_columns(board):
        if column in board.metrics:
            cells.append(format_metric(row["metrics"].get(column), (row.get("std") or {}).get(column)))
        else:
            cells.append(format_number(row.get(column)))
    return cells


def record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row for JSON: identity and provenance keys, then one key per metric.

    Standard deviations over seeds are under ``std`` (``{metric: value}``), never as
    metric-like keys.
    """
    out = {
        "model": row["model"], "dataset": row["dataset"], "task": row["task"], "part": row.get("part"),
        "run_id": row.get("run_id"),
        "source": row["source"], "rank": row.get("rank"), "setting": row.get("setting") or None,
        "size": row.get("size"), "profile": row.get("profile"), "n": row.get("n"),
    }
    if row["source"] == LOCAL:
        out.update({key: row.get(key) for key in (
            "run_ids", "seed", "seeds", "n_params", "train_time_s", "device", "versions", "config_hash",
            "group_hash", "data_hash", "created_at")})
    else:
        out.update({"params": row.get("params") or None, "published_name": row.get("published_name"),
                    "model_key": row.get("model_key"), "citation": row.get("citation"), "url": row.get("url")})
    for name, value in row["metrics"].items():
        out[name if name not in ROW_KEYS else f"metric:{name}"] = value
    out["std"] = {k: v for k, v in (row.get("std") or {}).items()}
    return out


CSV_COLUMNS = ("rank", "dataset", "setting", "model", "size", "source", "task", "part", "profile", "n", "run_id",
               "run_ids",
               "seed", "seeds", "n_params", "params", "train_time_s", "device", "config_hash", "group_hash",
               "data_hash")


def render(board: Board, fmt: str, title: str = "pdeb leaderboard") -> str:
    """Render the flat leaderboard as ``markdown``, ``csv``, ``json`` or ``html`` text.

    ``table`` (the rich terminal table) is drawn by :func:`print_table`.
    """
    check_format(fmt)
    if fmt == "json":
        return json.dumps([record(r) for r in board.rows], indent=2, default=str) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        metric_cols = [c for m in board.metrics for c in (m, f"{m}_std")]
        writer.writerow([*CSV_COLUMNS, *metric_cols])
        for row in board.rows:
            values = [_csv_value(row.get(c)) for c in CSV_COLUMNS]
            for name in board.metrics:
                values += [_csv_value(row["metrics"].get(name)), _csv_value((row.get("std") or {}).get(name))]
            writer.writerow(values)
        return buffer.getvalue()
    columns = display_columns(board)
    body = [display_cells(board, r) for r in board.rows]
    if fmt == "markdown":
        return _markdown(columns, body) + _markdown_sources(board.sources)
    if fmt == "html":
        local = [r["source"] == LOCAL for r in board.rows]
        note = _rank_note(board.rank_metric, board.higher_is_better)
        return html_page(title, [(columns, body, local)], board.sources, note)
    raise UsageError(f"format '{fmt}' is drawn on the terminal; use print_table")


def render_pivot(table: Pivot, fmt: str, title: str = "pdeb leaderboard") -> str:
    """Render a :class:`Pivot` as ``markdown``, ``csv``, ``json`` or ``html`` text."""
    check_format(fmt)
    keys = pivot_keys(table)
    if fmt == "json":
        out = []
        for entry in table.rows:
            item = {k: entry[k] for k in ("model", "size", "source", "task", "part", "profile")}
            item["metric"] = table.metric
            for column in table.columns:
                cell = entry["cells"].get(column)
                item[column] = cell["metrics"][table.metric] if cell else None
            item["std"] = {c: (cell.get("std") or {}).get(table.metric) for c, cell in entry["cells"].items()}
            item["n"] = {c: cell.get("n") for c, cell in entry["cells"].items()}
            item["run_id"] = {c: cell.get("run_id") for c, cell in entry["cells"].items() if cell.get("run_id")}
            item["ranks"] = dict(entry["ranks"])
            out.append(item)
        return json.dumps(out, indent=2, default=str) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*keys, *table.columns])
        for entry in table.rows:
            cells = [entry["cells"].get(c) for c in table.columns]
            writer.writerow([_csv_value(entry[k]) for k in keys]
                            + [_csv_value(c["metrics"][table.metric]) if c else "" for c in cells])
        return buffer.getvalue()
    columns = keys + table.columns
    body = [[format_number(entry[k]) for k in keys] + pivot_cells(table, entry) for entry in table.rows]
    if fmt == "markdown":
        bold = [[False] * len(keys) + [_is_best(table, entry, c) for c in table.columns] for entry in table.rows]
        marked = [[f"**{text}**" if b and text else text for text, b in zip(line, flags)]
                  for line, flags in zip(body, bold)]
        return _markdown(columns, marked) + _markdown_sources(table.sources)
    if fmt == "html":
        local = [entry["source"] == LOCAL for entry in table.rows]
        bold = [[False] * len(keys) + [_is_best(table, entry, c) for c in table.columns] for entry in table.rows]
        note = (f"Cells: {table.metric} (mean ± std over seeds for local rows), rank in the column in "
                f"parentheses, {'higher' if table.higher_is_better else 'lower'} is better; the best in bold.")
        return html_page(title, [(columns, body, local, bold)], table.sources, note)
    raise UsageError(f"format '{fmt}' is drawn on the terminal; use print_table")


def pivot_keys(table: Pivot) -> list[str]:
    """The row-label columns of a pivot; ``size``, ``part`` and ``profile`` only when some row has one."""
    keys = ["model"] + (["size"] if any(r["size"] for r in table.rows) else []) + ["source", "task"]
    keys += ["part"] if any(r.get("part") for r in table.rows) else []
    return keys + (["profile"] if any(r["profile"] for r in table.rows) else [])


def pivot_cells(table: Pivot, entry: Mapping[str, Any]) -> list[str]:
    """``value ± std (rank)`` per column of one pivot row."""
    cells = []
    for column in table.columns:
        cell = entry["cells"].get(column)
        if cell is None:
            cells.append("")
            continue
        text = format_metric(cell["metrics"][table.metric], (cell.get("std") or {}).get(table.metric))
        cells.append(f"{text} ({entry['ranks'][column]})" if _competitors(table, column) > 1 else text)
    return cells


def _competitors(table: Pivot, column: str) -> int:
    return sum(1 for e in table.rows if column in e["cells"])


def _is_best(table: Pivot, entry: Mapping[str, Any], column: str) -> bool:
    """Bold-worthy: rank 1 in a column with more than one value."""
    return entry["ranks"].get(column) == 1 and _competitors(table, column) > 1


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _rank_note(metric: str | None, higher: bool) -> str:
    if not metric:
        return ""
    return (f"Ranked within each dataset (and setting) by {metric}, {'higher' if higher else 'lower'} is better. "
            f"Local rows pool runs that differ only in their seed: mean ± sample std, n runs.")


def _markdown(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def _markdown_sources(sources: Mapping[str, Mapping[str, Any]]) -> str:
    if not sources:
        return ""
    items = [f"{label} <{info['url']}>" if info.get("url") else label for label, info in sources.items()]
    return "\nSources: " + "; ".join(items) + ".\n"


def check_format(fmt: str) -> None:
    """A one-line usage error for an unknown ``--format``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'{did_you_mean(fmt, FORMATS)}; --format takes one of "
                         f"{', '.join(FORMATS)}")


PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d2430; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
p.note { color: #4a5568; font-size: .9rem; max-width: 60rem; }
table.board { border-collapse: collapse; font-size: .85rem; margin: 1rem 0; }
table.board th, table.board td { border-bottom: 1px solid #d9dee7; padding: .3rem .6rem; text-align: left;
  white-space: nowrap; }
table.board th { background: #eef1f6; position: sticky; top: 0; }
table.board tr.local td { background: #eaf7ee; }
table.board td.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.sources { font-size: .85rem; color: #4a5568; }
"""


def html_page(title: str, tables: Sequence[tuple], sources: Mapping[str, Mapping[str, Any]], note: str = "") -> str:
    """A self-contained HTML page (inline CSS, no scripts or external assets); every value escaped.

    Args:
        title: Page title and heading.
        tables: ``(columns, body, local_flags[, bold_flags])`` per table; ``body`` holds cell text.
        sources: ``{label: {citation, url}}`` listed under the tables.
        note: A sentence above the tables.
    """
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{PAGE_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    for columns, body, local, *extra in tables:
        bold = extra[0] if extra else [[False] * len(columns) for _ in body]
        parts.append('<table class="board"><thead><tr>' + "".join(f"<th>{esc(str(c))}</th>" for c in columns)
                     + "</tr></thead><tbody>")
        if not body:
            parts.append(f'<tr><td colspan="{len(columns)}">no results</td></tr>')
        for line, is_local, marks in zip(body, local, bold):
            cells = []
            for value, strong in zip(line, marks):
                text = f"<strong>{esc(str(value))}</strong>" if strong and value else esc(str(value))
                cells.append(f'<td class="num">{text}</td>' if _looks_numeric(value) else f"<td>{text}</td>")
            parts.append(f'<tr class="{"local" if is_local else "published"}">{"".join(cells)}</tr>')
        parts.append("</tbody></table>")
    if sources:
        parts.append('<ul class="sources">')
        for label, info in sources.items():
            text = esc(label)
            if info.get("citation"):
                text += f": {esc(str(info['citation']))}"
            if info.get("url"):
                url = esc(str(info["url"]), quote=True)
                text += f' <a href="{url}">{esc(str(info["url"]))}</a>'
            parts.append(f"<li>{text}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _looks_numeric(text: Any) -> bool:
    head = str(text).split(" ")[0]
    try:
        float(head)
        return True
    except ValueError:
        return False


def print_table(board: Board | Pivot, console=None, title: str = "leaderboard") -> None:
    """Draw the board (or a pivot) as a rich table on the terminal.

    Published sources are shown by their short key (``dpot``, ``pdebench``), with the
    full citation and link printed below the table. When the output is not a terminal,
    the table gets the width it needs instead of being folded into 80 columns.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    short = {label: key for label, key in _source_keys(board).items()}
    if isinstance(board, Pivot):
        keys = pivot_keys(board)
        columns = keys + board.columns
        body = [[short.get(e[k], e[k]) if k == "source" else format_number(e[k]) for k in keys]
                + pivot_cells(board, e) for e in board.rows]
        best = [[False] * len(keys) + [_is_best(board, e, c) for c in board.columns] for e in board.rows]
        local = [e["source"] == LOCAL for e in board.rows]
        caption = f"{board.metric}, {'higher' if board.higher_is_better else 'lower'} is better; (rank) per column"
    else:
        columns = display_columns(board)
        body = [[short.get(v, v) if c == "source" else v for c, v in zip(columns, display_cells(board, r))]
                for r in board.rows]
        best = [[c == "rank" and r.get("rank") == 1 for c in columns] for r in board.rows]
        local = [r["source"] == LOCAL for r in board.rows]
        caption = _rank_note(board.rank_metric, board.higher_is_better)
    console = console or Console()
    if not body:
        console.print("no results (run 'pdeb run ...' first, or widen the filters)")
        return
    table = Table(title=title, caption=caption or None)
    for column in columns:
        table.add_column(str(column), overflow="fold")
    for line, marks, is_local in zip(body, best, local):
        table.add_row(*[Text(v, style="bold" if m else "") for v, m in zip(line, marks)],
                      style="green" if is_local else None)
    if not console.is_terminal:
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options.update_width(100_000), table).maximum
        console = Console(file=console.file, width=max(console.width, needed))
    console.print(table)
    for label, info in board.sources.items():
        console.print(Text(f"{short.get(label, label)} = {label}: {info.get('url') or ''}", style="dim"))


def _source_keys(board: Board | Pivot) -> dict[str, str]:
    """Citation label -> short source key, for the rows present."""
    rows = [e for e in board.rows] if isinstance(board, Pivot) else board.rows
    return {r["source"]: r.get("source_key") or r["source"] for r in rows if r["source"] != LOCAL}
