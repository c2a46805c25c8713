"""Published tables: the reference numbers of papers, read from ``registry/published/``.

``sources.yaml`` there describes each table (its CSV file, the paper, version and date the
numbers were transcribed from, the protocol they were measured under, the metric and the
layout) and maps published dataset and model names to ours. Everything here is plain Python
(csv, yaml): no torch import, so that ``pdeb leaderboard`` answers at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pdebench_core.curated_files import list_at, mapping_at, read_csv_records, read_yaml_mapping
from pdebench_core.errors import DataError

from .measures import TableProtocol, load_table_protocol
from .rows import Row


#: Names of the leaderboard's own row groups (``--source local``, ...); no table may take them.
RESERVED_LABELS = ("local", "published", "all")


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
class PublishedTables:
    """The parsed ``sources.yaml``: the tables, and how their names map to ours.

    Attributes:
        directory: Folder of the files.
        sources: ``{key: {file, label, paper, version, date, protocol, citation, url, metric,
            layout, unchecked, ...}}``.
        datasets: Published dataset name -> ``{dataset, setting, aliases, averaged}``.
        setting_keys: Parameter name in a setting -> config keys of our datasets.
        models: Published model label -> registered model name (or ``None``).
        protocols: Source key -> the measures of its columns (``None`` when it names no protocol).
        folders: Source key -> the folder of its ``sources.yaml`` (its CSV file lies there).
    """

    directory: Path | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    setting_keys: dict[str, list[str]] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)
    protocols: dict[str, TableProtocol | None] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)


def load_published(directory: str | Path | None = None) -> PublishedTables:
    """Read ``sources.yaml`` from ``directory``, or from every folder of :func:`published_dirs`
    that holds one, and the protocols its tables name.

    Folders are merged, the more specific first: a table, dataset mapping or model label a user
    adds under ``$PDEB_HOME/registry/published`` joins the bundled ones, and replaces one of the
    same key. Returns empty tables when no folder has a ``sources.yaml``, so local rows still show.

    Raises:
        DataError: a ``sources.yaml``, CSV header or protocol is malformed (one line naming the
            file and key), or two tables share a label.
    """
    folders = [Path(directory)] if directory is not None else \
        [path for path in published_dirs() if (path / "sources.yaml").is_file()]
    folders = [f for f in folders if (f / "sources.yaml").is_file()]
    merged = PublishedTables(directory=folders[0] if folders else (Path(directory) if directory else None))
    for folder in reversed(folders):  # the most specific last, so that it wins
        one = _load_folder(folder)
        merged.sources.update(one.sources)
        merged.folders.update(one.folders)
        merged.protocols.update(one.protocols)
        merged.datasets.update(one.datasets)
        merged.setting_keys.update(one.setting_keys)
        merged.models.update(one.models)
    _check_labels(merged)
    return merged


def _load_folder(folder: Path) -> PublishedTables:
    """The tables of one folder's ``sources.yaml``."""
    path = folder / "sources.yaml"
    data = read_yaml_mapping(path)
    sources = {key: _checked_source(spec, path, f"sources.{key}")
               for key, spec in mapping_at(data.get("sources"), path, "sources").items()}
    protocols = {key: load_table_protocol(str(spec["protocol"]), folder) if spec.get("protocol") else None
                 for key, spec in sources.items()}
    datasets = {name: mapping_at(entry, path, f"datasets.{name}")
                for name, entry in mapping_at(data.get("datasets"), path, "datasets").items()}
    for name, entry in datasets.items():
        aliases = list_at(entry.get("aliases"), path, f"datasets.{name}.aliases", lone_name=True)
        entry["aliases"] = [str(a) for a in aliases]
    setting_keys = {name: [str(k) for k in list_at(keys, path, f"setting_keys.{name}", lone_name=True)]
                    for name, keys in mapping_at(data.get("setting_keys"), path, "setting_keys").items()}
    models = {label: (None if ours is None else str(ours))
              for label, ours in mapping_at(data.get("models"), path, "models").items()}
    return PublishedTables(directory=folder, sources=sources, datasets=datasets, setting_keys=setting_keys,
                           models=models, protocols=protocols, folders={key: folder for key in sources})


def _check_labels(tables: PublishedTables) -> None:
    """Each table's label (its ``source`` column) names it alone, and never local rows."""
    seen: dict[str, str] = {}
    for key, spec in tables.sources.items():
        label = str(spec.get("label") or key)
        where = tables.folders.get(key, tables.directory)
        if label.lower() in RESERVED_LABELS or key.lower() in RESERVED_LABELS:
            raise DataError(f"{where}/sources.yaml: table '{key}' may not be called '{label}' "
                            f"({', '.join(RESERVED_LABELS)} name the leaderboard's own rows); give it another key "
                            f"and label")
        if label.lower() in seen:  # told apart by case alone, they read as one in the source column
            raise DataError(f"{where}/sources.yaml: tables '{seen[label.lower()]}' and '{key}' share the label "
                            f"'{label}'; give each its own")
        seen[label.lower()] = key


def _checked_source(spec: Any, path: Path, where: str) -> dict[str, Any]:
    """One ``sources`` entry, with the keys the reader relies on checked."""
    spec = mapping_at(spec, path, where)
    if not isinstance(spec.get("file"), str) or not spec["file"].strip():
        raise DataError(f"{path}: {where} needs 'file', the name of its CSV file in that folder")
    layout = spec.setdefault("layout", "wide")
    if layout not in ("wide", "long"):
        raise DataError(f"{path}: {where}.layout must be 'wide' or 'long', not {layout!r}")
    if layout == "long":
        for key in ("value_column", "dataset_column"):
            if not isinstance(spec.get(key), str):
                raise DataError(f"{path}: {where} is a long table and needs '{key}', the CSV column that holds it")
    spec["unchecked"] = mapping_at(spec.get("unchecked"), path, f"{where}.unchecked")
    spec["unchecked"]["datasets"] = list_at(spec["unchecked"].get("datasets"), path, f"{where}.unchecked.datasets",
                                            lone_name=True)
    return spec


def _columns_read(spec: Mapping[str, Any]) -> list[str]:
    """The CSV columns a table's layout reads; each must be in its header."""
    if spec["layout"] == "long":
        return [spec["value_column"], spec["dataset_column"]]
    return [str(spec.get("model_column", "model"))]


def _number(text: str | None) -> float | None:
    """A published cell's value; ``None`` (not reported) for an empty, textual or non-finite cell."""
    if text is None or not str(text).strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


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


def _published_entries(tables: PublishedTables, name: str) -> list[tuple[str, str, bool]]:
    """``(our dataset, setting, averaged)`` for a published dataset name, aliases included."""
    mapping = tables.datasets.get(name)
    if mapping is None:  # not in the mapping file: keep the name, in our spelling
        return [(name.replace("_", "-"), "", False)]
    ours = str(mapping.get("dataset") or name)
    setting = str(mapping.get("setting") or "")
    averaged = bool(mapping.get("averaged", False))
    names = [ours] + [str(a) for a in mapping.get("aliases") or []]
    return [(n, setting, averaged) for n in names]


@dataclass(frozen=True)
class _Cell:
    """One published number before it is turned into rows (one per dataset name it maps to)."""

    model: str
    task: str
    size: str
    published_name: str
    setting: str
    value: float
    part: str | None = None


def _cells_long(spec: Mapping[str, Any], records: list[dict[str, str]]) -> Iterable[_Cell]:
    """A long table: one record per (dataset, setting), one value column, one model."""
    for rec in records:
        value = _number(rec.get(spec["value_column"]))
        if value is not None and (rec[spec["dataset_column"]] or "").strip():
            yield _Cell(str(spec.get("model", "")), str(spec.get("task", "")),
                        str(rec.get(spec.get("params_column", "")) or ""), (rec[spec["dataset_column"]] or "").strip(),
                        (rec.get(spec.get("setting_column", "")) or "").strip(), value)


def _cells_wide(spec: Mapping[str, Any], records: list[dict[str, str]]) -> Iterable[_Cell]:
    """A wide table: one record per model, one column per published dataset."""
    part_column = spec.get("part_column")
    meta = {spec.get("model_column", "model"), spec.get("task_column", "group"), spec.get("params_column", "params"),
            part_column}
    for rec in records:
        model = (rec[spec.get("model_column", "model")] or "").strip()
        task = (rec.get(spec.get("task_column", "group")) or spec.get("task") or "").strip()
        size = (rec.get(spec.get("params_column", "params")) or "").strip()
        part = ((rec.get(part_column) or "").strip() or None) if part_column else None
        for name, text in rec.items():
            value = _number(text) if name not in meta else None
            if value is not None:  # empty: not reported
                yield _Cell(model, task, size, name, "", value, part)


def _rows_of_source(tables: PublishedTables, key: str, spec: Mapping[str, Any]) -> list[Row]:
    path = (tables.folders.get(key) or tables.directory or Path(".")) / str(spec.get("file", ""))
    if not path.is_file():
        raise DataError(f"published table {path} named in sources.yaml is missing")
    records = read_csv_records(path, _columns_read(spec))
    cells = _cells_long(spec, records) if spec["layout"] == "long" else _cells_wide(spec, records)
    protocol = tables.protocols.get(key)
    unchecked = {str(n) for n in (spec.get("unchecked") or {}).get("datasets", [])}
    metric = str(spec.get("metric") or "value")
    rows = []
    for cell in cells:
        for dataset, setting, averaged in _published_entries(tables, cell.published_name):
            rows.append(Row(
                source=str(spec.get("label") or key), source_key=key, model=cell.model,
                model_key=tables.models.get(cell.model), dataset=dataset, task=cell.task,
                setting=cell.setting or setting, part=cell.part, size=cell.size or None,
                metrics={metric: cell.value}, published_name=cell.published_name, citation=spec.get("citation"),
                url=spec.get("url"), averaged=averaged, checked=cell.published_name not in unchecked,
                published_measure=protocol.measure(cell.published_name) if protocol else None,
            ))
    return rows


def published_rows(tables: PublishedTables | None = None) -> list[Row]:
    """Every published number as a leaderboard row (one row per model, dataset and setting)."""
    tables = tables if tables is not None else load_published()
    rows: list[Row] = []
    for key, spec in tables.sources.items():
        rows += _rows_of_source(tables, key, spec)
    return rows


def local_setting(tables: PublishedTables, dataset: str, config: Mapping[str, Any] | None,
                  candidates: Iterable[str]) -> str:
    """The published setting a local run matches, from its dataset config (``""`` if none).

    A setting matches when every parameter it names (through ``setting_keys``) equals the
    run's dataset config value; exactly one candidate must match.
    """
    section = ((config or {}).get("data") or {}).get(dataset) or {}
    if not isinstance(section, Mapping):
        return ""
    matches = [s for s in candidates if parse_setting(s) and _setting_holds(tables, section, parse_setting(s))]
    return matches[0] if len(matches) == 1 else ""


def _setting_holds(tables: PublishedTables, section: Mapping[str, Any], wanted: Mapping[str, float]) -> bool:
    for name, value in wanted.items():
        keys = tables.setting_keys.get(name, [name])
        found = next((section[k] for k in keys if k in section and section[k] is not None), None)
        try:
            if found is None or not math.isclose(float(found), value, rel_tol=1e-6, abs_tol=1e-12):
                return False
        except (TypeError, ValueError):
            return False
    return True


def source_summary(tables: PublishedTables, key: str) -> dict[str, Any]:
    """What a table says about itself: label, paper, version, date, protocol, metric, link."""
    spec = tables.sources.get(key, {})
    unchecked = spec.get("unchecked") or {}
    return {
        "key": key, "label": spec.get("label") or key, "paper": spec.get("paper"),
        "version": " ".join(str(spec.get("version") or "").split()) or None, "date": spec.get("date"),
        "protocol": spec.get("protocol"), "metric": spec.get("metric"), "citation": spec.get("citation"),
        "url": spec.get("url"), "unchecked": list(unchecked.get("datasets") or []), "unchecked_why": unchecked.get("why"),
    }
