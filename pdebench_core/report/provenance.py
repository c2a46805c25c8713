"""What a run left behind, and the command that reruns it.

:func:`load_run` gathers a run's ``config.yaml``, ``command.txt``, ``status.json``,
``eval/<dataset>.json`` and its result-store rows; :func:`reproduction` turns them into the
command that reruns it from its saved, fully resolved config.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pdebench_core import paths
from pdebench_core.errors import UsageError, did_you_mean
from pdebench_core.rundir import RunDir
from pdebench_core.runs import LAUNCH_OPTIONS, run_dir_for



@dataclass
class RunInfo:
    """What a run directory and the results store say about one run.

    Attributes:
        run_id: The run's id.
        run_dir: Its directory.
        config: The resolved config (``config.yaml``) as a dict.
        config_text: ``config.yaml`` verbatim.
        command: The command that started it (``command.txt``), or ``""``.
        status: ``status.json`` (state, timings, results), or ``{}``.
        evals: ``{dataset: eval json}`` from ``eval/``.
        rows: Its rows in the results store.
    """

    run_id: str
    run_dir: Path
    config: dict[str, Any]
    config_text: str
    command: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        """Registered model name."""
        return str((self.config.get("model") or {}).get("name", ""))

    @property
    def datasets(self) -> list[str]:
        """Dataset names of the run, in config order."""
        return list((self.config.get("data") or {}).keys())

    @property
    def checkpoint(self) -> Path | None:
        """``checkpoints/last.pt`` when the run saved one."""
        path = RunDir(self.run_dir).last_checkpoint
        return path if path.is_file() else None


def known_run_ids() -> list[str]:
    """Run directories under the pdeb home plus run ids in the results store."""
    ids = set()
    root = paths.runs_dir()
    if root.is_dir():
        ids.update(p.name for p in root.iterdir() if p.is_dir())
    try:
        from pdebench_core.results import ResultsStore

        ids.update(ResultsStore().run_ids())
    except Exception:  # an unreadable store must not hide the run directories
        pass
    return sorted(ids)


def load_run(run_id: str) -> RunInfo:
    """Read everything a run left behind.

    Raises:
        UsageError: No such run directory (with the closest known id), or no ``config.yaml``.
    """
    run_dir = run_dir_for(run_id)
    if not run_dir.is_dir():
        raise UsageError(f"run '{run_id}' does not exist under {run_dir.parent}{did_you_mean(run_id, known_run_ids())}"
                         f"; list runs with 'pdeb runs' or 'pdeb leaderboard --source local'")
    run = RunDir(run_dir)
    config, text = run.read_config()  # a missing or damaged config.yaml is restored from a checkpoint
    command_file = run.command_file
    status_file = run.status_file
    evals = {}
    for path in sorted(run.eval_dir.glob("*.json")) if run.eval_dir.is_dir() else []:
        evaluation = _read_json(path)  # a damaged file is left out, not fatal, and said
        if evaluation:
            evals[path.stem] = evaluation
        else:
            print(f"warning: {path} is damaged or empty; its evaluation is left out of the report ('pdeb run "
                  f"--resume {run_id}' evaluates again)", file=sys.stderr)
    ordered = {name: evals[name] for name in list((config.get("data") or {})) if name in evals}
    ordered.update({k: v for k, v in evals.items() if k not in ordered})
    try:
        from pdebench_core.results import ResultsStore

        rows = ResultsStore().run_rows(run_id)
    except Exception:
        rows = []
    return RunInfo(
        run_id=run_id, run_dir=run_dir, config=config, config_text=text,
        command=command_file.read_text(encoding="utf-8").strip() if command_file.is_file() else "",
        status=_read_json(status_file), evals=ordered, rows=rows,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON
        return {}


def new_repro_id(run_id: str) -> str:
    """The run id of the next rerun: ``<run_id>-repro-<n>``, the first ``n`` from 1 not taken.

    It depends only on the runs there are, so the command ``pdeb reproduce RUN`` prints is the
    one ``--execute`` runs; a rerun of a rerun counts on from the original run.
    """
    base = run_id.split("-repro-")[0]
    n = 1
    while RunDir.of(f"{base}-repro-{n}").path.exists():
        n += 1
    return f"{base}-repro-{n}"


def launch_options(command: str) -> list[str]:
    """The launch options (``--nproc-per-node 4``, ...) of an original command line."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return []
    out = []
    for position, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            if "=" in arg:
                out.append(arg)
            elif position + 1 < len(argv):
                out += [arg, argv[position + 1]]
    return out


@dataclass
class Reproduction:
    """How to rerun a run.

    Attributes:
        run_id: The original run.
        new_run_id: Id the rerun will get.
        argv: The rerun command, ``["pdeb", "run", "--config", ..., "--run-id", ...]``.
        original: The original command line (for reference; may be empty).
        config_hash: The original's config hash (a rerun must report the same).
        seed: The original's seed.
        problem: Why the saved config no longer builds (e.g. a plugin was uninstalled or a
            setting renamed), or None when the rerun can start.
    """

    run_id: str
    new_run_id: str
    argv: list[str]
    original: str
    config_hash: str | None = None
    seed: int | None = None
    problem: str | None = None

    @property
    def command(self) -> str:
        """The rerun command as one shell line."""
        return shlex.join(self.argv)


def reproduction(run_id: str, new_run_id: str | None = None) -> Reproduction:
    """The command that reruns ``run_id`` from its saved, fully resolved config.

    The saved ``config.yaml`` pins every setting (profile defaults included), so the
    rerun does not depend on how defaults may have changed since; only the run id is new.
    The config is built here the way the rerun will build it
    (:func:`pdebench_core.rebuild.saved_config`), so a config that no longer builds is
    reported now (``problem``) rather than when the rerun starts.
    """
    from pdebench_core.errors import PdebError
    from pdebench_core.rebuild import saved_config

    info = load_run(run_id)
    try:
        saved_config(info.run_dir)
        problem = None
    except PdebError as exc:
        problem = str(exc)
    new_id = new_run_id or new_repro_id(run_id)
    argv = ["pdeb", "run", "--config", str(RunDir(info.run_dir).config_file), "--run-id", new_id,
            *launch_options(info.command)]
    first = info.rows[0] if info.rows else {}
    seed = (info.config.get("run") or {}).get("seed")
    return Reproduction(run_id, new_id, argv, info.command, first.get("config_hash"), seed, problem)


def config_differences(first: Mapping[str, Any], second: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs (``run.run_id`` ignored)."""
    out = []
    for key in sorted(set(first) | set(second), key=str):
        path = f"{prefix}{key}"
        a, b = first.get(key), second.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, path + ".")
        elif a != b and path != "run.run_id":
            out.append(path)
    return out
