"""Result commands of the ``pdeb`` CLI: ``leaderboard``, ``reproduce`` and ``report``.

``reproduce`` takes a run id (rerun a run from its saved config) or a protocol name
(``dpot-table1``: evaluate a released checkpoint as a published table was measured).

Call :func:`register` with the Typer app to add them. ``leaderboard`` stays light: it
reads the SQLite store and the published CSV files without importing torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from pdebench_core.cli_common import check_output_file, friendly
from pdebench_core.errors import PdebError, UsageError

SUFFIX_FORMATS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".json": "json", ".html": "html",
                  ".htm": "html"}


def leaderboard_command(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Only these datasets (comma-separated)."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Only these models (comma-separated; 'fno' also matches published 'FNO')."),
    metric: Optional[str] = typer.Option(None, "--metric",
                                         help="Metrics to show (comma-separated); the first ranks the rows. "
                                              "With --pivot: the one metric in the cells (default l2re)."),
    task: Optional[str] = typer.Option(None, "--task", "-t",
                                       help="Only these tasks (published rows: baseline, pretrained = zero-shot, "
                                            "finetuned)."),
    source: str = typer.Option(
        "all", "--source", "-s", help="local, published or all (or a source key: dpot, pdebench)."),
    pivot: bool = typer.Option(False, "--pivot", help="Model x dataset table of one metric, like the papers' tables."),
    per_run: bool = typer.Option(False, "--per-run",
                                 help="One row per run instead of pooling seeds, with where its data came from."),
    wide: bool = typer.Option(False, "--wide", help="Every row and every column (default: local runs in 100 "
                                                    "columns, the published tables summarised)."),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f", help="table, markdown, csv, json or html (default: table, or from --out's suffix)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of the terminal."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file of another kind (one with "
                                                      "the format's suffix is replaced anyway)."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Only the runs of this sweep (see 'pdeb sweep')."),
) -> None:
    """Compare local results with the published ones (DPOT Table 1, PDEBench), ranked among rows measured alike."""
    from pdebench_core import leaderboard as lb

    for option, value in (("--data", data), ("--model", model), ("--metric", metric), ("--task", task),
                          ("--format", fmt), ("--sweep", sweep), ("--source", source)):
        if value is not None and not value.replace(",", "").strip():
            raise UsageError(f"{option} names nothing; give a name, or leave {option} out")
    store_rows = None
    if sweep:
        from pdebench_core.sweep import sweep_rows

        store_rows = sweep_rows(sweep)

    fmt = fmt or (SUFFIX_FORMATS.get(out.suffix.lower(), "table") if out else "table")
    lb.check_format(fmt)
    implied = SUFFIX_FORMATS.get(out.suffix.lower()) if out is not None else None
    if implied is not None and implied != fmt:
        raise UsageError(f"--out {out} names a {implied} file, but --format is {fmt}; make them agree")
    if out is not None:
        check_output_file(out, force, tuple(k for k, v in SUFFIX_FORMATS.items() if v == fmt))
    if out is not None and fmt == "table":
        raise UsageError(f"--out {out} needs a file format: add --format markdown, csv, json or html")
    if pivot:
        names = [m.strip() for m in (metric or lb.DEFAULT_METRIC).split(",") if m.strip()]
        if len(names) != 1:
            example = names[0] if names else lb.DEFAULT_METRIC
            raise UsageError(f"--pivot shows one metric; got --metric '{metric}'; pick one, e.g. --metric {example}")
        board = lb.collect(store_rows, source=source, data=data, model=model, metric=names[0] if metric else None,
                           task=task, per_run=per_run)
        table = lb.pivot(board, names[0])
        if fmt == "table":
            lb.print_pivot(table, title=f"leaderboard: {names[0]}")
            return
        _emit(lb.render_pivot(table, fmt), out)
        return
    board = lb.collect(store_rows, source=source, data=data, model=model, metric=metric, task=task, per_run=per_run)
    if fmt != "table":
        _emit(lb.render(board, fmt), out)
    elif wide:
        lb.print_wide(board)
    else:
        lb.print_default(board, per_run=per_run, list_published=source not in ("all", "local"))


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    from pdebench_core.diskspace import write_text_atomically

    write_text_atomically(out, text)
    typer.echo(f"wrote {out}", err=True)


def reproduce_command(
    target: str = typer.Argument(..., metavar="RUN_ID_OR_PROTOCOL",
                                 help="A run to rerun (see 'pdeb leaderboard --source local'), or a protocol "
                                      "(dpot-table1) to run on a released checkpoint."),
    execute: bool = typer.Option(False, "--execute", help="Rerun it now (as a new run) and compare the metrics."),
    new_run_id: Optional[str] = typer.Option(
        None, "--run-id", help="Id of the new run (default: <run_id>-repro-<n>, the first n not taken)."),
    as_json: bool = typer.Option(False, "--json", help="Print the reproduction as JSON."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Protocol: the released checkpoint to evaluate (official key names)."),
    data_root: Optional[Path] = typer.Option(
        None, "--data-root", help="Protocol: the folder holding the datasets (the official code's data/large)."),
    finetune_steps: int = typer.Option(
        0, "--finetune-steps", min=0, help="Protocol: also fine-tune a copy on each dataset for N steps, then evaluate."),
    fmt: str = typer.Option("table", "--format", "-f", help="Protocol: table, markdown, csv or json."),
    device: str = typer.Option("auto", "--device", help="Protocol: auto, cpu or cuda."),
    published: Optional[str] = typer.Option(
        None, "--published", help="Protocol: published row to compare with, e.g. DPOT-Ti (default: by the "
                                  "checkpoint's size)."),
    max_trajectories: int = typer.Option(
        0, "--max-trajectories", min=0, help="Protocol: score at most N test trajectories per dataset (0 = all "
                                             "the protocol scores)."),
    finetune_batch_size: Optional[int] = typer.Option(
        None, "--finetune-batch-size", min=1, help="Protocol: fine-tuning batch (default: the protocol's)."),
    finetune_epochs: int = typer.Option(
        0, "--finetune-epochs", min=0, help="Protocol: fine-tune for N epochs of each dataset instead of "
                                     "--finetune-steps (the published fine-tuned cells are 200)."),
    pretrain_command: bool = typer.Option(
        False, "--pretrain-command", help="Protocol: print the 'pdeb run' command that pre-trains DPOT on the "
                                          "training files under --data-root as the released checkpoints were."),
    size: str = typer.Option("ti", "--size", help="Protocol, with --pretrain-command: the DPOT size (ti, s, m, l)."),
) -> None:
    """Rerun a run from its saved config, or run a protocol on a released checkpoint.

    With a run id: print the exact command that reruns the run (and run it with --execute).
    With a protocol name: evaluate --checkpoint zero-shot (and after --finetune-steps or
    --finetune-epochs) on every
    dataset of the protocol under --data-root, beside the published numbers.
    """
    from pdebench_core.errors import did_you_mean
    from pdebench_core.protocols import find_protocol, load_protocol, protocol_names
    from pdebench_core.report.provenance import known_run_ids
    from pdebench_core.runs import run_dir_for

    if pretrain_command:
        from pdebench_core.protocol_pretraining import pretraining_command

        if data_root is None or checkpoint is not None:
            raise UsageError("--pretrain-command needs --data-root DIR (the training files), and no --checkpoint")
        typer.echo(pretraining_command(load_protocol(target), data_root, size))
        return
    is_protocol = find_protocol(target) is not None
    if not is_protocol and (checkpoint is not None or data_root is not None) and run_dir_for(target).is_dir():
        raise UsageError(f"'{target}' is a run; --checkpoint and --data-root apply to a protocol "
                         f"({', '.join(protocol_names())}): drop them to rerun the run")
    if not is_protocol and checkpoint is None and data_root is None and not run_dir_for(target).is_dir():
        close = did_you_mean(target, [*protocol_names(), *known_run_ids()])
        raise UsageError(f"no run or protocol named '{target}'{close}; 'pdeb runs' lists runs, protocols are "
                         f"{', '.join(protocol_names())}")
    if checkpoint is not None or data_root is not None or is_protocol:
        _reproduce_protocol(target, checkpoint, data_root, (finetune_steps, finetune_epochs), fmt, device,
                            published, max_trajectories, finetune_batch_size,
                            execute or new_run_id is not None or as_json)
        return
    if fmt != "table":
        raise UsageError(f"--format {fmt} applies to a protocol; '{target}' is a run: use --json for JSON")
    _reproduce_run(target, execute, new_run_id, as_json)


def _reproduce_protocol(name: str, checkpoint: Path | None, data_root: Path | None, finetune: tuple[int, int],
                        fmt: str, device: str, published: str | None, max_trajectories: int, finetune_batch_size: int | None,
                        run_options: bool) -> None:
    from pdebench_core import protocol_report
    from pdebench_core.protocol_runs import reproduce
    from pdebench_core.protocols import load_protocol

    protocol_report.check_format(fmt)
    load_protocol(name)  # an unknown name fails here, with the closest one
    if run_options:
        raise UsageError(f"--execute, --run-id and --json rerun a run; '{name}' is a protocol: use --format json")
    if checkpoint is None or data_root is None:
        raise UsageError(f"protocol '{name}' needs --checkpoint FILE and --data-root DIR")
    quiet = fmt != "table"
    rep = reproduce(name, checkpoint, data_root, finetune_steps=finetune[0], finetune_epochs=finetune[1],
                    device=device, published=published, max_trajectories=max_trajectories,
                    finetune_batch_size=finetune_batch_size,
                    log=(lambda line: None) if quiet else (lambda line: typer.echo(line, err=True)))
    if fmt == "table":
        protocol_report.print_reproduction(rep)
    else:
        typer.echo(protocol_report.render(rep, fmt), nl=False)


def _reproduce_run(run_id: str, execute: bool, new_run_id: str | None, as_json: bool) -> None:
    from pdebench_core.report import reproduction
    from pdebench_core.rundir import RunDir

    if new_run_id is not None and RunDir.of(new_run_id).path.exists():  # RunDir.of checks the name itself
        raise UsageError(f"--run-id {new_run_id} exists already; the rerun needs a new id")
    repro = reproduction(run_id, new_run_id)
    if repro.problem is not None:
        raise UsageError(f"cannot rerun '{run_id}': its saved config no longer builds: {repro.problem}")
    if as_json and not execute:
        typer.echo(json.dumps({"run_id": repro.run_id, "new_run_id": repro.new_run_id, "command": repro.command,
                               "argv": repro.argv, "original_command": repro.original,
                               "config_hash": repro.config_hash, "seed": repro.seed}, indent=2))
        return
    digest = f", config hash {repro.config_hash}" if repro.config_hash else ""  # a run that wrote no result has none
    typer.echo(f"# rerun of {repro.run_id} from its saved config (seed {repro.seed}{digest})")
    typer.echo(repro.command)
    if repro.original:
        typer.echo(f"# original command: {repro.original}")
    several_nodes = "--nnodes" in " ".join(repro.argv)
    if several_nodes:
        typer.echo("# a run on several machines: start this command on every one, each with its own --node-rank")
    if not execute:
        return
    if several_nodes:
        raise UsageError(f"'{run_id}' ran on several machines: --execute cannot start them; run the printed command "
                         f"on each machine")
    argv = [sys.executable, "-m", "pdebench_core.cli", *repro.argv[1:]]
    code = _run_forwarding_signals(argv)
    if code != 0:  # the rerun printed its own error line
        raise typer.Exit(code if code > 0 else 128 - code)
    _compare(repro.run_id, repro.new_run_id, as_json)


def _run_forwarding_signals(argv: list[str]) -> int:
    """Run the rerun as a child and wait for it; SIGTERM, SIGHUP and Ctrl-C sent to this process
    alone (``timeout``, a scheduler) are passed on, so the rerun ends as interrupted instead of
    training on as an orphan or being killed with its status left ``running``."""
    import signal

    wanted = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None), signal.SIGINT) if s is not None]
    child: subprocess.Popen | None = None
    early: list[int] = []  # signals that came before the child existed: sent to it once it does

    def forward(number: int, frame: Any) -> None:
        if child is None:
            early.append(number)
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(number)

    previous = {sig: signal.signal(sig, forward) for sig in wanted}  # before the child: no window left
    try:
        try:
            child = subprocess.Popen(argv)
        except OSError as exc:
            raise PdebError(f"could not start the rerun ({exc.strerror or exc}); run the printed command "
                            f"yourself") from None
        for number in early:
            forward(number, None)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # only if a handler let it through; the child got it too
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is None:  # no child to pass them to: they are this process's again
            for number in early:
                os.kill(os.getpid(), number)


def _compare(original: str, rerun: str, as_json: bool) -> None:
    """Metrics of the original and the rerun side by side."""
    from pdebench_core.results import ResultsStore

    from pdebench_core.report import config_differences

    store = ResultsStore()
    old_rows, new_rows = store.run_rows(original), store.run_rows(rerun)
    before = {(r["dataset"], r["task"]): r["metrics"] for r in old_rows}
    after = {(r["dataset"], r["task"]): r["metrics"] for r in new_rows}
    changed = config_differences(old_rows[0]["config"], new_rows[0]["config"]) if old_rows and new_rows else []
    data_changed = _changed_data(old_rows, new_rows)
    lines = []
    for key in sorted(set(before) | set(after)):
        for name in sorted(set(before.get(key, {})) | set(after.get(key, {}))):
            a, b = before.get(key, {}).get(name), after.get(key, {}).get(name)
            lines.append({"dataset": key[0], "task": key[1], "metric": name, "original": a, "rerun": b,
                          "difference": (b - a) if a is not None and b is not None else None})
    if as_json:
        typer.echo(json.dumps({"run_id": original, "new_run_id": rerun, "metrics": lines,
                               "config_differences": changed, "data_differences": data_changed}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{original} vs rerun {rerun}")
    for column in ("dataset", "task", "metric", "original", "rerun", "difference"):
        table.add_column(column)
    for line in lines:
        table.add_row(line["dataset"], line["task"], line["metric"],
                      *[f"{line[k]:.6g}" if line[k] is not None else "" for k in ("original", "rerun", "difference")])
    console = Console()
    console.print(table)
    if changed:
        console.print(f"resolved configs differ (defaults changed since the original?): {', '.join(changed)}",
                      markup=False)
    for line in data_changed:
        console.print(f"the data differs: {line}", markup=False)


def _changed_data(old_rows: list[dict], new_rows: list[dict]) -> list[str]:
    """``["ns2d: hash 1a2b3c4d then, 5e6f7a8b now"]`` for each dataset whose content hash
    differs between the original's rows and the rerun's (a file changed under its path)."""
    before = {r["dataset"]: r.get("dataset_hash") for r in old_rows if r.get("dataset_hash")}
    after = {r["dataset"]: r.get("dataset_hash") for r in new_rows if r.get("dataset_hash")}
    return [f"{name}: hash {before[name][:8]} then, {after[name][:8]} now" for name in sorted(before.keys() & after.keys())
            if before[name] != after[name]]


def report_command(
    run_id: str = typer.Argument(..., help="The run to report on."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="HTML file to write (default: <run dir>/report.html)."),
    trajectories: int = typer.Option(2, "--trajectories", "-n", min=0,
                                     help="Test trajectories rolled out again for the field and spectrum figures."),
    rollout: bool = typer.Option(True, "--rollout/--no-rollout",
                                 help="Reload the model and roll out for the figures (else metrics and curves only)."),
    device: str = typer.Option("cpu", "--device", help="Device for the rollout: cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file of another kind (an .html "
                                                      "file is replaced anyway)."),
) -> None:
    """Write a self-contained HTML report of a run: metrics, error curves, fields and spectra."""
    from pdebench_core.report import build_report

    if out is not None:
        check_output_file(out, force, (".html", ".htm"))

    path = build_report(run_id, out=out, n_trajectories=trajectories, rollout=rollout, device=device,
                        warn=lambda note: typer.echo(f"note: {note}", err=True))
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add ``leaderboard``, ``reproduce`` and ``report`` to ``app``."""
    app.command("leaderboard")(friendly(leaderboard_command))
    app.command("reproduce")(friendly(reproduce_command))
    app.command("report")(friendly(report_command))
