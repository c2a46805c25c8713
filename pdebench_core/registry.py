"""Registries of named components (models, datasets, tasks, metrics, sinks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from pdebench_core.errors import UsageError, did_you_mean

KINDS = ("model", "dataset", "task", "metric", "sink")


@dataclass
class Component:
    """One registered component.

    Attributes:
        kind: ``"model"``, ``"dataset"``, ``"task"``, ``"metric"`` or ``"sink"``.
        name: The name users type (``--model fno``).
        factory: Builds the component (see the hook specifications).
        config: Dataclass describing the component's settings, or ``None``.
        profiles: Per-profile overrides of ``config`` defaults, e.g.
            ``{"smoke": {"resolution": 32}}``.
        card: Free-form description for people (description, paper, license, ...),
            shown by ``pdeb models`` and friends; pdeb never reads it.
        plugin: Name of the plugin that registered it.
        version: Version of the distribution that ships the plugin.
        dims: Spatial dimensions a model or dataset supports, e.g. ``(1, 2)``; empty
            means not declared (a model is then tried on any data).
        mixed_dims: A model accepts datasets of several dimensions in one run.
        default_task: The task a model runs when none is given (``None``: ``train``).
        higher_is_better: A metric ranks larger values first (best checkpoint, leaderboard).
        trains: A task trains a model (so the training settings, such as how
            ``train.batch_size`` splits over processes, concern it).
        check: A model's check of its own settings, ``check(cfg)`` raising
            :class:`~pdebench_core.errors.UsageError`: run when a run's config is built,
            before any data is read or generated.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type | None = None
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""
    version: str = ""
    dims: tuple[int, ...] = ()
    mixed_dims: bool = False
    default_task: str | None = None
    higher_is_better: bool = False
    trains: bool = True
    check: Callable[[Any], None] | None = None

    def supports(self, ndim: int) -> bool:
        """Whether a model or dataset declares ``ndim`` spatial dimensions (undeclared: yes)."""
        return not self.dims or ndim in self.dims

    def settings(self, profile: str | None = None) -> dict[str, Any]:
        """``{setting: default}`` of the component's config dataclass (``model.<key>``,
        ``data.<name>.<key>``, ``task.<key>``, ``sinks.<name>.<key>``): the dataclass's own
        defaults, or with ``profile`` those the profile sets over them; a required setting
        without a value is left out (see :meth:`required`). Empty without a config."""
        import dataclasses

        if self.config is None or not dataclasses.is_dataclass(self.config):
            return {}
        out = {}
        for f in dataclasses.fields(self.config):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        overrides = self.profiles.get(profile, {}) if profile else {}
        out.update({key: value for key, value in overrides.items() if key in {f.name for f in
                                                                             dataclasses.fields(self.config)}})
        return out

    def required(self) -> list[str]:
        """Settings the config leaves without a default, which every run must give."""
        import dataclasses

        if self.config is None or not dataclasses.is_dataclass(self.config):
            return []
        return [f.name for f in dataclasses.fields(self.config)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description for ``pdeb models --json`` and friends."""
        out: dict[str, Any] = {"name": self.name, "plugin": self.plugin, "version": self.version}
        for key, value in self.card.items():
            if isinstance(value, (str, int, float, bool)) or value is None:
                out[key] = value
            elif isinstance(value, (list, tuple)):
                out[key] = list(value)
        # The registered parameters come last: a card key cannot hide them.
        out["settings"] = self.settings("small")  # the profile a run gets unless told otherwise
        out["required_settings"] = self.required()
        if self.kind in ("model", "dataset") and self.dims:
            out["dims"] = list(self.dims)
        if self.kind == "model":
            out.update(mixed_dims=self.mixed_dims, default_task=self.default_task)
        if self.kind == "metric":
            out["higher_is_better"] = self.higher_is_better
        if self.kind == "task":
            out["trains"] = self.trains
        return out


class Registry:
    """Name -> :class:`Component` for one kind, with helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Component] = {}
        self.disabled: list[str] = []  # plugins that failed to load: an unknown name may be theirs

    def add(self, component: Component) -> None:
        """Add a component; a name registered twice is an error naming both plugins."""
        existing = self._items.get(component.name)
        if existing is not None:
            raise UsageError(
                f"{self.kind} '{component.name}' is registered twice: by plugin "
                f"'{existing.plugin}' and by plugin '{component.plugin}'; uninstall one or "
                f"limit loading with PDEB_LOAD_PLUGINS"
            )
        self._items[component.name] = component

    def get(self, name: str) -> Component:
        """Look a component up; an unknown name raises a one-line :class:`UsageError`."""
        try:
            return self._items[name]
        except KeyError:
            hint = did_you_mean(name, self._items)
            broken = (f" ({'plugins' if len(self.disabled) > 1 else 'plugin'} {', '.join(self.disabled)} "
                      f"{'are' if len(self.disabled) > 1 else 'is'} disabled "
                      f"and may hold it: 'pdeb plugins' says why)") if self.disabled else ""
            loaded = os.environ.get("PDEB_LOAD_PLUGINS")
            limited = "" if loaded is None else (f" (PDEB_LOAD_PLUGINS={loaded} loads only those plugins)" if loaded
                                                 else " (PDEB_LOAD_PLUGINS is empty: no plugin loads)")
            raise UsageError(
                f"unknown {self.kind} '{name}'{hint}{broken}{limited}; run 'pdeb {self.kind}s' to list them"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._items.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        """Sorted component names."""
        return sorted(self._items)
