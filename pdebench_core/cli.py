"""The ``pdeb`` command line (Typer + rich)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Any, Callable, Iterator, List, Optional

import typer

from pdebench_core.cli_common import friendly
from pdebench_core.errors import PdebError, UsageError

app = typer.Typer(
    help="pdeb: train and benchmark neural PDE solvers (DPOT, FNO, transformers) on PDE datasets.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)


def _console():
    from rich.console import Console

    return Console()


def _print_components(kind: str, as_json: bool, columns: list[str]) -> None:
    from rich.table import Table

    from pdebench_core import plugins

    items = [c.summary() for c in plugins.registries()[kind]]
    if as_json:
        typer.echo(json.dumps(items, indent=2, default=str))
        return
    table = Table(title=f"{kind}s")
    for column in ["name", *columns, "plugin"]:
        table.add_column(column)
    for item in items:
        if "higher_is_better" in item:  # a metric's direction, in words
            item["better"] = "higher" if item["higher_is_better"] else "lower"
        table.add_row(*[_cell(item.get(c)) for c in ["name", *columns, "plugin"]])
    _console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


@app.command()
@friendly
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List loaded plugins, where they come from, and any that failed to load."""
    from rich.table import Table

    from pdebench_core import plugins as plugin_manager

    infos = plugin_manager.plugin_infos()
    if as_json:
        typer.echo(json.dumps([{"name": i.name, "origin": i.origin, "version": i.version, "hooks": i.hooks,
                                "error": i.error} for i in infos], indent=2))
        return
    table = Table(title="plugins")
    for column in ("name", "origin", "version", "hooks", "status"):
        table.add_column(column, no_wrap=column == "name", overflow="fold")
    for i in infos:
        status = f"[red]failed: {i.error}[/red]" if i.error else "[green]ok[/green]"
        table.add_row(i.name, i.origin, i.version, ", ".join(h.replace("register_", "") for h in i.hooks), status)
    _console().print(table)


@app.command()
@friendly
def models(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    data: Optional[str] = typer.Option(None, "--data", help="Also show parameter counts on this dataset."),
    profile: str = typer.Option("small", "--profile", help="Profile whose model settings to count."),
) -> None:
    """List registered models (with parameter counts for --data)."""
    if data is None:
        _print_components("model", as_json, ["dims", "description"])
        return
    from rich.table import Table

    from pdebench_core import plugins as plugin_manager
    from pdebench_core.config import build_dataset, component_config
    from pdebench_core.data.pipeline import plan_mixture

    dataset = build_dataset(data, profile)
    spec = plan_mixture({data: dataset}, t_out=1).model_spec
    rows = []
    for comp in plugin_manager.registries()["model"]:
        item = comp.summary()
        if not comp.supports(spec.ndim):
            item["parameters"] = None
        else:
            from pdebench_core.workflow import built_module

            model = built_module(comp, component_config(comp, profile), spec)
            item["parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append(item)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"models on {data} ({profile} profile)")
    for column in ("name", "parameters", "dims", "description"):
        table.add_column(column)
    for item in rows:
        count = item["parameters"]
        table.add_row(item["name"], "n/a" if count is None else f"{count:,}", _cell(item.get("dims")),
                      _cell(item.get("description")))
    _console().print(table)


def _listing(kind: str, columns: list[str], summary: str) -> Callable[..., None]:
    """The command that lists the registered components of ``kind`` as a table or JSON.

    Args:
        kind: Component kind (``"dataset"``).
        columns: Card fields shown as table columns.
        summary: The command's one-line help.

    Returns:
        The command function, ready for ``app.command``.
    """

    def command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        _print_components(kind, as_json, columns)

    command.__doc__ = summary
    return command


# pdeb datasets, tasks, metrics and sinks ('models' above also counts parameters)
for _kind, _columns, _summary in (
    ("dataset", ["dims", "fields", "description"], "List registered datasets."),
    ("task", ["description"], "List registered tasks."),
    ("metric", ["description", "reduction", "better"], "List registered metrics."),
    ("sink", ["description"], "List registered result sinks."),
):
    app.command(f"{_kind}s")(friendly(_listing(_kind, _columns, _summary)))


@app.command()
@friendly
def run(
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value settings, e.g. train.max_steps=100 data.ns2d.n_train=32"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see 'pdeb models')."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset name(s), comma-separated."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task name (default: the model's own, e.g. pretrain for dpot, else train; see 'pdeb tasks')."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="smoke, small (default) or paper."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML run config; overrides apply on top."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Name of the run (default: generated)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run with this id."),
    horizon: Optional[int] = typer.Option(None, "--horizon", help="Frames to roll out at evaluation "
                                          "(default: each dataset's own); same as eval.horizon=N."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors and the final metrics."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Data-parallel processes on this machine "
                                       "(started with torch's own launcher, torchrun)."),
    nnodes: int = typer.Option(1, "--nnodes", help="Machines taking part (multi-node: start the same command on "
                                                   "each, see docs/cluster.md)."),
    node_rank: int = typer.Option(0, "--node-rank", help="This machine's index among --nnodes."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT every machine can reach "
                                                "(torchrun's c10d rendezvous), needed with --nnodes > 1."),
) -> None:
    """Train, pre-train, fine-tune or evaluate a model on one or more datasets."""
    from pdebench_core.config import build_config
    from pdebench_core.resume import resumed_config
    from pdebench_core.runner import execute

    if horizon is not None:
        overrides = [*(overrides or []), f"eval.horizon={horizon}"]
    if resume:
        if run_id is not None:
            raise UsageError(f"--run-id {run_id} and --resume {resume} together: a resumed run keeps its id; "
                             f"drop --run-id")
        cfg = resumed_config(resume, model, data, task, profile, config, overrides or [], seed, device)
    else:
        cfg = build_config(model=model, data=data, task=task, profile=profile, config_file=config,
                           overrides=overrides or [], seed=seed, device=device, run_id=run_id)
    _check_process_count(nproc_per_node, cfg.run.device)
    nodes = _check_nodes(nnodes, node_rank, rdzv_endpoint)
    _check_batch_split(cfg, nproc_per_node * nnodes)
    if (nproc_per_node > 1 or nodes) and "LOCAL_RANK" not in os.environ:
        raise typer.Exit(_launch_torchrun(nproc_per_node, cfg, resume, nodes))
    try:
        ctx = execute(cfg, resume=bool(resume), quiet=quiet)
    except BaseException as exc:
        if _leave_process_group():
            _end_failed_worker(exc)
        raise
    worker = _leave_process_group()
    if ctx.is_main:
        _print_results(ctx)
    if worker:
        from pdebench_core.distributed import end_worker

        end_worker(0)


def _end_failed_worker(exc: BaseException) -> None:
    """Report the error of a worker of a multi-process run and end it with its exit code.

    Like a finished worker, a failed one leaves without interpreter shutdown, where gloo's
    threads could turn its exit status into an abort (see ``end_worker``).
    """
    import traceback

    from pdebench_core.cli_common import report_error
    from pdebench_core.distributed import end_worker
    from pdebench_core.runs import LAUNCHER_COMMAND

    if isinstance(exc, typer.Exit):
        end_worker(exc.exit_code)
    if isinstance(exc, SystemExit):  # as Python treats it: None is success, other values are printed
        if exc.code is None or isinstance(exc.code, int):
            end_worker(exc.code or 0)
        print(exc.code, file=sys.stderr)
        end_worker(1)
    under_pdeb = LAUNCHER_COMMAND in os.environ  # pdeb's own launcher reports a signal itself
    if isinstance(exc, KeyboardInterrupt) and (int(os.environ.get("RANK", "0")) > 0 or under_pdeb):
        end_worker(getattr(exc, "exit_code", 130))  # every process got the signal: one line, pdeb's or rank 0's
    code = report_error(exc)
    if code is None:
        traceback.print_exception(exc)
    end_worker(1 if code is None else code)


def _check_batch_split(cfg, processes: int) -> None:
    """Refuse, before launching anything, a global batch the processes cannot share evenly."""
    batch, accum = int(cfg.train.batch_size), int(cfg.train.grad_accum)
    if processes > 1 and batch % (processes * accum):
        raise UsageError(f"train.batch_size={batch} must be divisible by processes x train.grad_accum = {processes} x "
                         f"{accum}; pick a batch that is, or another process count")


def _check_process_count(nproc: int, device: str) -> None:
    """At least one process; on GPUs at most one per visible GPU, on CPUs at most twice the
    cores (gloo processes beyond that only compete for the cores and multiply memory)."""
    if nproc < 1:
        raise UsageError(f"--nproc-per-node {nproc} must be at least 1")
    import torch

    if device != "cpu" and torch.cuda.is_available():
        if nproc > torch.cuda.device_count():
            raise UsageError(f"--nproc-per-node {nproc} asks for more processes than the "
                             f"{torch.cuda.device_count()} visible GPUs; lower it or use --device cpu")
        return
    limit = 2 * (os.cpu_count() or 1)
    if nproc > limit:
        raise UsageError(f"--nproc-per-node {nproc} is more than twice the {os.cpu_count()} CPU cores; "
                         f"use at most {limit} processes on CPU")




def _check_nodes(nnodes: int, node_rank: int, endpoint: Optional[str]) -> list[str]:
    """torchrun's multi-node arguments (empty for one machine), after checking them."""
    if nnodes < 1:
        raise UsageError(f"--nnodes {nnodes} must be at least 1")
    if not 0 <= node_rank < nnodes:
        raise UsageError(f"--node-rank {node_rank} must lie in 0..{nnodes - 1} for --nnodes {nnodes}")
    if nnodes == 1:
        return []
    host, _, port = (endpoint or "").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT that every machine can reach "
                         f"(got {endpoint!r})")
    return [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}", f"--rdzv-id=pdeb-{endpoint}"]


def _launch_torchrun(nproc: int, cfg, resume: Optional[str], nodes: list[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes per machine, on one machine
    (``--standalone``) or on several (``nodes``: c10d rendezvous); the config is already validated."""
    from pdebench_core.runs import LAUNCH_OPTIONS, LAUNCHER_COMMAND, command_line, new_run_id

    argv = list(sys.argv[1:])
    cleaned, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in LAUNCH_OPTIONS:
            skip = True
            continue
        if item.startswith(tuple(f"{option}=" for option in LAUNCH_OPTIONS)):
            continue
        cleaned.append(item)
    run_id = resume or cfg.run.run_id or new_run_id(cfg.model.name, list(cfg.data.keys()))
    if not resume and "--run-id" not in cleaned:
        cleaned += ["--run-id", run_id]
    launch = nodes or ["--standalone"]
    os.environ[LAUNCHER_COMMAND] = command_line()  # the workers record it, launch options included
    failures: list[str] = []
    try:
        code = _torchrun([*launch, f"--nproc-per-node={nproc}", "-m", "pdebench_core.cli", *cleaned],
                         failures.append)
    finally:
        os.environ.pop(LAUNCHER_COMMAND, None)
    if code:
        _record_launch_outcome(run_id, code, failures)
    return code


def _record_launch_outcome(run_id: str, code: int, failures: list[str]) -> None:
    """Keep ``status.json`` true after a multi-process run ended badly. When one process fails,
    torchrun stops the others with SIGTERM: process 0 may then have recorded "stopped by
    SIGTERM", or nothing at all; the launcher knows which process failed."""
    from pdebench_core.rundir import RunDir

    run = RunDir.of(run_id)
    if not run.status_file.is_file():
        return  # refused before the run directory was made
    status = run.read_status()
    stopped = status.get("state") == "running" or str(status.get("error", "")).startswith("stopped by SIG")
    if not stopped:
        return  # process 0 recorded its own error (or the run finished)
    if failures:
        run.restate("failed", failures[0])
    elif code in (128 + int(signal.SIGINT), 128 + int(signal.SIGTERM)):
        run.restate("interrupted", f"stopped by {signal.Signals(code - 128).name}")


def _torchrun(arguments: list[str], on_failure: Callable[[str], None] = lambda reason: None) -> int:
    """Run torch's launcher in this process; the exit status of the run.

    Each worker reports its own error in one line (:func:`_end_failed_worker`), so the
    launcher's own account of a failure (log lines and a ``ChildFailedError`` traceback) is
    not shown; a worker killed by a signal, which could not report, is named in one line, and
    a signal to ``pdeb`` itself ends it with ``128 + signal``, as for any command.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    with _launcher_state_restored():
        try:
            run(parse_args(arguments))
        except SignalException as exc:
            typer.echo("interrupted" if exc.sigval == signal.SIGINT else f"stopped by {exc.sigval.name}", err=True)
            return 128 + int(exc.sigval)
        except RendezvousError as exc:
            reason = str(exc) or type(exc).__name__
            typer.echo(f"error: the processes of this run did not all join ({reason}); start the same command "
                       f"on every node with the same --rdzv-endpoint, which every node must reach", err=True)
            return 1
        except ChildFailedError as exc:
            # A rank killed by a signal is the cause; the others' errors (a lost peer) follow from it.
            killed = sorted(((rank, failure) for rank, failure in exc.failures.items() if failure.exitcode < 0),
                            key=lambda item: item[0])
            rank, failure = killed[0] if killed else exc.get_first_failure()
            if failure.exitcode >= 0:
                on_failure(f"process of rank {rank} failed with exit code {failure.exitcode} (its error is in the "
                           f"command's output)")
                return failure.exitcode or 1
            on_failure(f"process of rank {rank} was killed by {failure.signal_name()}")
            typer.echo(f"error: process of rank {rank} was killed by {failure.signal_name()}", err=True)
            return 128 - failure.exitcode
    return 0


@contextlib.contextmanager
def _launcher_state_restored() -> Iterator[None]:
    """Quiet the launcher's loggers, and give back the signal handlers it installs, afterwards."""
    import logging

    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(prefixes)]
    levels = [logger.level for logger in loggers]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _leave_process_group() -> bool:
    """Destroy the process group of a multi-process run; whether there was one."""
    if "torch.distributed" not in sys.modules:
        return False
    from pdebench_core.distributed import leave_process_group

    return leave_process_group()


def _print_results(ctx) -> None:
    from rich.table import Table

    results = getattr(ctx, "results", None) or {}
    if not results:
        return
    names = sorted({m for values in results.values() for m in values})
    console = _console()
    console.print(f"run {ctx.run_id}", highlight=False, soft_wrap=True)  # whole, to copy into other commands
    table = Table()
    table.add_column("dataset")
    for name in names:
        table.add_column(name, justify="right")
    for dataset, values in results.items():
        table.add_row(dataset, *[f"{values[n]:.4g}" if n in values else "" for n in names])
    console.print(table)


@app.command()
@friendly
def runs(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    mark_interrupted: Optional[str] = typer.Option(
        None, "--mark-interrupted", metavar="RUN_ID",
        help="Record a run whose process is gone (its machine stopped, its job was killed) as interrupted, so "
             "that it can be resumed."),
) -> None:
    """List run directories with their state (running, finished, failed, interrupted, damaged)."""
    from rich.table import Table

    from pdebench_core import paths
    from pdebench_core.rundir import RunDir, list_runs

    if mark_interrupted is not None:
        RunDir.of(mark_interrupted).mark_interrupted()
    items = list_runs()
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    table = Table(title=f"runs in {paths.runs_dir()}")
    table.add_column("run_id", no_wrap=True)  # copied into 'pdeb report' and '--resume'
    table.add_column("state", no_wrap=True)
    table.add_column("error")
    for item in items:
        table.add_row(item["run_id"], item["state"], item["error"] or "")
    _console().print(table)


def _mount_data_commands() -> None:
    try:
        from pdebench_core.cli_data import data_app
    except ImportError:
        return
    app.add_typer(data_app, name="data", help="Generate, inspect, verify, convert and download datasets.")


_mount_data_commands()


def _mount_result_commands() -> None:
    from pdebench_core.cli_results import register

    register(app)


_mount_result_commands()


def _mount_sweep_command() -> None:
    from pdebench_core.cli_sweep import register

    register(app)


_mount_sweep_command()
_plugins_mounted = False


def _mount_plugin_commands() -> None:
    global _plugins_mounted
    if _plugins_mounted:
        return
    _plugins_mounted = True
    from pdebench_core import plugins as plugin_manager

    plugin_manager.register_commands(app)


def main() -> None:
    """Console-script entry point: errors are one ``error:`` line, command-line mistakes
    (an unknown option, a missing argument) included."""
    _mount_plugin_commands()
    try:
        result = app(standalone_mode=False, prog_name="pdeb")
    except PdebError as exc:  # raised outside a command, e.g. while loading plugins
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except _click_usage_errors() as exc:  # click would draw a box of several lines
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "pdeb"
        print(f"error: {exc.format_message().rstrip('.')}; see '{command} --help'", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, *_click_aborts()):  # Ctrl-C at a prompt
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


def _click_usage_errors() -> tuple[type, ...]:
    """Click's usage-error class: typer's own copy of click (typer >= 0.26) and click's."""
    import click

    found = [click.exceptions.UsageError]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        return tuple(found)
    return (*found, vendored.UsageError)


def _click_aborts() -> tuple[type, ...]:
    import click

    return (click.exceptions.Abort,)


if __name__ == "__main__":
    main()
