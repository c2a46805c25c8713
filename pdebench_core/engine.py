"""The one training loop: every task and every model plugin trains through it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from pdebench_core.checkpoint import load_checkpoint, save_checkpoint
from pdebench_core.devices import autocast_for
from pdebench_core.errors import PdebError, UsageError
from pdebench_core.losses import LOSSES
from pdebench_core.objectives import next_frames_objective
from pdebench_core.optim import make_optimizer, make_scheduler


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def rng_state() -> dict[str, Any]:
    """Torch RNG states (CPU and CUDA) for exact resumption."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Optimises a model on micro-batches of ``(x, y, mask)`` windows.

    One optimizer step consumes ``train.grad_accum`` micro-batches on each of the
    ``world_size`` processes; gradients are the sum over the whole global batch, so
    the result does not depend on how the batch is split.

    Args:
        model: Maps ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.
        loader: Yields ``(x, y, mask)`` micro-batches forever.
        sampler: The loader's :class:`MixtureBatchSampler` (for a resumable position).
        train: The ``train`` config section.
        device: Where to compute.
        checkpoint_dir: Where checkpoints go.
        log: Callable receiving progress lines.
        log_step: Callable receiving ``(step, values)`` records.
        input_noise: Optional ``(x, generator) -> x`` perturbing model inputs on the device
            (the pre-training task adds DPOT's noise here); the objective decides where it applies.
        objective: ``(model, x, y, mask, perturb) -> loss`` for one micro-batch; defaults to
            :func:`~pdebench_core.objectives.next_frames_objective` over ``train.loss``.
        extra_state: Plain data stored in every checkpoint (e.g. the resolved config).
        seed: Seed of the trainer's own noise generator.
        world_size: Number of data-parallel processes (the model is wrapped in DDP when > 1).
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
        if train.channels_last and device.type == "cuda":
            # NHWC convolution kernels; only 4D weights change layout, everything else is untouched.
            self.model = self.model.to(memory_format=torch.channels_last)
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
        self.world_size, self.is_main = world_size, is_main
        self.trainable = count_parameters(model) > 0
        self.forward_model = self.model
        if train.strategy not in ("ddp", "fsdp"):
            raise UsageError(f"unknown train.strategy '{train.strategy}'; use ddp or fsdp")
        self.sharded = world_size > 1 and self.trainable and train.strategy == "fsdp"
        if self.sharded:
            shard_model(self.model)
        elif world_size > 1 and self.trainable:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if train.compile:
            self.forward_model = _compiled(self.forward_model, log)
        self.optimizer = make_optimizer(model, train, device) if self.trainable else None
        self.scheduler = make_scheduler(self.optimizer, train) if self.trainable else None
        self.noise_gen = torch.Generator(device="cpu").manual_seed(seed + 17 + 7919 * _rank())
        self.step = 0
        self.micro_batches = 0
        self.train_time = 0.0
        self.rollbacks = 0
        self.best: dict | None = None  # {"step", "metric", "value"} of the best validation so far
        self.show_progress = show_progress

    # -- checkpoints -------------------------------------------------------------------
    def _weights_and_optimizer(self) -> tuple[dict, dict]:
        """Full (unsharded) model and optimizer state; a collective call under FSDP."""
        if not self.sharded:
            return self.model.state_dict(), self.optimizer.state_dict() if self.optimizer else {}
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(self.model, options=options),
                get_optimizer_state_dict(self.model, self.optimizer, options=options))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where training stands."""
        weights, optimizer = self._weights_and_optimizer()
        return {
            "model": weights,
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "step": self.step,
            "micro_batches": self.micro_batches,
            "train_time": self.train_time,
            "rollbacks": self.rollbacks,
            "best": self.best,
            "rng": rng_state(),
            "noise_rng": self.noise_gen.get_state(),
            **self.extra_state,
        }

    def save(self, best: bool = False) -> Path | None:
        """Write ``step-N.pt`` and ``last.pt`` (keeping the last ``train.keep_checkpoints`` step
        files), or ``best.pt`` when ``best``. Every rank calls it; only rank 0 writes."""
        state = self.state_dict()
        if not self.is_main:
            return None
        if best:
            return save_checkpoint(state, self.checkpoint_dir / "best.pt")
        path = save_checkpoint(state, self.checkpoint_dir / f"step-{self.step:08d}.pt")
        save_checkpoint(state, self.checkpoint_dir / "last.pt")
        steps = sorted(self.checkpoint_dir.glob("step-*.pt"))
        for old in steps[: max(0, len(steps) - max(1, self.train.keep_checkpoints))]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        state = load_checkpoint(path)
        try:
            if self.sharded:
                from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                     set_optimizer_state_dict)

                options = StateDictOptions(full_state_dict=True)
                set_model_state_dict(self.model, state["model"], options=options)
                if self.optimizer and state.get("optimizer"):
                    set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=options)
            else:
                self.model.load_state_dict(state["model"])
                if self.optimizer and state.get("optimizer"):
                    self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UsageError(f"checkpoint {path} does not fit this model: {str(exc).splitlines()[0][:200]}") from None
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.micro_batches = int(state.get("micro_batches", 0))
        self.train_time = float(state.get("train_time", 0.0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.best = state.get("best")
        set_rng_state(state["rng"])
        self.noise_gen.set_state(state["noise_rng"])
        per_epoch = self.sampler.batches_per_epoch()
        self.sampler.load_state_dict({"epoch": self.micro_batches // per_epoch,
                                      "position": self.micro_batches % per_epoch})

    # -- the loop ----------------------------------------------------------------------
    def _micro_step(self, batch, sync: bool) -> tuple[float, int]:
        """Forward and backward on one micro-batch; returns (summed loss, samples)."""
        import contextlib

        x, y, mask = (t.to(self.device, non_blocking=True) for t in batch)
        perturb = None
        if self.input_noise is not None:
            perturb = lambda inputs: self.input_noise(inputs, self.noise_gen)  # noqa: E731
        no_sync = getattr(self.forward_model, "no_sync", None)
        with (contextlib.nullcontext() if sync or no_sync is None else no_sync()):
            with autocast_for(self.device, self.train.precision):
                loss = self.objective(self.forward_model, x, y, mask, perturb)
            # Summed over samples (DPOT's convention); DDP averages over ranks, so scale
            # back up: the gradient is the sum over the global batch however it is split.
            (loss * self.world_size).backward()
        return float(loss.detach()), x.shape[0]

    def _global_sum(self, values: list[float]) -> list[float]:
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def _handle_divergence(self, loss: float) -> None:
        message = f"training diverged at step {self.step + 1}: loss is {loss}"
        last = self.checkpoint_dir / "last.pt"
        if self.train.on_divergence == "halt" or self.rollbacks >= self.train.max_rollbacks:
            raise PdebError(f"{message}; lower train.lr, enable train.grad_clip, or set "
                            f"train.on_divergence=rollback")
        if not last.exists():
            raise PdebError(f"{message} before any checkpoint to roll back to; lower train.lr or set "
                            f"train.checkpoint_every")
        rollbacks = self.rollbacks + 1
        self.load(last)
        self.rollbacks = rollbacks
        factor = self.train.rollback_lr_factor ** rollbacks
        for group in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in group:
                    group[key] *= self.train.rollback_lr_factor
        if hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * self.train.rollback_lr_factor for lr in self.scheduler.base_lrs]
        self.log(f"{message}; rolled back to step {self.step} with the learning rate scaled by {factor:.3g}")

    def fit(self, on_eval: Callable[[int], dict] | None = None) -> dict[str, float]:
        """Train until ``train.max_steps``; returns the last logged values."""
        train = self.train
        if not self.trainable:
            self.log("model has no trainable parameters: nothing to train")
            return {}
        self.forward_model.train()
        batches = iter(self.loader)
        last: dict[str, float] = {}
        window_loss, window_n, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
        progress = _progress(enabled=self.show_progress)
        with progress:
            task = progress.add_task("training", total=train.max_steps, completed=self.step, loss=float("nan"),
                                     lr=float("nan"), rate=0.0)
            while self.step < train.max_steps:
                start = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                loss_sum, samples = 0.0, 0
                for micro in range(train.grad_accum):
                    batch = next(batches)
                    self.micro_batches += 1
                    part, n = self._micro_step(batch, sync=micro == train.grad_accum - 1)
                    loss_sum, samples = loss_sum + part, samples + n
                loss_sum, samples = self._global_sum([loss_sum, float(samples)])
                loss = loss_sum / max(samples, 1)
                if not math.isfinite(loss):
                    self._handle_divergence(loss)
                    batches = iter(self.loader)
                    continue
                if train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                self.train_time += time.perf_counter() - start
                window_loss, window_n, window_samples = window_loss + loss, window_n + 1, window_samples + samples
                lr = self.optimizer.param_groups[0]["lr"]
                progress.update(task, completed=self.step, loss=loss, lr=lr,
                                rate=samples / max(time.perf_counter() - start, 1e-9))
                if self.step % train.log_every == 0 or self.step == train.max_steps:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    last = {"loss": window_loss / window_n, "lr": lr, "samples_per_s": window_samples / elapsed}
                    self.log_step(self.step, last)
                    self.log(f"step {self.step}/{train.max_steps} loss {last['loss']:.4g} lr {lr:.3g} "
                             f"{last['samples_per_s']:.1f} samples/s")
                    window_loss, window_n, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
                if train.checkpoint_every and self.step % train.checkpoint_every == 0 and self.step < train.max_steps:
                    self.save()
                if on_eval is not None and train.eval_every and self.step % train.eval_every == 0:
                    self._validate(on_eval)
        if on_eval is not None and train.eval_every and self.step % train.eval_every:
            self._validate(on_eval)  # the final weights are a candidate for "best" too
        self.save()
        return last

    def _validate(self, on_eval: Callable[[int], dict]) -> None:
        """Score the model on the validation split and keep ``best.pt`` (never the test split)."""
        values = on_eval(self.step)
        self.log_step(self.step, {f"val_{k}": v for k, v in values.items()})
        metric = self.train.select_metric
        value = values.get(metric)
        if value is not None and math.isfinite(value) and (self.best is None or value < self.best["value"]):
            self.best = {"step": self.step, "metric": metric, "value": float(value)}
            self.save(best=True)
            self.log(f"step {self.step}: best validation {metric} so far, {value:.4g}; saved best.pt")
        self.forward_model.train()


def shard_model(model: torch.nn.Module) -> None:
    """FSDP2: shard every element of every ``ModuleList`` (the repeated blocks), then the root."""
    from torch.distributed.fsdp import fully_shard

    for module in list(model.modules()):
        if isinstance(module, torch.nn.ModuleList):
            for block in module:
                if any(p.requires_grad for p in block.parameters()):
                    fully_shard(block)
    fully_shard(model)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _CompiledOrEager(torch.nn.Module):
    """Runs the ``torch.compile``d model, falling back to eager mode (with a message)
    the first time compilation fails, e.g. on complex-valued FFT layers."""

    def __init__(self, model: torch.nn.Module, log: Callable[[str], None]) -> None:
        super().__init__()
        self.model = model
        self.compiled = torch.compile(model)
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as exc:  # compile support varies by model and backend
                self.log(f"torch.compile failed for this model ({str(exc).splitlines()[0][:120]}); "
                         f"running eagerly")
                self.compiled = None
        return self.model(x)


def _compiled(model: torch.nn.Module, log: Callable[[str], None]) -> torch.nn.Module:
    return _CompiledOrEager(model, log)


def _progress(enabled: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.2e}  {task.fields[rate]:.0f} samples/s"),
        TimeRemainingColumn(), transient=True,
        disable=not enabled,
    )
