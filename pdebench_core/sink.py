"""The base of result sinks: where a run's step logs and result rows go (``register_sinks``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Sink:
    """A sink that keeps nothing: subclass it and override only what yours keeps.

    pdeb calls ``log_step`` at logged steps and validations, ``write_result`` once per dataset
    scored, and ``close`` once when the run ends, however it ends (see ``register_sinks`` in
    ``docs/plugin-hooks.md``). Sinks run on rank 0 only.

    Attributes:
        cfg: The sink's settings (an instance of its ``config`` dataclass; ``None`` without one).
        run_dir: The run directory.
    """

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Take the values logged at optimizer step ``step`` (floats by name)."""

    def write_result(self, row: dict[str, Any]) -> None:
        """Take one result row: a dataset's metrics with the run's provenance."""

    def close(self) -> None:
        """Release what the sink holds; called once."""
