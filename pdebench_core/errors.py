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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
