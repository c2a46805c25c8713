"""What may change when a run is resumed, and the config a resumed run continues with.

A resumed run must continue the optimisation it started, so its settings stay those it
was started with. A few only say how the run is watched or fed, and may change:
:data:`SAFE_ON_RESUME`. ``train.max_steps`` may grow when the learning rate is constant
(a one-cycle or cosine schedule spans the original steps and cannot be stretched).
"""

from __future__ import annotations

from typing import Any, Mapping

from pdebench_core.errors import UsageError

SAFE_ON_RESUME = ("train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.num_workers",
                  "train.prefetch_factor", "train.dist_timeout", "train.eval_every", "run.sinks",
                  "train.data_on_device")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (the run id left out)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        elif path != "run.run_id":
            out[path] = value
    return out


def changes(saved: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, new value)}`` for every saved setting that differs (settings
    a newer pdeb added since the run was saved are not changes)."""
    before, after = flatten(saved), flatten(new)
    return {k: (before[k], after.get(k)) for k in sorted(before) if before[k] != after.get(k)}


def check_changes(run_id: str, saved: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Refuse a resume whose settings change what the run optimises, naming the first such key.

    Returns:
        The allowed changes (possibly none).
    """
    found = changes(saved, new)
    for key, (old, value) in found.items():
        if key in SAFE_ON_RESUME or key.startswith("sinks."):  # where results go, not what is optimised
            continue
        if key == "train.max_steps" and _extendable(saved, old, value):
            continue
        hint = ""
        if key == "train.max_steps":
            hint = (" (more steps need train.scheduler=constant: a one-cycle or cosine schedule spans the "
                    "original steps; fine-tune from this run instead, task.checkpoint=RUN_ID)")
        raise UsageError(f"cannot resume '{run_id}': {key}={value} differs from the run's {key}={old}{hint}; "
                         f"only {', '.join(('train.max_steps', *SAFE_ON_RESUME))} may change when resuming")
    return found


def _extendable(saved: Mapping[str, Any], old: Any, value: Any) -> bool:
    schedule = (saved.get("train") or {}).get("scheduler")
    return schedule == "constant" and isinstance(value, int) and isinstance(old, int) and value >= old
