"""Data soundness: NaN/Inf found at preparation, damaged caches regenerated, writes that fail cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pdebench_core.cli import app
from pdebench_core.data import generation, integrity
from pdebench_core.data.canonical import write_canonical
from pdebench_core.errors import DataError
from pdebench_core.spec import DataSpec

runner = CliRunner()
SHAPE = (4, 12, 8, 8, 1)  # (N, T, X, Y, C)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _spec(name="toy"):
    return DataSpec(name=name, fields=("u",), spatial_shape=SHAPE[2:4], t_in=2, dt=0.1, n_frames=SHAPE[1])


def _splits(seed=0):
    rng = np.random.default_rng(seed)
    return {s: rng.standard_normal(SHAPE).astype(np.float32) for s in ("train", "val", "test")}


def _generator(splits, calls):
    def generate(scratch):
        calls.append(scratch)
        return splits
    return generate


def test_generated_nan_is_refused_and_not_cached(home):
    splits = _splits()
    splits["val"][2, 5, 3, 3, 0] = np.nan
    with pytest.raises(DataError, match=r"generated data for 'toy' has NaN or Inf values in split 'val', trajectory 2"):
        generation.cached_dataset("toy", {"seed": 0}, _spec(), _generator(splits, []), {"generator": "toy"})
    assert not list((home / "data").glob("toy-*.h5"))


def _ns2d_file(path: Path, bad=None):
    splits = {s: np.sin(np.linspace(0, 6, int(np.prod(SHAPE)))).reshape(SHAPE).astype(np.float32)
              for s in ("train", "val", "test")}
    if bad is not None:
        split, index, value = bad
        splits[split][index, 3, 2, 2, 0] = value
    write_canonical(path, splits, DataSpec(name="ns2d", fields=("vorticity",), spatial_shape=(8, 8), t_in=10,
                                           dt=1.0, n_frames=12))
    return path


def test_nan_in_a_file_names_file_split_and_trajectory(home, tmp_path):
    path = _ns2d_file(tmp_path / "bad.h5", bad=("test", 1, np.inf))
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--device", "cpu",
                                 f"data.ns2d.path={path}", "data.ns2d.n_train=4", "data.ns2d.n_val=4",
                                 "data.ns2d.n_test=4"])
    assert result.exit_code == 2, result.output
    assert "split 'test' trajectory 1 holds NaN or Inf" in result.output and str(path) in result.output
    assert "Traceback" not in result.output and "lower train.lr" not in result.output


def test_finite_scan_is_remembered_until_the_file_changes(home, tmp_path, monkeypatch):
    path = _ns2d_file(tmp_path / "good.h5")
    scans = []
    original = integrity.first_non_finite
    monkeypatch.setattr(integrity, "first_non_finite", lambda t: scans.append(1) or original(t))

    class Dataset:
        def split(self, name):
            from pdebench_core.data.canonical import H5Trajectories
            return H5Trajectories(path, name)

    integrity.check_finite("ns2d", Dataset())
    assert len(scans) == 3
    integrity.check_finite("ns2d", Dataset())
    assert len(scans) == 3  # remembered
    _ns2d_file(path, bad=("train", 0, np.nan))  # rewritten: size or mtime changes
    os.utime(path, ns=(1, 1))
    with pytest.raises(DataError, match="split 'train' trajectory 0"):
        integrity.check_finite("ns2d", Dataset())


def test_nan_in_a_plugins_in_memory_arrays(home):
    class Dataset:
        def split(self, name):
            data = np.zeros((3, 5, 4, 1), dtype=np.float32)
            if name == "val":
                data[1, 2, 0, 0] = -np.inf
            return list(data)

    with pytest.raises(DataError, match=r"dataset 'mine': split 'val' trajectory 1 holds NaN or Inf"):
        integrity.check_finite("mine", Dataset())


@pytest.mark.parametrize("trajectory_shape", [(5, 1, 16, 16), (5, 16, 16), (5, 16, 16, 2), (5, 20, 20, 1)])
def test_trajectories_unlike_their_spec_are_refused_before_training(trajectory_shape):
    from pdebench_core.data.base import TrajectoryDataset

    spec = DataSpec(name="mine", fields=("u",), spatial_shape=(16, 16), t_in=2)
    good = TrajectoryDataset(spec, {s: [np.zeros((5, 16, 16, 1), np.float32)] for s in ("train", "val", "test")})
    integrity.check_shapes("mine", good)
    bad = TrajectoryDataset(spec, {"train": [np.zeros(trajectory_shape, np.float32)], "val": [], "test": []})
    with pytest.raises(DataError, match=rf"dataset 'mine': split 'train' holds trajectories of shape "
                                        rf"\({', '.join(map(str, trajectory_shape))}\), but its spec says "
                                        rf"\(T, 16, 16, 1\)"):
        integrity.check_shapes("mine", bad)


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_cache_is_regenerated_with_a_message(home, damage, capsys):
    calls: list = []
    first = generation.cached_dataset("toy", {"seed": 0}, _spec(), _generator(_splits(), calls), {"generator": "toy"})
    path = Path(first.split("train").path)
    expected = np.stack(list(first.split("train")))
    if damage == "corrupt":
        _corrupt_middle(path)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = generation.cached_dataset("toy", {"seed": 0}, _spec(), _generator(_splits(), calls), {"generator": "toy"})
    assert len(calls) == 2  # generated again
    assert "is damaged" in capsys.readouterr().err
    np.testing.assert_array_equal(np.stack(list(again.split("train"))), expected)


def test_intact_cache_is_verified_once(home, monkeypatch):
    calls: list = []
    generation.cached_dataset("toy", {"seed": 0}, _spec(), _generator(_splits(), calls), {"generator": "toy"})
    digests = []
    original = integrity.split_digest
    monkeypatch.setattr(integrity, "split_digest", lambda a: digests.append(1) or original(a))
    for _ in range(3):
        generation.cached_dataset("toy", {"seed": 0}, _spec(), _generator(_splits(), calls), {"generator": "toy"})
    assert len(calls) == 1 and len(digests) == 3  # three splits checked once, then remembered


def test_cache_file_is_flushed_before_the_rename(home, tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    write_canonical(tmp_path / "f.h5", _splits(), _spec())
    assert events[:2] == ["fsync", "replace"]


def test_full_disk_while_writing_is_one_line_and_keeps_earlier_data(home, tmp_path, monkeypatch):
    import h5py

    path = write_canonical(tmp_path / "f.h5", _splits(0), _spec())
    before = path.read_bytes()

    def no_space(self, key, value):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", no_space)
    with pytest.raises(DataError, match=r"could not write .*f\.h5 \(.* free\): \[Errno 28\] No space left on device"):
        write_canonical(path, _splits(1), _spec())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]  # no temporary file left


@pytest.mark.parametrize("writer", ["checkpoint", "canonical"])
def test_a_signal_met_halfway_through_a_write_stays_a_stop_not_a_write_failure(home, tmp_path, monkeypatch, writer):
    """A library that meets a stop mid-write may raise its own error about its broken state
    (torch.save: "unexpected pos"); the run must end as stopped (resumable), not as failed."""
    import signal

    import h5py
    import torch

    from pdebench_core.checkpoint import save_checkpoint
    from pdebench_core.errors import Stopped

    def stopped_halfway(*args, **kwargs):
        try:
            raise Stopped("SIGTERM", signal.SIGTERM)
        finally:  # the library's own clean-up fails over its half-written state
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 21184 vs 21136")

    if writer == "checkpoint":
        monkeypatch.setattr(torch, "save", stopped_halfway)
        with pytest.raises(Stopped, match="stopped by SIGTERM"):
            save_checkpoint({"step": 1}, tmp_path / "last.pt")
    else:
        monkeypatch.setattr(h5py.Dataset, "__setitem__", stopped_halfway)
        with pytest.raises(Stopped, match="stopped by SIGTERM"):
            write_canonical(tmp_path / "f.h5", _splits(0), _spec())
    assert not list(tmp_path.iterdir())  # no temporary file left


def test_too_little_space_is_refused_before_writing(home, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match="not enough free space"):
        write_canonical(tmp_path / "f.h5", _splits(), _spec())
    assert not list(tmp_path.iterdir())


def test_stale_scratch_from_killed_generations_is_removed(home):
    data = home / "data"
    data.mkdir(parents=True)
    dead = 2**22 + 12345  # above any pid_max default: no such process
    (data / f".scratch-{dead}-ns2d-abcd").mkdir()
    (data / f".ns2d-x.h5.{dead}.tmp").write_bytes(b"partial")
    (data / f".scratch-{os.getpid()}-ns2d-live").mkdir()
    generation.cached_dataset("toy", {"seed": 0}, _spec(), _generator(_splits(), []), {"generator": "toy"})
    names = {p.name for p in data.iterdir()}
    assert f".scratch-{dead}-ns2d-abcd" not in names and f".ns2d-x.h5.{dead}.tmp" not in names
    assert f".scratch-{os.getpid()}-ns2d-live" in names


def test_results_store_on_a_full_disk_is_one_line(home, monkeypatch):
    import sqlite3

    from pdebench_core.results import ResultsStore

    store = ResultsStore()
    row = {"run_id": "r1", "model": "fno", "dataset": "ns2d", "task": "train", "metrics": {"l2re": 0.1}}
    store.add(row)
    real_connect = sqlite3.connect

    class FullConnection:
        def __init__(self, *a, **k):
            self.conn = real_connect(*a, **k)

        def execute(self, sql, *args):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

        def close(self):
            self.conn.close()

    monkeypatch.setattr(sqlite3, "connect", FullConnection)
    with pytest.raises(DataError, match=r"could not write .*results\.sqlite \(.* free\): database or disk is full"):
        store.add({**row, "run_id": "r2"})
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert [r["run_id"] for r in store.rows()] == ["r1"]  # earlier rows intact


def test_jsonl_sink_on_a_full_disk_is_one_line(home, tmp_path, monkeypatch):
    from pdebench_core.builtin.sinks import JsonlSink

    sink = JsonlSink(None, tmp_path)
    sink.log_step(1, {"loss": 1.0})
    real_open = os.open

    def full(path, flags, *args):
        if str(path).endswith(".jsonl"):
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(DataError, match=r"could not write .*metrics\.jsonl .*No space left"):
        sink.log_step(2, {"loss": 0.5})
    monkeypatch.setattr(os, "open", real_open)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_a_jsonl_line_cut_by_a_full_disk_is_taken_back(home, tmp_path, monkeypatch):
    """Half a line left behind would run into the next record, damaging it too."""
    import json

    from pdebench_core.builtin.sinks import JsonlSink

    sink = JsonlSink(None, tmp_path)
    sink.write_result({"dataset": "ns2d", "l2re": 0.1})
    real_write = os.write
    calls = []

    def half_then_full(fd, data):  # the disk takes half the line, then nothing
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(DataError, match=r"could not write .*results\.jsonl .*No space left"):
        sink.write_result({"dataset": "dr2d", "l2re": 0.2})
    monkeypatch.setattr(os, "write", real_write)
    sink.write_result({"dataset": "swe2d", "l2re": 0.3})  # space again
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["dataset"] for line in lines] == ["ns2d", "swe2d"]


def test_a_finished_status_that_cannot_be_written_says_how_to_record_it(home, monkeypatch):
    import json

    from pdebench_core.config import build_config
    from pdebench_core.diskspace import write_failed
    from pdebench_core.rundir import RunDir
    from pdebench_core.runner import execute

    real = RunDir.write_status

    def full_at_the_end(self, state, **fields):
        if state == "finished":
            raise write_failed(self.status_file, OSError(28, "No space left on device"))
        return real(self, state, **fields)

    monkeypatch.setattr(RunDir, "write_status", full_at_the_end)
    cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu",
                       run_id="full-at-the-end")
    with pytest.raises(DataError, match=r"could not write .*status\.json .*; run full-at-the-end finished its work "
                                        r"\(evaluations in .*eval\) but could not record it: free space, then "
                                        r"'pdeb run --resume full-at-the-end' records it"):
        execute(cfg, quiet=True)
    monkeypatch.setattr(RunDir, "write_status", real)
    status = json.loads(RunDir.of("full-at-the-end").status_file.read_text())
    assert status["state"] == "running"  # as the process that has ended left it
    status["pid"] = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                       text=True).stdout)
    RunDir.of("full-at-the-end").status_file.write_text(json.dumps(status))
    ctx = execute(build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu",
                               run_id="full-at-the-end"), resume=True, quiet=True)
    assert RunDir.of("full-at-the-end").state() == "finished" and ctx.results


def test_a_run_whose_config_cannot_be_written_leaves_no_directory(home, monkeypatch):
    import errno
    import pathlib

    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    real = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu",
                       run_id="no-room")
    with pytest.raises(DataError, match=r"could not write .*no-room/config.yaml .*No space left on device"):
        execute(cfg, quiet=True)
    assert not (home / "runs" / "no-room").exists()


def test_a_file_size_limit_too_small_for_the_data_is_one_line_before_writing(tmp_path):
    """HDF5 cannot recover from a write the limit cuts short (it crashes closing the file):
    the limit is checked first, like free space."""
    import resource
    import signal
    import subprocess
    import sys

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200 * 1024, 200 * 1024))

    env = {**os.environ, "PDEB_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "pdebench_core.cli", "data", "generate", "ns2d", "--profile",
                             "smoke"], capture_output=True, text=True, env=env, preexec_fn=limited, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: generating ns2d needs a file of about ")
    assert "ulimit -f" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "home").rglob("*.h5"))


def test_hdf5s_report_of_a_failed_write_keeps_the_systems_reason():
    """HDF5 spreads its report over lines; the one line keeps the system's message."""
    from pdebench_core.diskspace import write_failed

    exc = RuntimeError("Can't close dataset (file write failed: time = Wed Dec  2 03:12:02 2026\n, filename = 'x', "
                       "errno = 28, error message = 'No space left on device', buf = 0x5)")
    assert str(write_failed("/data/ns2d.h5", exc)).endswith("): Can't close dataset: No space left on device")



def test_a_resume_drops_a_step_record_cut_short_and_the_records_after_its_checkpoint(tmp_path):
    """A full disk mid-line left '{"step": 30, "loss": 0.0' without a newline: the resumed run's
    record of step 30 must not be glued to it, and records past the checkpoint go."""
    import json

    from pdebench_core.rundir import RunDir

    run = RunDir(tmp_path)
    records = [json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (10, 20, 30)]
    run.metrics_file.write_bytes("".join(records).encode() + b'{"step": 40, "loss": 0.0')
    assert run.drop_step_records_after(20) == 2
    assert run.metrics_file.read_text() == "".join(records[:2])
    run.metrics_file.write_bytes(records[0].encode() + b'{"step": 15, "loss": 0.5}')  # whole, but no newline
    assert run.drop_step_records_after(20) == 0
    assert run.metrics_file.read_text().splitlines() == [records[0].strip(), '{"step": 15, "loss": 0.5}']
    run.metrics_file.write_bytes(records[0].encode() + b'{"step": 25, "note": "\xff"}\n')  # not UTF-8
    assert run.drop_step_records_after(20) == 1 and run.metrics_file.read_text() == records[0]


def test_run_directory_entries_that_cannot_be_written_are_one_line(home):
    """A file where the checkpoints folder should be, or a log that cannot be appended to: one
    line naming it, and the run's status stays true (no traceback, no 'running' left behind)."""
    from pdebench_core.config import build_config
    from pdebench_core.rundir import RunDir
    from pdebench_core.runner import execute

    def cfg(steps):
        return build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id="entries",
                            overrides=[f"train.max_steps={steps}", "train.checkpoint_every=2",
                                       "train.scheduler=constant", "model.width=4", "model.modes=2"])

    execute(cfg(2), quiet=True)
    run = RunDir.of("entries")
    for child in run.checkpoints.iterdir():
        child.unlink()
    run.checkpoints.rmdir()
    run.checkpoints.write_text("in the way")
    with pytest.raises(DataError, match=r"checkpoints is a file where the run keeps its checkpoints; move it aside"):
        execute(cfg(4), resume=True, quiet=True)
    assert run.read_status()["state"] == "finished"  # a failed extension keeps the finished run
    run.checkpoints.unlink()
    run.log_file.unlink()
    run.log_file.mkdir()  # a folder where the log should be
    with pytest.raises(DataError, match=r"could not write .*log.txt: .*Is a directory"):
        execute(cfg(4), resume=True, quiet=True)
    assert run.read_status()["state"] == "finished"


def test_a_data_cache_that_cannot_be_written_is_called_so(home):
    """Generating data writes into the cache: a permission error there is not 'could not be read'."""
    import errno
    from types import SimpleNamespace

    from pdebench_core import paths
    from pdebench_core.workflow import _dataset_failure

    scratch = paths.data_dir() / ".scratch-1-ns2d"
    failure = _dataset_failure(SimpleNamespace(name="ns2d"), PermissionError(errno.EACCES, "Permission denied",
                                                                             str(scratch)))
    assert str(failure).startswith(f"could not write {scratch}: ") and "set PDEB_HOME" in str(failure)
    elsewhere = _dataset_failure(SimpleNamespace(name="ns2d"), PermissionError(errno.EACCES, "Permission denied",
                                                                               "/srv/data/ns.h5"))
    assert str(elsewhere).startswith("dataset 'ns2d' could not be read: ")


def test_the_file_size_limit_is_checked_against_the_largest_file_not_the_total(tmp_path, monkeypatch):
    """Two files of 3 and 2 MB under a 4 MB limit: fine; one of 5 MB: refused."""
    from pdebench_core import diskspace

    monkeypatch.setattr(diskspace, "file_size_limit", lambda: 4 * 2**20)
    diskspace.check_free_space(tmp_path, 5 * 2**20, "two files", largest_file=3 * 2**20)
    with pytest.raises(DataError, match=r"one file needs a file of about 5.0 MiB, more than this process may write"):
        diskspace.check_free_space(tmp_path, 5 * 2**20, "one file")



WRITE_PAST_THE_FILE_SIZE_LIMIT = """
import os, resource, signal, sys
import numpy as np
from pdebench_core import diskspace
from pdebench_core.data import canonical
from pdebench_core.data.layouts import conversion
from pdebench_core.spec import DataSpec

diskspace.check_free_space = conversion.check_free_space = lambda *args, **kwargs: None  # let the writes meet it
spec = DataSpec(name="toy", fields=("u",), spatial_shape=(32, 32), t_in=3, n_frames=10)
source = canonical.write_canonical(sys.argv[1] + "/source.h5", {"train": np.ones((60, 10, 32, 32, 1), "float32")}, spec)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as one past a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
for write in (lambda: canonical.write_canonical(sys.argv[1] + "/big.h5", {"train": np.ones((100, 10, 32, 32, 1),
                                                                          "float32")}, spec),
              lambda: conversion.convert(source, sys.argv[1] + "/converted.h5")):
    try:
        write()
    except Exception as exc:
        print(type(exc).__name__, str(exc).splitlines()[0])
print(sorted(os.listdir(sys.argv[1])))
"""


def test_a_write_that_fails_part_way_leaves_hdf5_nothing_to_retry(tmp_path):
    """After a failed write, HDF5 flushed again at every object's release and at exit (printing
    tracebacks, then crashing the process); the half-written file is closed cleanly instead."""
    pytest.importorskip("resource")
    proc = subprocess.run([sys.executable, "-c", WRITE_PAST_THE_FILE_SIZE_LIMIT, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    big, converted, left = proc.stdout.splitlines()
    assert big.startswith(f"DataError could not write {tmp_path / 'big.h5'} (") and "File too large" in big
    assert converted.startswith(f"DataError could not write {tmp_path / 'converted.h5'} (")
    assert left == "['source.h5']"  # no temporary file left beside the source
