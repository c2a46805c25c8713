"""``pdeb sweep``: ``pdeb run`` over the product of models, datasets, seeds and settings.

Call :func:`register` with the Typer app to add the command. Every combination's config is
validated before any job starts; combinations already finished (same config and data) are
skipped, so rerunning the same command continues an interrupted sweep and starts nothing
when it is complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from pdebench_core.cli_common import friendly, outlive_the_reader
from pdebench_core.errors import UsageError


def _slurm_args(items: list[str]) -> dict[str, str]:
    """``["account=proj", "qos=high"]`` -> ``{"account": "proj", "qos": "high"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"--slurm-arg '{item}' is not KEY=VALUE; write e.g. --slurm-arg account=myproject")
        out[key.strip().lstrip("-")] = value.strip()
    return out


def _cluster_options(launcher: str, partition, gpus, cpus, time_min, mem_gb, max_parallel, slurm_arg, no_wait):
    """The job resources asked for; an option the launcher does not use is refused, not ignored."""
    from pdebench_core.sweep import LAUNCHERS, ClusterOptions

    if launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher '{launcher}'; choose one of {', '.join(LAUNCHERS)}")

    slurm_only = {"--partition": partition, "--slurm-arg": slurm_arg or None, "--no-wait": no_wait or None}
    given = [name for name, value in slurm_only.items() if value]
    if given and launcher != "submitit-slurm":
        raise UsageError(f"{', '.join(given)} applies to --launcher submitit-slurm only (got --launcher {launcher})")
    cluster_only = {"--gpus": gpus, "--cpus": cpus, "--mem": mem_gb, "--time": time_min, "--max-parallel": max_parallel}
    given = [name for name, value in cluster_only.items() if value]
    if given and launcher == "local":
        raise UsageError(f"{', '.join(given)} applies to the submitit launchers; --launcher local runs the jobs "
                         f"one after another in this process (pick its device with --device)")
    return ClusterOptions(partition=partition, gpus=gpus, cpus=cpus, time_min=time_min or 60, mem_gb=mem_gb,
                          max_parallel=max_parallel, slurm_args=_slurm_args(slurm_arg or []), wait=not no_wait)


def _report(event: str, job, record: dict) -> None:
    """One line on stderr when a job starts, is submitted or ends."""
    where = f"[{record.get('position')}/{record.get('total')}] {job.label}"
    if event == "submitted":
        typer.echo(f"{where}: submitted as job {record.get('job_id')} (run {job.run_id})", err=True)
    elif event == "start":
        typer.echo(f"{where}: running {job.run_id}{' (resuming)' if job.resume else ''}", err=True)
    elif record.get("state") == "finished":
        typer.echo(f"{where}: finished in {record.get('seconds', 0.0):.1f} s", err=True)
    else:
        typer.echo(f"{where}: {record.get('state', 'failed')}: {record.get('error')} (log: {record.get('log')})",
                   err=True)


def _print_table(outcome) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    metrics = sorted({m for e in outcome.entries for values in e["results"].values() for m in values})
    swept = list(dict.fromkeys(k for e in outcome.entries for k in e["swept"]))
    table = Table(title=f"sweep {outcome.sweep_id}")
    for column in ["#", "model", "data", "seed", *swept, "state", "run_id", *metrics]:
        table.add_column(column, justify="right" if column in metrics else "left", no_wrap=column == "run_id")
    for e in outcome.entries:
        per_dataset = e["results"].items() or [(e["data"], {})]
        for dataset, values in per_dataset:
            table.add_row(str(e["index"]), e["model"], dataset, "" if e["seed"] is None else str(e["seed"]),
                          *[e["swept"].get(k, "") for k in swept], e["state"], e["run_id"] or "",
                          *[f"{values[m]:.4g}" if isinstance(values.get(m), (int, float)) else "" for m in metrics])
    # piped or redirected: wide enough that run ids and numbers are not cut
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    for e in outcome.failed:
        typer.echo(f"failed: {e['label']}: {e.get('error')}\n  log: {e.get('log')}", err=True)


def sweep_command(
    settings: Optional[List[str]] = typer.Argument(
        None, help="key=v1,v2 settings to sweep (one value: fixed), e.g. train.lr=1e-3,1e-4 train.max_steps=100"),
    model: str = typer.Option(..., "--model", "-m", help="Models, comma-separated (see 'pdeb models')."),
    data: str = typer.Option(..., "--data", "-d", help="Datasets, comma-separated; '+' joins a mixture: ns2d+cfd2d."),
    seed: Optional[str] = typer.Option(None, "--seed", help="Seeds, comma-separated (default: the run's default)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task of every run (default: each model's own)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="smoke, small (default) or paper."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run config shared by every run."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    launcher: str = typer.Option("local", "--launcher", help="local (one after another, here), submitit-local or "
                                                            "submitit-slurm."),
    partition: Optional[str] = typer.Option(None, "--partition", help="SLURM partition."),
    gpus: int = typer.Option(0, "--gpus", min=0, help="GPUs per job (submitit launchers)."),
    cpus: Optional[int] = typer.Option(None, "--cpus", min=1, help="CPU cores per job (submitit launchers)."),
    time_min: Optional[int] = typer.Option(None, "--time", min=1, help="Time limit of each job in minutes "
                                                                       "(submitit launchers; default 60)."),
    mem_gb: Optional[float] = typer.Option(None, "--mem", min=0.001, help="Memory per job in GB (submitit launchers)."),
    max_parallel: int = typer.Option(0, "--max-parallel", min=0, help="Jobs at once (0: no limit; SLURM: the "
                                                                      "array's %N)."),
    slurm_arg: Optional[List[str]] = typer.Option(None, "--slurm-arg", help="Another sbatch option, KEY=VALUE "
                                                                          "(repeatable): account=proj, qos=high."),
    no_wait: bool = typer.Option(False, "--no-wait", help="SLURM: submit and return; rerun the command to see states."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed combinations again, as new runs."),
    sweep_id: Optional[str] = typer.Option(None, "--sweep-id", help="Name of the sweep (default: from its configs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON instead of a table."),
) -> None:
    """Run the product of models, datasets, seeds and settings; finished combinations are skipped."""
    from pdebench_core.runs import command_line
    from pdebench_core.sweep import Shared, combinations, make_plan, run_sweep

    options = _cluster_options(launcher, partition, gpus, cpus, time_min, mem_gb, max_parallel, slurm_arg, no_wait)
    points = combinations(model, data, seed, settings or [])
    shared = Shared(task=task, profile=profile, config_file=str(config.resolve()) if config else None, device=device)
    plan = make_plan(points, shared, sweep_id=sweep_id, command=command_line())
    with outlive_the_reader():
        outcome = run_sweep(plan, launcher, options, retry_failed=retry_failed, report=_report,
                            announce=lambda line: typer.echo(line, err=True))
        if as_json:
            typer.echo(json.dumps(_as_json(outcome), indent=2, default=str))
        else:
            _print_table(outcome)
    if outcome.failed:
        typer.echo(f"{len(outcome.failed)} of {len(outcome.entries)} combinations failed; fix the cause and rerun "
                   f"with --retry-failed", err=True)
        raise typer.Exit(1)


def _as_json(outcome) -> dict[str, Any]:
    return {"sweep_id": outcome.sweep_id, "started": outcome.started, "combinations": outcome.entries}


def register(app: typer.Typer) -> None:
    """Add ``pdeb sweep`` to the CLI."""
    app.command("sweep")(friendly(sweep_command))
