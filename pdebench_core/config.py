"""Run configuration: component dataclasses -> profile -> YAML -> ``key=value``.

Every section is an omegaconf structured config built from a dataclass, so a
misspelt key or a wrong type fails before any compute, with a one-line message.

Layout of a resolved config::

    run:   RunSection           (task, seed, device, run_id, profile, sinks)
    model: <model dataclass> + name
    data:  {<dataset>: <dataset dataclass>, ...}
    train: TrainSection
    eval:  EvalSection
    task:  <task dataclass>
    sinks: {<sink of run.sinks>: <sink dataclass>, ...}   (only sinks with settings)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pdebench_core import plugins
from pdebench_core.errors import UsageError, did_you_mean
from pdebench_core.registry import Component
from pdebench_core.profiles import PROFILE_NAMES
from pdebench_core.settings import CORE_PROFILES, EvalSection, RunSection, TrainSection
from pdebench_core.validation import (check_declared_dims, check_generator_settings_with_path, check_required,
                                      check_sections, check_values, resolve_interpolations, setting_hints)

SECTIONS = ("run", "model", "data", "train", "eval", "task", "sinks")


def _omegaconf():
    from omegaconf import OmegaConf

    return OmegaConf


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-3", ...]`` into a nested dict; malformed items are usage errors."""
    items = list(overrides or [])
    given: dict[str, str] = {}
    for item in items:
        if "=" not in item or item.startswith("="):
            raise UsageError(f"override '{_shown(item)}' is not key=value; write e.g. train.max_steps=100")
        key, value = item.split("=", 1)
        if key in given and given[key] != value:  # one of the two would be dropped in silence
            raise UsageError(f"setting '{key}' is given twice ({_shown(given[key])} and {_shown(value)}); give it once")
        given[key] = value
    try:
        return _omegaconf().to_container(_omegaconf().from_dotlist(items))  # type: ignore[return-value]
    except Exception as exc:
        raise UsageError(f"cannot parse overrides {_shown(' '.join(items))}: {parse_problem(exc)}") from None


def _shown(text: str, limit: int = 80) -> str:
    """``text``, or its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def parse_problem(exc: BaseException) -> str:
    """What a YAML or override parser found wrong, with where: ``found duplicate key 'lr' (line
    3, column 1)``; the problem itself, not only the context line a parser starts with."""
    problem = getattr(exc, "problem", None)
    if problem:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        context = getattr(exc, "context", None)
        return f"{context + ': ' if context else ''}{problem}{where}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return _shown(" ".join(lines[:3]) or type(exc).__name__, 200)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a run config file (YAML)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"config file {path} does not exist; pass an existing YAML file to --config")
    if not path.is_file():
        raise UsageError(f"config file {path} is not a file; pass a YAML file to --config")
    try:
        data = _omegaconf().to_container(_omegaconf().load(path))
    except Exception as exc:
        raise UsageError(f"config file {path} is not valid YAML: {parse_problem(exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping with sections {', '.join(SECTIONS)}")
    return data


def _section(schema: type | None, where: str, *layers: Mapping[str, Any] | None, extra: Mapping[str, Any] | None = None):
    """Merge ``layers`` onto the structured schema, turning omegaconf errors into usage errors."""
    OmegaConf = _omegaconf()
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    base = OmegaConf.structured(schema) if schema is not None else OmegaConf.create({})
    if extra:
        OmegaConf.set_struct(base, False)
        base = OmegaConf.merge(base, extra)
    OmegaConf.set_struct(base, True)
    valid = list(base.keys())
    for layer in layers:
        if not layer:
            continue
        if not isinstance(layer, Mapping):
            raise UsageError(f"'{where}' must be a mapping of settings, got {layer!r}")
        for key in layer:
            if key not in valid:  # not `in base`: a required field (no default) is "missing", not absent
                hint = did_you_mean(str(key), valid)
                raise UsageError(
                    f"unknown setting '{where}.{key}'{hint}; valid keys: {', '.join(map(str, valid))}"
                )
        try:
            base = OmegaConf.merge(base, layer)
        except (ValidationError, ConfigKeyError, ConfigAttributeError) as exc:
            key = getattr(exc, "full_key", None) or "?"
            raise UsageError(f"bad value for '{where}.{key}': {_reason(exc, base, f'{where}.{key}')}") from None
    return base


def _reason(exc: Exception, base: Any, dotted: str) -> str:
    """omegaconf's complaint, in the user's words where it speaks of its own node types."""
    message = str(exc).splitlines()[0]
    if "is not a ListConfig" in message:
        current = _omegaconf().select(base, dotted.split(".", 1)[1], default=None)
        example = ",".join(map(str, current)) if current else "a,b"
        return f"needs a list, e.g. {dotted}=[{example}]"
    if "of type 'ListConfig'" in message or "of type 'DictConfig'" in message:
        return "needs a single value, not a list or mapping"
    if message.startswith("Incompatible value 'None'"):
        return f"needs a value ('{dotted}=' gives none); write {dotted}=VALUE"
    return _shown(message, 200)


def profile_of(component: Component | None, profile: str) -> dict[str, Any]:
    """A component's overrides for ``profile`` (empty when it declares no profile at all).

    Raises:
        UsageError: the component declares profiles, but not this one: running on its
            defaults instead would pass a smoke- or small-sized setting off as ``paper``.
    """
    if component is None or not component.profiles:
        return {}
    if profile not in component.profiles:
        raise UsageError(f"{component.kind} '{component.name}' (plugin '{component.plugin}') has no '{profile}' "
                         f"profile, only {', '.join(component.profiles)}; use --profile with one of those, or "
                         f"ask its author to add '{profile}'")
    return dict(component.profiles[profile])


def split_names(text: str | Sequence[str] | None) -> list[str]:
    """``"ns2d,cfd3d"`` -> ``["ns2d", "cfd3d"]`` (order kept, duplicates refused)."""
    if text is None:
        return []
    raw = text.split(",") if isinstance(text, str) else list(text)
    if any(not str(n).strip() for n in raw):
        raise UsageError(f"--data '{text if isinstance(text, str) else ','.join(raw)}' has an empty name; "
                         f"write names separated by single commas, e.g. ns2d,cfd3d")
    names = [str(n).strip() for n in raw]
    seen = set()
    for name in names:
        if name in seen:
            raise UsageError(f"dataset '{name}' is listed twice in --data")
        seen.add(name)
    return names


def build_config(
    model: str | None = None,
    data: str | Sequence[str] | None = None,
    task: str | None = None,
    profile: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    **run_options: Any,
):
    """Build and validate the fully resolved run config.

    Args:
        model: Model name (else ``model.name`` from the config file).
        data: Comma-separated dataset names (else the keys of ``data`` in the file).
        task: Task name (else ``run.task``, else ``train``).
        profile: ``smoke``, ``small`` or ``paper`` (else ``run.profile``, else ``small``).
        config_file: Optional YAML file with any of the sections.
        overrides: ``key=value`` dot-path overrides, applied last.
        **run_options: Values for the ``run`` section given as CLI options
            (``seed``, ``device``, ``run_id``); ``None`` means not given.

    Returns:
        An omegaconf ``DictConfig`` with every section validated.

    Raises:
        UsageError: any bad setting, in one line; omegaconf's own errors on the way (an
            interpolation read before the whole config exists, a value of the wrong type)
            included.
    """
    from omegaconf.errors import OmegaConfBaseException

    try:
        return _resolve(model, data, task, profile, config_file, overrides, run_options)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f" at '{key}'" if key else ""
        raise UsageError(f"invalid configuration{where}: {str(exc).splitlines()[0][:200]}") from None


def _resolve(model: str | None, data: str | Sequence[str] | None, task: str | None, profile: str | None,
             config_file: str | Path | None, overrides: Iterable[str], run_options: Mapping[str, Any]):
    """:func:`build_config` without the translation of omegaconf's errors."""
    OmegaConf = _omegaconf()
    user: dict[str, Any] = load_yaml(config_file) if config_file else {}
    check_sections(user, f"config file {config_file}")
    cli = parse_overrides(overrides)
    check_sections(cli, "overrides")
    for layer, origin in ((user, "config file"), (cli, "overrides")):
        for key in layer:
            if key not in SECTIONS:
                raise UsageError(
                    f"unknown section '{key}' in {origin}{did_you_mean(key, SECTIONS)}; "
                    f"sections are {', '.join(SECTIONS)}"
                )
    for option, value in (("--task", task), ("--profile", profile), ("--config", config_file)):
        if value is not None and not str(value).strip():
            raise UsageError(f"{option} is empty; give a value or leave the option out")
    for option, value, section, key in (("--model", model, "model", "name"), ("--task", task, "run", "task"),
                                        ("--profile", profile, "run", "profile"),
                                        ("--seed", run_options.get("seed"), "run", "seed"),
                                        ("--device", run_options.get("device"), "run", "device"),
                                        ("--run-id", run_options.get("run_id"), "run", "run_id")):
        _check_not_contradicted(option, value, section, key, cli)  # a config file's value yields to the option
    run_cli = {k: v for k, v in run_options.items() if v is not None}
    if task:
        run_cli["task"] = task
    if profile:
        run_cli["profile"] = profile
    run = _section(RunSection, "run", user.get("run"), cli.get("run"), run_cli)
    check_profile(run.profile)
    prof = run.profile
    regs = plugins.registries()

    source = _checkpoint_model(user, cli)  # the weights to load decide the defaults of the model
    model_name = (model or (user.get("model") or {}).get("name") or (cli.get("model") or {}).get("name")
                  or source.get("name"))
    if not model_name:
        raise UsageError("no model given; pass --model NAME (run 'pdeb models' to list them)")
    model_comp = regs["model"].get(model_name)
    task_given = task or (user.get("run") or {}).get("task") or (cli.get("run") or {}).get("task")
    if not task_given and model_comp.default_task:
        # e.g. DPOT pre-trains unless told otherwise
        run = _section(RunSection, "run", user.get("run"), cli.get("run"),
                       {**run_cli, "task": model_comp.default_task})
    adopted = _known_settings(model_comp, source) if source.get("name") == model_name else {}
    model_layers = [adopted, dict(user.get("model") or {}), dict(cli.get("model") or {})]
    for layer in model_layers:
        layer.pop("name", None)
    model_cfg = _section(model_comp.config, "model", profile_of(model_comp, prof), *model_layers,
                         extra={"name": model_name})

    data_cfg = _data_sections(data, user, cli, regs, prof)

    task_comp = regs["task"].get(run.task)
    task_profile = profile_of(task_comp, prof)
    # A task's profile may also set train and eval defaults (e.g. pre-training's optimizer)
    # under "train" and "eval".
    task_train, task_eval = task_profile.pop("train", None), task_profile.pop("eval", None)
    task_cfg = _section(task_comp.config, "task", task_profile, user.get("task"), cli.get("task"))
    _absolute_checkpoint(task_cfg)
    core = CORE_PROFILES[prof]
    train = _section(TrainSection, "train", core.get("train"), task_train, user.get("train"), cli.get("train"),
                     _steps_given(task_train, user.get("train"), cli.get("train")))
    evaluation = _section(EvalSection, "eval", core.get("eval"), task_eval, user.get("eval"), cli.get("eval"))

    sinks = _sink_sections(list(run.sinks), user, cli, regs, prof)
    cfg = OmegaConf.create({
        "run": run, "model": model_cfg, "data": data_cfg, "train": train, "eval": evaluation, "task": task_cfg,
        **({"sinks": sinks} if sinks else {}),
    })
    OmegaConf.set_struct(cfg, True)
    resolve_interpolations(cfg)
    _check_resolved(cfg, regs, model_comp, task_comp)
    return cfg


def _checkpoint_model(user: Mapping[str, Any], cli: Mapping[str, Any]) -> dict[str, Any]:
    """The model section of the run whose weights ``task.checkpoint`` names (a run id, or a file
    in its ``checkpoints`` folder), so that an evaluation or a fine-tuning builds the model those
    weights fit without the user repeating its settings; empty for a file of no run (a
    released checkpoint, a URL) or a run whose config cannot be read. The run's own starting
    weights (``model.init``, ``model.init_components``) stay behind: ``task.checkpoint`` replaces them."""
    from pdebench_core.data.remote import is_url, local_or_url
    from pdebench_core.errors import PdebError
    from pdebench_core.rundir import RunDir
    from pdebench_core.weights import resolve_checkpoint, run_of_checkpoint

    ref = (cli.get("task") or {}).get("checkpoint") or (user.get("task") or {}).get("checkpoint")
    if not ref or is_url(local_or_url(str(ref))):
        return {}
    run_id = run_of_checkpoint(str(ref))
    if not _is_file(str(ref)) and (run_id is None or run_id != str(ref)):
        resolve_checkpoint(str(ref))  # neither a file nor a run: its one-line error, before any data is made
    if run_id is None:
        return {}
    try:
        saved = RunDir.of(run_id).read_config()[0]
    except PdebError:
        return {}
    model = saved.get("model")
    if not isinstance(model, Mapping):
        return {}
    return {key: value for key, value in model.items() if key not in ("init", "init_components")}


def _is_file(path: str) -> bool:
    try:
        return Path(path).expanduser().is_file()
    except OSError:  # a name the system refuses: resolve_checkpoint says so
        return False


def _absolute_checkpoint(task: Any) -> None:
    """A local ``task.checkpoint`` file made absolute, so that a rerun, a report or a reproduction
    from another folder scores the same weights (run ids and URLs stay as they are)."""
    import os

    ref = task.get("checkpoint") if "checkpoint" in task else None
    if ref and _is_file(str(ref)):
        task.checkpoint = os.path.abspath(os.path.expanduser(str(ref)))


def _known_settings(component: Component, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` without the keys the component's config no longer has (a run of an older version)."""
    known = set(component.settings()) | set(component.required())
    return {key: value for key, value in settings.items() if key in known}


def _check_resolved(cfg: Any, regs: Mapping[str, Any], model_comp: Component, task_comp: Component) -> None:
    """The checks of a whole resolved config, before any data is read or made: metric names,
    required settings, values, the model's dimensions and the model's own ``check``."""
    for metric in [*cfg.eval.metrics, cfg.train.select_metric]:
        regs["metric"].get(str(metric))
    sections = {"model.": model_comp.config, "task.": task_comp.config,
                **{f"data.{name}.": regs["dataset"].get(name).config for name in cfg.data},
                **{f"sinks.{name}.": regs["sink"].get(name).config for name in cfg.run.sinks}}
    check_required(cfg, hints=setting_hints(sections))
    check_values(cfg)
    check_declared_dims(model_comp, [regs["dataset"].get(name) for name in cfg.data])
    if model_comp.check is not None:
        OmegaConf = _omegaconf()
        settings = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
        OmegaConf.set_readonly(settings, True)  # a check reads; it cannot change the run
        with plugins.plugin_code(model_comp, "raised while checking its settings:"):
            model_comp.check(settings)


def _absolute_path(section: Any) -> None:
    """A local ``path`` setting (of a dataset or a sink) made absolute, so that a rerun, a resume
    or a report from another folder uses the same file (URLs stay as they are)."""
    import os

    from pdebench_core.data.remote import is_url, local_or_url

    path = local_or_url(str(section.get("path"))) if "path" in section and section.get("path") else None
    if path and not is_url(path):
        section.path = os.path.abspath(os.path.expanduser(path))


def _steps_given(profile: Mapping[str, Any] | None, *given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``train.epochs=0`` when the user sets ``train.max_steps`` but not ``train.epochs``, over a
    profile that counts epochs: the length the user asks for wins over the profile's."""
    said = [layer or {} for layer in given]
    if (profile or {}).get("epochs") and any("max_steps" in layer for layer in said) \
            and not any("epochs" in layer for layer in said):
        return {"epochs": 0}
    return {}


def _data_sections(data: str | Sequence[str] | None, user: Mapping[str, Any], cli: Mapping[str, Any],
                   regs: Mapping[str, Any], prof: str) -> dict[str, Any]:
    """``{name: validated section}`` for every dataset of ``--data`` (else of the config file)."""
    data_names = split_names(data) or list((user.get("data") or {}).keys())
    if not data_names:
        raise UsageError("no dataset given; pass --data NAME[,NAME...] (run 'pdeb datasets' to list them)")
    for layer, origin in ((user, "config file"), (cli, "overrides")):
        for name in (layer.get("data") or {}):
            if name not in data_names:
                raise UsageError(
                    f"settings for dataset '{name}' in {origin}, but it is not in --data "
                    f"({', '.join(data_names)}){did_you_mean(name, data_names)}"
                )
    sections = {}
    for name in data_names:
        comp = regs["dataset"].get(name)
        layers = [(layer.get("data") or {}).get(name) for layer in (user, cli)]
        sections[name] = _section(comp.config, f"data.{name}", profile_of(comp, prof), *layers)
        _absolute_path(sections[name])
        given = _chosen(comp, f"data.{name}", prof, *layers)
        check_generator_settings_with_path(name, comp, sections[name], given)
    return sections


def _chosen(comp: Component, where: str, prof: str, *layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings of ``layers`` that differ from the component's defaults under profile
    ``prof``: one equal to its default was not chosen (a saved config, rerun or resumed, holds
    them all)."""
    defaults = _section(comp.config, where, profile_of(comp, prof))
    return {k: v for layer in layers for k, v in (layer or {}).items() if k not in defaults or v != defaults[k]}


def _all_defaults(regs: Mapping[str, Any], name: str, settings: Any, prof: str) -> bool:
    """Whether a config file's settings of sink ``name`` are all its defaults: a saved config holds
    every sink's section, so a resumed or rerun run may leave that sink out of ``run.sinks``."""
    comp = regs["sink"].get(name) if name in regs["sink"] else None
    if comp is None or comp.config is None or not isinstance(settings, Mapping):
        return False
    return not _chosen(comp, f"sinks.{name}", prof, settings)


def _sink_sections(names: Sequence[str], user: Mapping[str, Any], cli: Mapping[str, Any],
                   regs: Mapping[str, Any], prof: str) -> dict[str, Any]:
    """``{sink: validated section}`` for the sinks of ``run.sinks`` that declare settings.

    The ``sinks`` section is left out of a config when no selected sink has settings, so
    that choosing other sinks when resuming a run is no change of its settings.
    """
    for layer, origin in ((user, "config file"), (cli, "overrides")):
        for name, settings in (layer.get("sinks") or {}).items():
            if name not in names and not (layer is user and _all_defaults(regs, str(name), settings, prof)):
                raise UsageError(f"settings for sink '{name}' in {origin}, but it is not in run.sinks "
                                 f"({', '.join(names)}){did_you_mean(str(name), names)}; add it to run.sinks")
    sections = {}
    for name in names:
        comp = regs["sink"].get(str(name))
        layers = [(layer.get("sinks") or {}).get(name) for layer in (user, cli)]
        if comp.config is None and any(layers):
            raise UsageError(f"sink '{name}' has no settings; remove sinks.{name} from the config")
        if comp.config is not None:  # only sinks with settings get a section
            sections[str(name)] = _section(comp.config, f"sinks.{name}", profile_of(comp, prof), *layers)
            if sections[str(name)].get("path") != comp.settings(prof).get("path"):
                _absolute_path(sections[str(name)])  # the user's, from where the user stands: a resume elsewhere
    return sections


def config_hash(cfg: Any) -> str:
    """Stable hash of everything that changes results (see :func:`settings.settings_digest`)."""
    from pdebench_core.settings import settings_digest

    return settings_digest(_omegaconf().to_container(cfg, resolve=True))


def _check_not_contradicted(option: str, value: Any, section: str, key: str, *layers: Mapping[str, Any]) -> None:
    """Refuse ``--model fno model.name=unet`` and the like on one command line: one of the two
    would be dropped in silence. (A config file's value yields to the option, as documented.)"""
    if value is None or value == "":
        return
    for layer in layers:
        given = (layer.get(section) or {}).get(key) if isinstance(layer.get(section), Mapping) else None
        if given is not None and str(given) != str(value):
            raise UsageError(f"{option} {value} and {section}.{key}={given} contradict each other; give one of them")


def check_profile(profile: str) -> None:
    """Refuse a profile name that is not one of :data:`PROFILE_NAMES` (a typo would silently give defaults)."""
    if profile not in PROFILE_NAMES:
        raise UsageError(f"unknown profile '{profile}'{did_you_mean(str(profile), PROFILE_NAMES)}; choose one of "
                         f"{', '.join(PROFILE_NAMES)}")


def component_config(component: Component, profile: str = "small", overrides: Mapping[str, Any] | None = None):
    """One component's validated config (profile defaults then ``overrides``).

    Raises:
        UsageError: an unknown profile, or a bad setting.
    """
    check_profile(profile)
    return _section(component.config, component.name, profile_of(component, profile), overrides)


def build_dataset(name: str, profile: str = "small", overrides: Iterable[str] = ()):
    """Build a dataset by name, generating and caching its data if needed.

    Args:
        name: Registered dataset name.
        profile: Profile whose defaults apply.
        overrides: ``key=value`` settings of the dataset (``n_train=16``, ``data.ns2d.n_train=16``).

    Returns:
        The dataset object (``.spec``, ``.split(name)``).
    """
    comp = plugins.get("dataset", name)
    parsed = parse_overrides(overrides)
    if "data" in parsed or set(parsed) & set(SECTIONS):  # the run's spelling: data.<name>.<key> only
        data = parsed.get("data")
        mixed = sorted(set(parsed) - {"data"} - set(SECTIONS))
        others = sorted(set(parsed) & set(SECTIONS) - {"data"}) + (
            sorted(f"data.{key}" for key in set(data) - {name}) if isinstance(data, dict) else ["data"])
        if mixed:
            raise UsageError(f"the settings mix data.{name}.<key>=value and <key>=value ('{mixed[0]}'); give every "
                             f"setting one way")
        if others:
            raise UsageError(f"setting '{others[0]}' is not one of dataset '{name}'; give data.{name}.<key>=value")
        section = data[name]
    else:
        section = parsed
    cfg = component_config(comp, profile, section)
    from pdebench_core.validation import check_data_counts

    check_required(cfg, prefix=f"data.{name}.", hints=setting_hints({f"data.{name}.": comp.config}))
    check_data_counts(name, cfg)
    with plugins.plugin_code(comp):
        return comp.factory(cfg)
