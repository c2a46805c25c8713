"""Evaluation protocols as data (``registry/protocols/<name>.yaml``): load them, find their files.

A protocol fixes everything a published table's numbers depend on: per dataset (a *column*)
the files and their layout, split sizes, input frames and rollout horizon; for all of them
the model grid, channel padding, where the error is scored and the metric; and which
published cells the results are compared with. ``pdeb reproduce <protocol>`` runs one
(:mod:`pdebench_core.protocol_runs`); this module only reads and checks, without torch.
A file of ``kind: comparison`` only records how a published table was measured (per column
``t_in``, horizon and grid, for the leaderboard); it is not a protocol ``pdeb reproduce`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pdebench_core.curated_files import list_at, mapping_at, mappings_at, read_yaml_mapping
from pdebench_core.errors import DataError, UsageError, did_you_mean

COLUMN_KEYS = ("key", "title", "dataset", "official_name", "source", "layout", "test", "train", "grid", "fields",
               "n_frames", "t_in", "horizon", "train_size", "test_size", "eval_test_size")


@dataclass(frozen=True)
class Column:
    """One dataset of a protocol (a column of the published table).

    Attributes:
        key: Column name in the published table's file.
        title: Human-readable name.
        dataset: pdeb's dataset plugin of the same data.
        official_name: The dataset's name in the original code.
        source: Where the raw data is published.
        layout: ``dpot-file`` or ``dpot-folders`` (both read by pdeb's ``dpot`` layout).
        test: Test files, relative to the data root.
        train: Training files, relative to the data root (for fine-tuning).
        grid: Stored spatial shape.
        fields: Stored channels, in order.
        n_frames: Frames per stored trajectory.
        t_in: Input frames.
        horizon: Frames rolled out and scored after ``t_in``.
        train_size: Training trajectories of the original recipe.
        test_size: Test trajectories of the original training script.
        eval_test_size: Test trajectories the original evaluation of a checkpoint scores.
        scored_channels: Leading channels that are scored (the rest is input only).
        setting: pdeb dataset parameters of this column (e.g. ``{"mach": 1.0}``).
        also: Further pdeb dataset names shown under this column.
        pdeb_horizon: Where pdeb's same-named dataset rolls out another horizon by default:
            ``{"horizon": N, "why": "..."}``.
    """

    key: str
    title: str
    dataset: str
    official_name: str
    source: str
    layout: str
    test: str
    train: str
    grid: tuple[int, ...]
    fields: tuple[str, ...]
    n_frames: int
    t_in: int
    horizon: int
    train_size: int
    test_size: int
    eval_test_size: int
    scored_channels: int | None = None
    setting: Mapping[str, Any] = field(default_factory=dict)
    also: tuple[str, ...] = ()
    pdeb_horizon: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol file (see ``registry/protocols/dpot-table1.yaml`` for every key).

    Attributes:
        name: Protocol name (the file name without ``.yaml``).
        title: One line saying what it reproduces.
        path: The file it was read from.
        published: Published source key, metric, rows to compare with, averaged columns.
        model: What a checkpoint must be to fit (family and constructor arguments).
        evaluation: Model grid, channels, grid mode, metric, precision, batch size.
        finetune: The fine-tuning recipe (``train.*`` values).
        pretraining: How the released checkpoints were pre-trained: epochs, grid, and per size
            the processes, windows per process, noise scale and dataset weights by column.
        columns: The datasets, in the published table's order.
    """

    name: str
    title: str
    path: Path
    published: Mapping[str, Any]
    model: Mapping[str, Any]
    evaluation: Mapping[str, Any]
    finetune: Mapping[str, Any]
    pretraining: Mapping[str, Any]
    columns: tuple[Column, ...]

    @property
    def grid(self) -> tuple[int, ...]:
        """The model grid every dataset is resized to."""
        return tuple(int(n) for n in self.evaluation["grid"])


def protocol_dirs() -> list[Path]:
    """Folders that may hold protocol files, most specific first (see :func:`paths.registry_dirs`)."""
    from pdebench_core import paths

    return paths.registry_dirs("protocols")


def protocol_kind(path: Path) -> str:
    """``reproduce`` (a protocol ``pdeb reproduce`` runs) or ``comparison`` (a file that only
    records how a published table was measured, read by the leaderboard): the file's ``kind``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "reproduce"  # load_protocol reports what is wrong with it
    return str(data.get("kind", "reproduce")) if isinstance(data, Mapping) else "reproduce"


def protocol_names() -> list[str]:
    """Every protocol ``pdeb reproduce`` can run, found in :func:`protocol_dirs` (sorted)."""
    names = {p.stem for folder in protocol_dirs() if folder.is_dir() for p in folder.glob("*.yaml")
             if protocol_kind(p) == "reproduce"}
    return sorted(names)


def find_protocol(name: str) -> Path | None:
    """The file of protocol ``name`` (``None`` when no folder has it)."""
    for folder in protocol_dirs():
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def load_protocol(name: str) -> Protocol:
    """Read and check protocol ``name``.

    Raises:
        UsageError: no such protocol (with the closest name).
        DataError: the file is not a valid protocol.
    """
    path = find_protocol(name)
    if path is None or protocol_kind(path) != "reproduce":
        known = protocol_names()
        what = (f"protocol '{name}' only records how a published table was measured (the leaderboard "
                f"reads it)" if path is not None else f"unknown protocol '{name}'{did_you_mean(name, known)}")
        raise UsageError(f"{what}; pdeb reproduce runs: {', '.join(known) or 'none'}")
    return parse_protocol(read_yaml_mapping(path), path)


def parse_protocol(data: Mapping[str, Any], path: Path) -> Protocol:
    """A :class:`Protocol` from the parsed YAML of ``path``; every required key checked."""
    for key in ("name", "published", "model", "evaluation", "columns"):
        if key not in data:
            raise DataError(f"{path}: protocol has no '{key}'")
    columns = tuple(_column(entry, path) for entry in mappings_at(data["columns"], path, "columns"))
    if len({c.key for c in columns}) != len(columns):
        raise DataError(f"{path}: two columns share a key")
    sections = {key: mapping_at(data.get(key), path, key)
                for key in ("published", "model", "evaluation", "finetune", "pretraining")}
    for section, key in (("published", "source"), ("evaluation", "grid"), ("evaluation", "channels")):
        if key not in sections[section]:
            raise DataError(f"{path}: protocol has no '{section}.{key}'")
    return Protocol(name=str(data["name"]), title=str(data.get("title", data["name"])), path=path,
                    columns=columns, **sections)


def _column(entry: Mapping[str, Any], path: Path) -> Column:
    missing = [k for k in COLUMN_KEYS if k not in entry]
    if missing:
        raise DataError(f"{path}: column '{entry.get('key', '?')}' has no {', '.join(missing)}")
    values = {k: entry[k] for k in COLUMN_KEYS}
    try:
        values["grid"] = tuple(int(n) for n in list_at(entry["grid"], path, f"column '{entry['key']}'.grid"))
        fields = list_at(entry["fields"], path, f"column '{entry['key']}'.fields", lone_name=True)
        values["fields"] = tuple(str(f) for f in fields)
        for key in ("n_frames", "t_in", "horizon", "train_size", "test_size", "eval_test_size"):
            values[key] = int(entry[key])
    except (TypeError, ValueError):
        raise DataError(f"{path}: column '{entry['key']}' needs whole numbers for grid, n_frames, t_in, horizon "
                        f"and the sizes") from None
    if values["t_in"] + values["horizon"] > values["n_frames"]:
        raise DataError(f"{path}: column '{values['key']}' scores {values['horizon']} frames after t_in="
                        f"{values['t_in']}, more than its {values['n_frames']} frames")
    scored = entry.get("scored_channels")
    return Column(**values, scored_channels=int(scored) if scored is not None else None,
                  setting=dict(entry.get("setting") or {}), also=tuple(entry.get("also") or ()),
                  pdeb_horizon=entry.get("pdeb_horizon"))


# --------------------------------------------------------------------------- files under a data root


@dataclass(frozen=True)
class Located:
    """Where a column's files are under a data root.

    Attributes:
        column: The column.
        test: The test file or folder.
        train: The training file or folder (``None`` when absent).
    """

    column: Column
    test: Path
    train: Path | None


def _homes(root: str | Path) -> list[Path]:
    """Folders the protocol paths may be relative to: ``root``, then ``root/large`` (the
    official code keeps its datasets under ``data/large``).

    Raises:
        UsageError: ``root`` is not a folder.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--data-root {root} is not a folder; give the folder holding the datasets "
                         f"(the official code's data/large)")
    return [folder, folder / "large"]


def locate(protocol: Protocol, root: str | Path) -> tuple[list[Located], list[Column]]:
    """Split the protocol's columns into those found under ``root`` and those absent.

    Raises:
        UsageError: ``root`` holds none of them.
    """
    homes = _homes(root)
    for home in homes:
        found, absent = [], []
        for column in protocol.columns:
            test = home / column.test
            if not test.exists():
                absent.append(column)
                continue
            train = home / column.train
            found.append(Located(column, test, train if train.exists() else None))
        if found:
            return found, absent
    examples = ", ".join(str(homes[0] / c.test) for c in protocol.columns[:2])
    raise UsageError(f"data root {root} holds none of the {len(protocol.columns)} datasets of protocol "
                     f"'{protocol.name}' (expected e.g. {examples}; see registry/protocols/{protocol.name}.yaml)")


# --------------------------------------------------------------------------- published cells


def published_cells(protocol: Protocol, row: Mapping[str, Any]) -> dict[str, float]:
    """``{column key: published value}`` of one published row (``{"model": ..., "part": ...}``)."""
    from pdebench_core.leaderboard import published_rows

    metric = str(protocol.published.get("metric", "l2re"))
    source = str(protocol.published["source"])
    cells: dict[str, float] = {}
    for entry in published_rows():
        if entry.source_key != source or entry.model != row["model"]:
            continue
        if row.get("part") is not None and str(entry.part) != str(row["part"]):
            continue
        if metric in entry.metrics and entry.published_name:
            cells[entry.published_name] = float(entry.metrics[metric])
    return cells


def published_row_for(protocol: Protocol, kind: str, size: str | None,
                      override: str | None = None) -> dict[str, Any] | None:
    """The published row a result is compared with.

    Args:
        protocol: The protocol.
        kind: ``zero_shot`` or ``finetuned``.
        size: The checkpoint's size name (``ti``, ``s``, ...) or ``None`` when it is none of them.
        override: A published model label given by the user (``DPOT-Ti``); for ``finetuned``
            the ``-200`` row of that model.

    Raises:
        UsageError: ``override`` names no row of the protocol.
    """
    rows = dict(protocol.published.get(kind) or {})
    if override:
        wanted = override if kind == "zero_shot" else f"{override}-200"
        for entry in rows.values():
            if entry["model"].lower() == wanted.lower():
                return dict(entry)
        choices = [e["model"] for e in (protocol.published.get("zero_shot") or {}).values()]
        raise UsageError(f"--published {override} is not a row of protocol '{protocol.name}'"
                         f"{did_you_mean(override, choices)}; use one of {', '.join(choices)}")
    return dict(rows[size]) if size in rows else None
