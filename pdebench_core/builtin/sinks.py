"""Builtin sinks: the SQLite results store and per-run JSON-lines files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pdebench_core.hookspecs import hookimpl


@dataclass
class SqliteSinkConfig:
    """Settings of the ``sqlite`` sink.

    Attributes:
        path: Database file; empty means ``$PDEB_HOME/results.sqlite``.
    """

    path: Optional[str] = None


class SqliteSink:
    """Writes result rows to the results store; ignores step logs."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        from pdebench_core.results import ResultsStore

        self.store = ResultsStore(getattr(cfg, "path", None))

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Step logs are kept by the ``jsonl`` sink."""

    def write_result(self, row: dict[str, Any]) -> None:
        """Insert one row."""
        self.store.add(row)

    def close(self) -> None:
        """Nothing to release: each write opens its own connection."""


class JsonlSink:
    """Appends step metrics to ``metrics.jsonl`` and result rows to ``results.jsonl`` in the run directory."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        from pdebench_core.diskspace import write_failed

        try:
            with open(self.run_dir / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=str) + "\n")
        except OSError as exc:  # a full disk: one line, earlier lines stay
            raise write_failed(self.run_dir / name, exc) from None

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """One JSON object per logged step."""
        self._append("metrics.jsonl", {"step": step, **values})

    def write_result(self, row: dict[str, Any]) -> None:
        """One JSON object per result row."""
        self._append("results.jsonl", row)

    def close(self) -> None:
        """Files are opened per write."""


class TensorBoardSink:
    """Step metrics and result metrics as TensorBoard scalars (needs ``tensorboard``)."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            from pdebench_core.errors import UsageError

            raise UsageError("the tensorboard sink needs the tensorboard package; pip install 'pdeb[tensorboard]'") from exc
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Each value becomes a scalar at ``step``."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def write_result(self, row: dict[str, Any]) -> None:
        """Final metrics under ``eval/<dataset>/<metric>``."""
        for key, value in row.get("metrics", {}).items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{row['dataset']}/{key}", value)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


@hookimpl
def register_sinks(register):
    """Register the builtin sinks."""
    register("sqlite", SqliteSink, config=SqliteSinkConfig, description="SQLite results store (the leaderboard reads it)")
    register("jsonl", JsonlSink, description="metrics.jsonl and results.jsonl in the run directory")
    register("tensorboard", TensorBoardSink, description="TensorBoard scalars under <run>/tensorboard (optional)")
