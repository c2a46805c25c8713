"""Lock files that name their holder: refused while held, taken over when abandoned."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from pdebench_core.errors import DataError, UsageError
from pdebench_core.locks import holder_lock


def _busy(pid, host):
    return f"held by {pid} on {host}"


def _not_writable(reason):
    return f"cannot write: {reason}"


def _age(path, seconds):
    old = path.stat().st_mtime - seconds
    os.utime(path, (old, old))


def test_a_live_holder_is_named_and_the_lock_is_given_back(tmp_path):
    lock = tmp_path / "driver.lock"
    with holder_lock(lock, _busy, _not_writable):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(UsageError, match=f"held by {os.getpid()} on "):
            with holder_lock(lock, _busy, _not_writable):
                pass
    assert not lock.exists()


def test_locks_of_dead_processes_and_empty_old_locks_are_taken_over(tmp_path):
    import socket

    lock = tmp_path / "driver.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with holder_lock(lock, _busy, _not_writable):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text("")  # created, never written: a full disk
    with pytest.raises(UsageError, match="held by None"):  # may still be written by its creator
        with holder_lock(lock, _busy, _not_writable):
            pass
    _age(lock, 60)
    with holder_lock(lock, _busy, _not_writable):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_full_disk_leaves_no_lock_and_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    lock = tmp_path / "driver.lock"

    def disk_full(fd, mode):
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fdopen", disk_full)
        with pytest.raises(DataError, match=r"could not write .*driver.lock .*No space left on device"):
            with holder_lock(lock, _busy, _not_writable):
                pass
    assert not lock.exists()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(UsageError, match="cannot write: Read-only file system"):
        with holder_lock(lock, _busy, _not_writable):
            pass


def test_a_lock_another_process_took_over_meanwhile_is_left_to_it(tmp_path):
    """Two processes find the same dead holder; the second to act must not remove the lock the
    first has just made."""
    from pdebench_core import locks

    lock = tmp_path / "driver.lock"
    lock.write_text(json.dumps({"pid": 2**22 + 1, "host": "here"}))
    _, judged = locks._holder_of(lock)  # the second process judges this one abandoned...
    lock.unlink()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "here"}))  # ...as the first replaces it
    locks._take_over(lock, judged)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    locks._take_over(lock, locks._holder_of(lock)[1])  # the file judged is the one there: removed
    assert not lock.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".driver.lock.takeover"]  # where takeovers take turns


def test_takeovers_of_one_lock_take_turns(tmp_path):
    """While one process checks and removes an abandoned lock, another cannot: it waits."""
    import fcntl
    import threading

    from pdebench_core import locks

    lock = tmp_path / "driver.lock"
    lock.write_text(json.dumps({"pid": 2**22 + 1, "host": "here"}))
    judged = locks._holder_of(lock)[1]
    guard = os.open(tmp_path / ".driver.lock.takeover", os.O_CREAT | os.O_RDWR)
    fcntl.flock(guard, fcntl.LOCK_EX)  # a takeover under way elsewhere
    late = threading.Thread(target=locks._take_over, args=(lock, judged))
    late.start()
    late.join(0.5)
    assert late.is_alive() and lock.exists()  # waiting its turn, nothing removed
    lock.unlink()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "here"}))  # the first one's fresh lock
    fcntl.flock(guard, fcntl.LOCK_UN)
    os.close(guard)
    late.join(10)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
