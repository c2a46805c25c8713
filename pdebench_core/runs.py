"""Run directories and the context handed to tasks."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pdebench_core import paths, plugins
from pdebench_core.errors import UsageError


def new_run_id(model: str, data: list[str]) -> str:
    """``<model>-<data>-<UTC time>-<random>``, unique and sortable."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    joined = "_".join(data)  # run ids keep to letters, digits, '-', '_' and '.'
    if len(joined) > 40:
        joined = f"{data[0]}_and{len(data) - 1}more"
    return f"{model}-{joined}-{stamp}-{secrets.token_hex(2)}"


def versions() -> dict[str, str]:
    """Versions of pdeb, Python, torch and every loaded plugin distribution."""
    from pdebench_core import __version__

    out = {"pdeb": __version__, "python": platform.python_version()}
    try:
        import torch

        out["torch"] = str(torch.__version__)  # TorchVersion would not load with weights_only
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    for info in plugins.plugin_infos():
        if info.origin != "builtin" and info.error is None and info.version:
            out[f"plugin:{info.name}"] = info.version
    return out


_RUN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def validate_run_id(run_id: str) -> str:
    """Refuse run ids that are not plain directory names: letters, digits, '-', '_' and '.',
    at most 128 characters. A leading '.' would hide the run, a leading '-' would read as an
    option in every later command that names it."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise UsageError(f"run id '{run_id}' is not a valid directory name; use letters, digits, '-', '_' and '.' "
                         f"(at most 128 characters, not starting with '.' or '-')")
    return run_id


@dataclass
class RunContext:
    """What a task receives: the resolved config, its directory, device and sinks.

    Attributes:
        cfg: The resolved omegaconf config.
        run_id: The run's id.
        run_dir: Its directory (config, log, metrics, checkpoints, evaluation outputs).
        device: ``torch.device`` to compute on.
        sinks: Opened sink objects.
        resume: Whether the run continues a previous one.
        rank: Process rank (0 in a single process).
        world_size: Number of processes.
        undelivered: Sink name -> the error of the first result row that sink refused.
    """

    cfg: Any
    run_id: str
    run_dir: Path
    device: Any
    sinks: list = field(default_factory=list)
    resume: bool = False
    rank: int = 0
    world_size: int = 1
    started: float = field(default_factory=time.time)
    quiet: bool = False
    results: dict = field(default_factory=dict)
    undelivered: dict = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and result rows."""
        return self.rank == 0

    def log(self, message: str) -> None:
        """Append a line to the run log (and print it unless quiet)."""
        from pdebench_core.rundir import RunDir

        if not self.is_main:
            return
        line = RunDir(self.run_dir).append_log(message)
        if not self.quiet:
            from rich.console import Console

            try:
                Console(stderr=True, highlight=False, soft_wrap=True).print(line, markup=False)
            except (BrokenPipeError, SystemExit) as exc:  # rich meets a closed pipe with SystemExit
                if not isinstance(exc, BrokenPipeError) and not isinstance(exc.__context__, BrokenPipeError):
                    raise  # a SystemExit of its own (submitit ending a requeued job) is not the pipe's
                self.quiet = True  # the reader is gone, not the run: it goes on, logging to log.txt only

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Send per-step training metrics to every sink."""
        if self.is_main:
            for sink in self.sinks:
                sink.log_step(step, values)

    def write_result(self, row: dict[str, Any]) -> None:
        """Send one result row to every sink. A sink that fails keeps the row from no other sink
        and stops nothing; its first error is kept in :attr:`undelivered`, which the run
        reports when it ends (the results are computed, only their delivery failed)."""
        if not self.is_main:
            return
        for sink in self.sinks:
            try:
                sink.write_result(row)
            except Exception as exc:  # noqa: BLE001 - reported when the run ends, see runner
                if os.environ.get("PDEB_DEBUG"):  # the traceback, without changing what happens
                    import traceback

                    traceback.print_exception(exc.__cause__ or exc)
                self.undelivered.setdefault(sink_name(sink), exc)

    def save_json(self, relative: str, data: Any) -> Path:
        """Write JSON under the run directory atomically."""
        path = self.run_dir / relative
        if self.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(data, indent=2, default=float))
            os.replace(tmp, path)
        return path


def sink_name(sink: Any) -> str:
    """A sink's registered name (that of its component when wrapped), else its class name."""
    component = getattr(sink, "component", None)
    return str(getattr(component, "name", None) or type(sink).__name__)


def run_dir_for(run_id: str) -> Path:
    """Directory of a run id under the pdeb home."""
    return paths.runs_dir() / validate_run_id(run_id)


#: Options of ``pdeb run`` that choose how a run is launched rather than what it computes; a
#: rerun carries them over (the saved config holds the rest).
LAUNCH_OPTIONS = ("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint")

#: Environment variable through which ``pdeb run --nproc-per-node N`` hands its own command
#: line to the processes it launches (theirs lacks the launch options).
LAUNCHER_COMMAND = "PDEB_LAUNCHER_COMMAND"


@contextlib.contextmanager
def recorded_command(command: str) -> Iterator[None]:
    """Have every run started inside the block, in this process or the processes it starts,
    record ``command`` as the command that started it (``command.txt``); the previous value is
    put back afterwards."""
    previous = os.environ.get(LAUNCHER_COMMAND)
    os.environ[LAUNCHER_COMMAND] = command
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LAUNCHER_COMMAND, None)
        else:
            os.environ[LAUNCHER_COMMAND] = previous


def command_line() -> str:
    """The command that started this run, for reproduction: that of the ``pdeb`` that launched
    this process when there is one (with its ``--nproc-per-node``), else this process's own,
    with the process layout of a ``torchrun`` started by hand written as pdeb's own options."""
    import shlex

    if os.environ.get(LAUNCHER_COMMAND):
        return os.environ[LAUNCHER_COMMAND]
    argv = list(sys.argv)
    if argv and argv[0].endswith(("pdeb", "__main__.py", "cli.py")):
        argv[0] = "pdeb"
    return " ".join(shlex.quote(a) for a in [*argv, *_torchrun_layout(argv)])


def _torchrun_layout(argv: list[str]) -> list[str]:
    """``--nproc-per-node N`` (and ``--nnodes M --node-rank R``) of a worker that torch's
    launcher started directly, read from the variables it sets; empty for one process."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or any(a.split("=", 1)[0] in LAUNCH_OPTIONS for a in argv):
        return []
    layout = ["--nproc-per-node", str(per_node)]
    if world > per_node:
        layout += ["--nnodes", str(world // per_node), "--node-rank", os.environ.get("GROUP_RANK", "0")]
    return layout
