"""The results store: an embedded SQLite database of evaluation rows.

One row per (run, dataset, task). Writers use WAL mode, an immediate transaction
and a generous busy timeout, so runs finishing at the same moment all land.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable

from pdebench_core import paths
from pdebench_core.diskspace import write_failed

COLUMNS = (
    "run_id", "model", "dataset", "task", "metrics", "seed", "n_params", "train_time_s", "device",
    "versions", "config_hash", "config", "profile", "data_hash", "command", "extra", "created_at",
)
JSON_COLUMNS = ("metrics", "versions", "config", "extra")

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    task TEXT NOT NULL,
    metrics TEXT NOT NULL,
    seed INTEGER,
    n_params INTEGER,
    train_time_s REAL,
    device TEXT,
    versions TEXT,
    config_hash TEXT,
    config TEXT,
    profile TEXT,
    data_hash TEXT,
    command TEXT,
    extra TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (run_id, dataset, task)
)
"""


class ResultsStore:
    """Read and write result rows.

    Args:
        path: SQLite file (default: ``$PDEB_HOME/results.sqlite``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else paths.results_db()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute(SCHEMA)
        return conn

    def add(self, row: dict[str, Any]) -> None:
        """Insert (or replace, for the same run, dataset and task) one row."""
        values = dict(row)
        values.setdefault("created_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        for key in JSON_COLUMNS:
            values[key] = json.dumps(values.get(key) if values.get(key) is not None else {}, default=str, sort_keys=True)
        missing = [k for k in ("run_id", "model", "dataset", "task") if not values.get(k)]
        if missing:
            raise ValueError(f"result row lacks {missing}")
        cols = [c for c in COLUMNS if c in values]
        sql = (f"INSERT OR REPLACE INTO results ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' for _ in cols)})")
        for attempt in range(20):
            try:
                with closing(self._connect()) as conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(sql, [values[c] for c in cols])
                    conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise write_failed(self.path, exc) from None  # e.g. "database or disk is full"
                time.sleep(0.05 * (attempt + 1))
            except (sqlite3.DatabaseError, OSError) as exc:
                raise write_failed(self.path, exc) from None
        raise sqlite3.OperationalError(f"results store {self.path} stayed locked; try again")

    def rows(self) -> list[dict[str, Any]]:
        """Every row, JSON columns decoded, oldest first."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            fetched = conn.execute("SELECT * FROM results ORDER BY id").fetchall()
        out = []
        for r in fetched:
            row = dict(r)
            for key in JSON_COLUMNS:
                row[key] = json.loads(row[key]) if row.get(key) else {}
            out.append(row)
        return out

    def run_rows(self, run_id: str) -> list[dict[str, Any]]:
        """Rows of one run."""
        return [r for r in self.rows() if r["run_id"] == run_id]

    def run_ids(self) -> Iterable[str]:
        """Distinct run ids."""
        return sorted({r["run_id"] for r in self.rows()})
