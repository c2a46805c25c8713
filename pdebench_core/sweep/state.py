"""What each combination of a sweep needs now: nothing, a first run, a resume or a retry.

A combination is done when a finished run has the same config hash and saw the same data:
its own earlier run, or any run in the results store (another sweep's or a ``pdeb run``'s).
The data hash of such a run is compared with the data the combination would read now, so a
changed file or a new generator version is run again. A run left ``running`` by a process
that is gone was interrupted and resumes from its last checkpoint; a failed one is run again
only when asked (``--retry-failed``), under a new run id so the failed run stays to inspect.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pdebench_core import paths
from pdebench_core.locks import process_alive
from pdebench_core.rundir import RunDir
from pdebench_core.sweep.jobs import JobSpec, run_id_for
from pdebench_core.sweep.plan import Plan, build_point_config
from pdebench_core.sweep.store import SweepDir

#: What a combination needs: ``done`` (a finished run is reused), ``run`` (start or resume it),
#: ``failed`` (left failed: no ``--retry-failed``), ``running`` (another process runs it).
ACTIONS = ("done", "run", "failed", "running")
#: SLURM job states of a job that has not ended (an unknown state is not taken as alive).
SLURM_ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")
#: SLURM job states of a job that failed; a job past its time limit, cancelled or preempted was
#: interrupted instead, and resumes.
SLURM_FAILED = ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL")


@dataclass
class Decision:
    """The verdict for one combination.

    Attributes:
        index: The combination's index.
        action: One of :data:`ACTIONS`.
        job: The attempt to launch (``action == "run"``).
        run_id: The finished run reused, the failed or running one, or the one to launch.
        note: Why, in words (``reused fno-...``, ``resuming the interrupted run``).
    """

    index: int
    action: str
    job: JobSpec | None = None
    run_id: str | None = None
    note: str = ""


def recorded_data_hash(run_id: str, store_rows: list[dict[str, Any]]) -> str | None:
    """The data hash a run's result rows recorded (results store, else the run's ``results.jsonl``)."""
    for row in store_rows:
        if row.get("run_id") == run_id and row.get("data_hash"):
            return str(row["data_hash"])
    try:
        lines = (RunDir.of(run_id).path / "results.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            value = json.loads(line).get("data_hash")
        except (ValueError, AttributeError):
            continue
        if value:
            return str(value)
    return None


def current_data_hash(cfg: Any) -> str:
    """The data hash a run of ``cfg`` would record, from its datasets as they are now."""
    from pdebench_core import plugins
    from pdebench_core.workflow import data_hash

    datasets = {name: plugins.build_dataset_from(name, section) for name, section in cfg.data.items()}
    return data_hash(datasets, {name: section.get("path") for name, section in cfg.data.items()})


def slurm_state(sweep: SweepDir, index: int, record: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(state, submission)`` of the SLURM job that holds a combination's recorded attempt;
    ``(None, {})`` when it was not submitted to SLURM or SLURM cannot say."""
    submitted = sweep.read_submissions().get(str(index)) or {}
    if submitted.get("launcher") != "submitit-slurm" or submitted.get("attempt") != record.get("attempt"):
        return None, {}
    try:
        import submitit

        job = submitit.SlurmJob(folder=sweep.submitit_dir, job_id=str(submitted["job_id"]))
        if job.paths.result_pickle.exists():
            return "COMPLETED", submitted
        state = job.watcher.get_state(job.job_id, mode="force").upper().split()[0]
    except Exception:  # submitit or SLURM's accounting unavailable
        return None, submitted
    return (None if state == "UNKNOWN" else state), submitted


def still_running(sweep: SweepDir, index: int, record: dict[str, Any]) -> bool:
    """Whether the process or cluster job recorded for a queued or running combination is alive.

    A SLURM job that ended in failure without recording it (killed, out of memory) is recorded
    as failed here, with its log file.
    """
    state, submitted = slurm_state(sweep, index, record)
    if state in SLURM_ALIVE:
        return True
    if state in SLURM_FAILED:
        sweep.update_job(index, state="failed", log=submitted.get("stderr"),
                         error=f"SLURM job {submitted.get('job_id')} ended {state} without a result")
        return False
    if state is not None:
        return False
    return still_running_here(record)


def still_running_here(record: Mapping[str, Any]) -> bool:
    """Whether the process a job record or run status names is alive on this machine. This
    process is deciding, so it runs nothing yet: its own pid (a sweep stopped and started again
    in one Python session) does not count."""
    pid = record.get("pid")
    return record.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
        and process_alive(pid, record.get("process"))


class Judge:
    """Decides each combination of a plan, reading the results store once.

    Args:
        sweep: The sweep directory.
        plan: Its plan.
        retry_failed: Run failed combinations again.
        store_rows: Result-store rows (default: read the store).
    """

    def __init__(self, sweep: SweepDir, plan: Plan, retry_failed: bool = False,
                 store_rows: list[dict[str, Any]] | None = None) -> None:
        from pdebench_core.results import ResultsStore

        self.sweep, self.plan, self.retry_failed = sweep, plan, retry_failed
        self.rows = store_rows if store_rows is not None else ResultsStore().rows()
        self._running: dict[str | None, str] | None = None
        self.runs_by_hash: dict[str | None, list[str]] = {}  # each row's hash, computed once per sweep
        for row in self.rows:
            self.runs_by_hash.setdefault(_stored_hash(row), []).append(row["run_id"])

    def decide(self, index: int) -> Decision:
        """The verdict for combination ``index``."""
        record = self.sweep.read_job(index)
        if (record or {}).get("state") in ("queued", "running"):
            if still_running(self.sweep, index, record):
                return Decision(index, "running", run_id=record.get("run_id"), note="still running")
            record = self.sweep.read_job(index)  # a lost SLURM job may have been recorded as failed
        state = (record or {}).get("state")
        reused = self._finished_run(index, record)
        if reused:
            own = record is not None and record.get("run_id") == reused and state == "finished"
            return Decision(index, "done", run_id=reused, note="finished" if own else f"reused {reused}")
        if state == "failed" and not self.retry_failed:
            return Decision(index, "failed", run_id=record.get("run_id"), note=record.get("error") or "failed")
        elsewhere = self._running_elsewhere().get(self.plan.config_hashes[index])
        if elsewhere:  # another sweep or a 'pdeb run' is training this very combination now
            return Decision(index, "running", run_id=elsewhere, note=f"running elsewhere as {elsewhere}")
        return self._launch(index, record)

    def _running_elsewhere(self) -> dict[str | None, str]:
        """Config hash -> a run that a live process on this machine is training now (read once)."""
        if self._running is None:
            self._running = {}
            for folder in sorted(paths.runs_dir().glob("*/status.json")):
                run = RunDir(folder.parent)
                status = run.read_status()
                if status.get("state") == "running" and still_running_here(status):
                    self._running.setdefault(_config_hash_of(run), run.run_id)
        return self._running

    def _finished_run(self, index: int, record: dict[str, Any] | None) -> str | None:
        """A finished run with this combination's config and data, if there is one."""
        wanted = self.plan.config_hashes[index]
        candidates = [record["run_id"]] if record and record.get("run_id") else []
        candidates += self.runs_by_hash.get(wanted, [])
        current: Callable[[], str] = _once(lambda: current_data_hash(
            build_point_config(self.plan.shared, self.plan.points[index])))
        for run_id in dict.fromkeys(candidates):
            if not _finished_with(run_id, wanted):
                continue
            recorded = recorded_data_hash(run_id, self.rows)
            if recorded is not None and recorded == current():
                return run_id
        return None

    def _launch(self, index: int, record: dict[str, Any] | None) -> Decision:
        """Start (attempt 1), resume (an interrupted attempt) or retry (a new attempt)."""
        point, wanted = self.plan.points[index], self.plan.config_hashes[index]
        own = record if record is not None and not record.get("reused") else None  # a reused run is not ours
        state = (own or {}).get("state")
        attempt = int((own or {}).get("attempt") or 1)
        if state in ("queued", "running", "interrupted"):
            run_dir = RunDir.of(own["run_id"])
            if run_dir.config_file.is_file() and _config_hash_of(run_dir) == wanted:
                job = JobSpec(index, attempt, own["run_id"], True, point.label())
                return Decision(index, "run", job, job.run_id, "resuming the interrupted run")
        if own is not None and (state == "failed" or RunDir.of(own["run_id"]).path.exists()):
            attempt += 1
        while RunDir.of(run_id_for(self.sweep.sweep_id, index, attempt)).path.exists():
            attempt += 1  # an id already taken (e.g. a run whose record was lost) is never reused
        job = JobSpec(index, attempt, run_id_for(self.sweep.sweep_id, index, attempt), False, point.label())
        note = {None: "new", "failed": "retrying the failed run"}.get(state, "starting again")
        return Decision(index, "run", job, job.run_id, note)


def _once(compute: Callable[[], str]) -> Callable[[], str]:
    """``compute`` evaluated at the first call only (building datasets is not free)."""
    box: list[str] = []

    def value() -> str:
        if not box:
            box.append(compute())
        return box[0]

    return value


def _stored_hash(row: Mapping[str, Any]) -> str | None:
    """A result row's config hash, computed again from its stored config: rows written by an
    earlier pdeb may hold a hash that counted settings no longer counted (``run.sinks``)."""
    from pdebench_core.settings import settings_digest

    config = row.get("config")
    return settings_digest(config) if isinstance(config, Mapping) and config else row.get("config_hash")


def _config_hash_of(run: RunDir) -> str | None:
    from omegaconf import OmegaConf

    from pdebench_core.config import config_hash

    try:
        return config_hash(OmegaConf.load(run.config_file))
    except Exception:  # an unreadable config cannot be the one planned
        return None


def _finished_with(run_id: str, wanted: str) -> bool:
    """The run finished and its saved config has the wanted hash."""
    try:
        run = RunDir.of(run_id)
    except Exception:  # a row whose run id is not a directory name
        return False
    return run.state() == "finished" and _config_hash_of(run) == wanted
