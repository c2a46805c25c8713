"""Progress for people and for logs: a rich bar on a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

#: Seconds between two plain progress lines (the first and the last are always printed).
LINE_INTERVAL = 10.0


class ProgressLines:
    """Prints ``description: 40% (12/30), 21 s`` lines at most every ``interval`` seconds.

    Args:
        description: What is being done.
        total: Work to do; an int is shown as ``done/total``, a float as a percentage only.
        stream: Where lines go (standard error by default).
        interval: Seconds between lines.
    """

    def __init__(self, description: str, total: float, stream: TextIO | None = None,
                 interval: float = LINE_INTERVAL) -> None:
        self.description, self.total = description, total
        self.stream = stream or sys.stderr
        self.interval = interval
        self.done = 0.0
        self.started = time.monotonic()
        self.last_line = float("-inf")

    def advance(self, amount: float) -> None:
        """Count ``amount`` more work done; print a line when the interval has passed."""
        self.done += amount
        now = time.monotonic()
        if now - self.last_line >= self.interval or self.done >= self.total:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last_line = now
        share = 100.0 * self.done / self.total if self.total else 100.0
        count = f" ({int(self.done)}/{int(self.total)})" if isinstance(self.total, int) else ""
        print(f"{self.description}: {share:.0f}%{count}, {now - self.started:.0f} s", file=self.stream, flush=True)


@contextmanager
def progress(description: str, total: float, enabled: bool = True) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(amount)``: a transient rich bar on a terminal, plain periodic lines otherwise.

    Args:
        description: Text shown with the progress.
        total: Work to do, in any unit.
        enabled: ``False`` shows nothing.
    """
    if not enabled or sys.stderr is None:  # None: standard error was closed before the start
        yield lambda amount: None
        return
    if not sys.stderr.isatty():
        lines = ProgressLines(description, total)
        lines.advance(0)
        yield lines.advance
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    done = MofNCompleteColumn() if isinstance(total, int) else TextColumn("{task.percentage:>3.0f}%")
    columns = (TextColumn("{task.description}"), BarColumn(), done, TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda amount: bar.advance(task, amount)
