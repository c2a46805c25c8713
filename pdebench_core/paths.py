"""Where pdeb keeps runs, results and generated data."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The pdeb home: ``$PDEB_HOME``, else ``~/.pdeb``.

    Raises:
        UsageError: It exists and is not a folder.
    """
    path = Path(os.environ.get("PDEB_HOME") or Path.home() / ".pdeb").expanduser()
    if path.exists() and not path.is_dir():
        from pdebench_core.errors import UsageError

        variable = "PDEB_HOME" if os.environ.get("PDEB_HOME") else "the pdeb home"
        raise UsageError(f"{variable} {path} is a file, not a folder; point PDEB_HOME at a folder "
                         f"(it is made when missing)")
    return path


def data_dir() -> Path:
    """Cache of generated and converted datasets: ``$PDEB_HOME/data``."""
    return home() / "data"


def runs_dir() -> Path:
    """Run directories: ``$PDEB_HOME/runs/<run_id>``."""
    return home() / "runs"


def results_db() -> Path:
    """The SQLite results store: ``$PDEB_HOME/results.sqlite``."""
    return home() / "results.sqlite"


def registry_dirs(kind: str) -> list[Path]:
    """Folders that may hold ``registry/<kind>`` data (``published``, ``datasets``), first wins.

    ``$PDEB_REGISTRY/<kind>``, then ``$PDEB_HOME/registry/<kind>``, then the source
    checkout (or editable install) next to the package, then the data files a wheel
    installs under ``<prefix>/share/pdeb/registry/<kind>``.
    """
    import sys
    import sysconfig

    candidates = []
    if os.environ.get("PDEB_REGISTRY"):
        candidates.append(Path(os.environ["PDEB_REGISTRY"]).expanduser() / kind)
    candidates.append(home() / "registry" / kind)
    candidates.append(Path(__file__).resolve().parents[1] / "registry" / kind)
    prefixes = [sys.prefix, sysconfig.get_path("data")]
    try:
        prefixes.append(sysconfig.get_path("data", f"{'nt' if sys.platform == 'win32' else 'posix'}_user"))
    except KeyError:  # platforms without a user scheme
        pass
    candidates += [Path(p) / "share" / "pdeb" / "registry" / kind for p in prefixes if p]
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique
