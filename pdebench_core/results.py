"""The results store: an embedded SQLite database of evaluation rows.

One row per (run, dataset, task). Writers use WAL mode, an immediate transaction
and a generous busy timeout, so runs finishing at the same moment all land.

The schema carries a version (SQLite's ``user_version``). A store written by an earlier
pdeb is migrated in place the first time it is opened: a copy of it is kept next to it
(``results.sqlite.v1.bak``), the new columns are added and filled from what the old rows
recorded (their config and ``extra``), and nothing is refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable

from pdebench_core import paths
from pdebench_core.diskspace import write_failed
from pdebench_core.errors import DataError

#: Version 1: the store before versions were recorded (``user_version`` 0). Version 2 adds the
#: provenance columns below.
SCHEMA_VERSION = 2
PROVENANCE_COLUMNS = {
    "data_source": "TEXT",    # 'generated' or the name of the file the data was read from
    "dataset_hash": "TEXT",   # content fingerprint + split plan of this row's dataset
    "n_train": "INTEGER",     # train trajectories of that dataset
    "t_in": "INTEGER",        # input frames of the rollout
    "horizon": "INTEGER",     # steps rolled out and scored
    "grid": "TEXT",           # the dataset's spatial grid, e.g. '64x64'
}
COLUMNS = (
    "run_id", "model", "dataset", "task", "metrics", "seed", "n_params", "train_time_s", "device",
    "versions", "config_hash", "config", "profile", "data_hash", "command", "extra", "created_at",
    *PROVENANCE_COLUMNS,
)
JSON_COLUMNS = ("metrics", "versions", "config", "extra")
#: Older rows' ``data_hash`` hashed only the spec and split sizes; migration marks them so.
LEGACY_HASH_PREFIX = "spec-"

SCHEMA = f"""
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
    {''.join(f'{name} {kind},' for name, kind in PROVENANCE_COLUMNS.items())}
    UNIQUE (run_id, dataset, task)
)
"""


def backup_path(path: Path, version: int) -> Path:
    """Where the copy of a store of schema ``version`` is kept before it is migrated."""
    return path.with_name(f"{path.name}.v{version}.bak")


def _legacy_values(row: sqlite3.Row) -> dict[str, Any]:
    """Provenance of a row written before version 2, from what it recorded then."""
    try:
        config = json.loads(row["config"] or "{}")
        extra = json.loads(row["extra"] or "{}")
    except ValueError:
        config, extra = {}, {}
    section = ((config.get("data") or {}).get(row["dataset"]) or {}) if isinstance(config, dict) else {}
    path = section.get("path") if isinstance(section, dict) else None
    horizon = extra.get("horizon") if isinstance(extra, dict) else None
    old_hash = row["data_hash"]
    return {
        "data_source": Path(str(path)).name if path else "generated",
        "horizon": int(horizon) if isinstance(horizon, (int, float)) else None,
        "data_hash": f"{LEGACY_HASH_PREFIX}{old_hash}" if old_hash else None,
    }


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store of an older schema to :data:`SCHEMA_VERSION` (inside the caller's transaction)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    for name, kind in PROVENANCE_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
    conn.row_factory = sqlite3.Row
    for row in conn.execute("SELECT id, dataset, config, extra, data_hash FROM results").fetchall():
        values = _legacy_values(row)
        conn.execute("UPDATE results SET data_source = ?, horizon = COALESCE(horizon, ?), data_hash = ? WHERE id = ?",
                     (values["data_source"], values["horizon"], values["data_hash"], row["id"]))
    conn.row_factory = None
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


#: Seconds SQLite waits for another process's lock before a statement gives up.
BUSY_TIMEOUT_S = 60.0
#: Tries of a write that finds the store locked, each after the busy timeout.
LOCK_ATTEMPTS = 3


def _fetch_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT * FROM results ORDER BY id").fetchall()


def _locked(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class ResultsStore:
    """Read and write result rows.

    Args:
        path: SQLite file (default: ``$PDEB_HOME/results.sqlite``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else paths.results_db()
        self._current = False

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        if not self._current:
            self._bring_up_to_date(conn)
            self._current = True
        return conn

    def _bring_up_to_date(self, conn: sqlite3.Connection) -> None:
        """Create the table, or migrate one of an older schema (after keeping a copy). A store
        that is up to date is only read, so a reader never waits for another process's write."""
        if self._up_to_date(conn):
            return
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others then see the new version
        try:
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='results'").fetchone()
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if not exists:
                conn.execute(SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version < SCHEMA_VERSION:
                # a second connection reads the store as committed (WAL), while this one holds the write lock
                with closing(sqlite3.connect(self.path)) as source, \
                        closing(sqlite3.connect(backup_path(self.path, max(version, 1)))) as copy:
                    source.backup(copy)
                _migrate(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _up_to_date(conn: sqlite3.Connection) -> bool:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='results'").fetchone()
        return bool(exists) and int(conn.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION

    def check_writable(self) -> None:
        """Open the store (creating it if needed), so that a path that cannot hold it is refused
        before a run computes anything.

        Raises:
            DataError: the path cannot hold a database (a folder, no permission, a damaged file).
        """
        try:
            with closing(self._connect()):
                pass
        except sqlite3.OperationalError as exc:
            if _locked(exc):
                return  # another process writes: the store is there and writable
            raise write_failed(self.path, exc, "set sinks.sqlite.path to a file you can write") from None
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        except OSError as exc:
            raise write_failed(self.path, exc, "set sinks.sqlite.path to a file you can write") from None

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
        for attempt in range(LOCK_ATTEMPTS):  # each waits up to the busy timeout for the lock
            try:
                with closing(self._connect()) as conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(sql, [values[c] for c in cols])
                    conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    raise write_failed(self.path, exc) from None  # e.g. "database or disk is full"
                time.sleep(0.05 * (attempt + 1))
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
            except OSError as exc:
                raise write_failed(self.path, exc) from None
        raise self._locked_error()

    def _locked_error(self) -> DataError:
        return DataError(f"results store {self.path} stayed locked by another process; try again (a run's rows are "
                         f"also in its results.jsonl, and 'pdeb run --resume RUN_ID' sends them again)")

    def _unusable(self, exc: Exception) -> DataError:
        """The one-line error for a store SQLite cannot use: damaged (not a database, corrupt
        pages), or a disk that is full or failing, which is no reason to give the store up."""
        reason = str(exc).splitlines()[0][:120]
        if any(word in reason for word in ("disk I/O error", "disk is full")):
            return DataError(f"cannot use results store {self.path} ({reason}); if the disk is full, free space and "
                             f"try again: the store itself is kept as it is")
        if "unable to open" in reason:
            return DataError(f"cannot open results store {self.path} ({reason}); check that its folder exists and "
                             f"can be written (sinks.sqlite.path chooses another file)")
        return DataError(f"results store {self.path} is damaged ({reason}); move it aside "
                         f"and pdeb starts a new, empty one (each run directory keeps its own rows in results.jsonl)")

    def rows(self) -> list[dict[str, Any]]:
        """Every row, JSON columns decoded, oldest first."""
        if not self.path.exists():
            return []
        try:
            with closing(self._connect()) as conn:
                fetched = _fetch_rows(conn)
        except sqlite3.OperationalError as exc:
            if _locked(exc):
                raise self._locked_error() from None
            fetched = self._read_only_rows(exc)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        out = []
        for r in fetched:
            row = dict(r)
            try:
                for key in JSON_COLUMNS:
                    row[key] = json.loads(row[key]) if row.get(key) else {}
            except ValueError:  # an edited or damaged row: left out, said once per row
                print(f"warning: results store {self.path}: row {row.get('id')} ({row.get('run_id')}, "
                      f"{row.get('dataset')}) holds damaged JSON in '{key}'; left out", file=sys.stderr)
                continue
            out.append(row)
        return out

    def _read_only_rows(self, failure: sqlite3.OperationalError) -> list[sqlite3.Row]:
        """The rows of a store whose folder cannot be written (a read-only mount, an archive):
        opened read-only, or, where SQLite cannot make the files its write-ahead log needs beside
        it, as an immutable file. A store of an older schema, which would need migrating, is
        refused like any unusable one."""
        if os.access(self.path.parent, os.W_OK) and "readonly" not in str(failure):
            raise self._unusable(failure) from None
        for mode in ("mode=ro", "mode=ro&immutable=1"):  # read-only with the log's rows; else the file alone
            try:
                with closing(sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True)) as conn:
                    if not self._up_to_date(conn):
                        raise self._unusable(failure) from None
                    return _fetch_rows(conn)
            except sqlite3.DatabaseError:
                continue
        raise self._unusable(failure) from None

    def run_rows(self, run_id: str) -> list[dict[str, Any]]:
        """Rows of one run."""
        return [r for r in self.rows() if r["run_id"] == run_id]

    def run_ids(self) -> Iterable[str]:
        """Distinct run ids."""
        return sorted({r["run_id"] for r in self.rows()})
