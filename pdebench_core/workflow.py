"""Building blocks that tasks compose: datasets, model, training, evaluation, result rows."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from pdebench_core import plugins
from pdebench_core.config import config_hash
from pdebench_core.data.pipeline import Mixture, check_mixture_fits, pad_for_model, plan_mixture
from pdebench_core.errors import DataError, PdebError, UsageError
from pdebench_core.rundir import RunDir
from pdebench_core.runs import RunContext, command_line, versions


def build_datasets(ctx: RunContext) -> dict[str, Any]:
    """Build every dataset of the run (generating cached data as needed).

    Under several processes rank 0 generates first and the others then read its cache.
    """
    if ctx.world_size > 1:
        from pdebench_core.distributed import long_wait_group

        with long_wait_group() as group:  # rank 0's first scan of a large dataset outlasts any collective timeout
            import torch.distributed as dist

            if ctx.rank == 0:
                built = _build_datasets(ctx)
            dist.barrier(group=group)
        if ctx.rank != 0:
            built = _build_datasets(ctx)
        return built
    return _build_datasets(ctx)


def _build_datasets(ctx: RunContext) -> dict[str, Any]:
    from pdebench_core.data.integrity import check_finite, check_shapes

    out = {}
    for name, section in ctx.cfg.data.items():
        comp = plugins.get("dataset", name)
        ctx.log(f"dataset {name}: preparing")
        try:
            dataset, notes = _read_with_notes(partial(plugins.build_dataset_from, name), section)
        except PdebError:
            raise
        except Exception as exc:
            failure = _dataset_failure(comp, exc)
            if failure is None:  # PDEB_DEBUG: the traceback
                raise
            raise failure from exc
        for note in notes:
            ctx.log(f"dataset {name}: note: {note}")
        if not (hasattr(dataset, "spec") and callable(getattr(dataset, "split", None))):
            raise UsageError(f"dataset '{name}' (plugin '{comp.plugin}'): its factory returned "
                             f"{type(dataset).__name__}, not a dataset; return an object with .spec and "
                             f".split(name), e.g. pdebench_core.data.base.TrajectoryDataset")
        check_shapes(name, dataset)
        check_finite(name, dataset)  # remembered per file: a second run does not scan again
        if section.get("normalize"):
            from pdebench_core.data.normalization import normalized

            dataset = normalized(dataset)
            mean, std = dataset.normalization
            ctx.log(f"dataset {name}: normalised per channel (train mean {mean.round(4).tolist()}, "
                    f"std {std.round(4).tolist()}); metrics stay on physical values")
        spec = dataset.spec
        sizes = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
        ctx.log(f"dataset {name}: fields {list(spec.fields)}, grid {list(spec.spatial_shape)}, "
                f"splits {sizes}")
        out[name] = dataset
    return out


def _dataset_failure(comp, exc: Exception) -> Exception | None:
    """What a dataset factory's exception means: an unreadable file, settings that cannot fit in
    memory, or a bug of its plugin (:func:`pdebench_core.plugins.plugin_failure`)."""
    name = comp.name
    if isinstance(exc, OSError):
        from pathlib import Path

        from pdebench_core import paths

        cache = paths.data_dir().resolve()
        if exc.filename and (cache == Path(exc.filename).resolve() or cache in Path(exc.filename).resolve().parents):
            from pdebench_core.diskspace import write_failed  # the data cache: generating data writes there

            return write_failed(exc.filename, exc, f"make {cache} writable, or set PDEB_HOME to a folder you can "
                                                   f"write")
        return DataError(f"dataset '{name}' could not be read: {exc}")
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(
            text in str(exc) for text in ("allocate", "out of memory"))):
        return UsageError(f"dataset '{name}' does not fit in memory ({str(exc).splitlines()[0][:160]}); "
                          f"lower data.{name}.resolution, its frames or its trajectory counts")
    return plugins.plugin_failure(comp, exc)


def _read_with_notes(factory, section) -> tuple[Any, list[str]]:
    """Build a dataset, keeping what the file readers noted about it for the run log: fallbacks
    of the splitting rule (``SplitWarning``) and how a file was read (the dataset's ``notes``:
    a file's parameter over a setting, non-uniform spacing, unnamed channels; what ``pdeb data
    info`` prints too). A dataset object without ``notes`` that read a ``path`` gets the reader's."""
    import warnings

    from pdebench_core.data.layouts import SplitWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)
        dataset = factory(section)
    notes = []
    for warning in caught:
        if issubclass(warning.category, SplitWarning):
            notes.append(str(warning.message))
        else:  # not ours to keep: shown as it would have been
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    kept = list(getattr(dataset, "notes", None) or [])
    path = section.get("path") if hasattr(section, "get") else None
    if not hasattr(dataset, "notes") and path:  # a plugin's own dataset object around a layout reader
        from pdebench_core.data.layouts import open_layout

        try:
            kept = list(open_layout(str(path), str(section.get("format", "auto") or "auto")).notes)
        except Exception:  # the dataset was read; a second look that fails costs only the notes
            pass
    return dataset, list(dict.fromkeys(notes + kept))


def guard_evaluation_split(ctx: RunContext, datasets: dict[str, Any]) -> None:
    """Refuse training data that contains a trajectory of the evaluation split (unless allowed)."""
    from pdebench_core.data.leakage import check_no_leakage

    if not ctx.cfg.task.get("allow_test_overlap", False):
        check_no_leakage(datasets, "train", ctx.cfg.eval.split)


def guard_against_weights_source(ctx: RunContext, datasets: dict[str, Any], training: bool) -> None:
    """Refuse (warn, for an evaluation) evaluation trajectories that the run whose weights this
    one starts from (``task.checkpoint`` or ``model.init`` naming a run) trained on: a
    pre-trained model scored on its own pre-training data looks better than it is.

    Only data read from files can be shared between runs (generated splits are drawn from
    seeds of their own), so the source run's datasets that read a file, and that have this
    run's dataset name or file, are read again and compared (:func:`shared_trajectory`).
    """
    from pdebench_core.data.leakage import shared_trajectory
    from pdebench_core.rebuild import saved_config
    from pdebench_core.weights import run_of_checkpoint

    sources = {run_of_checkpoint(ctx.cfg.task.get("checkpoint")),
               run_of_checkpoint(ctx.cfg.model.get("init"))} - {None, ctx.run_id}
    mine = {name: _where(section.get("path")) for name, section in ctx.cfg.data.items()}
    evaluated = {name: getattr(ds, "inner", ds) for name, ds in datasets.items()}  # as read, not normalised
    for source in sorted(sources):
        try:
            theirs = saved_config(RunDir.of(source).path).data
            trained = {f"{source}:{name}": plugins.build_dataset_from(name, section)
                       for name, section in theirs.items() if section.get("path") and (
                           name in mine or _where(section.get("path")) in mine.values())}
            found = shared_trajectory(trained, evaluated, "train", str(ctx.cfg.eval.split)) if trained else None
        except PdebError as exc:
            ctx.log(f"warning: could not check whether run {source}, whose weights this run starts from, trained "
                    f"on this run's {ctx.cfg.eval.split} trajectories: {exc}")
            continue
        if found is None:
            continue
        name, index, origin, origin_index = found
        message = (f"{ctx.cfg.eval.split} trajectory {index} of '{name}' is train trajectory {origin_index} of "
                   f"'{origin.split(':', 1)[1]}' in run {source}, whose weights this run starts from: it would be "
                   f"scored on data it was trained on")
        if training and not ctx.cfg.task.get("allow_test_overlap", False):
            raise UsageError(f"{message}; split the data so that the runs do not share trajectories, or set "
                             f"task.allow_test_overlap=true")
        ctx.log(f"warning: {message}")


def _where(path: Any) -> str | None:
    """A data path as compared between runs: a local one resolved, a URL as given."""
    if not path:
        return None
    return str(path) if "://" in str(path) else str(Path(str(path)).expanduser().resolve())


def plan(ctx: RunContext, datasets: dict[str, Any]) -> Mixture:
    """The common grid/channels of the run's datasets and the model's spec."""
    return plan_mixture(datasets, t_out=int(ctx.cfg.train.t_out), resolution=int(ctx.cfg.train.resolution),
                        weights={name: float(section.get("weight", 1.0)) for name, section in ctx.cfg.data.items()})


def built_module(comp, cfg, spec):
    """What the model factory returns, refused in one line unless it is a ``torch.nn.Module``."""
    import torch

    with plugins.plugin_code(comp):
        model = comp.factory(cfg, spec)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model '{comp.name}' (plugin '{comp.plugin}'): its factory returned "
                         f"{type(model).__name__}, not a torch.nn.Module; return the built network")
    return model


def build_model(ctx: RunContext, mixture: Mixture):
    """Build the configured model for the mixture's spec (refused first if it cannot fit in memory)."""
    from pdebench_core.models import check_output_contract

    from pdebench_core.memory import check_model_fits

    comp = plugins.get("model", ctx.cfg.model.name)
    check_mixture_fits(comp, mixture)
    shards = ctx.world_size if ctx.cfg.train.strategy == "fsdp" else 1
    check_model_fits(lambda: built_module(comp, ctx.cfg.model, mixture.model_spec), comp.name, ctx.device, shards)
    model = built_module(comp, ctx.cfg.model, mixture.model_spec).to(ctx.device)
    for group in mixture.groups.values():  # one dummy pass per dimension, before any training
        check_output_contract(model, comp.name, comp.plugin, (1, mixture.t_in, *group.grid, group.n_channels),
                              mixture.t_out, ctx.device)
    return model


def prepare(ctx: RunContext, training: bool = True) -> tuple[dict[str, Any], Mixture, Any]:
    """The first steps of every task recipe: datasets, their plan and the model on ``ctx.device``.

    Args:
        ctx: The run.
        training: The task trains: its settings are checked before any data is built, and
            training data that holds an evaluation trajectory is refused (unless allowed).

    Returns:
        ``(datasets, mixture, model)``.
    """
    if training:
        from pdebench_core.objectives import check_training_settings

        check_training_settings(ctx.cfg)  # fail fast, before any data is generated
    check_split_sizes(ctx.cfg, training)
    datasets = build_datasets(ctx)
    mixture = plan(ctx, datasets)
    if training:
        guard_evaluation_split(ctx, datasets)
    guard_against_weights_source(ctx, datasets, training)
    model = build_model(ctx, mixture)
    return datasets, pad_for_model(mixture, model), model


def check_split_sizes(cfg: Any, training: bool) -> None:
    """Refuse, before any data is built, a split the task needs that a setting left empty:
    the train split of a training task, the evaluation split of one that evaluates."""
    evaluates = not training or bool(cfg.task.get("evaluate", True))
    split = str(cfg.eval.split)
    for name, section in cfg.data.items():
        if training and section.get("n_train") == 0:
            raise UsageError(f"data.{name}.n_train=0 leaves no trajectory to train on; give at least 1 "
                             f"(or evaluate only, with --task evaluate)")
        if evaluates and section.get(f"n_{split}") == 0:
            raise UsageError(f"data.{name}.n_{split}=0 leaves nothing to evaluate on (eval.split={split}); give "
                             f"at least 1" + (", or task.evaluate=false" if training else ""))


def evaluate_trained(ctx: RunContext, model, mixture: Mixture, trainer, **extra: Any) -> dict[str, Any]:
    """The last step of a training recipe: evaluate on every dataset unless ``task.evaluate`` is off.

    Args:
        ctx: The run.
        model: The trained model.
        mixture: The run's plan.
        trainer: The finished trainer; its time and step count join every result row.
        **extra: More values for every result row.

    Returns:
        The evaluation results (empty when ``task.evaluate`` is off).
    """
    if not ctx.cfg.task.get("evaluate", True):  # a plugin task's config need not have the setting
        return {}
    return evaluate_all(ctx, model, mixture, extra={"train_time_s": trainer.train_time, "steps": trainer.step,
                                                    **extra})


def data_hash(datasets: dict[str, Any], paths: dict[str, str | None] | None = None) -> str:
    """Content fingerprint of everything the run saw: per dataset its generated-data fingerprint
    or file bytes (``paths``: the file each was read from), plus which trajectories form each
    split (see :mod:`pdebench_core.data.identity`)."""
    from pdebench_core.data.identity import combined_hash, dataset_identities

    return combined_hash(dataset_identities(datasets, paths))


def metric_functions(names: list[str]) -> dict[str, Any]:
    """``{name: Metric}`` for the requested metrics, as registered (values and reduction)."""
    return {name: plugins.get("metric", name).factory for name in names}


def _sharded_evaluation(ctx: RunContext) -> tuple[int, int]:
    """``(rank, world_size)`` for splitting rollouts; FSDP ranks all roll out everything, in step,
    because every forward pass of a sharded model is collective."""
    if ctx.cfg.train.strategy == "fsdp":
        return 0, 1
    return ctx.rank, ctx.world_size


def score(ctx: RunContext, model, mixture: Mixture, split: str, max_trajectories: int,
          metric_names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Roll out on one split of every dataset; ``{dataset: evaluation output}`` (nothing written)."""
    from pdebench_core.evaluation import evaluate_dataset, scored_channels_of
    from pdebench_core.leaderboard.measures import scoring_label

    cfg = ctx.cfg
    fns = metric_functions(list(metric_names or cfg.eval.metrics))
    rank, world_size = _sharded_evaluation(ctx)
    outputs = {}
    for name, dataset in mixture.datasets.items():
        group = mixture.group_of(name)
        try:
            out = evaluate_dataset(
                model, dataset.split(split), fns, t_in=mixture.t_in, t_out=mixture.t_out,
                horizon=int(cfg.eval.horizon) or dataset.spec.horizon, device=ctx.device, grid=group.grid,
                n_channels=group.n_channels, batch_size=int(cfg.eval.batch_size),
                max_trajectories=max_trajectories, precision=str(cfg.eval.precision), rank=rank,
                world_size=world_size, grid_mode=str(cfg.eval.grid), scored_channels=scored_channels_of(dataset.spec),
                normalization=getattr(dataset, "normalization", None),
            )
        except UsageError as exc:  # e.g. too few frames: say which dataset and split, and what to set
            hint = f"; lower data.{name}.t_in" if "t_in=" in str(exc) else ""
            raise type(exc)(f"dataset '{name}', {split} split: {exc}{hint}") from None
        out.update({"dataset": name, "split": split, "fields": list(dataset.spec.fields), "grid": str(cfg.eval.grid),
                    "scoring": scoring_label(str(cfg.eval.grid), group.grid, dataset.spec.spatial_shape),
                    "horizon_asked": int(cfg.eval.horizon) or dataset.spec.horizon})
        outputs[name] = out
    return outputs


def scored_outputs(ctx: RunContext, outputs: dict[str, dict[str, Any]], split: str) -> dict[str, dict[str, Any]]:
    """The outputs of the datasets that had a trajectory to score; the others are named in the
    log (a published file may lack a split). None at all is an error: nothing was measured."""
    scored = {name: out for name, out in outputs.items() if out["n_samples"]}
    for name in outputs.keys() - scored.keys():
        ctx.log(f"warning: dataset {name} has no trajectory in its '{split}' split; it is not scored")
    for name, out in scored.items():
        asked = out.get("horizon_asked")
        if asked and asked > out["horizon"]:
            ctx.log(f"warning: dataset {name}: horizon {asked} asked, but its {split} trajectories hold "
                    f"{out['horizon']} frames after t_in; rolled out {out['horizon']}")
    if not scored:
        raise DataError(f"no dataset of this run has a trajectory in its '{split}' split, so nothing was scored; "
                        f"check the datasets' n_{split} settings or files ('pdeb data info FILE' shows the splits)")
    return scored


def evaluate_all(ctx: RunContext, model, mixture: Mixture, split: str | None = None,
                 write_rows: bool = True, extra: dict | None = None) -> dict[str, dict[str, float]]:
    """Roll out on every dataset's evaluation split; save outputs and write one row per dataset.

    Each row records what it was measured on: the data's source and content hash, the train
    trajectories, ``t_in``, horizon and grid, and the model's parameter count.
    """
    from omegaconf import OmegaConf

    from pdebench_core.data.identity import combined_hash, dataset_identities, grid_label
    from pdebench_core.engine import count_parameters

    cfg = ctx.cfg
    split = split or cfg.eval.split
    # Scored first, the data hashed after: the other ranks take part in the scoring's collectives
    # and need not wait in one while rank 0 reads the data's bytes (NCCL's watchdog would not).
    outputs = scored_outputs(ctx, score(ctx, model, mixture, split, int(cfg.eval.max_trajectories)), split)
    identities = {}
    if write_rows and ctx.is_main:  # only the main process writes rows: only it reads the data's bytes
        identities = dataset_identities(mixture.datasets, {name: (cfg.data.get(name) or {}).get("path")
                                                           for name in mixture.datasets})
        for name, identity in identities.items():
            if identity.note:
                ctx.log(f"dataset {name}: {identity.note}")
    hashed = combined_hash(identities)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    n_params = count_parameters(model)
    results: dict[str, dict[str, float]] = {}
    for name, out in outputs.items():
        ctx.save_json(f"eval/{name}.json", out)
        summary = out["summary"]
        results[name] = summary
        ctx.log(f"eval {name} ({split}, {out['n_samples']} trajectories, {out['horizon']} steps): "
                + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
        if identities:
            identity = identities[name]
            ctx.write_result({
                "run_id": ctx.run_id, "model": cfg.model.name, "dataset": name, "task": cfg.run.task,
                "metrics": summary, "seed": int(cfg.run.seed), "n_params": n_params,
                "train_time_s": float((extra or {}).get("train_time_s", 0.0)), "device": str(ctx.device),
                "versions": versions(), "config_hash": config_hash(cfg), "config": resolved,
                "profile": cfg.run.profile, "data_hash": hashed, "command": command_line(),
                "data_source": identity.source, "dataset_hash": identity.hash, "n_train": identity.n_train,
                "t_in": int(mixture.t_in), "horizon": int(out["horizon"]),
                "grid": grid_label(mixture.datasets[name].spec.spatial_shape),
                "extra": {"split": split, "horizon": out["horizon"], "n_samples": out["n_samples"], "grid": out["grid"],
                          "one_step": out["one_step"], "data_basis": identity.basis, "scoring": out["scoring"],
                          "scored_data_hash": identity.split_hashes.get(split), **(extra or {})},
            })
    return results


def validation_hook(ctx: RunContext, model, mixture: Mixture):
    """``on_eval(step)`` for the trainer: the validation split's metrics averaged over datasets."""
    cfg = ctx.cfg

    def on_eval(step: int) -> dict[str, float]:
        metric = cfg.train.select_metric
        outputs = score(ctx, model, mixture, "val", int(cfg.train.val_trajectories),
                        metric_names=sorted({metric, *cfg.eval.metrics}))
        scored = [o for o in outputs.values() if o["n_samples"]]  # a dataset may have no val trajectory
        names = scored[0]["summary"].keys() if scored else []
        values = {k: sum(o["summary"][k] for o in scored) / len(scored) for k in names}
        if values:
            ctx.log(f"step {step}: validation " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        else:
            ctx.log(f"step {step}: no validation trajectories (data.<name>.n_val is 0); best.pt is not chosen")
        return values

    return on_eval


def loader_workers(requested: int, device) -> int:
    """``train.num_workers``, with -1 meaning: 4 worker processes on CUDA (so reading and
    resizing overlap the GPU's work), none on CPU (where workers compete for the same cores)."""
    import os

    if requested >= 0:
        return requested
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def training_length(ctx: RunContext, sampler) -> "Any":
    """``train`` with ``max_steps`` set from ``train.epochs`` when that is given (the official
    DPOT recipes count epochs); otherwise ``train`` as it is."""
    from omegaconf import OmegaConf

    train = ctx.cfg.train
    if not int(train.epochs):
        return train
    per_epoch = sampler.steps_per_epoch()
    if per_epoch == 0:
        raise UsageError(f"train.epochs={train.epochs}: one epoch of the training data holds fewer windows "
                         f"than one batch (train.batch_size={train.batch_size}); lower train.batch_size or add "
                         f"trajectories")
    steps = int(train.epochs) * per_epoch
    ctx.log(f"train.epochs={train.epochs}: {per_epoch} optimizer steps per epoch, {steps} in all "
            f"(train.max_steps is not used)")
    return OmegaConf.merge(train, {"max_steps": steps})


def resume_trainer(ctx: RunContext, trainer) -> None:
    """Continue ``trainer`` from the run's newest intact checkpoint (from step 0 when it has none,
    saying so); :meth:`~pdebench_core.engine.Trainer.load` refuses another run's checkpoint.
    Step records past the checkpoint's step (written after it by the interrupted process) are
    dropped."""
    from pdebench_core.checkpoint import newest_intact

    run = RunDir(ctx.run_dir)
    start = newest_intact(run.checkpoints, warn=ctx.log)  # a damaged last.pt falls back
    if start is None:
        ctx.log("no checkpoint to resume from: training from step 0")
    else:
        trainer.load(start.path, start.state)
        ctx.log(f"resumed from step {trainer.step}")
    if ctx.is_main:
        run.drop_step_records_after(trainer.step)


def train_model(ctx: RunContext, model, mixture: Mixture, input_noise=None) -> "Any":
    """Train ``model`` on the mixture's train split with the core engine; returns the trainer.

    The objective follows ``task.t_ar`` and ``task.pushforward`` (when the task has them),
    ``train.loss`` and ``train.loss_on_padding``; the windows follow ``train.sampling``.
    """
    from omegaconf import OmegaConf

    from pdebench_core.data.pipeline import training_loader
    from pdebench_core.engine import Trainer
    from pdebench_core.objectives import training_objective, unroll_steps

    cfg = ctx.cfg
    objective = training_objective(cfg)
    loader, sampler = training_loader(
        mixture, "train", int(cfg.train.batch_size), seed=int(cfg.run.seed),
        num_workers=loader_workers(int(cfg.train.num_workers), ctx.device),
        prefetch_factor=int(cfg.train.prefetch_factor), rank=ctx.rank, world_size=ctx.world_size,
        grad_accum=int(cfg.train.grad_accum),
        max_per_dataset=int(cfg.train.max_train_windows), pin_memory=ctx.device.type == "cuda",
        sampling=str(cfg.train.sampling), t_ar=unroll_steps(cfg.task),
        device=ctx.device if cfg.train.data_on_device else None,
    )
    trainer = Trainer(
        model, loader, sampler, training_length(ctx, sampler), ctx.device, RunDir(ctx.run_dir).checkpoints,
        log=ctx.log,
        log_step=ctx.log_step, input_noise=input_noise, objective=objective, seed=int(cfg.run.seed),
        world_size=ctx.world_size, is_main=ctx.is_main,
        extra_state={"config": OmegaConf.to_container(cfg, resolve=True), "versions": versions(),
                     "spec": mixture.model_spec.to_dict()},
        show_progress=not ctx.quiet and ctx.is_main,
    )
    if ctx.resume:
        resume_trainer(ctx, trainer)
    started, first_step = time.perf_counter(), trainer.step
    trainer.fit(on_eval=validation_hook(ctx, model, mixture))
    taken = trainer.step - first_step
    since = f" (from step {first_step} to {trainer.step})" if first_step else ""
    ctx.log(f"trained {taken} steps{since} in {time.perf_counter() - started:.1f}s")
    return trainer
