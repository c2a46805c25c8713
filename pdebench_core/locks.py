"""Which process holds what: process identities, and lock files that name their holder."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from pdebench_core.errors import UsageError

#: Seconds after which a lock file that names no holder is taken for abandoned (a process
#: writes its name right after creating the lock; a full disk can stop it).
STALE_EMPTY_LOCK_S = 5.0

#: Errors that say a folder cannot be written at all (rather than that the disk is full).
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def process_alive(pid: int, identity: str | None = None) -> bool:
    """Whether a process with this id exists on this machine (and, given the ``identity``
    :func:`process_identity` recorded for it, is still that process: after a reboot, or once
    the id is reused, another process may hold it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if identity:
        now = process_identity(pid)
        return now is None or now == identity
    return True


def process_identity(pid: int | None = None) -> str | None:
    """``"<boot id>:<start time>"`` of a process on Linux (``None`` where ``/proc`` lacks them):
    two processes that share an id never share both."""
    pid = os.getpid() if pid is None else pid
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name
    except (OSError, IndexError):
        return None
    return f"{boot}:{start}"


@contextmanager
def holder_lock(lock: Path, busy: Callable[[Any, Any], str], not_writable: Callable[[str], str]) -> Iterator[None]:
    """Hold ``lock``, a file naming this process, for the block; removed afterwards.

    A lock whose process died on this machine, or that names nobody after
    :data:`STALE_EMPTY_LOCK_S` (its writer met a full disk), is taken over.

    Args:
        lock: The lock file (its folder exists).
        busy: ``(pid, host) -> message`` of the refusal when a live process holds it.
        not_writable: ``reason -> message`` when the folder cannot be written (permissions,
            a read-only file system).

    Raises:
        UsageError: Another process holds the lock, or its folder cannot be written.
        DataError: The lock could not be written (a full disk); nothing is left behind.
    """
    from pdebench_core.diskspace import write_failed

    mine = json.dumps({"pid": os.getpid(), "process": process_identity(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder, version = _holder_of(lock)
            pid, host = holder.get("pid"), holder.get("host")
            dead = host == socket.gethostname() and isinstance(pid, int) and not process_alive(pid, holder.get("process"))
            if dead or (pid is None and _age(lock) > STALE_EMPTY_LOCK_S):
                _take_over(lock, version)
                continue
            raise UsageError(busy(pid, host)) from None
        except OSError as exc:
            if exc.errno in _NOT_WRITABLE:
                raise UsageError(not_writable(exc.strerror or str(exc))) from None
            raise write_failed(lock, exc) from None
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(mine)
        except OSError as exc:
            lock.unlink(missing_ok=True)
            raise write_failed(lock, exc) from None
        break
    else:  # taken over twice and still not ours: another process is taking it over too
        holder = _holder_of(lock)[0]
        raise UsageError(busy(holder.get("pid"), holder.get("host")))
    try:
        yield
    finally:
        if _holder_of(lock)[0].get("pid") == os.getpid():
            lock.unlink(missing_ok=True)


def _take_over(lock: Path, abandoned: tuple | None) -> None:
    """Remove ``lock`` if it is still the file judged abandoned (``abandoned``: its
    :func:`_holder_of` version). Takeovers of one lock take turns (an advisory lock on a file
    beside it, which the system gives back when its holder dies), so a process that read the
    abandoned lock late never removes the fresh lock of one that took over before it."""
    if abandoned is None:
        return
    try:
        guard = os.open(lock.with_name(f".{lock.name}.takeover"), os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        return  # nowhere to take turns: the lock stays, and its holder is reported busy
    try:
        with _exclusive(guard):
            if _holder_of(lock)[1] == abandoned:
                lock.unlink(missing_ok=True)
    finally:
        os.close(guard)


@contextmanager
def _exclusive(fd: int) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``fd`` (``flock``; where there is none, no turns)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _holder_of(lock: Path) -> tuple[dict[str, Any], tuple | None]:
    """What the lock says of its holder, and which version of the file said it: inode,
    modification time and content, together unlike any other file's (an inode number alone
    is soon reused); None when it cannot be read."""
    try:
        with open(lock, "rb") as handle:
            stat, text = os.fstat(handle.fileno()), handle.read()
    except OSError:
        return {}, None
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    return (data if isinstance(data, dict) else {}), (stat.st_ino, stat.st_mtime_ns, text)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def remove_left_by_dead_writers(folder: Path) -> None:
    """Remove temporary files and scratch folders whose writer was killed (``kill -9``, the
    OOM killer) before it could clean up.

    Their names carry the writing process's id (``.<file>.<pid>.tmp``, ``.scratch-<pid>-...``);
    those of processes still alive on this machine are left alone.
    """
    import shutil

    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        pid = _writer_pid(entry.name)
        if pid is None or process_alive(pid):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _writer_pid(name: str) -> int | None:
    parts = name.split(".") if name.endswith(".tmp") else name.split("-")
    if name.startswith(".scratch-") and len(parts) > 2 and parts[1].isdigit():
        return int(parts[1])
    if name.startswith(".") and name.endswith(".tmp") and len(parts) > 2 and parts[-2].isdigit():
        return int(parts[-2])
    return None
