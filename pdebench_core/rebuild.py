"""Rebuild a run from its directory, through the same steps the run itself took.

:func:`saved_config` is the one way a run's saved ``config.yaml`` becomes a config again:
resuming (:func:`pdebench_core.resume.resumed_config`), reproducing (the rerun command runs
``pdeb run --config`` on that same file, and :func:`pdebench_core.report.reproduction` checks
first that it still builds) and reporting (:func:`rebuild`) all start there. :func:`rebuild`
goes on to the run's datasets, mixture and model with its weights (read-only: nothing is
written to the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pdebench_core.errors import PdebError, UsageError
from pdebench_core.rundir import RunDir


@dataclass
class Rebuilt:
    """A run as rebuilt: ``model`` holds the run's weights when it saved any (see ``notes``)."""

    cfg: Any
    datasets: dict[str, Any]
    mixture: Any
    model: Any
    notes: list[str] = field(default_factory=list)


def saved_config(run_dir: str | Path, config_file: str | Path | None = None, overrides: Iterable[str] = (),
                 **options: Any):
    """The run's saved config, built again by :func:`~pdebench_core.config.build_config`
    (so today's plugins validate it), with any given settings on top.

    Layers, lowest first: the saved ``config.yaml``, then ``config_file``, then
    ``overrides``; ``options`` are ``build_config``'s own (``model``, ``data``, ``task``,
    ``profile``, ``seed``, ``device``, ``run_id``).

    Raises:
        UsageError: The run has no ``config.yaml``, or the result does not build.
    """
    from pdebench_core.config import build_config, load_yaml

    run = RunDir(run_dir)
    if not run.config_file.is_file():
        raise UsageError(f"no run '{run.run_id}' under {run.path.parent} (no config.yaml)")
    overrides = list(overrides)
    replaced = {item.split("=", 1)[0] for item in overrides}  # an override outranks the file's value
    given = [item for item in (as_dotlist(load_yaml(config_file)) if config_file else [])
             if item.split("=", 1)[0] not in replaced]
    return build_config(config_file=run.config_file, overrides=[*given, *overrides], **options)


def as_dotlist(tree: Mapping[str, Any]) -> list[str]:
    """``{"train": {"lr": 0.1}}`` -> ``["train.lr=0.1"]`` (:func:`pdebench_core.resume.flatten`'s
    keys, so the run id is left out), values written so that an override reads them back as
    they were (lists and numbers as JSON)."""
    import json

    from pdebench_core.resume import flatten

    return [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in flatten(tree).items()]


def rebuild(run_dir: str | Path, device: str = "cpu") -> Rebuilt:
    """The run's datasets (normalised as it trained), mixture and model with its last weights.

    Raises:
        PdebError: The config, data or checkpoint cannot be rebuilt.
    """
    from pdebench_core import workflow
    from pdebench_core.devices import resolve_device
    from pdebench_core.runs import RunContext

    run = RunDir(run_dir)
    cfg = saved_config(run.path)
    # rank 1: a context that never writes to the run it reads (logs, rows, files are rank 0's)
    ctx = RunContext(cfg=cfg, run_id=run.run_id, run_dir=run.path, device=resolve_device(device), rank=1, quiet=True)
    datasets = workflow._build_datasets(ctx)
    mixture = workflow.plan(ctx, datasets)
    trained = run.took_steps()
    state, notes = _saved_state(run, cfg, trained)
    if state is not None and isinstance(state.get("spec"), Mapping):
        from pdebench_core.spec import DataSpec

        mixture.model_spec = DataSpec.from_dict(state["spec"])  # the spec the weights were built for
    model = workflow.build_model(ctx, mixture)
    if state is not None:
        from pdebench_core.weights import state_dict_of

        model.load_state_dict(state_dict_of(state))
    elif trained and any(p.requires_grad for p in model.parameters()):
        raise PdebError(f"run '{run.run_id}' trained, but no intact checkpoint of it is left in {run.checkpoints}; "
                        f"its weights cannot be rebuilt")
    elif any(p.requires_grad for p in model.parameters()):
        notes.append("no checkpoint: the model was rolled out as built from its config (untrained weights "
                     "unless the model loads them itself)")
    else:
        notes.append("no checkpoint: the model has no trained weights (e.g. persistence); rolled out as built")
    return Rebuilt(cfg, datasets, mixture, model.eval(), notes)


def _saved_state(run: RunDir, cfg: Any, trained: bool) -> tuple[dict | None, list[str]]:
    """The weights the run ended with (``last.pt``, else its newest intact checkpoint) or, for
    a run that took no step of its own, started from (``task.checkpoint``)."""
    from pdebench_core.checkpoint import load_checkpoint, newest_intact

    notes: list[str] = []
    newest = newest_intact(run.checkpoints, warn=notes.append) if run.checkpoints.is_dir() else None
    if newest is not None:
        if newest.path != run.last_checkpoint:
            notes.append(f"checkpoints/last.pt is missing or damaged: the weights are those of {newest.path.name}")
        return load_checkpoint(*newest), [f"weights: {newest.path.relative_to(run.path)}", *notes]
    if cfg.task.get("checkpoint") and not trained:  # a fine-tune's own weights are not its start
        from pdebench_core.weights import resolve_checkpoint

        path = resolve_checkpoint(str(cfg.task.checkpoint))
        return load_checkpoint(path), [f"weights: {path} (task.checkpoint)"]
    return None, []
