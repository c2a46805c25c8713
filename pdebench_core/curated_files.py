"""Reading hand-curated YAML and CSV files: published tables, protocols, source cards.

They live under ``registry/`` (bundled) or ``$PDEB_HOME/registry/`` (added by a user) and are
written by hand, so every way they can be malformed (not UTF-8, not YAML,
a list where a mapping belongs, a missing column) ends as one :class:`DataError` line that
names the file and the key, never as a traceback from deep inside the reader.
"""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from pdebench_core.errors import DataError


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds (an empty file is an empty mapping).

    Raises:
        DataError: the file cannot be read, is not UTF-8 YAML, or holds something other
            than a mapping.
    """
    import yaml

    with _read_as_text(path):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DataError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return mapping_at(data, path, "the file")


@contextmanager
def _read_as_text(path: Path) -> Iterator[None]:
    """Turn a file that cannot be read, or is not UTF-8, into one :class:`DataError` line."""
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def mapping_at(value: Any, path: Path, where: str) -> dict[str, Any]:
    """``value`` as a dict with string keys (``None`` is empty).

    Args:
        value: What the YAML holds at ``where``.
        path: The file, for the message.
        where: The key path inside the file (``"sources.dpot"``) or ``"the file"``.

    Raises:
        DataError: ``value`` is not a mapping.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"{path}: {where} must be a mapping of names to values, not a {_kind(value)}")
    return {str(k): v for k, v in value.items()}


def list_at(value: Any, path: Path, where: str, lone_name: bool = False) -> list[Any]:
    """``value`` as a list (``None`` is empty).

    Args:
        value: What the YAML holds at ``where``.
        path: The file, for the message.
        where: The key path inside the file.
        lone_name: Take a lone string as a list of one name (``aliases: ns2d``).

    Raises:
        DataError: ``value`` is not a list (nor, with ``lone_name``, a string).
    """
    if value is None:
        return []
    if isinstance(value, str) and lone_name:
        return [value]
    if not isinstance(value, list):
        raise DataError(f"{path}: {where} must be a list, not a {_kind(value)}")
    return value


def mappings_at(value: Any, path: Path, where: str) -> list[dict[str, Any]]:
    """A list of mappings (``columns:`` entries), each checked."""
    return [mapping_at(item, path, f"{where}[{i}]") for i, item in enumerate(list_at(value, path, where))]


def read_csv_records(path: Path, required: Iterable[str] = ()) -> list[dict[str, str]]:
    """CSV rows as dicts; blank lines and lines starting with ``#`` (the source's own notes) are
    skipped.

    Args:
        path: The CSV file.
        required: Columns the caller reads; each must be in the header.

    Raises:
        DataError: the file is not UTF-8, is not CSV, or lacks a required column.
    """
    with _read_as_text(path):
        with open(path, newline="", encoding="utf-8") as f:
            lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        try:
            records = list(reader)
        except csv.Error as exc:
            raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    header = [name.strip() for name in reader.fieldnames or []]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path} names the column {', '.join(repr(r) for r in repeated)} twice; give each column "
                        f"its own name")
    missing = [name for name in required if name not in header]
    if missing:
        raise DataError(f"{path} has no column {', '.join(repr(m) for m in missing)} (its header: "
                        f"{', '.join(header) or 'none'}); add it or name the right column in sources.yaml")
    return [{(k or "").strip(): v for k, v in rec.items() if k is not None} for rec in records]


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)
