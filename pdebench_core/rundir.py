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
import re
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from pdebench_core import paths
from pdebench_core.dir_layout import Entry
from pdebench_core.errors import DataError, UsageError
from pdebench_core.locks import holder_lock, process_alive, process_identity

STATES = ("running", "finished", "failed", "interrupted", "damaged", "unknown")
_STEP_LINE = re.compile(r"\] step \d+/\d+ loss ")  # the trainer's log line of a step taken


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
        try:
            run.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UsageError(f"{run.path.parent} is not a folder; runs are kept under $PDEB_HOME/runs, move what "
                             f"is there aside") from None
        except OSError as exc:
            from pdebench_core.diskspace import write_failed

            raise write_failed(run.path.parent, exc) from None
        try:
            run.path.mkdir()
        except FileExistsError:
            raise UsageError(f"run '{run_id}' already exists in {run.path}; pick another --run-id or --resume it") from None
        except OSError as exc:
            from pdebench_core.diskspace import write_failed

            raise write_failed(run.path, exc) from None
        return run

    @property
    def run_id(self) -> str:
        """The run's id (the directory's name)."""
        return self.path.name

    # -- layout --------------------------------------------------------------------------
    config_file = Entry("config.yaml")
    status_file = Entry("status.json")
    log_file = Entry("log.txt")
    command_file = Entry("command.txt")
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
            if isinstance(pid, int) and not process_alive(pid, status.get("process")):
                return "interrupted"
        return state

    def took_steps(self) -> bool:
        """Whether the run took optimizer steps: its step records (the ``jsonl`` sink) or the step
        lines of its log (written whatever the sinks), so that it does not depend on the sinks."""
        if self.metrics_file.is_file() and self.metrics_file.stat().st_size > 0:
            return True
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as log:
                return any(_STEP_LINE.search(line) for line in log)
        except OSError:
            return False

    def mark_interrupted(self) -> None:
        """Record a ``running`` run whose process is gone as ``interrupted`` (a run on another
        machine cannot be checked from here; the user knows its job ended).

        Raises:
            UsageError: no such run, it is not running, or its process is alive on this machine.
        """
        if not self.path.is_dir():
            raise UsageError(f"no run '{self.run_id}' under {self.path.parent}; check the id with 'pdeb runs'")
        status, state = self.read_status(), self.state()
        if status["state"] != "running":
            raise UsageError(f"run '{self.run_id}' is {state}, not running; nothing to mark")
        if state == "running" and status.get("host") == socket.gethostname():
            raise UsageError(f"run '{self.run_id}' is still running (process {status.get('pid')} on this machine); "
                             f"stop it first")
        self.restate("interrupted", f"marked interrupted (process {status.get('pid')} on {status.get('host')} was "
                                    f"gone)")

    def restate(self, state: str, error: str) -> None:
        """Replace the state and error of ``status.json``, keeping what else it records (when the
        run started, its results); written by this process, for one whose own record is stale."""
        kept = {k: v for k, v in self.read_status().items()
                if k not in ("state", "error", "pid", "process", "host", "updated")}
        self.write_status(state, **kept, error=error)

    def append_log(self, message: str) -> str:
        """Append ``[HH:MM:SS] message`` to ``log.txt``; the line written.

        Raises:
            DataError: the log cannot be written (one line naming it and why).
        """
        from pdebench_core.diskspace import write_failed

        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        try:
            with open(self.log_file, "a", encoding="utf-8") as log:
                log.write(line + "\n")
        except OSError as exc:
            raise write_failed(self.log_file, exc) from None
        return line

    def write_status(self, state: str, **fields: Any) -> None:
        """Replace ``status.json`` atomically, recording this process and host. ``pid`` and
        ``process`` (its identity) go together: a caller that passes one passes both."""
        from pdebench_core.diskspace import write_failed

        status = {"state": state, "pid": os.getpid(), "process": process_identity(), "host": socket.gethostname(),
                  "updated": time.time(), **fields}
        tmp = self.status_file.with_name(f".status.json.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=2, default=str))
            os.replace(tmp, self.status_file)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_failed(self.status_file, exc) from None

    # -- config ----------------------------------------------------------------------------
    def read_config(self) -> tuple[dict[str, Any], str]:
        """The saved config as a mapping, and its text. A missing or damaged ``config.yaml`` is
        restored from the config every checkpoint stores (the damaged file is kept beside it as
        ``config.yaml.damaged``), saying so on stderr.

        Raises:
            UsageError: The file is missing, unreadable or not a YAML mapping of sections, and
                no checkpoint holds a config.
        """
        try:
            return self._saved_config()
        except UsageError as exc:
            restored = self._restore_config(str(exc))
            if restored is None:
                raise
            return restored

    def _saved_config(self) -> tuple[dict[str, Any], str]:
        import yaml

        try:
            text = self.config_file.read_text(encoding="utf-8")
            config = yaml.safe_load(text)
        except FileNotFoundError:
            raise UsageError(f"run '{self.run_id}' has no config.yaml") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0][:120]
            raise UsageError(f"run '{self.run_id}': config.yaml cannot be read ({reason}); the run cannot be "
                             f"resumed, rerun or reported") from None
        if not _is_run_config(config):
            raise UsageError(f"run '{self.run_id}': config.yaml is damaged (not a mapping with the sections "
                             f"{', '.join(RUN_CONFIG_SECTIONS)}); the run cannot be resumed, rerun or reported")
        return config, text

    def _restore_config(self, problem: str) -> tuple[dict[str, Any], str] | None:
        """The config of the newest usable checkpoint, written back as ``config.yaml``; None
        when no checkpoint holds one."""
        from pdebench_core.checkpoint import newest_intact
        from pdebench_core.diskspace import write_text_atomically

        try:
            found = newest_intact(self.checkpoints, warn=lambda line: None) if self.checkpoints.is_dir() else None
        except UsageError:
            return None
        config = found.state.get("config") if found is not None else None
        if not _is_run_config(config):
            return None
        from omegaconf import OmegaConf

        text = OmegaConf.to_yaml(OmegaConf.create(config))
        if os.environ.get("RANK", "0") != "0":  # one process restores the file; the others use the config
            return config, text
        kept = self.config_file.exists()
        if kept:
            os.replace(self.config_file, self.config_file.with_name("config.yaml.damaged"))
        write_text_atomically(self.config_file, text)
        print(f"warning: {problem.split(';')[0]}; restored it from the config stored in {found.path.name}"
              + (" (the damaged file is kept as config.yaml.damaged)" if kept else ""), file=sys.stderr)
        return config, text

    def check_writable(self) -> None:
        """Refuse, before any step, a run directory (or checkpoints folder) this process cannot
        write: a run would otherwise train until its first checkpoint and fail there.

        Raises:
            DataError: one line naming the folder and why.
        """
        import tempfile

        from pdebench_core.diskspace import write_failed

        if self.checkpoints.exists() and not self.checkpoints.is_dir():
            raise DataError(f"{self.checkpoints} is a file where the run keeps its checkpoints; move it aside")
        for folder in (self.path, self.checkpoints):
            if not folder.is_dir():
                continue
            try:
                handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
                os.close(handle)
                os.unlink(probe)
            except OSError as exc:
                raise write_failed(folder, exc, "fix its permissions before the run starts") from None

    # -- step records ----------------------------------------------------------------------
    def drop_step_records_after(self, step: int) -> int:
        """Remove the ``metrics.jsonl`` records of steps after ``step`` (logged by a process that
        died before its next checkpoint; the resumed run logs them again), and a last line cut
        short (a full disk, a kill mid-write), which the next record would otherwise be glued
        to. Returns how many lines went."""
        path = self.metrics_file
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
        before = len(lines)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"  # whole or not, the next record starts on a line of its own
            if _record_step(lines[-1]) == float("-inf"):
                lines.pop()
        kept = [line for line in lines if _record_step(line) <= step]
        text = "".join(kept)
        if text.encode("utf-8") != raw:
            from pdebench_core.diskspace import write_text_atomically

            write_text_atomically(path, text)
        return before - len(kept)

    # -- resume lock ---------------------------------------------------------------------
    @contextmanager
    def resume_lock(self) -> Iterator[None]:
        """Hold the run's resume lock; a second concurrent resume is refused, naming the holder.

        A lock left by a process that died is taken over (see :func:`~pdebench_core.locks.holder_lock`).
        """
        def busy(pid: Any, host: Any) -> str:
            return (f"run '{self.run_id}' is already being resumed by process {pid} on {host}; wait for it, or "
                    f"remove {self.resume_lock_file} if that process is gone")

        def not_writable(reason: str) -> str:
            return f"run '{self.run_id}' cannot be resumed: {self.path} is not writable ({reason})"

        with holder_lock(self.resume_lock_file, busy, not_writable):
            yield


#: Sections every saved run config has; a file missing one was cut short (the writer's rename
#: never leaves half a file, so something else damaged it), even if what is left parses.
RUN_CONFIG_SECTIONS = ("run", "model", "data", "train", "eval")


def _is_run_config(config: Any) -> bool:
    """Whether a loaded config is a whole run config: a mapping with every section a run saves."""
    return isinstance(config, dict) and all(isinstance(config.get(k), dict) for k in RUN_CONFIG_SECTIONS)


def _record_step(line: str) -> float:
    """The step of one ``metrics.jsonl`` line (a line that names none is kept: -inf)."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return float("-inf")
    return step if isinstance(step, (int, float)) else float("-inf")


def list_runs() -> list[dict[str, Any]]:
    """Every run directory with its state and error; damaged entries are listed, not fatal."""
    root = paths.runs_dir()
    items = []
    try:
        entries = sorted(root.iterdir()) if root.is_dir() else []
    except PermissionError as exc:
        raise UsageError(f"the runs folder {root} cannot be read ({exc.strerror}); fix its permissions") from None
    for path in entries:
        if not path.is_dir() or path.name.startswith("."):
            continue
        run = RunDir(path)
        status = run.read_status()
        state, error = run.state(), status.get("error")
        if state != "running":
            try:
                run._saved_config()
            except UsageError as exc:  # it cannot be resumed, rerun or reported until restored
                problem = str(exc).split(";")[0].replace(f"run '{path.name}': ", "").replace(f"run '{path.name}' ", "")
                state, error = "damaged", problem + (
                    f"; a checkpoint holds its config: 'pdeb reproduce {path.name}' restores it"
                    if run.checkpoints.is_dir() and any(run.checkpoints.iterdir()) else "")
        items.append({"run_id": path.name, "state": state, "error": error, "path": str(path)})
    return items
