"""The ``pdeb`` command line (Typer + rich)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, List, Optional

import typer

from pdebench_core.cli_common import click_exceptions, friendly, outlive_the_reader
from pdebench_core.errors import PdebError, ResultsUndelivered, UsageError

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
    _add_name_column(table, [item["name"] for item in items])
    for column in [*columns, "plugin"]:
        table.add_column(column, overflow="fold")  # a word wider than its column folds, never cut
    for item in items:
        if "higher_is_better" in item:  # a metric's direction, in words
            item["better"] = "higher" if item["higher_is_better"] else "lower"
        table.add_row(*[_cell(item.get(c)) for c in ["name", *columns, "plugin"]])
    _console().print(table)


def _add_name_column(table: Any, names: list[str], title: str = "name") -> None:
    """A column of names that a narrow terminal never wraps or cuts: they are what users type."""
    table.add_column(title, no_wrap=True, min_width=max((len(name) for name in names), default=4))


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
    _add_name_column(table, [i.name for i in infos])
    for column in ("origin", "version", "hooks", "status"):
        table.add_column(column, no_wrap=column == "status", overflow="fold")
    for i in infos:
        status = "[red]failed (below)[/red]" if i.error else "[green]ok[/green]"
        table.add_row(i.name, i.origin, i.version, ", ".join(h.replace("register_", "") for h in i.hooks), status)
    console = _console()
    console.print(table)
    for i in infos:  # whole, under the table: a reason cut into a narrow column is unreadable
        if i.error:
            console.print(f"[red]{i.name}[/red]: {i.error}", highlight=False, markup=True, soft_wrap=True)


@app.command()
@friendly
def models(
    overrides: Optional[List[str]] = typer.Argument(None, help="Settings of the --data dataset, key=value "
                                                                "(e.g. data.mydata.path=FOLDER)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    data: Optional[str] = typer.Option(None, "--data", help="Also show parameter counts on this dataset."),
    profile: str = typer.Option("small", "--profile", help="Profile whose model settings to count."),
) -> None:
    """List registered models (with parameter counts for --data)."""
    from pdebench_core.config import check_profile

    check_profile(profile)
    if data is None:
        if overrides:
            raise UsageError(f"settings ({overrides[0]}, ...) apply to the dataset of --data; add --data NAME")
        _print_components("model", as_json, ["dims", "description"])
        return
    from rich.table import Table

    from pdebench_core import plugins as plugin_manager
    from pdebench_core.config import build_dataset
    from pdebench_core.data.pipeline import plan_mixture

    dataset = build_dataset(data, profile, overrides or [])
    spec = plan_mixture({data: dataset}, t_out=1).model_spec
    rows = []
    for comp in plugin_manager.registries()["model"]:
        item = comp.summary()
        item["parameters"] = _parameter_count(comp, profile, spec) if comp.supports(spec.ndim) else None
        rows.append(item)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"models on {data} ({profile} profile)")
    _add_name_column(table, [item["name"] for item in rows])
    for column in ("parameters", "dims", "description"):
        table.add_column(column)
    for item in rows:
        count = item["parameters"]
        table.add_row(item["name"], "n/a" if count is None else f"{count:,}", _cell(item.get("dims")),
                      _cell(item.get("description")))
    _console().print(table)


def _parameter_count(component, profile: str, spec) -> int | None:
    """Trainable parameters of a model built for ``spec``; None for one without this profile."""
    from pdebench_core.config import component_config
    from pdebench_core.workflow import built_module

    try:
        cfg = component_config(component, profile)
    except UsageError:  # a plugin model that lacks the profile: listed, not counted
        return None
    return sum(p.numel() for p in built_module(component, cfg, spec).parameters() if p.requires_grad)


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
    from pdebench_core import launcher
    from pdebench_core.config import build_config
    from pdebench_core.resume import resumed_config
    from pdebench_core.runner import execute

    if resume is not None and not resume.strip():
        raise UsageError("--resume is empty; give the id of the run to continue ('pdeb runs' lists them)")
    if horizon is not None:
        given = next((o for o in overrides or [] if o.startswith("eval.horizon=")), None)
        if given is not None and given != f"eval.horizon={horizon}":
            raise UsageError(f"--horizon {horizon} and {given} contradict each other; give one of them")
        overrides = [*(overrides or []), f"eval.horizon={horizon}"]
    if resume:
        if run_id is not None:
            raise UsageError(f"--run-id {run_id} and --resume {resume} together: a resumed run keeps its id; "
                             f"drop --run-id")
        cfg = resumed_config(resume, model, data, task, profile, config, overrides or [], seed, device)
    else:
        cfg = build_config(model=model, data=data, task=task, profile=profile, config_file=config,
                           overrides=overrides or [], seed=seed, device=device, run_id=run_id)
    launcher.check_process_count(nproc_per_node, cfg.run.device)
    nodes = launcher.check_nodes(nnodes, node_rank, rdzv_endpoint)
    launcher.check_batch_split(cfg, nproc_per_node * nnodes)
    if (nproc_per_node > 1 or nodes) and "LOCAL_RANK" not in os.environ:
        raise typer.Exit(launcher.launch_torchrun(nproc_per_node, cfg, resume, nodes))
    launcher.stop_with_the_launcher()
    try:
        with outlive_the_reader():
            ctx = execute(cfg, resume=bool(resume), quiet=quiet)
    except BaseException as exc:
        if isinstance(exc, ResultsUndelivered):  # computed and kept: shown above the error, as for any run
            with outlive_the_reader():
                _print_results(exc)
        if _leave_process_group() or launcher.WORKER_ERRORS in os.environ:
            launcher.end_failed_worker(exc)
        raise
    worker = _leave_process_group()
    if ctx.is_main:
        with outlive_the_reader():  # a reader gone by now does not turn a finished run into a failure
            _print_results(ctx)
    if worker:
        from pdebench_core.distributed import end_worker

        end_worker(0)


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
    # Ids and states are copied into 'pdeb report' and '--resume': never cut, whatever the width;
    # the error column takes what is left and folds.
    longest_id = max((len(item["run_id"]) for item in items), default=6)
    table.add_column("run_id", no_wrap=True, min_width=longest_id)
    table.add_column("state", no_wrap=True, min_width=max((len(item["state"]) for item in items), default=5))
    table.add_column("error", overflow="fold", min_width=10)
    for item in items:
        table.add_row(item["run_id"], item["state"], item["error"] or "")
    console = _console()
    if not console.is_terminal:  # a pipe or a file: as wide as the ids need
        console.width = max(console.width, longest_id + 40)
    console.print(table)


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
    _quiet_torch_cpp_warnings_of_launched_runs()
    _mount_plugin_commands()
    try:
        result = app(standalone_mode=False, prog_name="pdeb")
    except PdebError as exc:  # raised outside a command, e.g. while loading plugins
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click_exceptions("UsageError") as exc:  # click would draw a box of several lines
        command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else _command_path(sys.argv[1:])
        message = exc.format_message().rstrip(".")
        if message:  # none when a group was called without a command: its help is already printed
            print(f"error: {message}; see '{command} --help'", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, *click_exceptions("Abort")):  # Ctrl-C at a prompt
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit as exc:  # a closed pipe met by click (it wraps stdout) or rich (`pdeb --help | head`)
        closed = type(sys.stdout).__name__ == "PacifyFlushWrapper" or isinstance(exc.__context__, BrokenPipeError)
        if exc.code == 1 and closed:
            sys.exit(141)  # as for a command: see cli_common.user_errors
        raise
    sys.exit(result if isinstance(result, int) else 0)


def _command_path(argv: list[str]) -> str:
    """``pdeb data convert``: the commands ``argv`` names before anything else, for an error the
    option parser raises without saying whose option it was (an option missing its value)."""
    import typer.main

    command, path = typer.main.get_command(app), ["pdeb"]
    for word in argv:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
        path.append(word)
    return " ".join(path)


def _quiet_torch_cpp_warnings_of_launched_runs() -> None:
    """A run pdeb launches over several processes reports a lost peer or node in one line; torch's
    C++ warnings of the same event (each with a stack of C++ frames, from every process) would
    bury it. They are read from ``TORCH_CPP_LOG_LEVEL`` when torch loads, so it is set here,
    before anything imports torch, unless the user chose a level."""
    from pdebench_core.runs import LAUNCH_OPTIONS

    launched = any(arg.split("=", 1)[0] in LAUNCH_OPTIONS for arg in sys.argv[1:])
    if launched and "TORCH_CPP_LOG_LEVEL" not in os.environ:
        os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"


if __name__ == "__main__":
    main()
