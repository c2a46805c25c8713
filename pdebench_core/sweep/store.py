"""The sweep directory: its layout, its plan, one record per combination, and its lock.

Layout of ``$PDEB_HOME/sweeps/<sweep-id>/``::

    plan.json            shared options, every combination and its config hash
    jobs/<N>.json        combination N: run id, state, attempt, log file, error
    logs/<N>-<A>.log     everything attempt A of combination N printed
    submitit/            submitit's job files and its own logs (submitit launchers)
    submitted.json       submitit job ids of the combinations last submitted
    driver.lock          held by the process driving the sweep

Each job record is written by one process at a time (the driver before it starts a job and
after the job has ended, the job itself while it runs), atomically.
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
from pdebench_core.locks import holder_lock, process_identity
from pdebench_core.sweep.plan import Plan

#: States of a job record. ``queued``: handed to a launcher; ``interrupted``: stopped by the user.
JOB_STATES = ("queued", "running", "finished", "failed", "interrupted")


def sweeps_dir() -> Path:
    """Where sweeps live: ``$PDEB_HOME/sweeps``."""
    return paths.home() / "sweeps"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically (a reader never sees half a file)."""
    from pdebench_core.diskspace import write_failed

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from None


class SweepDir:
    """A sweep's directory (see the module docstring for its layout).

    Args:
        sweep_id: The sweep's id.
        root: Where sweeps live (default :func:`sweeps_dir`).
    """

    def __init__(self, sweep_id: str, root: Path | None = None) -> None:
        self.sweep_id = sweep_id
        self.path = (root or sweeps_dir()) / sweep_id

    plan_file = Entry("plan.json")
    submitit_dir = Entry("submitit")
    submissions_file = Entry("submitted.json")

    def job_file(self, index: int) -> Path:
        return self.path / "jobs" / f"{index:03d}.json"

    def log_file(self, index: int, attempt: int) -> Path:
        return self.path / "logs" / f"{index:03d}-{attempt}.log"

    # -- plan ------------------------------------------------------------------------------
    def load_plan(self) -> Plan:
        """The saved plan.

        Raises:
            UsageError: There is no such sweep, or its plan is unreadable.
        """
        damaged = UsageError(f"the plan of sweep '{self.sweep_id}' ({self.plan_file}) is damaged; move it aside "
                             f"and run the same 'pdeb sweep' command again (finished runs are kept and skipped)")
        if not self.plan_file.exists():
            known = ", ".join(i for i in sweep_ids()[-5:] if i != self.sweep_id) or "none yet"
            raise UsageError(f"no sweep '{self.sweep_id}' under {self.path.parent} (known: {known}); "
                             f"start one with 'pdeb sweep'")
        data = _read_json(self.plan_file)
        if not isinstance(data, dict):
            raise damaged
        try:
            return Plan.from_dict(data)
        except (KeyError, TypeError, ValueError):
            raise damaged from None

    def save_plan(self, plan: Plan) -> None:
        """Keep the plan; a sweep of this id with other runs is refused."""
        if self.plan_file.exists():
            saved = self.load_plan()
            if not saved.same_runs_as(plan):
                raise UsageError(f"sweep '{self.sweep_id}' already exists with other runs ({self.plan_file}); "
                                 f"pick another --sweep-id, or leave it out to name the sweep by its runs")
            return
        _write_json(self.plan_file, plan.to_dict())

    # -- job records -----------------------------------------------------------------------
    def read_job(self, index: int) -> dict[str, Any] | None:
        """The record of combination ``index`` (``None`` before it was first started)."""
        record = _read_json(self.job_file(index))
        if not isinstance(record, dict) or record.get("state") not in JOB_STATES:
            return None
        return record

    def write_job(self, index: int, **fields: Any) -> dict[str, Any]:
        """Replace the record of combination ``index``, stamping this process and host."""
        record = {"index": index, **fields, "pid": os.getpid(), "process": process_identity(),
                  "host": socket.gethostname(), "updated": time.time()}
        _write_json(self.job_file(index), record)
        return record

    def update_job(self, index: int, **fields: Any) -> dict[str, Any]:
        """Change some fields of a record, keeping the others."""
        kept = {k: v for k, v in (self.read_job(index) or {}).items()
                if k not in ("index", "pid", "process", "host", "updated")}
        return self.write_job(index, **{**kept, **fields})

    def read_submissions(self) -> dict[str, Any]:
        """``{index: {"launcher", "job_id", "stdout", "stderr"}}`` of the last submission."""
        data = _read_json(self.submissions_file)
        return data if isinstance(data, dict) else {}

    def write_submissions(self, entries: dict[int, dict[str, Any]]) -> None:
        """Add the submitit job ids of the combinations just submitted."""
        _write_json(self.submissions_file, {**self.read_submissions(), **{str(k): v for k, v in entries.items()}})

    # -- lock ------------------------------------------------------------------------------
    @contextmanager
    def driving(self) -> Iterator[None]:
        """Hold the sweep's lock: a second process driving the same sweep is refused, naming the
        first; a lock left by a process that died is taken over."""
        lock = self.path / "driver.lock"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"{self.path.parent} is not a folder; sweeps are kept under $PDEB_HOME/sweeps, move "
                             f"what is there aside") from None
        except OSError as exc:  # a full disk, a read-only file system
            from pdebench_core.diskspace import write_failed

            raise write_failed(self.path, exc) from None

        def busy(pid: Any, host: Any) -> str:
            return (f"sweep '{self.sweep_id}' is being run by process {pid} on {host}; wait for it, or remove "
                    f"{lock} if that process is gone")

        def not_writable(reason: str) -> str:
            return f"sweep '{self.sweep_id}' cannot be run: {self.path} is not writable ({reason})"

        with holder_lock(lock, busy, not_writable):
            yield


def sweep_ids() -> list[str]:
    """Every sweep with a plan, oldest first."""
    root = sweeps_dir()
    found = [p for p in root.iterdir() if (p / "plan.json").is_file()] if root.is_dir() else []
    return [p.name for p in sorted(found, key=lambda p: (p / "plan.json").stat().st_mtime)]
