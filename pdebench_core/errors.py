"""Errors that the CLI turns into one clean line and an exit code."""

from __future__ import annotations

import difflib
from typing import Iterable


class PdebError(Exception):
    """A problem the user can fix; printed as one line without a traceback."""

    exit_code = 1


class UsageError(PdebError):
    """Bad input: unknown names, bad config, wrong files. Exit code 2."""

    exit_code = 2


class DataError(UsageError):
    """A data file that cannot be read or does not fit the request."""


class PluginError(PdebError):
    """A plugin's code raised: one line naming the component and its plugin. Exit code 1."""


class ResultsUndelivered(PdebError):
    """A run finished, but some sink refused its result rows. Exit code 1.

    Attributes:
        run_id: The run.
        results: ``{dataset: {metric: value}}``, computed and stored by the other sinks.
    """

    def __init__(self, message: str, run_id: str, results: dict) -> None:
        super().__init__(message)
        self.run_id, self.results = run_id, results


class Stopped(KeyboardInterrupt):
    """A run ended by a termination signal (SIGTERM from a scheduler, SIGHUP from a closed
    terminal): handled as Ctrl-C is, so the run is marked interrupted and can be resumed.

    Attributes:
        signal_name: ``"SIGTERM"`` or ``"SIGHUP"``.
        exit_code: ``128 +`` the signal's number, as a shell reports a process it ended.
    """

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.signal_name, self.exit_code = signal_name, 128 + signal_number


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
