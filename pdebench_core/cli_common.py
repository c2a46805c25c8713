"""What every ``pdeb`` command shares: user errors become one line and an exit code."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from pdebench_core.errors import USAGE_ERRNOS, PdebError, Stopped, path_error_line


def report_error(exc: BaseException) -> Optional[int]:
    """Print a :class:`PdebError` as ``error: ...`` (or an interruption as one word) on stderr.

    Returns:
        Its exit code (2 for usage errors, 130 for Ctrl-C, 128 + the signal for a
        termination signal), or ``None`` for any other exception, which this does not print.
    """
    if isinstance(exc, PdebError):
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    if isinstance(exc, Stopped):
        typer.echo(str(exc), err=True)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`PdebError` into ``error: ...`` on stderr and its exit code (2 for usage errors)."""
    try:
        yield
    except (PdebError, KeyboardInterrupt) as exc:
        raise typer.Exit(report_error(exc)) from None
    except (BrokenPipeError, SystemExit) as exc:
        # rich meets a broken pipe with SystemExit(1), raised while handling the BrokenPipeError,
        # and has already pointed stdout at the null device.
        by_rich = isinstance(exc, SystemExit) and isinstance(exc.__context__, BrokenPipeError)
        if not (by_rich or isinstance(exc, BrokenPipeError) and stdout_reader_gone()):
            raise
        # The reader stopped early (`pdeb leaderboard | head`): end quietly, as a Unix tool
        # killed by SIGPIPE does (128 + 13), and keep Python from failing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None
    except OSError as exc:
        line = path_error_line(exc)
        if line is None or os.environ.get("PDEB_DEBUG"):
            raise _stop_behind_or(exc)
        typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2 if exc.errno in USAGE_ERRNOS else 1) from None
    except Exception as exc:
        raise _stop_behind_or(exc)


def _stop_behind_or(exc: BaseException) -> BaseException:
    """The exit of the stop ``exc`` was raised while handling (a Ctrl-C that left a library
    half-imported, which then fails on its next use), else ``exc`` itself to raise again."""
    from pdebench_core.signals import stop_behind

    stop = stop_behind(exc)
    if stop is None or os.environ.get("PDEB_DEBUG"):
        return exc
    return typer.Exit(report_error(stop))


class _OutlivesReader:
    """A text stream that survives its reader: once a write meets a closed pipe, the stream's
    file descriptor is pointed at the null device and writing goes on silently."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_null()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_null()

    def _to_null(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def outlive_the_reader() -> Iterator[None]:
    """For long commands (``pdeb run``, ``pdeb sweep``): output piped to a reader that stops early
    (``pdeb run ... 2>&1 | head``, a closed terminal's ``tee``) no longer ends the work; what
    is not printed is still in the run's log."""
    saved = sys.stdout, sys.stderr
    # A stream closed before the start (`2>&-`) is None in Python: left as it is
    sys.stdout, sys.stderr = (_OutlivesReader(s) if s is not None else s for s in saved)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end was closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is no file
        return False


def check_output_file(out: Path, force: bool, own_suffixes: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, an ``--out`` that would replace a file of another kind.

    A file with one of ``own_suffixes`` (an earlier output of this format) is replaced; any
    other existing file (a results store, a data file, a run's config) only with ``force``, so a
    typo cannot destroy it. A folder or a device is never written to.

    Raises:
        UsageError: ``out`` is a folder or not a regular file, or another kind of file without ``force``.
    """
    from pdebench_core.errors import UsageError

    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the path of the file to write")
    if out.exists() and not out.is_file():
        raise UsageError(f"--out {out} is not a regular file; leave --out out to print to the terminal")
    if out.exists() and not force and out.suffix.lower() not in own_suffixes:
        raise UsageError(f"--out {out} exists and is no {'/'.join(own_suffixes) or 'output'} file; pass --force to "
                         f"replace it, or give another path")


def friendly(fn: Callable) -> Callable:
    """Decorator form of :func:`user_errors` for command functions."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        with user_errors():
            return fn(*args, **kwargs)

    return wrapper


def run_script(main: Callable[[], Any]) -> None:
    """Run a standalone script's ``main`` (the benchmarks) with the error handling of a command.

    A :class:`PdebError` (an unknown dataset or model, a bad setting) prints ``error: ...``
    as one line on stderr and exits with its code (2 for usage errors), never a traceback.

    Args:
        main: The script's entry point.
    """
    try:
        main()
    except PdebError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


def click_exception_modules() -> list[Any]:
    """The ``exceptions`` modules of click and of typer's own copy of it, those installed: typer
    >= 0.26 carries its copy and no longer installs click."""
    import importlib

    found = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def click_exceptions(*names: str) -> tuple[type, ...]:
    """The exception classes ``names`` (``"UsageError"``, ``"Abort"``) of every installed click."""
    return tuple(getattr(module, name) for module in click_exception_modules() for name in names
                 if hasattr(module, name))


def click_flow_exceptions() -> tuple[type, ...]:
    """The exceptions typer and click use for control flow (an exit code, an abort, a usage
    error), in click and in typer's own copy of it: never a command's bug."""
    return (typer.Exit, typer.Abort, *click_exceptions("Exit", "Abort", "ClickException"))

