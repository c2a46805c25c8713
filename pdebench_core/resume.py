"""What may change when a run is resumed, and the config a resumed run continues with.

A resumed run must continue the optimisation it started, so its settings stay those it
was started with. A few only say how the run is watched or fed, and may change: the
operational settings (:func:`pdebench_core.settings.is_operational`). ``train.max_steps``
may grow when the learning rate is constant (a one-cycle or cosine schedule spans the
original steps and cannot be stretched).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pdebench_core.errors import UsageError
from pdebench_core.settings import OPERATIONAL_DATA_SETTINGS, OPERATIONAL_SETTINGS, is_operational

#: What the refusal of a resume lists as free to change.
_MAY_CHANGE = ", ".join((*OPERATIONAL_SETTINGS, *(f"data.<name>.{key}" for key in OPERATIONAL_DATA_SETTINGS)))


def resumed_config(run_id: str, model: str | None = None, data: str | Sequence[str] | None = None,
                   task: str | None = None, profile: str | None = None, config_file: str | Path | None = None,
                   overrides: Iterable[str] = (), seed: int | None = None, device: str | None = None):
    """The config a resumed run continues with: its saved one
    (:func:`pdebench_core.rebuild.saved_config`) with what the command gives on top.

    Raises:
        UsageError: No such run, or a given setting changes what the run optimises (named).
    """
    from omegaconf import OmegaConf

    from pdebench_core.config import load_yaml, split_names
    from pdebench_core.rebuild import saved_config
    from pdebench_core.rundir import RunDir
    from pdebench_core.runs import run_dir_for

    run = RunDir(run_dir_for(run_id))
    if not run.path.is_dir():
        raise UsageError(f"cannot resume '{run_id}': no run '{run_id}' under {run.path.parent}")
    saved, _ = run.read_config()  # a missing or damaged config.yaml is restored from a checkpoint
    user = load_yaml(config_file) if config_file else {}
    given = {"model.name": model or (user.get("model") or {}).get("name"),
             "data": split_names(data) or None,  # a config file may set some datasets only
             "run.task": task or (user.get("run") or {}).get("task"),
             "run.profile": profile or (user.get("run") or {}).get("profile")}
    kept = {"model.name": saved["model"].get("name"), "data": list(saved["data"]),
            "run.task": saved["run"].get("task"), "run.profile": saved["run"].get("profile")}
    for key, value in given.items():
        if value is not None and value != kept[key]:
            raise UsageError(f"cannot resume '{run_id}': {key}={value} differs from the run's {key}={kept[key]}; "
                             f"a resumed run keeps its model, data, task and profile")
    cfg = saved_config(run.path, config_file, overrides, seed=seed, device=device, run_id=run_id)
    check_changes(run_id, saved, OmegaConf.to_container(cfg, resolve=True))
    return cfg


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
        if is_operational(key):  # how the run is fed or watched, not what it optimises
            continue
        if key == "train.max_steps" and _extendable(saved, old, value):
            continue
        hint = ""
        if key == "train.max_steps" and isinstance(value, int) and isinstance(old, int) and value > old:
            hint = (" (more steps need train.scheduler=constant: a one-cycle or cosine schedule spans the "
                    "original steps; fine-tune from this run instead, task.checkpoint=RUN_ID)")
        raise UsageError(f"cannot resume '{run_id}': {key}={value} differs from the run's {key}={old}{hint}; "
                         f"only {_MAY_CHANGE} may change when resuming, and train.max_steps may "
                         f"grow under train.scheduler=constant")
    return found


def _extendable(saved: Mapping[str, Any], old: Any, value: Any) -> bool:
    schedule = (saved.get("train") or {}).get("scheduler")
    return schedule == "constant" and isinstance(value, int) and isinstance(old, int) and value >= old


def check_checkpoint_config(path: Path, written_with: Mapping[str, Any] | None,
                            now: Mapping[str, Any] | None) -> None:
    """Refuse to resume from a checkpoint another run wrote (another model, data, seed, recipe).

    Args:
        path: The checkpoint.
        written_with: The config stored in it (``None`` for checkpoints that store none).
        now: The resumed run's resolved config (``None``: nothing to compare with).

    Raises:
        UsageError: Naming the first setting that differs.
    """
    if not isinstance(written_with, Mapping) or not isinstance(now, Mapping):
        return
    writer, resumed = (((config.get("run") or {}).get("run_id")) for config in (written_with, now))
    # The run's own step count may differ: a checkpoint written before an extension, or by an
    # extension that failed and left the run finished at its old count (check_changes rules on
    # the count itself). A checkpoint another run wrote (a copied run folder) must match in full.
    own = not writer or not resumed or writer == resumed
    by = "another run" if own else f"run '{writer}'"
    for key, (theirs, ours) in changes(written_with, now).items():
        if is_operational(key) or own and key in ("train.max_steps", "train.epochs"):
            continue
        raise UsageError(f"checkpoint {path} was written by {by} ({key}={theirs} there, {ours} in this "
                         f"run); resume a run from its own checkpoints")
