"""Running a sweep: plan it, decide what each combination needs, launch the rest, sum up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pdebench_core.errors import UsageError
from pdebench_core.sweep.jobs import JobSpec
from pdebench_core.sweep.launchers import LAUNCHERS, ClusterOptions, Reporter, make_executor, run_local, run_submitit
from pdebench_core.sweep.plan import Plan
from pdebench_core.sweep.state import Decision, Judge
from pdebench_core.sweep.store import SweepDir


@dataclass
class Outcome:
    """What a sweep did and where each combination stands.

    Attributes:
        sweep_id: The sweep's id.
        plan: Its plan.
        started: Jobs launched by this call (0 when every combination was already done).
        entries: One per combination: ``index``, ``label``, ``state``, ``run_id``, ``note``,
            ``results`` ({dataset: metrics}) and, for a failed one, ``error`` and ``log``.
    """

    sweep_id: str
    plan: Plan
    started: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The combinations that failed."""
        return [e for e in self.entries if e["state"] == "failed"]


def _quiet(event: str, job: JobSpec, record: dict) -> None:
    """The reporter that says nothing."""


def run_sweep(plan: Plan, launcher: str = "local", options: ClusterOptions | None = None,
              retry_failed: bool = False, report: Reporter = _quiet,
              announce: Callable[[str], None] = lambda line: None) -> Outcome:
    """Run every combination of ``plan`` that is not done yet, then sum up the whole sweep.

    Args:
        plan: The validated plan (:func:`~pdebench_core.sweep.plan.make_plan`).
        launcher: One of :data:`~pdebench_core.sweep.launchers.LAUNCHERS`.
        options: Job resources for the submitit launchers.
        retry_failed: Run failed combinations again (as new runs).
        report: Told when each job starts and ends.
        announce: Told, in one line, what the sweep is about to do.

    Raises:
        UsageError: An unknown launcher, submitit missing, or another process driving this sweep.
    """
    if launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher '{launcher}'; choose one of {', '.join(LAUNCHERS)}")
    options = options or ClusterOptions()
    sweep = SweepDir(plan.sweep_id)
    # submitit missing or no SLURM here is refused before anything of the sweep is written
    executor = make_executor(launcher, sweep, options) if launcher != "local" else None
    with sweep.driving():
        sweep.save_plan(plan)
        judge = Judge(sweep, plan, retry_failed=retry_failed)
        decisions = [judge.decide(i) for i in range(len(plan.points))]
        jobs = [d.job for d in decisions if d.action == "run" and d.job is not None]
        announce(_announcement(plan, decisions))
        _record_done(sweep, plan, decisions)
        for job in jobs:
            sweep.write_job(job.index, state="queued", label=job.label, run_id=job.run_id, attempt=job.attempt,
                            launcher=launcher, log=str(sweep.log_file(job.index, job.attempt)))
        report = _numbered(report, jobs)
        if jobs and launcher == "local":
            run_local(sweep, jobs, report)
        elif jobs:
            run_submitit(sweep, jobs, executor, launcher, options, report)
    notes = {d.index: d.note for d in decisions}
    # a combination another process is training has no record of this sweep: name that run
    elsewhere = {d.index: d.run_id for d in decisions if d.action == "running" and d.run_id}
    entries = [{**e, "note": notes.get(e["index"], "")} for e in summarise(sweep, plan)]
    for e in entries:
        if e["index"] in elsewhere and not e.get("run_id"):
            e.update(run_id=elsewhere[e["index"]], state="running")
    return Outcome(plan.sweep_id, plan, len(jobs), entries)


def _numbered(report: Reporter, jobs: list[JobSpec]) -> Reporter:
    """``report`` with each job's ``position`` (1-based) and the ``total`` of jobs added to the record."""
    positions = {job.index: n for n, job in enumerate(jobs, start=1)}

    def numbered(event: str, job: JobSpec, record: dict) -> None:
        report(event, job, {**record, "position": positions.get(job.index, 0), "total": len(jobs)})

    return numbered


def _record_done(sweep: SweepDir, plan: Plan, decisions: list[Decision]) -> None:
    """A combination done by a run it did not start (or a run finished earlier) records that run."""
    for decision in decisions:
        if decision.action != "done":
            continue
        record = sweep.read_job(decision.index) or {}
        if record.get("state") != "finished" or record.get("run_id") != decision.run_id:
            sweep.write_job(decision.index, state="finished", label=plan.points[decision.index].label(),
                            run_id=decision.run_id, attempt=record.get("attempt", 0), reused=True,
                            results=_results_of(decision.run_id))


def _announcement(plan: Plan, decisions: list[Decision]) -> str:
    counts = {action: sum(d.action == action for d in decisions) for action in ("done", "run", "failed", "running")}
    parts = [f"{counts['done']} done", f"{counts['run']} to run"]
    parts += [f"{counts['failed']} failed (rerun them with --retry-failed)"] if counts["failed"] else []
    parts += [f"{counts['running']} still running elsewhere"] if counts["running"] else []
    noun = "combination" if len(plan.points) == 1 else "combinations"
    return f"sweep {plan.sweep_id}: {len(plan.points)} {noun}: {', '.join(parts)}"


def summarise(sweep: SweepDir, plan: Plan) -> list[dict[str, Any]]:
    """One entry per combination, from the records in the sweep directory."""
    out = []
    for index, point in enumerate(plan.points):
        record = sweep.read_job(index) or {}
        entry = {"state": record.get("state", "pending"), "run_id": record.get("run_id"),
                 "reused": bool(record.get("reused")), "results": record.get("results") or {}}
        if entry["state"] == "failed":
            entry.update(error=record.get("error"), log=record.get("log"))
        out.append({"index": index, "label": point.label(), "model": point.model, "data": point.data,
                    "seed": point.seed, "swept": dict(point.swept), **entry})
    return out


def _results_of(run_id: str | None) -> dict[str, Any]:
    """A finished run's ``{dataset: metrics}`` from its status."""
    if not run_id:
        return {}
    from pdebench_core.rundir import RunDir

    results = RunDir.of(run_id).read_status().get("results")
    return results if isinstance(results, dict) else {}


def sweep_run_ids(sweep_id: str) -> list[str]:
    """The finished run of each combination of a sweep, in plan order (for ``pdeb leaderboard
    --sweep``); combinations not finished yet have none.

    Raises:
        UsageError: No such sweep.
    """
    sweep = SweepDir(sweep_id)
    plan = sweep.load_plan()
    return [e["run_id"] for e in summarise(sweep, plan) if e["state"] == "finished" and e["run_id"]]


def sweep_rows(sweep_id: str) -> list[dict[str, Any]]:
    """The results-store rows of a sweep's finished runs.

    Raises:
        UsageError: no such sweep, or none of its runs has a result yet.
    """
    from pdebench_core.results import ResultsStore

    wanted = set(sweep_run_ids(sweep_id))
    rows = [row for row in ResultsStore().rows() if row["run_id"] in wanted]
    if not rows:
        raise UsageError(f"sweep '{sweep_id}' has no finished run yet; the logs of its runs are in "
                         f"{SweepDir(sweep_id).path / 'logs'}")
    return rows
