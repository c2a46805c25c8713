"""The one training loop: every task and every model plugin trains through it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from pdebench_core.checkpoint import load_checkpoint, save_checkpoint
from pdebench_core.errors import PdebError, UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; CUDA asked for without one is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
        enable_tf32()
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")


def enable_tf32() -> None:
    """TF32 tensor cores for float32 matmuls and convolutions on CUDA (FFT layers stay float32)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def relative_l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """DPOT's training loss: relative L2 per sample and channel, mean over real channels, sum over samples.

    Args:
        pred: ``(B, T, *S, C)``.
        target: ``(B, T, *S, C)``.
        mask: ``(B, C)`` or ``(C,)`` bool, True for real channels.
    """
    b, c = pred.shape[0], pred.shape[-1]
    diff = (pred - target).float().reshape(b, -1, c)  # (B, T*S, C)
    ref = target.float().reshape(b, -1, c)
    rel = diff.norm(dim=1) / ref.norm(dim=1).clamp_min(1e-8)  # (B, C)
    if mask is None:
        return rel.mean(dim=1).sum()
    mask = mask.expand(b, c).to(rel.dtype)
    return ((rel * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).sum()


def mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over real channels, summed over samples (so micro-batches add up)."""
    b, c = pred.shape[0], pred.shape[-1]
    sq = (pred - target).float().pow(2).reshape(b, -1, c).mean(dim=1)  # (B, C)
    if mask is None:
        return sq.mean(dim=1).sum()
    mask = mask.expand(b, c).to(sq.dtype)
    return ((sq * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)).sum()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"rel_l2": relative_l2_loss, "mse": mse_loss}


def make_optimizer(model: torch.nn.Module, train: Any, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters (fused on CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not (train.lr > 0 and math.isfinite(train.lr)):
        raise UsageError(f"train.lr must be a positive number, got {train.lr}")
    kwargs: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay}
    if device.type == "cuda" and all(p.is_floating_point() for p in params):
        kwargs["fused"] = True  # fused kernels refuse complex parameters (FNO's spectral weights)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if train.optimizer == "adam":
        return torch.optim.Adam(params, **kwargs)
    raise UsageError(f"unknown train.optimizer '{train.optimizer}'; use adam or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, train: Any):
    """One-cycle (DPOT's), cosine or constant learning rate over ``max_steps``."""
    steps = max(1, int(train.max_steps))
    if train.scheduler == "onecycle":
        total = max(steps + 1, 3)
        # Each phase needs at least one step, or the schedule divides by zero on short runs.
        warmup = min(max(train.warmup_frac, 1.5 / total), 1 - 1.5 / total)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=total, pct_start=warmup, cycle_momentum=False,
        )
    if train.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if train.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise UsageError(f"unknown train.scheduler '{train.scheduler}'; use onecycle, cosine or constant")


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA under ``auto``/``bf16``; otherwise a no-op context."""
    import contextlib

    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if precision not in {"auto", "bf16", "fp32"}:
        raise UsageError(f"unknown train.precision '{precision}'; use auto, bf16 or fp32")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
        prepare_batch: Optional ``(x, y, mask, generator) -> (x, y, mask)`` run on the
            device before the forward pass (the pre-training task adds noise here).
        extra_state: Plain data stored in every checkpoint (e.g. the resolved config).
        seed: Seed of the trainer's own noise generator.
        world_size: Number of data-parallel processes (the model is wrapped in DDP when > 1).
        is_main: Whether this process writes checkpoints.
        show_progress: Draw a rich progress bar.
    """

    def __init__(self, model: torch.nn.Module, loader, sampler, train: Any, device: torch.device,
                 checkpoint_dir: Path, log: Callable[[str], None] = print,
                 log_step: Callable[[int, dict], None] | None = None,
                 prepare_batch: Callable | None = None, extra_state: dict | None = None,
                 seed: int = 0, world_size: int = 1, is_main: bool = True, show_progress: bool = True) -> None:
        self.model = model.to(device)
        if train.channels_last and device.type == "cuda":
            # NHWC convolution kernels; only 4D weights change layout, everything else is untouched.
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loader, self.sampler, self.train, self.device = loader, sampler, train, device
        self.checkpoint_dir = Path(checkpoint_dir)
        self.log, self.log_step = log, log_step or (lambda step, values: None)
        self.prepare_batch = prepare_batch
        self.extra_state = dict(extra_state or {})
        self.loss_fn = LOSSES.get(train.loss)
        if self.loss_fn is None:
            raise UsageError(f"unknown train.loss '{train.loss}'; use {' or '.join(LOSSES)}")
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
        if self.prepare_batch is not None:
            x, y, mask = self.prepare_batch(x, y, mask, self.noise_gen)
        no_sync = getattr(self.forward_model, "no_sync", None)
        with (contextlib.nullcontext() if sync or no_sync is None else no_sync()):
            with autocast_for(self.device, self.train.precision):
                pred = self.forward_model(x)  # (B, t_out, *S, C)
            loss = self.loss_fn(pred.float(), y, mask)
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
