"""``pdeb data``: inspect, check, convert, download, generate datasets and compute their statistics.

Every command turns a :class:`~pdebench_core.errors.PdebError` into one line on
stderr and its exit code (2 for bad input or bad data), without a traceback.
Heavy modules (h5py, numpy, the plugins) are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from pdebench_core.cli_common import user_errors
from pdebench_core.errors import PdebError, UsageError
from pdebench_core.signals import termination_signals_interrupt

data_app = typer.Typer(
    help="Inspect, verify, convert, download and generate datasets; compute their statistics.",
    no_args_is_help=True,
    add_completion=False,
)


def _console():
    from rich.console import Console

    return Console(soft_wrap=True)


def _size(n: Optional[int]) -> str:
    if n is None:
        return "?"
    from pdebench_core.diskspace import human_bytes as _human

    return _human(n)


def _path_or_url(text: str) -> str | Path:
    """A URL as typed (a ``Path`` would fold its ``//``), anything else as a local path."""
    from pdebench_core.data.remote import is_url, local_or_url

    if not text.strip():  # Path("") is the current folder
        raise UsageError("the path is empty; give a data file, a folder or a URL")
    text = local_or_url(text)
    if is_url(text):
        return text
    path = Path(text)
    if not path.exists():
        _refuse_a_dataset_name(text)
    return path


def _refuse_a_dataset_name(text: str) -> None:
    """A registered dataset's name where a path belongs: say how to get at its file."""
    from pdebench_core import plugins

    if text in {c.name for c in plugins.registries()["dataset"]}:
        raise UsageError(f"'{text}' is a registered dataset, not a file or folder; 'pdeb data generate {text}' "
                         f"prints its cache file (generating it once), which this command then takes, and "
                         f"'pdeb data stats {text}' takes the name itself")


@data_app.command()
def info(
    path: str = typer.Argument(..., help="A data file or folder in any supported layout, or a file's URL."),
    format: str = typer.Option("auto", "--format", "-f", help="Layout; 'auto' detects it."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """Describe a data file: layout, fields, shapes, dt, trajectories per split."""
    from pdebench_core.data.layouts import describe_path

    with user_errors():
        description = describe_path(_path_or_url(path), format)
    if as_json:
        typer.echo(json.dumps(description, indent=2, default=str))
        return
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{description['path']}[/bold]  layout [cyan]{description['layout']}[/cyan]")
    fields = description["fields"]
    console.print(f"fields: {', '.join(fields) if fields else '(unnamed)'} | "
                  f"trajectory (T, *S, C): {tuple(description['trajectory_shape'])} | "
                  f"dt: {description['dt'] if description['dt'] is not None else '(not stored)'} | "
                  f"stored as {description['dtype']}")
    if description.get("params"):  # what the file states of its physics (PDEBench's Nu, M, eta; Well scalars)
        console.print("parameters: " + ", ".join(f"{k}={v}" for k, v in description["params"].items()),
                      highlight=False)
    table = Table("split", "trajectories", title=None if description["own_splits"] else "(no splits in the file)")
    for split, n in description["splits"].items():
        table.add_row(split, str(n))
    console.print(table)
    for note in description["notes"]:
        console.print(f"[dim]note: {note}[/dim]")


@data_app.command()
def verify(
    path: str = typer.Argument(..., help="A canonical pdeb HDF5 file, or its URL."),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
    quick: bool = typer.Option(False, "--quick", help="Check structure and metadata only; read no values."),
) -> None:
    """Check a canonical file: metadata, shapes, dtype, NaN/Inf, constant frames, overlapping splits.

    Exits 1 when an error is found (or a warning, with --strict).
    """
    from pdebench_core.data.verify import verify_file

    with user_errors():
        target = _path_or_url(path)
        if isinstance(target, Path) and not target.exists():
            raise UsageError(f"{path}: no such file; give a canonical pdeb HDF5 file or its URL")
        if isinstance(target, Path) and target.is_dir():
            raise UsageError(f"{path} is a folder; 'pdeb data verify' checks one canonical file ('pdeb data info' "
                             f"describes a folder)")
        problems = verify_file(target, scan=not quick)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in problems], indent=2))
    else:
        console = _console()
        for p in problems:
            colour = "red" if p.severity == "error" else "yellow"
            console.print(f"[{colour}]{p.severity}[/{colour}] {p.where}: {p.message}", highlight=False)
        if problems:
            console.print(f"{path}: {len(errors)} error(s), {len(warnings)} warning(s)", highlight=False)
        else:
            console.print(f"[green]ok[/green] {path}: no problems found", highlight=False)
    if errors or (strict and warnings):
        raise typer.Exit(1)


def _registered_spec(name: Optional[str]):
    """``(spec, layout_fields)`` of a registered generated dataset of this name, whose field
    names, boundary, domain and (where the file states none, with a note) time step a
    converted file should carry; not its parameters, which are its own settings and which the
    file need not share. ``(None, None)`` for any other name."""
    from pdebench_core import plugins
    from pdebench_core.config import component_config
    from pdebench_core.data.generation import GeneratedDataset

    datasets = plugins.registries()["dataset"]
    if not name or name not in datasets or not isinstance(datasets.get(name).factory, GeneratedDataset):
        return None, None
    component = datasets.get(name)
    spec = component.factory.spec(component_config(component, "small"))
    return spec.replace(params={}), component.factory.layout_fields


@data_app.command()
def convert(
    src: Path = typer.Argument(..., help="Source file or folder in any supported layout."),
    dest: Path = typer.Argument(..., help="Canonical HDF5 file to write."),
    format: str = typer.Option("auto", "--format", "-f", help="Layout of SRC; 'auto' detects it."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name stored in the file (default: SRC's stem); "
                                       "a registered dataset's name also gives its field names, boundary and domain."),
    n_train: Optional[int] = typer.Option(None, "--n-train", help="Train trajectories (default: rule below)."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Validation trajectories."),
    n_test: Optional[int] = typer.Option(None, "--n-test", help="Test trajectories."),
    force: bool = typer.Option(False, "--force", help="Replace DEST if it is an existing file."),
) -> None:
    """Convert SRC to a canonical pdeb file, streaming trajectory by trajectory.

    The file's own splits are kept whole; a file without splits is cut in index
    order: train first, then val, then test (80/10/10 unless counts are given).
    """
    import warnings

    from pdebench_core.data.layouts import SplitWarning, describe_path
    from pdebench_core.data.layouts import convert as convert_file

    counts = {"train": n_train, "val": n_val, "test": n_test}
    with user_errors(), termination_signals_interrupt(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)  # SIGTERM unwinds too: the half-written file goes
        defaults, layout_fields = _registered_spec(name)
        written = convert_file(src, dest, format=format, name=name, counts=counts, progress=True, overwrite=force,
                               spec_defaults=defaults, layout_fields=layout_fields, must_fit=defaults is not None)
        description = describe_path(written)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    splits = ", ".join(f"{k} {v}" for k, v in description["splits"].items())
    _console().print(f"wrote {written}: {splits} trajectories of {tuple(description['trajectory_shape'])}",
                     highlight=False)


def _stats_of(target: str, overrides: List[str], profile: str, format: str, compute: bool):
    """Statistics of a path, or of a registered dataset built with ``profile`` and ``overrides``."""
    from pdebench_core.data.remote import is_url, local_or_url
    from pdebench_core.data.stats import channel_stats

    if not target.strip():  # Path("") is the current folder
        raise UsageError("the name is empty; give a registered dataset, a data file, a folder or a URL")
    if Path(target).exists() or is_url(local_or_url(target)):
        if overrides:
            raise UsageError(f"key=value settings ({overrides[0]}, ...) apply to a dataset name, not to the path "
                             f"{target}; drop them or pass a registered dataset name")
        return channel_stats(target, compute=compute, format=format)
    from pdebench_core import plugins
    from pdebench_core.config import build_dataset
    from pdebench_core.errors import did_you_mean

    names = [c.name for c in plugins.registries()["dataset"]]
    if target not in names:
        raise UsageError(f"'{target}' is neither a file or folder nor a registered dataset"
                         f"{did_you_mean(target, names)}; pass a data path or a name from 'pdeb datasets'")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UsageError(f"overrides must look like key=value, got {', '.join(bad)}")
    return channel_stats(build_dataset(target, profile, overrides), compute=compute)


@data_app.command()
def stats(
    target: str = typer.Argument(..., metavar="NAME_OR_FILE",
                                 help="A registered dataset, a data file or folder, or a file's URL."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Dataset settings key=value (with a NAME)."),
    profile: str = typer.Option("small", "--profile", "-p", help="Profile of a NAME: smoke, small or paper."),
    format: str = typer.Option("auto", "--format", "-f", help="Layout of a path; 'auto' detects it."),
    compute: bool = typer.Option(False, "--compute", help="Read the data even when The Well's stats.yaml exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Per-channel mean, std and RMS of the train split, streamed and cached with the data."""
    with user_errors():
        result = _stats_of(target, list(overrides or []), profile, format, compute)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    table = Table("channel", "mean", "std", "rms", title=f"{target}: train split")
    for name, mean, std, rms in zip(result.fields, result.mean, result.std, result.rms, strict=True):
        table.add_row(name, f"{mean:.6g}", f"{std:.6g}", f"{rms:.6g}")
    console = _console()
    console.print(table)
    count = "" if result.count is None else f", {result.count:,} values per channel"
    console.print(f"source: {result.source}{count}" + (f" ({result.where})" if result.where else ""),
                  highlight=False)


@data_app.command()
def download(
    name: str = typer.Argument(..., help="Source card name (see 'pdeb data sources') or one file name of a card."),
    dest: Optional[Path] = typer.Option(None, "--dest", "-d", help="Folder (default: $PDEB_HOME/data/downloads/NAME)."),
    file: Optional[List[str]] = typer.Option(None, "--file", help="Only files matching this glob (repeatable)."),
    trust_first_download: bool = typer.Option(
        False, "--trust-first-download",
        help="Also fetch files whose publisher gives no checksum (The Well); their sha256 is recorded in "
             "SHA256SUMS.lock and checked on every later download."),
) -> None:
    """Download a published dataset: resumable, checksum-verified, disk space checked first."""
    from pdebench_core.data.download import download as fetch

    with user_errors():
        written = fetch(name, dest=dest, files=file or None, progress=True,
                        trust_first_download=trust_first_download)
    console = _console()
    for path in written:
        console.print(f"[green]ok[/green] {path}", highlight=False)


@data_app.command()
def sources(
    as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON."),
) -> None:
    """List the source cards that 'pdeb data download' knows."""
    from pdebench_core.data.download import list_cards

    with user_errors():
        cards = list_cards()
    if as_json:
        typer.echo(json.dumps([{"name": c.name, "title": c.title, "layout": c.layout, "license": c.license,
                                "files": [f.name for f in c.files], "approx_size": c.approx_size}
                               for c in cards], indent=2))
        return
    from rich.table import Table

    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("files", justify="right")
    table.add_column("approx. size", justify="right")
    table.add_column("layout")
    table.add_column("licence")
    for c in cards:
        table.add_row(c.name, str(len(c.files)), _size(c.approx_size), c.layout, c.license)
    _console().print(table)


@data_app.command()
def generate(
    name: str = typer.Argument(..., help="Registered dataset name."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Config overrides key=value."),
    profile: str = typer.Option("small", "--profile", "-p", help="Profile: smoke, small or paper."),
) -> None:
    """Generate (or find in the cache) a dataset with its built-in solver and show where it is."""
    with user_errors():
        try:
            from pdebench_core.config import build_dataset
        except ImportError as exc:
            from pdebench_core.errors import UsageError

            raise UsageError(f"dataset generation is unavailable in this installation ({exc})") from None
        bad = [o for o in overrides or [] if "=" not in o]
        if bad:
            from pdebench_core.errors import UsageError

            raise UsageError(f"overrides must look like key=value, got {', '.join(bad)}")
        with termination_signals_interrupt():  # SIGTERM unwinds: the generator's scratch folder goes
            dataset = build_dataset(name, profile, list(overrides or []))
    from rich.table import Table

    from pdebench_core.data.layouts.common import split_label

    spec = dataset.spec
    console = _console()
    console.print(f"[bold]{spec.name}[/bold] ({profile}): fields {', '.join(spec.fields)}, grid "
                  f"{tuple(spec.spatial_shape)}, dt {spec.dt:g}", highlight=False)
    table = Table("split", "trajectories", "trajectory (T, *S, C)")
    locations = set()
    for split in ("train", "val", "test"):
        try:
            seq = dataset.split(split)
        except PdebError:
            continue
        shape = getattr(seq, "shape", None) or (tuple(seq[0].shape) if len(seq) else ())
        location = getattr(seq, "path", None)
        locations.add(split_label(location)[0] if location else "(in memory, no file)")
        table.add_row(split, str(len(seq)), str(tuple(shape)))
    console.print(table)
    for location in sorted(locations):
        console.print(f"cached at {location}", highlight=False)
