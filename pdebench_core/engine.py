"""The one training loop: every task and every model plugin trains through it."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from pdebench_core.acceleration import CompiledOrEager, apply_channels_last, checkpoint_blocks
from pdebench_core.checkpoint import (SHARDED, load_full_optimizer_state, load_sharded, read_checkpoint,
                                     save_checkpoint, save_sharded, sharded_directory)
from pdebench_core.devices import autocast_for, uses_bf16
from pdebench_core.distributed import DataParallel, gather_from_ranks, rank
from pdebench_core.errors import PdebError, UsageError
from pdebench_core.losses import LOSSES
from pdebench_core.objectives import next_frames_objective
from pdebench_core.optim import make_optimizer, make_scheduler


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Torch RNG states for exact resumption: the CPU's and, on CUDA, that of this process's
    GPU (not every visible one: a resume may see fewer)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore :func:`rng_state` (a list of per-GPU states, as older checkpoints hold, gives
    this process's GPU its own entry when there is one)."""
    torch.set_rng_state(state["cpu"])
    saved = state.get("cuda")
    if saved is None or device is None or device.type != "cuda":
        return
    if isinstance(saved, (list, tuple)):
        index = device.index if device.index is not None else torch.cuda.current_device()
        saved = saved[index] if index < len(saved) else None
    if saved is not None:
        torch.cuda.set_rng_state(saved, device)


def _own_entry(saved: Any, my_rank: int) -> Any:
    """This rank's entry of a per-rank list in a checkpoint (older checkpoints hold one
    entry for every rank); None when the checkpoint was written by fewer processes."""
    if not isinstance(saved, list):
        return saved
    return saved[my_rank] if my_rank < len(saved) else None


def _ranks(first: int, stop: int) -> str:
    """``"rank 1"`` or ``"ranks 2..3"``: the ranks ``first`` to ``stop - 1``."""
    return f"rank {first}" if stop - first == 1 else f"ranks {first}..{stop - 1}"


def _first_problem(exc: BaseException) -> str:
    """The first line of a load error that names a problem (torch's starts with a bare header)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Error(s) in loading state_dict")]
    return (useful or lines or [type(exc).__name__])[0][:200]


class Trainer:
    """Optimises a model on micro-batches of ``(x, y, mask)`` windows.

    One optimizer step consumes ``train.grad_accum`` micro-batches on each of the
    ``world_size`` processes; gradients are the sum over the whole global batch, so
    the result does not depend on how the batch is split. Gradients are synchronised
    across processes once per step (on its last micro-batch), and the loss is read back
    from the device once per logging interval.

    Args:
        model: Maps ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.
        loader: Yields ``(x, y, mask)`` micro-batches forever.
        sampler: The loader's :class:`MixtureBatchSampler` (for a resumable position; its
            ``groups`` tell whether steps train different spatial dimensions).
        train: The ``train`` config section.
        device: Where to compute.
        checkpoint_dir: Where checkpoints go.
        log: Callable receiving progress lines.
        log_step: Callable receiving ``(step, values)`` records.
        input_noise: Optional ``(x, generator) -> x`` perturbing model inputs on the device
            (the pre-training task adds DPOT's noise here); the objective decides where it applies.
            The generator lives on the training device, seeded differently on every rank.
        objective: ``(model, x, y, mask, perturb) -> loss`` for one micro-batch; defaults to
            :func:`~pdebench_core.objectives.next_frames_objective` over ``train.loss``.
        extra_state: Plain data stored in every checkpoint (e.g. the resolved config).
        seed: Seed of the trainer's own noise generator.
        world_size: Number of data-parallel processes (the model is wrapped in DDP or sharded
            with FSDP when > 1, after ``train.strategy``).
        is_main: Whether this process writes checkpoints.
        show_progress: Draw a rich progress bar.
    """

    def __init__(self, model: torch.nn.Module, loader, sampler, train: Any, device: torch.device,
                 checkpoint_dir: Path, log: Callable[[str], None] = print,
                 log_step: Callable[[int, dict], None] | None = None,
                 input_noise: Callable | None = None, objective: Callable | None = None,
                 extra_state: dict | None = None,
                 seed: int = 0, world_size: int = 1, is_main: bool = True, show_progress: bool = True) -> None:
        self.model = model.to(device)
        self.loader, self.sampler, self.train, self.device = loader, sampler, train, device
        self.checkpoint_dir = Path(checkpoint_dir)
        self.log, self.log_step = log, log_step or (lambda step, values: None)
        self.input_noise = input_noise
        self.extra_state = dict(extra_state or {})
        self.loss_fn = LOSSES.get(train.loss)
        if self.loss_fn is None:
            raise UsageError(f"unknown train.loss '{train.loss}'; use {' or '.join(LOSSES)}")
        self.objective = objective or next_frames_objective(self.loss_fn)
        if train.on_divergence not in ("halt", "rollback"):
            raise UsageError(f"unknown train.on_divergence '{train.on_divergence}'; use halt or rollback")
        if train.strategy not in ("ddp", "fsdp"):
            raise UsageError(f"unknown train.strategy '{train.strategy}'; use ddp or fsdp")
        self.world_size, self.is_main, self.rank = world_size, is_main, rank()
        self.trainable = count_parameters(model) > 0
        self._wrap_model(seed)
        self.step = 0
        self._step_lr: float | None = None  # the learning rate of the last step taken
        self.micro_batches = 0
        self.train_time = 0.0
        self.compile_time = 0.0  # first steps of each input shape under train.compile
        self.rollbacks = 0
        self.best: dict | None = None  # {"step", "metric", "value"} of the best validation so far
        self.show_progress = show_progress
        self._shapes_seen: set[tuple] = set()
        self._reset_window()

    def _wrap_model(self, seed: int) -> None:
        """Layout, recomputation, data parallelism, compilation, optimizer and noise generator."""
        train, device = self.train, self.device
        sharded = self.world_size > 1 and self.trainable and train.strategy == "fsdp"
        if train.channels_last:
            apply_channels_last(self.model, weights=not sharded)
        if train.activation_checkpointing:
            checkpoint_blocks(self.model)
        several_groups = len(set(getattr(self.sampler, "groups", ()) or ())) > 1
        compile_with = (lambda module: CompiledOrEager(module, self.log)) if train.compile else None
        self.parallel = DataParallel(self.model, train.strategy, self.world_size if self.trainable else 1, device,
                                     partial_steps=several_groups, bf16=uses_bf16(device, train.precision),
                                     compile_with=compile_with)
        self.sharded = self.parallel.sharded
        self.forward_model = self.parallel.module
        self.optimizer = make_optimizer(self.model, train, device) if self.trainable else None
        self.scheduler = make_scheduler(self.optimizer, train) if self.trainable else None
        # On the training device, so noise is drawn there; one stream per rank.
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 17 + 7919 * self.rank)

    # -- checkpoints -------------------------------------------------------------------
    def _trainer_state(self) -> dict[str, Any]:
        """Everything but weights and optimizer; a collective call (every rank's random state)."""
        mine = {"rng": rng_state(self.device), "noise_rng": self.noise_gen.get_state()}
        ranks = gather_from_ranks(mine, self.world_size)
        return {
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "step": self.step,
            "micro_batches": self.micro_batches,
            "train_time": self.train_time,
            "compile_time": self.compile_time,
            "rollbacks": self.rollbacks,
            "best": self.best,
            "log_window": list(self._window_read),  # a window cut by this checkpoint goes on after a resume
            "rng": [r["rng"] for r in ranks],
            "noise_rng": [r["noise_rng"] for r in ranks],
            **self.extra_state,
        }

    def save(self, best: bool = False) -> Path | None:
        """Write ``step-N.pt`` and ``last.pt`` (keeping the last ``train.keep_checkpoints`` step
        files), or ``best.pt`` when ``best``. Every rank calls it; only rank 0 writes files.

        Under FSDP every rank writes its shards into a directory per checkpoint
        (``step-N/``, ``best-N/``) and ``last.pt``/``best.pt`` name that directory.
        """
        state = self._trainer_state()
        if self.sharded:
            return self._save_sharded(state, best)
        state["model"] = self.model.state_dict()
        state["optimizer"] = self.optimizer.state_dict() if self.optimizer else {}
        if not self.is_main:
            return None
        if best:
            return save_checkpoint(state, self.checkpoint_dir / "best.pt")
        path = save_checkpoint(state, self.checkpoint_dir / f"step-{self.step:08d}.pt")
        save_checkpoint(state, self.checkpoint_dir / "last.pt")
        self._prune(sorted(self.checkpoint_dir.glob("step-*.pt")), self.train.keep_checkpoints)
        return path

    def _save_sharded(self, state: dict[str, Any], best: bool) -> Path:
        prefix = "best" if best else "step"
        name = f"{prefix}-{self.step:08d}"
        directory = save_sharded(self.checkpoint_dir, name, self.model, self.optimizer, state, self.is_main)
        if self.is_main:
            save_checkpoint({**state, SHARDED: name}, self.checkpoint_dir / ("best.pt" if best else "last.pt"))
            older = sorted(p for p in self.checkpoint_dir.glob(f"{prefix}-*") if p.is_dir())
            self._prune(older, 1 if best else self.train.keep_checkpoints)
        return directory

    @staticmethod
    def _prune(paths: list[Path], keep: int) -> None:
        """Delete all but the last ``keep`` (at least one) of ``paths`` (files or directories)."""
        for old in paths[: max(0, len(paths) - max(1, keep))]:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def load(self, path: Path, state: dict[str, Any] | None = None) -> None:
        """Continue from a checkpoint written by :meth:`save` (each rank restores its own
        random state; a sharded checkpoint is read shard by shard). A checkpoint whose stored
        config is another run's (not this trainer's ``extra_state`` config) is refused first.
        ``state`` is the file's contents when already read (e.g. by ``newest_intact``)."""
        from pdebench_core.resume import check_checkpoint_config

        from pdebench_core.locks import remove_left_by_dead_writers

        path = Path(path)
        state = read_checkpoint(path) if state is None else state
        check_checkpoint_config(path, state.get("config"), self.extra_state.get("config"))
        if self.is_main:  # a save killed mid-write (kill -9, a lost node) left its temporary file
            remove_left_by_dead_writers(self.checkpoint_dir)
        try:
            self._load_weights(path, state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UsageError(f"checkpoint {path} does not fit this model: {_first_problem(exc)}") from None
        if self.scheduler and state.get("scheduler"):
            try:
                self.scheduler.load_state_dict(state["scheduler"])
            except (KeyError, ValueError, TypeError) as exc:
                raise UsageError(f"checkpoint {path} was written with another learning-rate schedule "
                                 f"({type(exc).__name__}: {exc}); resume it with the settings it was written "
                                 f"with") from None
        self.step = int(state["step"])
        self.micro_batches = int(state.get("micro_batches", 0))
        self.train_time = float(state.get("train_time", 0.0))
        self.compile_time = float(state.get("compile_time", 0.0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.best = state.get("best")
        self._reset_window()
        loss_sum, samples = state.get("log_window") or (0.0, 0)
        if self.rank == 0:  # the window's sums over every rank, held once: reading it sums over ranks
            self._window_loss = self._window_loss + float(loss_sum)
            self._window_samples = int(samples)
        self._restore_random_state(state)
        per_epoch = self.sampler.batches_per_epoch()
        self.sampler.load_state_dict({"epoch": self.micro_batches // per_epoch,
                                      "position": self.micro_batches % per_epoch})

    def _load_weights(self, path: Path, state: dict[str, Any]) -> None:
        if SHARDED in state:
            if not self.sharded:
                raise UsageError(f"checkpoint {path} is sharded (written with train.strategy=fsdp on several "
                                 f"processes); continue it the same way")
            load_sharded(sharded_directory(path, state), self.model, self.optimizer)
        elif self.sharded:  # a one-process checkpoint continued on several: each rank takes its shards
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            weights, aliases = _without_aliases(self.model, state["model"])
            result = set_model_state_dict(self.model, weights,
                                          options=StateDictOptions(full_state_dict=True, strict=False))
            missing = sorted(set(result.missing_keys) - aliases)  # an alias is loaded under its first name
            if missing or result.unexpected_keys:
                raise RuntimeError(f"Missing key(s) in state_dict: {missing}; unexpected key(s): "
                                   f"{sorted(result.unexpected_keys)}")
            if self.optimizer and state.get("optimizer"):
                load_full_optimizer_state(self.model, self.optimizer, state["optimizer"])
        else:
            self.model.load_state_dict(state["model"])
            if self.optimizer and state.get("optimizer"):
                self.optimizer.load_state_dict(state["optimizer"])

    def _restore_random_state(self, state: dict[str, Any]) -> None:
        saved = len(state["rng"]) if isinstance(state["rng"], list) else self.world_size
        if saved != self.world_size:  # rank 0 logs for all: only its log reaches the run
            fate = (f"{_ranks(saved, self.world_size)} start their noise afresh" if saved < self.world_size
                    else f"the streams of {_ranks(self.world_size, saved)} are dropped")
            self.log(f"the checkpoint holds the random state of {saved} processes, this run has "
                     f"{self.world_size}: {fate}")
        rng, noise = _own_entry(state["rng"], self.rank), _own_entry(state["noise_rng"], self.rank)
        if rng is None or noise is None:
            return
        set_rng_state(rng, self.device)
        self.noise_gen.set_state(noise)

    # -- the loop ----------------------------------------------------------------------
    def _micro_step(self, batch, sync: bool) -> int:
        """Forward and backward on one micro-batch; the loss stays on the device. Returns its samples."""
        x, y, mask = (t.to(self.device, non_blocking=True) for t in batch)
        perturb = None
        if self.input_noise is not None:
            perturb = lambda inputs: self.input_noise(inputs, self.noise_gen)  # noqa: E731
        with self.parallel.gradient_sync(sync):
            with autocast_for(self.device, self.train.precision):
                loss = self.objective(self.forward_model, x, y, mask, perturb)
            # Summed over samples, as DPOT's loss is; DDP and FSDP average over ranks, so scale
            # back up: the gradient is the sum over the global batch however it is split, and
            # one process reproduces a multi-process run. (DPOT's own multi-GPU script lets DDP
            # average: its gradient is that sum divided by its number of GPUs.)
            (loss * self.world_size).backward()
        self._step_loss = self._step_loss + loss.detach().double()
        return x.shape[0]

    def _reset_window(self) -> None:
        """Start a logging window: loss sums on the device, counts on the host."""
        self._window_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self._first_bad = torch.zeros((), dtype=torch.int64, device=self.device)  # 0: every loss finite
        self._step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self._window_samples, self._window_seconds, self._timed_samples = 0, 0.0, 0
        self._window_read = (0.0, 0)  # its loss sum and samples over every rank, when last read

    def _close_step(self, samples: int) -> None:
        """Fold the step's loss into the window and note, on the device, a first non-finite loss."""
        bad = ~torch.isfinite(self._step_loss)
        self._first_bad = torch.where(bad & (self._first_bad == 0), self.step + 1, self._first_bad)
        self._window_loss = self._window_loss + self._step_loss
        self._step_loss = torch.zeros_like(self._step_loss)
        self._window_samples += samples
        self._last_step_samples = samples

    def _read_window(self) -> tuple[float, int]:
        """``(mean loss, first non-finite step or 0)`` of the window over every rank: the only
        point where the loss leaves the device."""
        totals = torch.stack([self._window_loss, torch.tensor(float(self._window_samples), dtype=torch.float64,
                                                                device=self.device)])
        first_bad = torch.where(self._first_bad == 0, torch.iinfo(torch.int64).max, self._first_bad)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(totals)
            dist.all_reduce(first_bad, op=dist.ReduceOp.MIN)
        loss_sum, samples = totals.tolist()
        self._window_read = (loss_sum, int(samples))
        bad = int(first_bad.item())
        return loss_sum / max(samples, 1.0), 0 if bad == torch.iinfo(torch.int64).max else bad

    def _handle_divergence(self, step: int, loss: float) -> None:
        message = f"training diverged at step {step}: loss is {loss}"
        last = self.checkpoint_dir / "last.pt"
        if self.train.on_divergence == "halt":
            raise PdebError(f"{message}; lower train.lr, enable train.grad_clip, or set "
                            f"train.on_divergence=rollback")
        if self.rollbacks >= self.train.max_rollbacks:
            raise PdebError(f"{message} after {self.rollbacks} rollbacks (train.max_rollbacks); lower train.lr or "
                            f"enable train.grad_clip")
        if not last.exists():
            raise PdebError(f"{message} before any checkpoint to roll back to; lower train.lr or set "
                            f"train.checkpoint_every")
        rollbacks = self.rollbacks + 1
        self.load(last)
        # The checkpoint's rates carry the scaling of the rollbacks before it was saved; the
        # rollbacks since then scale them further, so that the k-th rollback runs at factor^k.
        scale = self.train.rollback_lr_factor ** (rollbacks - self.rollbacks)
        self.rollbacks = rollbacks
        factor = self.train.rollback_lr_factor ** rollbacks
        for group in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] *= scale
        if hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * scale for lr in self.scheduler.base_lrs]
        self.log(f"{message}; rolled back to step {self.step} with the learning rate scaled by {factor:.3g}")

    def _new_shapes(self, batch) -> bool:
        """Whether a compiled model meets these input shapes for the first time (it compiles now)."""
        if not self.train.compile:
            return False
        key = tuple(tuple(t.shape) for t in batch)
        if key in self._shapes_seen:
            return False
        self._shapes_seen.add(key)
        return True

    def _optimizer_step(self, batches) -> bool:
        """One optimizer step over ``grad_accum`` micro-batches; True when it compiled."""
        self.optimizer.zero_grad(set_to_none=True)
        samples, compiling = 0, False
        for micro in range(self.train.grad_accum):
            batch = next(batches)
            self.micro_batches += 1
            compiling |= self._new_shapes(batch)
            samples += self._micro_step(batch, sync=micro == self.train.grad_accum - 1)
        self._close_step(samples)
        if self.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.grad_clip)
        self.optimizer.step()
        self._step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used, for the log
        self.scheduler.step()
        self.step += 1
        return compiling

    def _sync_due(self) -> bool:
        """Steps where the loss is read back: logging, checkpoints, validation and the end
        (never keep or score weights a diverged step produced)."""
        train, step = self.train, self.step
        return (step % train.log_every == 0 or step == train.max_steps
                or bool(train.checkpoint_every and step % train.checkpoint_every == 0)
                or bool(train.eval_every and step % train.eval_every == 0))

    def _report(self, loss: float) -> dict[str, float]:
        """Log the window's loss and throughput (steps that compiled left out) and start a new window."""
        lr = self._step_lr if self._step_lr is not None else self.optimizer.param_groups[0]["lr"]
        values = {"loss": loss, "lr": lr}
        line = f"step {self.step}/{self.train.max_steps} loss {loss:.4g} lr {lr:.3g}"
        if self._window_seconds > 0:  # a window of compiling steps only has no throughput
            values["samples_per_s"] = self._timed_samples * self.world_size / self._window_seconds
            line += f" {values['samples_per_s']:.1f} samples/s"
        self.log_step(self.step, values)
        self.log(line)
        self._reset_window()
        return values

    def fit(self, on_eval: Callable[[int], dict] | None = None) -> dict[str, float]:
        """Train until ``train.max_steps``; returns the last logged values."""
        train = self.train
        if not self.trainable:
            self.log("model has no trainable parameters: nothing to train")
            return {}
        self.forward_model.train()
        self._batches = iter(self.loader)
        try:
            last = self._steps(on_eval)
        except BaseException:  # a signal, Ctrl-C, an error: stop the loader's workers before unwinding,
            _stop_workers(self._batches)  # or their deaths are reported later as tracebacks of their own
            raise
        if on_eval is not None and train.eval_every and self.step % train.eval_every:
            self._validate(on_eval)  # the final weights are a candidate for "best" too
        if self.compile_time:
            self.log(f"compilation took {self.compile_time:.1f}s (the first step of each input shape), "
                     f"left out of the training time and samples/s")
        self.save()
        return last

    def _steps(self, on_eval: Callable[[int], dict] | None) -> dict[str, float]:
        """The optimizer steps up to ``train.max_steps`` from ``self._batches``; the last logged values."""
        train = self.train
        last: dict[str, float] = {}  # the logging window: new, or as a resumed checkpoint cut it
        progress = _progress(enabled=self.show_progress)
        with progress:
            task = progress.add_task("training", total=train.max_steps, completed=self.step, loss=float("nan"),
                                     lr=float("nan"), rate=0.0)
            while self.step < train.max_steps:
                start = time.perf_counter()
                compiled = self._optimizer_step(self._batches)
                if self.device.type == "cuda":  # the step's kernels, not only their launch: true samples/s
                    torch.cuda.synchronize(self.device)
                seconds = time.perf_counter() - start
                if compiled:
                    self.compile_time += seconds
                else:
                    self.train_time += seconds
                    self._window_seconds += seconds
                    self._timed_samples += self._last_step_samples
                progress.update(task, completed=self.step)
                if not self._sync_due():
                    continue
                loss, first_bad = self._read_window()
                if first_bad:
                    self._handle_divergence(first_bad, loss)  # reloads the checkpoint's window too
                    self._batches = iter(self.loader)
                    continue
                if self.step % train.log_every == 0 or self.step == train.max_steps:
                    last = self._report(loss)
                    progress.update(task, loss=loss, lr=last["lr"], rate=last.get("samples_per_s", 0.0))
                # Validation first: a checkpoint of this step then holds its result (best.pt, the
                # best value), so a run resumed from it goes on as one that never stopped.
                if on_eval is not None and train.eval_every and self.step % train.eval_every == 0:
                    self._validate(on_eval)
                if train.checkpoint_every and self.step % train.checkpoint_every == 0 and self.step < train.max_steps:
                    self.save()
        return last

    def _validate(self, on_eval: Callable[[int], dict]) -> None:
        """Score the model on the validation split and keep ``best.pt`` (never the test split)."""
        values = on_eval(self.step)
        self.log_step(self.step, {f"val_{k}": v for k, v in values.items()})
        metric = self.train.select_metric
        value = values.get(metric)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or _better(value, self.best["value"], metric))
        if gather_from_ranks(improved, self.world_size)[0]:  # rank 0 decides: saving is collective
            self.best = {"step": self.step, "metric": metric, "value": float(value)}
            self.save(best=True)
            self.log(f"step {self.step}: best validation {metric} so far, {value:.4g}; saved best.pt")
        self.forward_model.train()


def _without_aliases(model: Any, state: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """A full state dict with each tensor under one name only, and the names left out. A
    module shared by several parents (a mixed-dimension DPOT's blocks) appears under each of
    their names; loaded into a sharded model, the second copy would meet a parameter already
    sharded."""
    first: dict[int, str] = {}
    aliases = set()
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if first.setdefault(id(tensor), name) != name:
            aliases.add(name)
    return {key: value for key, value in state.items() if key not in aliases}, aliases


def _stop_workers(batches: Any) -> None:
    """Shut a DataLoader iterator's worker processes down now (a no-op for other iterators)."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if callable(shutdown):
        with contextlib.suppress(Exception):  # workers a signal killed already: nothing left to stop
            shutdown()


def _better(value: float, best: float, metric: str) -> bool:
    """Whether ``value`` beats ``best`` in the direction the metric was registered with."""
    from pdebench_core import plugins

    higher = plugins.get("metric", metric).higher_is_better
    return value > best if higher else value < best


def _progress(enabled: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.2e}  {task.fields[rate]:.0f} samples/s"),
        TimeRemainingColumn(), transient=True,
        disable=not enabled,
    )
