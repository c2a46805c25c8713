"""Checks on a built run config that omegaconf's types cannot express: ranges and shapes.

Every check runs before any data is read or any tensor allocated, and fails with one
line naming the setting, the value and what would be accepted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from pdebench_core.errors import UsageError

SEED_MAX = 2**63 - 1

# (section, key) -> (lowest, highest) accepted; the upper bounds are far beyond any
# meaningful run and only catch values that cannot have been meant (1e30 steps).
BOUNDS: dict[tuple[str, str], tuple[float, float]] = {
    ("run", "seed"): (0, SEED_MAX),
    ("train", "max_steps"): (1, 10**9),
    ("train", "epochs"): (0, 10**6),
    ("train", "batch_size"): (1, 10**7),
    ("train", "grad_accum"): (1, 10**5),
    ("train", "t_out"): (1, 10**4),
    ("train", "resolution"): (0, 2**16),
    ("train", "log_every"): (1, 10**9),
    ("train", "eval_every"): (0, 10**9),
    ("train", "checkpoint_every"): (0, 10**9),
    ("train", "keep_checkpoints"): (1, 10**6),
    ("train", "num_workers"): (-1, 1024),
    ("train", "prefetch_factor"): (1, 1024),
    ("train", "max_train_windows"): (0, 10**12),
    ("train", "max_rollbacks"): (0, 10**4),
    ("train", "val_trajectories"): (0, 10**9),
    ("train", "grad_clip"): (0, float("inf")),
    ("train", "weight_decay"): (0, float("inf")),
    ("train", "warmup_frac"): (0, 1),
    ("train", "dist_timeout"): (1, 10**7),
    ("eval", "batch_size"): (1, 10**7),
    ("eval", "horizon"): (0, 10**6),
    ("eval", "max_trajectories"): (0, 10**12),
}


def check_sections(layer: Mapping[Any, Any], origin: str) -> None:
    """Keys of a config layer are strings and every section is a mapping."""
    for key, value in layer.items():
        if not isinstance(key, str):
            raise UsageError(f"{origin}: key {key!r} is not a name; top-level keys are section names "
                             f"(run, model, data, train, eval, task, sinks)")
        if value is not None and not isinstance(value, Mapping):
            raise UsageError(f"{origin}: section '{key}' must be a mapping of settings, got {type(value).__name__} "
                             f"{value!r:.60}")
        for inner in (value or {}):
            if not isinstance(inner, str):
                raise UsageError(f"{origin}: key {inner!r} in section '{key}' is not a setting name")


def resolve_interpolations(cfg: Any) -> None:
    """Resolve every ``${...}`` now, so a bad reference or a wrong type fails before any compute."""
    from omegaconf import OmegaConf

    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:  # omegaconf raises several unrelated classes here
        key = getattr(exc, "full_key", None)
        where = f" in '{key}'" if key else ""
        raise UsageError(f"cannot resolve an interpolation{where}: {str(exc).splitlines()[0][:200]}; "
                         f"write the value itself") from None


def check_required(cfg: Any, prefix: str = "", hints: Mapping[str, str] | None = None) -> None:
    """Every setting declared without a default (``width: int``) has been given a value.

    Args:
        cfg: A run's config, or one section of it.
        prefix: The section's place in a run's config (``"data.well."``), for the message.
        hints: Full setting name -> what to give it (see :func:`setting_hints`), told with
            the first missing one.
    """
    from omegaconf import OmegaConf

    missing = sorted(prefix + key for key in OmegaConf.missing_keys(cfg))
    if missing:
        listing = ", ".join(missing)
        hint = (hints or {}).get(missing[0])
        raise UsageError(f"required setting{'s' if len(missing) > 1 else ''} {listing} not given"
                         + (f" ({hint})" if hint else "") + f"; set {missing[0]}=VALUE on the command line or "
                         f"in --config")


def setting_hints(sections: Mapping[str, Any]) -> dict[str, str]:
    """What to give each setting whose field says so (``field(metadata={"help": ...})``).

    Args:
        sections: Prefix (``"data.well."``) -> the config dataclass of that section (or None).

    Returns:
        Full setting name -> its help.
    """
    import dataclasses

    return {prefix + f.name: f.metadata["help"] for prefix, config in sections.items()
            if config is not None and dataclasses.is_dataclass(config)
            for f in dataclasses.fields(config) if "help" in f.metadata}


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_data_sections(cfg: Any) -> None:
    """Dataset settings that would be silently ignored or are malformed are refused."""
    t_ins = {name: section.get("t_in") for name, section in cfg.data.items() if section.get("t_in") is not None}
    if len(set(t_ins.values())) > 1:  # one model reads one window length; refused before any data is read
        listing = ", ".join(f"{name} {value}" for name, value in t_ins.items())
        raise UsageError(f"datasets disagree on t_in ({listing}); set data.<name>.t_in to one value")
    for name, section in cfg.data.items():
        fmt = section.get("format")
        if fmt not in (None, "auto") and not section.get("path"):
            raise UsageError(f"data.{name}.format={fmt} has no file to read; set data.{name}.path=FILE "
                             f"or drop the format")
        path = section.get("path")
        if path and "://" not in str(path) and not Path(str(path)).exists():  # URLs are checked when opened
            raise UsageError(f"data.{name}.path={path}: no such file or folder; give an existing file or folder")
        device = section.get("device")
        if device is not None and not _DEVICE.match(str(device)):
            raise UsageError(f"data.{name}.device={device} is not a device; use auto, cpu, cuda or cuda:N")
        check_data_counts(name, section)


#: Least value of the counts every dataset config may hold (``None`` leaves one to the dataset).
DATA_COUNT_MINIMA = {"t_in": 1, "horizon": 1, "n_train": 0, "n_val": 0, "n_test": 0, "n_frames": 2}


def check_data_counts(name: str, section: Any) -> None:
    """Input frames, horizon, split sizes and stored frames of a dataset are in range
    (``n_frames``: the initial state and at least one more)."""
    for key, least in DATA_COUNT_MINIMA.items():
        value = section.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise UsageError(f"data.{name}.{key}={value} is out of range; use at least {least}")


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("eval", "grid"): ("model", "native", "strided"),
    ("eval", "split"): ("test", "val", "train"),
    ("eval", "precision"): ("fp32", "bf16", "auto"),
    ("train", "precision"): ("auto", "bf16", "fp32"),
    ("train", "strategy"): ("ddp", "fsdp"),
    ("train", "on_divergence"): ("halt", "rollback"),
}


def check_choices(cfg: Any) -> None:
    """Settings that take one of a few words."""
    from pdebench_core.errors import did_you_mean

    for (section, key), allowed in CHOICES.items():
        value = cfg[section].get(key)
        if value is not None and value not in allowed:
            raise UsageError(f"unknown {section}.{key} '{value}'{did_you_mean(str(value), allowed)}; "
                             f"use {', '.join(allowed)}")


def check_values(cfg: Any) -> None:
    """Range checks of the core sections (see :data:`BOUNDS`)."""
    for (section, key), (low, high) in BOUNDS.items():
        value = cfg[section].get(key)
        if value is None:
            continue
        if not (low <= value <= high):
            upper = f"at most {high:g}" if high != float("inf") else "finite"
            raise UsageError(f"{section}.{key}={value} is out of range; use a value of at least {low:g} "
                             f"and {upper}")
    if cfg.run.run_id is not None:
        from pdebench_core.runs import validate_run_id

        if not str(cfg.run.run_id).strip():
            raise UsageError("--run-id is empty; give a name or leave it out for a generated one")
        validate_run_id(str(cfg.run.run_id))
    if not _DEVICE.match(str(cfg.run.device)):
        raise UsageError(f"unknown device '{cfg.run.device}'; use auto, cpu, cuda or cuda:N")
    check_data_sections(cfg)
    check_choices(cfg)
    if not list(cfg.eval.metrics):
        raise UsageError("eval.metrics is empty; name at least one metric, e.g. eval.metrics=[l2re] "
                         "('pdeb metrics' lists them)")
    if not list(cfg.run.sinks):
        raise UsageError("run.sinks is empty, so no result would be kept; name one, e.g. run.sinks=[jsonl] "
                         "('pdeb sinks' lists them)")
    if not (cfg.train.lr > 0 and cfg.train.lr < float("inf")):
        raise UsageError(f"train.lr must be a positive finite number, got {cfg.train.lr}")


#: Dataset settings that size the splits cut from a file too, so they stay allowed with ``path``.
_SPLIT_SETTINGS = ("n_train", "n_val", "n_test")


def generator_settings(component: Any) -> tuple[str, ...]:
    """Settings of a generated dataset that only describe how its data is generated (the
    fields of its cache key), or ``()`` for a dataset pdeb cannot tell this about."""
    import dataclasses

    from pdebench_core.data.config import USAGE_SETTINGS
    from pdebench_core.data.generation import GeneratedDataset

    factory = component.factory
    if not isinstance(factory, GeneratedDataset):
        return ()
    skip = {*USAGE_SETTINGS, *factory.exclude, *_SPLIT_SETTINGS}
    return tuple(f.name for f in dataclasses.fields(factory.config) if f.name not in skip)


def _file_statements(path: str, fmt: str) -> dict[str, Any]:
    """What a data file states about itself: its parameters, and its grid as ``resolution``."""
    from pdebench_core.data.layouts import open_layout

    try:
        found = open_layout(path, fmt or "auto")
    except Exception:  # unreadable files are reported when the dataset is built
        return {}
    stated = dict(found.params)
    grid = found.traj_shape[1:-1]
    if grid and len(set(grid)) == 1:
        stated["resolution"] = int(grid[0])
    return stated


def check_generator_settings_with_path(name: str, component: Any, section: Any, given: Mapping[str, Any]) -> None:
    """Refuse settings that describe generated data when the data comes from a file (``path``),
    unless they equal what the file itself states; otherwise they would label a run with
    values its data never had."""
    if not section.get("path"):
        return
    offending = [key for key in generator_settings(component) if key in given]
    if not offending:
        return
    stated = _file_statements(str(section.path), str(section.get("format") or "auto"))
    clash = [key for key in offending if key not in stated or _differs(given[key], stated[key])]
    if clash:
        shown = ", ".join(f"data.{name}.{k}={given[k]}" + (f" (the file states {stated[k]})" if k in stated else "")
                          for k in clash)
        raise UsageError(f"{shown}: these settings describe generated data, but data.{name}.path reads a file; "
                         f"drop them")


def _differs(given: Any, stated: Any) -> bool:
    try:
        return abs(float(given) - float(stated)) > 1e-12 * max(1.0, abs(float(stated)))
    except (TypeError, ValueError):
        return str(given) != str(stated)


def check_declared_dims(model: Any, datasets: list[Any]) -> None:
    """Refuse, before any data is generated or read, data whose registered dimension the model's
    registered ``dims`` exclude, or datasets of several dimensions for a model without
    ``mixed_dims`` (the same checks run again on the built data, for undeclared dimensions)."""
    for dataset in datasets:
        if dataset.dims and model.dims and not set(dataset.dims) & set(model.dims):
            ndim = "/".join(f"{d}D" for d in dataset.dims)
            raise UsageError(f"model '{model.name}' supports {', '.join(f'{d}D' for d in model.dims)} data, but "
                             f"'{dataset.name}' is {ndim}; pick a model that lists {dataset.dims[0]} in 'pdeb models'")
    fixed = {dataset.name: dataset.dims[0] for dataset in datasets if len(dataset.dims) == 1}
    if len(set(fixed.values())) > 1 and not model.mixed_dims:
        listing = ", ".join(f"{name} ({ndim}D)" for name, ndim in fixed.items())
        raise UsageError(f"model '{model.name}' cannot train on datasets of different dimensions at once: {listing}; "
                         f"run them separately or use a model with mixed-dimension support (dpot)")
