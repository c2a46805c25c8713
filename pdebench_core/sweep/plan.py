"""A sweep's plan: every combination's config built and validated before any job starts.

The plan is what the sweep directory keeps (``plan.json``): the options shared by every run
(task, profile, config file, device), each combination and the hash of its resolved config.
The sweep's id is derived from those hashes, so the same command names the same sweep and a
rerun continues it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pdebench_core.errors import UsageError
from pdebench_core.sweep.axes import Combination


@dataclass(frozen=True)
class Shared:
    """The ``pdeb run`` options every combination shares.

    Attributes:
        task: ``--task`` (``None``: each model's default).
        profile: ``--profile`` (``None``: the default profile).
        config_file: ``--config`` YAML file, absolute (``None``: none).
        device: ``--device`` (``None``: the default).
    """

    task: str | None = None
    profile: str | None = None
    config_file: str | None = None
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "profile": self.profile, "config_file": self.config_file, "device": self.device}


@dataclass
class Plan:
    """Every combination of a sweep with its config hash.

    Attributes:
        sweep_id: The sweep's id (its directory name under ``$PDEB_HOME/sweeps``).
        shared: Options every combination shares.
        points: The combinations, in order.
        config_hashes: ``config_hash`` of each combination's resolved config, in the same order.
        command: The command line that made the plan.
    """

    sweep_id: str
    shared: Shared
    points: list[Combination]
    config_hashes: list[str]
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``plan.json``); the command line is kept but not compared."""
        return {"sweep_id": self.sweep_id, "shared": self.shared.to_dict(), "command": self.command,
                "points": [{**p.to_dict(), "config_hash": h} for p, h in zip(self.points, self.config_hashes)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """The inverse of :meth:`to_dict`."""
        points = [Combination.from_dict(item) for item in data["points"]]
        return cls(str(data["sweep_id"]), Shared(**data["shared"]), points,
                   [str(item["config_hash"]) for item in data["points"]], str(data.get("command", "")))

    def same_runs_as(self, other: "Plan") -> bool:
        """Whether two plans run the same configs (their command lines may differ: ``--seed 0``
        and no seed, for one, build the same runs)."""
        return self.config_hashes == other.config_hashes and self.shared == other.shared


def build_point_config(shared: Shared, point: Combination, run_id: str | None = None):
    """The resolved, validated config of one combination, exactly as ``pdeb run`` builds it."""
    from pdebench_core.config import build_config

    return build_config(model=point.model, data=point.data, task=shared.task, profile=shared.profile,
                        config_file=shared.config_file, overrides=list(point.overrides), seed=point.seed,
                        device=shared.device, run_id=run_id)


def default_sweep_id(config_hashes: list[str], shared: Shared) -> str:
    """``sweep-<10 hex>`` from the combinations' config hashes (same runs, same id)."""
    payload = json.dumps({"configs": config_hashes, "shared": shared.to_dict()}, sort_keys=True)
    return f"sweep-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def make_plan(points: list[Combination], shared: Shared, sweep_id: str | None = None, command: str = "") -> Plan:
    """Build every combination's config; the first one that is refused stops the sweep, naming it.

    Args:
        points: The combinations (:func:`~pdebench_core.sweep.axes.combinations`).
        shared: Options every combination shares.
        sweep_id: A name for the sweep (default: derived from the configs).
        command: The command line, kept in the plan.

    Raises:
        UsageError: A combination's config is refused (unknown model, dataset or setting, bad
            value); nothing has run.
    """
    from pdebench_core.config import config_hash
    from pdebench_core.runs import validate_run_id

    if shared.config_file:
        from pdebench_core.config import load_yaml

        load_yaml(shared.config_file)  # a missing file, a folder or bad YAML: the message pdeb run gives
    hashes = []
    for point in points:
        try:
            hashes.append(config_hash(build_point_config(shared, point)))
        except UsageError as exc:
            raise UsageError(f"sweep point '{point.label()}' is refused, nothing was started: {exc}") from None
    if sweep_id is not None:
        try:
            validate_run_id(sweep_id)
        except UsageError:
            raise UsageError(f"--sweep-id '{sweep_id}' is not a valid directory name; use letters, digits, '-', "
                             f"'_' and '.' (not first)") from None
    return Plan(sweep_id or default_sweep_id(hashes, shared), shared, points, hashes, command)
