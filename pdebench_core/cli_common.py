"""What every ``pdeb`` command shares: user errors become one line and an exit code."""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import typer

from pdebench_core.errors import PdebError


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn :class:`PdebError` into ``error: ...`` on stderr and its exit code (2 for usage errors)."""
    try:
        yield
    except PdebError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


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
