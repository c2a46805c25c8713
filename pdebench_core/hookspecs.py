"""The whole plugin API of pdeb, as pluggy hook specifications.

Every hook is a *registration* hook: pdeb calls it once at start-up with a
``register`` callable (or the Typer app) and the plugin adds its components.
Builtin components are registered through exactly the same hooks.

What pdeb acts on is a named parameter of ``register``, checked when the registries are
built (a bad value disables the plugin with a one-line warning naming the parameter);
``**card`` is free-form description that ``pdeb models|datasets|...`` only shows.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("pdeb")
hookimpl = pluggy.HookimplMarker("pdeb")

Register = Callable[..., None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register PDE datasets.

    Call ``register(name, factory, config=ConfigDataclass, profiles=None, dims=None, **card)``
    once per dataset; ``dims`` is the dataset's spatial dimensions, a tuple of values
    among 1, 2, 3 (an int means one). ``factory(cfg)`` returns an object with ``.spec``
    (a :class:`pdebench_core.DataSpec`) and ``.split(name)`` for ``name`` in
    ``"train"``, ``"val"``, ``"test"``, each a sequence of float32 trajectories
    shaped ``(T, *S, C)``.

    Args:
        register: Adds one dataset to the registry.
    """


@hookspec
def register_models(register: Register) -> None:
    """Register neural PDE solvers.

    Call ``register(name, factory, config=ConfigDataclass, profiles=None, dims=None,
    mixed_dims=False, default_task=None, check=None, **card)``. ``factory(cfg, spec)``
    returns a ``torch.nn.Module`` mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.
    ``dims`` (a tuple such as ``(1, 2, 3)``) declares the spatial dimensions the model
    supports; ``mixed_dims=True`` accepts datasets of several dimensions in one run
    (``spec.groups`` then holds one spec per dimension); ``default_task`` names the task
    run when the user gives none; ``check(cfg)`` refuses settings the model cannot take
    (raising ``UsageError``) before any data is read or generated.

    Args:
        register: Adds one model to the registry.
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks (train, evaluate, pretrain, ...).

    Call ``register(name, factory, config=ConfigDataclass, trains=True, **card)``.
    ``factory(ctx)`` receives a :class:`pdebench_core.runs.RunContext` and returns a dict
    of results ``{dataset_name: {metric_name: value}}``. ``trains=False`` says the task
    trains nothing (evaluation only), so training settings do not concern it.

    Args:
        register: Adds one task to the registry.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register evaluation metrics.

    Call ``register(name, fn, reduction="mean", finish=None, higher_is_better=False,
    **card)``. ``fn(pair)``
    receives a :class:`pdebench_core.metrics.Pair` (prediction and target shaped
    ``(B, T, *S, C)``, with the error, its square and the FFT computed once) and returns
    values shaped ``(B, T, C)``: per sample, rollout step and channel. ``reduction``
    (``"mean"`` or ``"max"``) says how they combine over steps, channels and samples;
    ``finish`` turns per-step partial sums into values for metrics pooled over the whole
    rollout (see ``docs/metrics.md``). ``higher_is_better`` sets the direction in which
    ``best.pt`` is selected and the leaderboard ranks.

    Args:
        register: Adds one metric to the registry.
    """


@hookspec
def register_sinks(register: Register) -> None:
    """Register result sinks: where result rows and training logs go.

    Call ``register(name, factory, config=ConfigDataclass, **card)``. ``factory(cfg,
    run_dir)`` returns an object with ``log_step(step, values)``,
    ``write_result(row)`` and ``close()``; any of them may be a no-op. ``cfg`` is a
    ``ConfigDataclass`` instance holding the user's ``sinks.<name>.<key>`` settings
    (``None`` when the sink registers no config).

    Args:
        register: Adds one sink to the registry.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``pdeb`` command line.

    Args:
        app: The root ``typer.Typer`` application; decorate functions with
            ``@app.command()``.
    """
