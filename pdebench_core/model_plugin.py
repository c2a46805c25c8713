"""What a frames-as-channels model plugin shares: its checks, build arguments and registration.

A baseline model plugin declares a config dataclass, its profiles and, where it has
any, its own checks and the arguments it derives from the data; :func:`folded_model`
turns these into the factory (common checks, then the module built from
:func:`folded_arguments`) and the ``register_models`` hook (:func:`model_registration`).
The tensor side (fold, coordinates, unfold) lives in :mod:`pdebench_core.folded_model`.

Importing this module is cheap: it never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from pdebench_core.errors import UsageError
from pdebench_core.hookspecs import hookimpl
from pdebench_core.models import check_dims, folded_sizes, require_positive

if TYPE_CHECKING:
    from pdebench_core.spec import DataSpec

ALL_DIMS = (1, 2, 3)
_PLAIN_TYPES = (int, float, bool, str)


def check_folded_config(cfg: Any, spec: "DataSpec", model: str, positive: Sequence[str],
                        heads_divide: Sequence[str] = (), dims: Sequence[int] = ALL_DIMS) -> None:
    """The checks every folded-frame model runs before it is built.

    Args:
        cfg: The model's config (dataclass or omegaconf object).
        spec: The dataset's self-description.
        model: Registered model name, used in the messages.
        positive: Config entries that must be positive integers.
        heads_divide: Widths that ``cfg.heads`` must divide (empty: no attention heads).
        dims: Supported numbers of spatial axes.

    Raises:
        UsageError: On unsupported data, a non-positive size or heads that do not divide a width.
    """
    check_dims(spec, dims, model)
    check_folded_settings(cfg, model, positive, heads_divide)


def check_folded_settings(cfg: Any, model: str, positive: Sequence[str], heads_divide: Sequence[str] = ()) -> None:
    """The checks of a folded-frame model's settings that need no data: run when a run's
    config is built, so a bad size is refused before any data is generated.

    Args:
        cfg: The model's config (dataclass or omegaconf object).
        model: Registered model name, used in the messages.
        positive: Config entries that must be positive integers.
        heads_divide: Widths that ``cfg.heads`` must divide (empty: no attention heads).

    Raises:
        UsageError: On a non-positive size or heads that do not divide a width.
    """
    require_positive(cfg, *positive, model=model)
    heads = int(cfg.heads) if heads_divide else 1
    if any(int(getattr(cfg, width)) % heads for width in heads_divide):
        widths = " and ".join(f"{width} ({getattr(cfg, width)})" for width in heads_divide)
        raise UsageError(f"model.heads ({cfg.heads}) must divide {widths} for {model}")


def require_choice(cfg: Any, name: str, choices: Sequence[str], model: str) -> None:
    """Refuse a config entry that is not one of ``choices``.

    Args:
        cfg: The model's config.
        name: The entry to check.
        choices: Its allowed values.
        model: Registered model name; the message names the key ``model.<model>.<name>``.

    Raises:
        UsageError: If the value is not among ``choices``.
    """
    value = getattr(cfg, name)
    if value not in choices:
        raise UsageError(f"model.{name} of {model} must be one of {', '.join(choices)}, got '{value}'")


def require_grid_divisible(spec: "DataSpec", factor: int, model: str, setting: str, reason: str) -> None:
    """Refuse data whose grid sizes a model's down-sampling or patching cannot divide.

    Args:
        spec: The dataset's self-description.
        factor: What every grid size must be a multiple of.
        model: Registered model name.
        setting: The config entry that sets ``factor``, named in the fix.
        reason: Where ``factor`` comes from, e.g. ``"levels=4"``.

    Raises:
        UsageError: If a spatial size is not a multiple of ``factor``.
    """
    if any(n % factor for n in spec.spatial_shape):
        raise UsageError(
            f"model '{model}' needs grid sizes divisible by {factor} ({reason}); dataset '{spec.name}' has "
            f"{tuple(spec.spatial_shape)} (change model.{setting} or resize the data)"
        )


def folded_arguments(cfg: Any, config: type, spec: "DataSpec", **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a folded-frame model: data sizes, then every config field.

    Each field of ``config`` is read from ``cfg``; one declared ``int``, ``float``, ``bool``
    or ``str`` is cast to that type, so an omegaconf value reaches the module as a plain one
    (other fields pass as they are).

    Args:
        cfg: The model's config (dataclass or omegaconf object).
        config: The config dataclass; its fields must be the module's keyword arguments.
        spec: The dataset's self-description (see :func:`~pdebench_core.models.folded_sizes`).
        **overrides: Arguments derived from the data that replace a field (e.g. fitted modes).

    Returns:
        ``ndim``, ``in_channels``, ``out_frames``, ``n_fields``, the config fields and ``overrides``.
    """
    hints = typing.get_type_hints(config)
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(cfg, f.name)
        values[f.name] = hints[f.name](value) if hints[f.name] in _PLAIN_TYPES else value
    return {**folded_sizes(spec), **values, **overrides}


def model_registration(name: str, build: Callable[..., Any], config: type,
                       profiles: Mapping[str, Mapping[str, Any]], description: str, paper: str,
                       dims: Sequence[int] = ALL_DIMS,
                       check: Callable[[Any], None] | None = None) -> Callable[..., None]:
    """The ``register_models`` hook of a plugin that registers one model.

    Assign it at module level under any name (``register_models = model_registration(...)``,
    or ``register_mlp`` beside a second model's hook): it is marked as an implementation of
    ``register_models`` whatever it is called.

    Args:
        name: The name users type (``--model fno``).
        build: The factory ``build(cfg, spec) -> nn.Module``.
        config: Its config dataclass.
        profiles: Per-profile overrides of the config defaults.
        description: One line for ``pdeb models``.
        paper: Where the architecture comes from.
        dims: Supported numbers of spatial axes.
        check: ``check(cfg)``: the model's checks of its settings alone, run before any
            data is read or generated.

    Returns:
        The hook implementation ``register_models(register)``.
    """

    @hookimpl(specname="register_models")
    def register_models(register: Callable[..., Any]) -> None:
        register(name, build, config=config, profiles=profiles, description=description, paper=paper,
                 dims=tuple(dims), check=check)

    register_models.__doc__ = f"Register the ``{name}`` model."
    return register_models


def integer_fields(config: type) -> tuple[str, ...]:
    """The fields of a config dataclass declared ``int`` (not ``bool``, not optional), in order."""
    try:
        hints = typing.get_type_hints(config)
    except NameError:  # an annotation names a type imported only for type checkers
        hints = {f.name: f.type for f in dataclasses.fields(config)}
    return tuple(f.name for f in dataclasses.fields(config) if hints[f.name] in (int, "int"))


def folded_model(name: str, config: type, profiles: Mapping[str, Mapping[str, Any]], target: str, *,
                 description: str, paper: str, positive: Sequence[str] | None = None, heads_divide: Sequence[str] = (),
                 derive: Callable[[Any, "DataSpec"], dict[str, Any]] | None = None,
                 check: Callable[[Any], None] | None = None,
                 dims: Sequence[int] = ALL_DIMS) -> tuple[Callable[..., Any], Callable[..., None]]:
    """The factory and the ``register_models`` hook of a folded-frame model plugin.

    The factory checks the data's dimensions and the settings (sizes, heads and ``check``),
    runs ``derive`` (the arguments the model derives from the data), imports ``target`` and
    builds it from :func:`folded_arguments`. Use it as ``build, register_models = folded_model(...)`` at
    module level (two models in one module: bind the second pair to other names, e.g.
    ``build_mlp, register_mlp``; both hooks are found).

    Args:
        name: The name users type (``--model fno``).
        config: The config dataclass; its fields are the module's keyword arguments.
        profiles: Per-profile overrides of the config defaults.
        target: ``"package.module:Class"`` of the ``nn.Module``, imported when a model is
            built so that importing the plugin stays free of torch.
        description: One line for ``pdeb models``.
        paper: Where the architecture comes from.
        positive: Config entries that must be positive integers (default: every ``int``
            field of ``config``, the sizes of most models; list them where one may be 0).
        heads_divide: Widths that ``cfg.heads`` must divide.
        derive: ``derive(cfg, spec) -> dict``: checks that need the data (raising
            :class:`UsageError`) and module arguments that replace config fields or come
            on top of them.
        check: ``check(cfg)``: the model's own checks of its settings alone (a choice, a
            sign), raising :class:`UsageError`; they run with the size checks when a run is
            configured, before any data is made, and again when a model is built.
        dims: Supported numbers of spatial axes.

    Returns:
        ``(build, register_models)``.
    """

    sizes = integer_fields(config) if positive is None else tuple(positive)

    def check_settings(cfg: Any) -> None:
        """The sizes, heads and the model's own checks, run before any data is made."""
        check_folded_settings(cfg, name, sizes, heads_divide)
        if check is not None:
            check(cfg)

    def build(cfg: Any, spec: "DataSpec") -> Any:
        check_dims(spec, dims, name)
        check_settings(cfg)
        derived = derive(cfg, spec) if derive is not None else {}
        module, _, class_name = target.partition(":")
        try:
            model_class = getattr(importlib.import_module(module), class_name)
        except (ImportError, AttributeError) as exc:
            raise ImportError(f"folded_model '{name}': target '{target}' names no class ({exc}); give "
                              f"'package.module:Class'") from exc
        arguments = folded_arguments(cfg, config, spec, **derived)
        try:
            return model_class(**arguments)
        except TypeError as exc:
            if "keyword argument" not in str(exc):
                raise
            raise TypeError(f"{exc}; folded_model passes every config field and the data's sizes as keywords: "
                            f"{', '.join(arguments)}") from exc

    build.__doc__ = (f"Build the ``{name}`` model for ``spec`` from a :class:`{config.__name__}` (or an omegaconf "
                     "object alike); raises UsageError on unsupported data or settings.")

    return build, model_registration(name, build, config, profiles, description, paper, dims, check_settings)


__all__ = [
    "ALL_DIMS",
    "check_folded_config",
    "check_folded_settings",
    "folded_arguments",
    "folded_model",
    "integer_fields",
    "model_registration",
    "require_choice",
    "require_grid_divisible",
]
