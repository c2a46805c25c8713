"""The plugin manager: loads builtin and entry-point plugins, builds registries.

Builtins register first, then the ``pdeb`` entry points (bundled plugins and
third-party packages alike). ``PDEB_LOAD_PLUGINS=a,b`` limits which entry points
load (an empty value loads none). A plugin that fails -- on import, with a hook name
that has no specification, inside a registration hook, or by registering a name that
another plugin already holds -- is disabled alone: a one-line warning names it and the
cause, ``pdeb plugins`` shows it as failed, and everything else keeps working. On a
duplicate name the first registrant keeps it (builtins first, then pdeb's bundled
plugins, then third-party ones).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import os
import re
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pluggy

from pdebench_core import hookspecs
from pdebench_core.errors import did_you_mean
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
    # pdeb's own bundled plugins first, so that they keep their names on a clash.
    eps.sort(key=lambda ep: (ep.dist is None or ep.dist.name != "pdeb"))
    wanted = os.environ.get("PDEB_LOAD_PLUGINS")
    if wanted is None:
        return eps
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    unknown = sorted(names - {ep.name for ep in eps})
    if unknown:
        print(f"warning: PDEB_LOAD_PLUGINS names {', '.join(unknown)}, which no installed plugin is called; "
              f"installed: {', '.join(sorted(ep.name for ep in eps))}", file=sys.stderr)
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
        if pm.has_plugin(ep.name) or ep.name in _infos:  # listed twice (an editable install seen twice): once
            continue
        _infos[ep.name] = PluginInfo(ep.name, "entry point", version, [])
        module = None
        try:
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the commands' (--json)
                module = ep.load()
            pm.register(module, name=ep.name)
            pm.check_pending()  # a hook name with no specification (a misspelling)
        except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            _disable(ep.name, f"failed to load: {_load_failure(exc, module)}")
            continue
        _infos[ep.name].hooks = _hooks_of(ep.name)
        _warn_unmarked_hooks(ep.name, module, _infos[ep.name].hooks)
    return pm


def _hook_names() -> list[str]:
    return sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def _load_failure(exc: BaseException, plugin: Any = None) -> str:
    """Why a plugin could not load; a misspelt hook name gets the closest real one, a hook
    imported under another name the way to keep it."""
    import re

    from pdebench_core.errors import did_you_mean

    found = re.match(r"unknown hook '([^']+)'", str(exc)) if isinstance(exc, pluggy.PluginValidationError) else None
    if found is None:
        return _one_line(exc)
    attribute = found.group(1)
    original = getattr(getattr(plugin, attribute, None), "__name__", "")
    if original in _hook_names():  # e.g. `from .folder import register_datasets as register_folder`
        return (f"'{attribute}' is {original} under another name, and pluggy goes by the name: mark it "
                f"@hookimpl(specname=\"{original}\"), or call it from the plugin's own {original}")
    return (f"'{attribute}' is not a pdeb hook{did_you_mean(attribute, _hook_names())}; the hooks are "
            f"{', '.join(_hook_names())}")


def _warn_unmarked_hooks(name: str, module: Any, hooks: list[str]) -> None:
    """Functions named like a hook but not marked ``@hookimpl`` are never called: say so."""
    unmarked = [hook for hook in _hook_names() if hook not in hooks and callable(getattr(module, hook, None))]
    if unmarked:
        print(f"warning: pdeb plugin '{name}': {', '.join(unmarked)} not marked @hookimpl, so pdeb never calls "
              f"{'it' if len(unmarked) == 1 else 'them'}; decorate with @hookimpl (from pdebench_core import "
              f"hookimpl)", file=sys.stderr)
    elif not hooks:
        print(f"warning: pdeb plugin '{name}' implements no hook; mark its register_* functions with "
              f"@hookimpl (from pdebench_core import hookimpl)", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    from pdebench_core.errors import message_of

    text = message_of(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _disable(name: str, reason: str) -> None:
    """Mark a plugin failed and say so once on stderr, in one line."""
    info = _infos.setdefault(name, PluginInfo(name, "entry point", "", []))
    if info.error is None:
        print(f"warning: pdeb plugin '{name}' disabled: {reason}", file=sys.stderr)
    info.error = reason


def register_plugin(module: Any, name: str, version: str = "") -> None:
    """Register a plugin object by hand (tests, notebooks) and rebuild the registries.

    Raises:
        pluggy.PluginValidationError: a hook implementation has no specification (the
            plugin is not left registered).
    """
    global _registries
    load_plugins()
    pm.register(module, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pm.unregister(name=name)
        raise
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
    """Every plugin seen, loaded or failed, builtins first (registration failures included)."""
    registries()
    return list(_infos.values())


class _BadRegistration(Exception):
    """A ``register`` parameter of the wrong type or value; disables the plugin that passed it."""


def _check_dims(kind: str, name: str, dims: Any) -> tuple[int, ...]:
    """``dims`` as a sorted tuple of spatial dimensions (an int means one dimension)."""
    if dims is None:
        return ()
    items = (dims,) if isinstance(dims, int) else dims
    valid = isinstance(items, (tuple, list)) and len(items) > 0 and len(set(items)) == len(items) and all(
        isinstance(d, int) and not isinstance(d, bool) and d in (1, 2, 3) for d in items)
    if not valid:
        raise _BadRegistration(f"{kind} '{name}' has dims={dims!r}; pass the spatial dimensions it supports as "
                               f"distinct values among 1, 2, 3, e.g. dims=(1, 2)")
    return tuple(sorted(items))


def _check_flag(kind: str, name: str, parameter: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _BadRegistration(f"{kind} '{name}' has {parameter}={value!r}; pass True or False")
    return value


def _check_settings(kind: str, name: str, config: Any, profiles: Any) -> None:
    if config is not None and not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise _BadRegistration(f"{kind} '{name}' has config={config!r}; pass a dataclass (the class, not an "
                               f"instance) or leave it out")
    if profiles is not None and not (isinstance(profiles, Mapping) and all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in profiles.items())):
        raise _BadRegistration(f"{kind} '{name}' has profiles={profiles!r}; pass a mapping such as "
                               f"{{'smoke': {{'width': 8}}}}")
    _check_profile_keys(kind, name, config, profiles or {})


def _shared_sections() -> dict[str, type]:
    from pdebench_core.settings import EvalSection, TrainSection

    return {"train": TrainSection, "eval": EvalSection}


def _check_profile_keys(kind: str, name: str, config: Any, profiles: Mapping[str, Mapping[str, Any]]) -> None:
    """Profiles are named after pdeb's profiles and set fields of the config (a task's also the
    ``train`` and ``eval`` sections), so a typo is the plugin's error, not the user's."""
    from pdebench_core.profiles import PROFILE_NAMES

    shared = _shared_sections() if kind == "task" else {}  # a task's profiles may set these sections too
    for profile, overrides in profiles.items():
        if profile not in PROFILE_NAMES:
            raise _BadRegistration(f"{kind} '{name}' has a profile '{profile}'; profiles are "
                                   f"{', '.join(PROFILE_NAMES)}{did_you_mean(profile, PROFILE_NAMES)}")
        _check_shared_sections(kind, name, profile, overrides, shared)
        if config is None:
            continue
        known = {f.name for f in dataclasses.fields(config)}
        unknown = [key for key in overrides if key not in known and key not in shared]
        if unknown:
            allowed = sorted(known | set(shared))
            where = f"a field of {config.__name__}" + (" nor a section train or eval" if shared else "")
            raise _BadRegistration(f"{kind} '{name}': profile '{profile}' sets '{unknown[0]}', which is not "
                                   f"{where}{did_you_mean(str(unknown[0]), allowed)}")


def _check_shared_sections(kind: str, name: str, profile: str, overrides: Mapping[str, Any],
                           shared: Mapping[str, type]) -> None:
    """A task profile's ``train`` and ``eval`` keys must be settings of those sections."""
    for section, section_config in shared.items():
        fields = {f.name for f in dataclasses.fields(section_config)}
        wrong = [key for key in (overrides.get(section) or {}) if key not in fields]
        if wrong:
            raise _BadRegistration(f"{kind} '{name}': profile '{profile}' sets '{section}.{wrong[0]}', which "
                                   f"is not a {section} setting{did_you_mean(str(wrong[0]), sorted(fields))}")


_COMPONENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_WHERE_NAMES_ARE_TYPED = {
    "model": "--model", "dataset": "--data lists and data.<name>.<key> settings", "task": "--task",
    "metric": "eval.metrics lists", "sink": "run.sinks lists and sinks.<name>.<key> settings",
}


def _stage(staged: list[Component], kind: str, plugin_name: str, name: str, factory: Callable[..., Any],
           config: type | None = None, profiles: Mapping[str, Mapping[str, Any]] | None = None, *,
           typed: Mapping[str, Any] | None = None, **card: Any) -> None:
    """Stage one component; ``typed`` holds its validated registration parameters, ``card`` its description."""
    if not isinstance(name, str) or not name:
        raise _BadRegistration(f"a {kind} was registered with name={name!r}; pass a non-empty string")
    if not _COMPONENT_NAME.match(name):  # '.' splits data.<name>.<key>, ',' and '+' split --data lists
        raise _BadRegistration(f"a {kind} was registered as '{name}'; a name may hold letters, digits, '_' and "
                               f"'-' only (users type it in {_WHERE_NAMES_ARE_TYPED.get(kind, 'lists and settings')})")
    _check_settings(kind, name, config, profiles)
    info = _infos.get(plugin_name)
    staged.append(Component(
        kind=kind, name=name, factory=factory, config=config,
        profiles=dict(profiles or {}), card=dict(card), plugin=plugin_name,
        version=info.version if info else "", **dict(typed or {}),
    ))


def _stage_model(staged: list[Component], plugin_name: str, name: str, factory: Callable[..., Any],
                 config: type | None = None, profiles: Mapping[str, Mapping[str, Any]] | None = None, *,
                 dims: Any = None, mixed_dims: bool = False, default_task: str | None = None,
                 check: Callable[[Any], None] | None = None, **card: Any) -> None:
    """The ``register`` of ``register_models`` (see :func:`pdebench_core.hookspecs.register_models`)."""
    if default_task is not None and (not isinstance(default_task, str) or not default_task):
        raise _BadRegistration(f"model '{name}' has default_task={default_task!r}; pass a task name such as "
                               f"'pretrain', or leave it out")
    if check is not None and not callable(check):
        raise _BadRegistration(f"model '{name}' has check={check!r}; pass a function check(cfg), or leave it out")
    typed = {"dims": _check_dims("model", name, dims), "default_task": default_task,
             "mixed_dims": _check_flag("model", name, "mixed_dims", mixed_dims), "check": check}
    _stage(staged, "model", plugin_name, name, factory, config, profiles, typed=typed, **card)


def _stage_dataset(staged: list[Component], plugin_name: str, name: str, factory: Callable[..., Any],
                   config: type | None = None, profiles: Mapping[str, Mapping[str, Any]] | None = None, *,
                   dims: Any = None, **card: Any) -> None:
    """The ``register`` of ``register_datasets`` (see :func:`pdebench_core.hookspecs.register_datasets`)."""
    typed = {"dims": _check_dims("dataset", name, dims)}
    _stage(staged, "dataset", plugin_name, name, factory, config, profiles, typed=typed, **card)


def _stage_metric(staged: list[Component], plugin_name: str, name: str, fn: Callable[..., Any],
                  reduction: str = "mean", finish: Callable[..., Any] | None = None, *,
                  higher_is_better: bool = False, **card: Any) -> None:
    """Stage a metric: the registry holds a validated :class:`pdebench_core.metrics.Metric`."""
    from pdebench_core.metrics import Metric  # torch-free, like every registration

    typed = {"higher_is_better": _check_flag("metric", name, "higher_is_better", higher_is_better)}
    metric = Metric(name, fn, reduction=reduction, finish=finish, plugin=plugin_name)
    # The card's copy of the reduction is for display (``pdeb metrics``); scoring reads the Metric.
    _stage(staged, "metric", plugin_name, name, metric, typed=typed, reduction=metric.reduction, **card)


def _stage_task(staged: list[Component], plugin_name: str, name: str, factory: Callable[..., Any],
                config: type | None = None, profiles: Mapping[str, Mapping[str, Any]] | None = None, *,
                trains: bool = True, **card: Any) -> None:
    """The ``register`` of ``register_tasks`` (see :func:`pdebench_core.hookspecs.register_tasks`)."""
    typed = {"trains": _check_flag("task", name, "trains", trains)}
    _stage(staged, "task", plugin_name, name, factory, config, profiles, typed=typed, **card)


_STAGERS: dict[str, Callable[..., None]] = {
    "model": _stage_model, "dataset": _stage_dataset, "metric": _stage_metric, "task": _stage_task,
}


def _register_for(staged: list[Component], kind: str, plugin_name: str) -> Callable[..., None]:
    """The ``register`` callable a plugin's ``register_<kind>s`` hook receives."""
    if kind in _STAGERS:
        return partial(_STAGERS[kind], staged, plugin_name)
    return partial(_stage, staged, kind, plugin_name)


def _collect() -> tuple[dict[str, list[Component]], dict[str, str]]:
    """Run every registration hook of every plugin; ``({plugin: components}, {plugin: failure})``."""
    staged: dict[str, list[Component]] = {}
    failures: dict[str, str] = {}
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}s")
        # Call each implementation on its own so every component knows its plugin.
        for impl in caller.get_hookimpls():
            if impl.plugin_name in failures:
                continue
            mine: list[Component] = []
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    impl.function(register=_register_for(mine, kind, impl.plugin_name))
            except _BadRegistration as exc:  # names the parameter and the fix
                failures[impl.plugin_name] = f"register_{kind}s: {exc}"
                continue
            except (Exception, SystemExit) as exc:  # a plugin's bug disables that plugin only
                failures[impl.plugin_name] = f"register_{kind}s raised {_one_line(exc)}"
                continue
            staged.setdefault(impl.plugin_name, []).extend(mine)
    return staged, failures


def registries() -> dict[str, Registry]:
    """Collect every component from every loaded plugin (cached).

    Plugins are added whole, in registration order; one whose hook raised or that
    registers a name already taken is left out entirely (and reported).
    """
    global _registries
    if _registries is not None:
        return _registries
    load_plugins()
    staged, failures = _collect()
    built = {kind: Registry(kind) for kind in KINDS}
    for plugin_name in [n for n in _infos if n in staged] + [n for n in staged if n not in _infos]:
        if plugin_name in failures:
            continue
        components = staged[plugin_name]
        clash = _first_clash(built, components)
        if clash is not None:
            failures[plugin_name] = clash
            continue
        for component in components:
            built[component.kind].add(component)
    for plugin_name, reason in failures.items():
        _disable(plugin_name, reason)
    disabled = sorted(name for name, info in _infos.items() if info.error)
    for registry in built.values():
        registry.disabled = disabled
    _registries = built
    return built


def _first_clash(built: dict[str, Registry], components: list[Component]) -> str | None:
    """Why ``components`` cannot join ``built`` (a name taken), or None."""
    seen: set[tuple[str, str]] = set()
    for c in components:
        if c.name in built[c.kind]:
            return (f"{c.kind} '{c.name}' is already registered by plugin '{built[c.kind].get(c.name).plugin}'; "
                    f"rename it or uninstall one of them")
        if (c.kind, c.name) in seen:
            return f"{c.kind} '{c.name}' is registered twice by this plugin"
        seen.add((c.kind, c.name))
    return None


@contextlib.contextmanager
def plugin_code(component: Component, what: str = "raised") -> Iterator[None]:
    """Run a component's own code (factory, sink method, task): an exception it raises becomes
    one line naming the component and its plugin (:func:`plugin_failure`).

    Raises:
        PluginError: What the component raised, in one line (a :class:`PdebError` passes as it is).
    """
    from pdebench_core.errors import PdebError

    try:
        yield
    except PdebError:
        raise
    except Exception as exc:
        failure = plugin_failure(component, exc, what)
        if failure is None:
            raise
        raise failure from exc
    except SystemExit as exc:  # a plugin ending the process would leave the run "interrupted", unnamed
        failure = plugin_exit_failure(component, exc)
        if failure is None:
            raise
        raise failure from None


def plugin_exit_failure(component: Component, exc: SystemExit) -> Exception | None:
    """The one-line :class:`PluginError` for ``sys.exit()`` called by a plugin's own code (it
    names the line); None when the exit was raised elsewhere (a scheduler's signal handler, pdeb
    itself), or with ``PDEB_DEBUG=1``, which lets the exit through as the plugin asked."""
    from pdebench_core.errors import PluginError

    origin = _raising_frame(exc, prefer=component.plugin)
    if os.environ.get("PDEB_DEBUG") or origin is None:
        return None
    plugin, frame, line = origin
    if frame is not list(traceback_frames(exc))[-1][0]:
        return None  # the innermost frame is not the plugin's: it did not call sys.exit itself
    return PluginError(f"plugin '{plugin}' called sys.exit({exc.code!r}) (at {_frame_label(frame, line)}, "
                       f"during {component.kind} '{component.name}'); a plugin should raise an exception instead")


def plugin_failure(component: Component, exc: Exception, what: str = "raised") -> Exception | None:
    """The one-line :class:`PluginError` for an exception of a component's code; ``None`` with
    ``PDEB_DEBUG=1``, for the caller to let the exception and its traceback through (the line
    then rides on the exception as a note: the traceback ends with it, and ``status.json``
    records it, see :func:`pdebench_core.errors.error_line`)."""
    from pdebench_core.errors import PluginError, add_error_line

    origin = raising_plugin(exc, prefer=component.plugin)
    if origin is not None and origin[0] != component.plugin:  # e.g. a model's forward, run by a builtin task
        plugin, where = origin
        line = (f"plugin '{plugin}' raised {_one_line(exc)} (at {where}, during {component.kind} "
                f"'{component.name}')")
    else:
        line = f"{component.kind} '{component.name}' (plugin '{component.plugin}') {what} {_one_line(exc)}"
    if os.environ.get("PDEB_DEBUG"):
        add_error_line(exc, line)
        return None
    return PluginError(f"{line}; PDEB_DEBUG=1 shows the traceback")


def raising_plugin(exc: BaseException, prefer: str | None = None) -> tuple[str, str] | None:
    """``(plugin, "file:line in function")`` of the innermost traceback frame that lies in a
    plugin's own source, or None: whose code raised, however deep in pdeb or torch it surfaced.

    Several entry points of one package share its folders: the plugin whose own module (or
    package) holds the file is taken first, then ``prefer`` (the component running) when it is
    one of them, then any of them.
    """
    origin = _raising_frame(exc, prefer)
    return None if origin is None else (origin[0], _frame_label(origin[1], origin[2]))


def _raising_frame(exc: BaseException, prefer: str | None) -> tuple[str, Any, int] | None:
    """``(plugin, frame, line)`` of :func:`raising_plugin`'s frame, or None."""
    plugins = dict(pm.list_name_plugin())
    sources = {name: _plugin_sources(plugin) for name, plugin in plugins.items()}
    found = None
    for frame, line in traceback_frames(exc):
        file = frame.f_code.co_filename
        owners = [name for name, roots in sources.items() if any(_holds(root, file) for root in roots)]
        if not owners:
            continue
        own = {name: max((len(root) for root in _own_sources(plugins[name]) if _holds(root, file)), default=0)
               for name in owners}
        deepest = max(own.values())  # pkg.sub's own folder before pkg's, when both hold the file
        chosen = [name for name, depth in own.items() if depth and depth == deepest] or (
            [prefer] if prefer in owners else owners)
        found = (prefer if prefer in chosen else chosen[0], frame, line)
    return found


def _frame_label(frame: Any, line: int) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{line} in {frame.f_code.co_name}"


def _holds(root: str, file: str) -> bool:
    """Whether ``file`` is ``root`` or lies in the folder ``root`` (which ends in a separator)."""
    return file == root or (root.endswith(os.sep) and file.startswith(root))


def _own_sources(plugin: Any) -> list[str]:
    """The entry point's own module file, or its package's folder: narrower than the top-level
    package folders of :func:`_plugin_sources`."""
    import inspect

    if not inspect.ismodule(plugin):
        return []
    folders = list(getattr(plugin, "__path__", []) or [])
    if folders:
        return [str(Path(folder)) + os.sep for folder in folders]
    file = getattr(plugin, "__file__", None)
    return [file] if file else []


def _plugin_sources(plugin: Any) -> list[str]:
    """The files a plugin's code lives in: the folders of its top-level package (an entry point
    may name ``mypkg.plugin`` while the model sits in ``mypkg/model.py``), a builtin's own
    module, a class's own file."""
    import inspect

    module = sys.modules.get(getattr(plugin, "__name__", "")) if inspect.ismodule(plugin) else None
    if module is not None and not module.__name__.startswith("pdebench_core."):
        top = sys.modules.get(module.__name__.partition(".")[0])
        folders = list(getattr(top, "__path__", []) or [])
        if folders:
            return [str(Path(folder)) + os.sep for folder in folders]
    try:
        file = inspect.getsourcefile(plugin) if plugin is not None else None
    except TypeError:  # a builtin object
        return []
    return [file] if file else []


def traceback_frames(exc: BaseException) -> Iterator[tuple[Any, int]]:
    """``(frame, line)`` from the outermost to the innermost call of an exception's traceback."""
    tb = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def build_dataset_from(name: str, section: Any) -> Any:
    """Dataset ``name`` built by its factory from a copy of its settings ``section``, so that a
    factory filling in a setting cannot change the run's config (and its hash) behind its back."""
    import copy

    return get("dataset", name).factory(copy.deepcopy(section))


def get(kind: str, name: str) -> Component:
    """Look up one component by kind and name."""
    return registries()[kind].get(name)


def register_commands(app: Any) -> None:
    """Let every plugin add its CLI commands to ``app``; a command that would replace one
    already there (``run``, another plugin's) is left out with a warning."""
    load_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        taken = set(_command_names(app.registered_commands, app.registered_groups))
        commands, groups = len(app.registered_commands), len(app.registered_groups)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                impl.function(app=app)
        except (Exception, SystemExit) as exc:
            print(f"warning: plugin '{impl.plugin_name}' failed to add commands: {_one_line(exc)}", file=sys.stderr)
        added = [(app.registered_commands, entry, name) for entry, name in
                 zip(app.registered_commands[commands:], _command_names(app.registered_commands[commands:], []))]
        added += [(app.registered_groups, entry, entry.name) for entry in app.registered_groups[groups:]]
        for entries, entry, name in added:
            if name in taken:
                entries.remove(entry)
                print(f"warning: plugin '{impl.plugin_name}' tried to replace the command '{name}'; it was left out",
                      file=sys.stderr)
            else:
                _guard_commands(entry, name, impl.plugin_name)


def _guard_commands(entry: Any, name: str, plugin: str) -> None:
    """Guard a plugin's command, or every command of a group it added (``app.add_typer``)."""
    import inspect

    callback = getattr(entry, "callback", None)
    if callable(callback) and (inspect.isfunction(callback) or inspect.ismethod(callback)):
        entry.callback = _guarded_command(callback, name, plugin)
    group = getattr(entry, "typer_instance", None)
    for command in getattr(group, "registered_commands", []) if group is not None else []:
        _guard_commands(command, f"{name} {command.name or command.callback.__name__.replace('_', '-')}", plugin)
    for sub in getattr(group, "registered_groups", []) if group is not None else []:
        _guard_commands(sub, f"{name} {sub.name}", plugin)


def _guarded_command(callback: Callable, name: str, plugin: str) -> Callable:
    """A plugin command whose errors are one line: a :class:`PdebError` as ``error: ...`` with
    its exit code, anything else naming the command and its plugin (exit code 1), as for any
    plugin component; ``PDEB_DEBUG=1`` lets the traceback through."""
    import functools

    import typer

    from pdebench_core.cli_common import click_flow_exceptions, report_error
    from pdebench_core.errors import PdebError, PluginError

    flow = click_flow_exceptions()

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except (PdebError, KeyboardInterrupt) as exc:
            raise typer.Exit(report_error(exc)) from None
        except flow:
            raise  # typer's own flow: an exit code, an abort, a usage error
        except Exception as exc:
            if os.environ.get("PDEB_DEBUG"):
                raise
            raise typer.Exit(report_error(PluginError(
                f"command '{name}' (plugin '{plugin}') raised {_one_line(exc)}; PDEB_DEBUG=1 shows the "
                f"traceback"))) from None

    return guarded


def _command_names(commands: Any, groups: Any) -> list[str]:
    """The names typer gives registered commands (a callback's name with dashes) and groups."""
    names = [c.name or (c.callback.__name__.replace("_", "-") if c.callback else "") for c in commands]
    return names + [g.name or "" for g in groups]
