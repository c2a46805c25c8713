"""Where pdeb keeps runs, results and generated data."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The pdeb home: ``$PDEB_HOME``, else ``~/.pdeb``."""
    return Path(os.environ.get("PDEB_HOME") or Path.home() / ".pdeb").expanduser()


def data_dir() -> Path:
    """Cache of generated and converted datasets: ``$PDEB_HOME/data``."""
    return home() / "data"


def runs_dir() -> Path:
    """Run directories: ``$PDEB_HOME/runs/<run_id>``."""
    return home() / "runs"


def results_db() -> Path:
    """The SQLite results store: ``$PDEB_HOME/results.sqlite``."""
    return home() / "results.sqlite"
