"""The plugin manager: loads builtin and entry-point plugins, builds registries.

Builtins register first, then the ``pdeb`` entry points (bundled plugins and
third-party packages alike). ``PDEB_LOAD_PLUGINS=a,b`` limits which entry points
load (an empty value loads none). A plugin that fails to import is reported in a
warning and by ``pdeb plugins``; everything else keeps working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import pluggy

from pdebench_core import hookspecs
from pdebench_core.errors import UsageError
from pdebench_core.registry import KINDS, Component, Registry

ENTRY_POINT_GROUP = "pdeb"
DEFAULT_PLUGINS = (
    "pdebench_core.builtin.tasks",
    "pdebench_core.builtin.metrics",
    "pdebench_core.builtin.sinks",
)


@dataclass
class PluginInfo:
    """What ``pdeb plugins`` shows about one plugin."""

    name: str
    origin: str  # "builtin" or "entry point"
    version: str
    hooks: list[str]
    error: str | None = None


pm = pluggy.PluginManager("pdeb")
pm.add_hookspecs(hookspecs)
_infos: dict[str, PluginInfo] = {}
_loaded = False
_registries: dict[str, Registry] | None = None


def _core_version() -> str:
    from pdebench_core import __version__

    return __version__


def _selected_entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    wanted = os.environ.get("PDEB_LOAD_PLUGINS")
    if wanted is None:
        return eps
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return [ep for ep in eps if ep.name in names]


def load_plugins() -> pluggy.PluginManager:
    """Register builtin plugins and every selected entry point (idempotent)."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        _infos[module_name] = PluginInfo(module_name, "builtin", _core_version(), _hooks_of(module_name))
    for ep in _selected_entry_points():
        version = ep.dist.version if ep.dist is not None else ""
        if pm.has_plugin(ep.name):
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            warnings.warn(f"pdeb plugin '{ep.name}' failed to load: {message}", stacklevel=2)
            _infos[ep.name] = PluginInfo(ep.name, "entry point", version, [], error=message)
            continue
        _infos[ep.name] = PluginInfo(ep.name, "entry point", version, _hooks_of(ep.name))
    pm.check_pending()
    return pm


def register_plugin(module: Any, name: str, version: str = "") -> None:
    """Register a plugin object by hand (tests, notebooks) and rebuild the registries."""
    global _registries
    load_plugins()
    pm.register(module, name=name)
    pm.check_pending()
    _infos[name] = PluginInfo(name, "manual", version, _hooks_of(name))
    _registries = None


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    global _registries
    pm.unregister(name=name)
    _infos.pop(name, None)
    _registries = None


def _hooks_of(name: str) -> list[str]:
    plugin = pm.get_plugin(name)
    if plugin is None:
        return []
    return sorted(h.name for h in pm.get_hookcallers(plugin) or [])


def plugin_infos() -> list[PluginInfo]:
    """Every plugin seen, loaded or failed, builtins first."""
    load_plugins()
    return list(_infos.values())


def _register_into(registry: Registry, plugin_name: str, name: str, factory: Callable[..., Any],
                   config: type | None = None, profiles: dict | None = None, **card: Any) -> None:
    if not isinstance(name, str) or not name:
        raise UsageError(f"plugin '{plugin_name}' registered a {registry.kind} without a name")
    info = _infos.get(plugin_name)
    registry.add(Component(
        kind=registry.kind, name=name, factory=factory, config=config,
        profiles=dict(profiles or {}), card=dict(card), plugin=plugin_name,
        version=info.version if info else "",
    ))


def registries() -> dict[str, Registry]:
    """Collect every component from every loaded plugin (cached)."""
    global _registries
    if _registries is not None:
        return _registries
    load_plugins()
    built = {kind: Registry(kind) for kind in KINDS}
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}s")
        # Call each implementation on its own so every component knows its plugin.
        for impl in caller.get_hookimpls():  # registration order: builtins first
            impl.function(register=partial(_register_into, built[kind], impl.plugin_name))
    _registries = built
    return built


def get(kind: str, name: str) -> Component:
    """Look up one component by kind and name."""
    return registries()[kind].get(name)


def register_commands(app: Any) -> None:
    """Let every plugin add its CLI commands to ``app``."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(app=app)
        except Exception as exc:
            print(f"warning: plugin '{impl.plugin_name}' failed to add commands: {exc}", file=sys.stderr)
