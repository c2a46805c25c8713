"""One owner of a run directory: its layout, its status, its id and its lock.

Layout of ``$PDEB_HOME/runs/<run-id>/``::

    config.yaml      the resolved config
    command.txt      the command that started the run
    status.json      state (running, finished, failed), pid and host, results or error
    log.txt          the run log
    metrics.jsonl    one line per logged step
    checkpoints/     step-N.pt, last.pt, best.pt
    eval/            one JSON per evaluated dataset
    resume.lock      held while a process resumes the run
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pdebench_core import paths
from pdebench_core.dir_layout import Entry
from pdebench_core.errors import UsageError

STATES = ("running", "finished", "failed", "interrupted", "damaged", "unknown")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """A run directory (see the module docstring for its layout).

    Args:
        path: The directory.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # -- ids -----------------------------------------------------------------------------
    @classmethod
    def of(cls, run_id: str) -> "RunDir":
        """The directory of a run id under the pdeb home (the id is validated)."""
        from pdebench_core.runs import validate_run_id

        return cls(paths.runs_dir() / validate_run_id(run_id))

    @classmethod
    def create(cls, run_id: str) -> "RunDir":
        """Create a new run directory atomically; an existing id is refused, even when two
        processes pick the same id at the same moment."""
        run = cls.of(run_id)
        run.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            run.path.mkdir()
        except FileExistsError:
            raise UsageError(f"run '{run_id}' already exists in {run.path}; pick another --run-id or --resume it") from None
        return run

    @property
    def run_id(self) -> str:
        """The run's id (the directory's name)."""
        return self.path.name

    # -- layout --------------------------------------------------------------------------
    config_file = Entry("config.yaml")
    status_file = Entry("status.json")
    log_file = Entry("log.txt")
    metrics_file = Entry("metrics.jsonl")
    checkpoints = Entry("checkpoints")
    last_checkpoint = Entry("checkpoints", "last.pt")
    eval_dir = Entry("eval")
    resume_lock_file = Entry("resume.lock")

    # -- status --------------------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        """The saved status; a damaged file reads as state ``damaged`` (never raises)."""
        try:
            status = json.loads(self.status_file.read_text())
        except FileNotFoundError:
            return {"state": "unknown"}
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return {"state": "damaged", "error": f"status.json unreadable: {str(exc).splitlines()[0][:120]}"}
        if not isinstance(status, dict) or status.get("state") not in STATES:
            return {"state": "damaged", "error": "status.json does not hold a known state"}
        return status

    def state(self) -> str:
        """The run's state; a ``running`` run whose process is gone from this host is ``interrupted``."""
        status = self.read_status()
        state = status["state"]
        if state == "running" and status.get("host") == socket.gethostname():
            pid = status.get("pid")
            if isinstance(pid, int) and not process_alive(pid):
                return "interrupted"
        return state

    def write_status(self, state: str, **fields: Any) -> None:
        """Replace ``status.json`` atomically, recording this process and host."""
        from pdebench_core.diskspace import write_failed

        status = {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "updated": time.time(),
                  **fields}
        tmp = self.status_file.with_name(f".status.json.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=2, default=str))
            os.replace(tmp, self.status_file)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_failed(self.status_file, exc) from None

    # -- resume lock ---------------------------------------------------------------------
    @contextmanager
    def resume_lock(self) -> Iterator[None]:
        """Hold the run's resume lock; a second concurrent resume is refused, naming the holder.

        A lock left by a process that died is taken over.
        """
        lock = self.resume_lock_file
        mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_json(lock)
                pid, host = holder.get("pid"), holder.get("host")
                if host == socket.gethostname() and isinstance(pid, int) and not process_alive(pid):
                    lock.unlink(missing_ok=True)  # stale: its process died
                    continue
                raise UsageError(f"run '{self.run_id}' is already being resumed by process {pid} on {host}; "
                                 f"wait for it, or remove {lock} if that process is gone") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(mine)
            break
        try:
            yield
        finally:
            if _read_json(lock).get("pid") == os.getpid():
                lock.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs() -> list[dict[str, Any]]:
    """Every run directory with its state and error; damaged entries are listed, not fatal."""
    root = paths.runs_dir()
    items = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir() or path.name.startswith("."):
            continue
        run = RunDir(path)
        status = run.read_status()
        items.append({"run_id": path.name, "state": run.state(), "error": status.get("error"), "path": str(path)})
    return items
