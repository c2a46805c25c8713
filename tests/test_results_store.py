"""The results store keeps provenance columns, and a store written by an earlier pdeb is migrated, not refused."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from pdebench_core import results
from pdebench_core.results import ResultsStore

# The schema every pdeb wrote before the store carried a version.
OLD_SCHEMA = """
CREATE TABLE results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, model TEXT NOT NULL, dataset TEXT NOT NULL,
    task TEXT NOT NULL, metrics TEXT NOT NULL, seed INTEGER, n_params INTEGER, train_time_s REAL, device TEXT,
    versions TEXT, config_hash TEXT, config TEXT, profile TEXT, data_hash TEXT, command TEXT, extra TEXT,
    created_at TEXT NOT NULL, UNIQUE (run_id, dataset, task)
)"""


def write_old_store(path, rows):
    conn = sqlite3.connect(path)
    conn.execute(OLD_SCHEMA)
    for run_id, seed, value, data in rows:
        config = {"run": {"seed": seed, "run_id": run_id, "task": "train"}, "model": {"name": "fno"},
                  "data": {"ns2d": data}}
        conn.execute("INSERT INTO results (run_id, model, dataset, task, metrics, seed, n_params, config, profile, "
                     "data_hash, extra, created_at) VALUES (?, 'fno', 'ns2d', 'train', ?, ?, 4505, ?, 'small', "
                     "'0123456789abcdef', ?, '2024-01-01T00:00:00')",
                     (run_id, json.dumps({"l2re": value}), seed, json.dumps(config), json.dumps({"horizon": 20})))
    conn.commit()
    conn.close()


def test_an_old_store_is_migrated_in_place_with_a_backup(fresh_home):
    path = fresh_home / "results.sqlite"
    fresh_home.mkdir(parents=True)
    write_old_store(path, [("old-a", 0, 0.1, {"nu": 0.001}), ("old-b", 1, 0.3, {"path": "/data/ns_V1e-3.h5"})])
    store = ResultsStore()
    rows = {r["run_id"]: r for r in store.rows()}
    backup = results.backup_path(path, 1)
    assert backup.is_file()  # the store as it was, kept beside it
    with sqlite3.connect(backup) as conn:
        assert [r[0] for r in conn.execute("SELECT run_id FROM results ORDER BY id")] == ["old-a", "old-b"]
        assert "data_source" not in {r[1] for r in conn.execute("PRAGMA table_info(results)")}
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == results.SCHEMA_VERSION
    assert rows["old-a"]["data_source"] == "generated" and rows["old-b"]["data_source"] == "ns_V1e-3.h5"
    assert rows["old-a"]["horizon"] == 20 and rows["old-a"]["grid"] is None  # what the old row did not say stays empty
    assert rows["old-a"]["data_hash"] == "spec-0123456789abcdef"  # marked: it hashed only the spec
    store.add({"run_id": "new", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.2},
               "grid": "64x64", "t_in": 10, "horizon": 20, "data_source": "generated", "n_train": 8})
    assert [r["run_id"] for r in ResultsStore().rows()] == ["old-a", "old-b", "new"]
    assert len(list(fresh_home.glob("results.sqlite.v*.bak"))) == 1  # migrated once


def test_the_leaderboard_reads_a_migrated_store(fresh_home):
    from pdebench_core.cli_results import register
    import typer

    fresh_home.mkdir(parents=True)
    write_old_store(fresh_home / "results.sqlite", [("old-a", 0, 0.1, {"nu": 0.001}), ("old-b", 1, 0.3, {"nu": 0.001})])
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["leaderboard", "--source", "local", "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["n"] == 2 and row["l2re"] == 0.2 and row["data_hash"] == "spec-0123456789abcdef"


def test_a_new_store_has_the_provenance_columns(fresh_home):
    store = ResultsStore()
    store.add({"run_id": "r", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.2},
               "data_source": "file.h5", "dataset_hash": "abc", "n_train": 8, "t_in": 10, "horizon": 20,
               "grid": "64x64"})
    (row,) = store.rows()
    assert {k: row[k] for k in results.PROVENANCE_COLUMNS} == {
        "data_source": "file.h5", "dataset_hash": "abc", "n_train": 8, "t_in": 10, "horizon": 20, "grid": "64x64"}
    assert not list(fresh_home.glob("*.bak"))  # nothing to migrate


def test_a_damaged_store_is_one_line_for_the_leaderboard_and_for_a_run(fresh_home, pdeb):
    fresh_home.mkdir(parents=True, exist_ok=True)
    (fresh_home / "results.sqlite").write_bytes(b"\x00garbage, not SQLite" * 100)
    env = {"PDEB_HOME": str(fresh_home)}
    for args in (("leaderboard",), ("run", "--model", "persistence", "--data", "ns2d", "--task", "evaluate",
                                    "--profile", "smoke", "--quiet")):
        result = pdeb(*args, env=env)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert len(errors) == 1 and "results.sqlite is damaged (file is not a database); move it aside" in errors[0]


def test_a_row_with_damaged_json_is_left_out_with_a_warning(fresh_home, capsys):
    store = ResultsStore()
    store.add({"run_id": "good", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.1}})
    store.add({"run_id": "bad", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.2}})
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE results SET metrics='{bad' WHERE run_id='bad'")
    assert [r["run_id"] for r in store.rows()] == ["good"]
    assert "holds damaged JSON in 'metrics'; left out" in capsys.readouterr().err


def test_a_store_in_a_folder_that_cannot_be_written_is_still_read(tmp_path, monkeypatch):
    """A read-only mount or archive: SQLite cannot open its write-ahead log beside the store, so
    the store is read as an immutable file; resuming from there is refused by the run, not here."""
    import os

    store = ResultsStore(tmp_path / "archive" / "results.sqlite")
    store.add({"run_id": "kept", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.1}})
    reader = ResultsStore(store.path)

    def read_only_mount(self):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(ResultsStore, "_connect", read_only_mount)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert [(r["run_id"], r["metrics"]) for r in reader.rows()] == [("kept", {"l2re": 0.1})]
    monkeypatch.setattr(os, "access", lambda path, mode: True)  # writable: the failure is the store's
    with pytest.raises(results.DataError, match="cannot open results store .*unable to open database file"):
        reader.rows()


def test_an_unusable_store_path_is_refused_before_the_run_computes(tmp_path, monkeypatch):
    """sinks.sqlite.path that cannot hold a database (here a folder) stops the run at once, with
    no talk of free space, instead of after training and evaluation."""
    from typer.testing import CliRunner

    from pdebench_core.cli import app

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = CliRunner().invoke(app, ["run", "--model", "persistence", "--data", "ns2d", "--task", "evaluate",
                                      "--profile", "smoke", "--quiet", f"sinks.sqlite.path={folder}"])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"could not write {folder}:" in output and "free" not in output
    assert not (tmp_path / "home" / "data").exists() or not list((tmp_path / "home" / "data").glob("*.h5"))


def test_a_failing_sink_does_not_keep_the_row_from_the_others(tmp_path):
    from pdebench_core.runs import RunContext

    class Failing:
        def write_result(self, row):
            raise RuntimeError("store unreachable")

    class Keeping:
        rows: list = []

        def write_result(self, row):
            self.rows.append(row)

    keeping = Keeping()
    ctx = RunContext(cfg=None, run_id="r", run_dir=tmp_path, device=None, sinks=[Failing(), keeping])
    ctx.write_result({"run_id": "r"})
    ctx.write_result({"run_id": "r2"})
    assert keeping.rows == [{"run_id": "r"}, {"run_id": "r2"}]
    assert list(ctx.undelivered) == ["Failing"] and str(ctx.undelivered["Failing"]) == "store unreachable"


def test_a_store_another_process_writes_to_is_read_without_waiting_and_a_write_waits_boundedly(tmp_path,
                                                                                                monkeypatch):
    """The leaderboard reads while a run holds the write lock; a writer that never gets the lock
    ends with one line naming the store, not a traceback after twenty minutes."""
    import sqlite3
    import time

    from pdebench_core.errors import DataError

    store = ResultsStore(tmp_path / "results.sqlite")
    store.add({"run_id": "r1", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.1}})
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        monkeypatch.setattr(results, "BUSY_TIMEOUT_S", 0.2)
        started = time.monotonic()
        assert [r["run_id"] for r in ResultsStore(store.path).rows()] == ["r1"]
        assert time.monotonic() - started < 5
        with pytest.raises(DataError, match=r"results store .* stayed locked by another process; try again"):
            ResultsStore(store.path).add({"run_id": "r2", "model": "fno", "dataset": "ns2d", "task": "train",
                                          "metrics": {"l2re": 0.2}})
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_full_disk_is_not_called_a_damaged_store(tmp_path):
    """Moving the store aside, as for a damaged one, would throw away every result."""
    import sqlite3

    message = str(ResultsStore(tmp_path / "r.sqlite")._unusable(sqlite3.OperationalError("disk I/O error")))
    assert "damaged" not in message and "free space and try again: the store itself is kept" in message
    closed = str(ResultsStore(tmp_path / "r.sqlite")._unusable(sqlite3.OperationalError("unable to open database")))
    assert "damaged" not in closed and "free space" not in closed and "check that its folder exists" in closed
