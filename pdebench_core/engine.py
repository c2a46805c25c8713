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
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but no CUDA device is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")


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
    kwargs: dict[str, Any] = {"lr": train.lr, "weight_decay": train.weight_decay}
    if device.type == "cuda":
        kwargs["fused"] = True
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if train.optimizer == "adam":
        return torch.optim.Adam(params, **kwargs)
    raise UsageError(f"unknown train.optimizer '{train.optimizer}'; use adam or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, train: Any):
    """One-cycle (DPOT's), cosine or constant learning rate over ``max_steps``."""
    steps = max(1, int(train.max_steps))
    if train.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=steps + 1, pct_start=min(max(train.warmup_frac, 0.01), 0.99),
            cycle_momentum=False,
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
    """Optimises a model on batches of ``(x, y, mask)`` windows.

    Args:
        model: Maps ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.
        loader: Yields ``(x, y, mask)`` batches (infinite).
        sampler: The loader's :class:`MixtureBatchSampler` (for resumable position).
        train: The ``train`` config section.
        device: Where to compute.
        checkpoint_dir: Where step checkpoints go.
        log: Callable receiving progress lines.
        log_step: Callable receiving ``(step, values)`` records.
        prepare_batch: Optional hook ``(x, y, mask, generator) -> (x, y, mask)`` run on the
            device before the forward pass (the pre-training task adds noise here).
        extra_state: Plain data stored in every checkpoint (e.g. the resolved config).
    """

    def __init__(self, model: torch.nn.Module, loader, sampler, train: Any, device: torch.device,
                 checkpoint_dir: Path, log: Callable[[str], None] = print,
                 log_step: Callable[[int, dict], None] | None = None,
                 prepare_batch: Callable | None = None, extra_state: dict | None = None,
                 seed: int = 0, show_progress: bool = True) -> None:
        self.model = model.to(device)
        self.loader, self.sampler, self.train, self.device = loader, sampler, train, device
        self.checkpoint_dir = Path(checkpoint_dir)
        self.log, self.log_step = log, log_step or (lambda step, values: None)
        self.prepare_batch = prepare_batch
        self.extra_state = dict(extra_state or {})
        self.loss_fn = LOSSES.get(train.loss)
        if self.loss_fn is None:
            raise UsageError(f"unknown train.loss '{train.loss}'; use {' or '.join(LOSSES)}")
        self.trainable = count_parameters(model) > 0
        self.optimizer = make_optimizer(model, train, device) if self.trainable else None
        self.scheduler = make_scheduler(self.optimizer, train) if self.trainable else None
        self.noise_gen = torch.Generator(device="cpu").manual_seed(seed + 17)
        self.step = 0
        self.batches_consumed = 0
        self.train_time = 0.0
        self.show_progress = show_progress

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where training stands."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "step": self.step,
            "batches_consumed": self.batches_consumed,
            "train_time": self.train_time,
            "rng": rng_state(),
            "noise_rng": self.noise_gen.get_state(),
            **self.extra_state,
        }

    def save(self, name: str | None = None) -> Path:
        """Write a checkpoint; keep the last ``train.keep_checkpoints`` step files plus ``last.pt``."""
        state = self.state_dict()
        path = save_checkpoint(state, self.checkpoint_dir / (name or f"step-{self.step:08d}.pt"))
        save_checkpoint(state, self.checkpoint_dir / "last.pt")
        if name is None:
            steps = sorted(self.checkpoint_dir.glob("step-*.pt"))
            for old in steps[: max(0, len(steps) - max(1, self.train.keep_checkpoints))]:
                old.unlink(missing_ok=True)
        return path

    def load(self, path: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as exc:
            raise UsageError(f"checkpoint {path} does not fit this model: {str(exc).splitlines()[0][:200]}") from None
        if self.optimizer and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.batches_consumed = int(state.get("batches_consumed", 0))
        self.train_time = float(state.get("train_time", 0.0))
        set_rng_state(state["rng"])
        self.noise_gen.set_state(state["noise_rng"])
        per_epoch = self.sampler.batches_per_epoch()
        self.sampler.load_state_dict({"epoch": self.batches_consumed // per_epoch,
                                      "position": self.batches_consumed % per_epoch})

    # -- the loop ----------------------------------------------------------------------
    def _micro_step(self, batch) -> float:
        x, y, mask = (t.to(self.device, non_blocking=True) for t in batch)
        if self.prepare_batch is not None:
            x, y, mask = self.prepare_batch(x, y, mask, self.noise_gen)
        with autocast_for(self.device, self.train.precision):
            pred = self.model(x)  # (B, t_out, *S, C)
        loss = self.loss_fn(pred.float(), y, mask)
        # Summed over samples (DPOT's convention), so k micro-batches of b add up to one batch of k*b.
        loss.backward()
        return float(loss.detach()) / x.shape[0]

    def fit(self, on_eval: Callable[[int], dict] | None = None) -> dict[str, float]:
        """Train until ``train.max_steps``; returns the last logged values."""
        train = self.train
        if not self.trainable:
            self.log("model has no trainable parameters: nothing to train")
            return {}
        self.model.train()
        batches = iter(self.loader)
        last: dict[str, float] = {}
        window_loss, window_n, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
        progress = _progress(train.max_steps, self.step, enabled=self.show_progress)
        with progress:
            task = progress.add_task("training", total=train.max_steps, completed=self.step, loss=float("nan"))
            while self.step < train.max_steps:
                start = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                loss = 0.0
                for _ in range(train.grad_accum):
                    batch = next(batches)
                    self.batches_consumed += 1
                    window_samples += batch[0].shape[0]
                    loss += self._micro_step(batch) / train.grad_accum
                if not math.isfinite(loss):
                    raise PdebError(
                        f"training diverged at step {self.step + 1}: loss is {loss}; lower train.lr "
                        f"or enable gradient clipping (train.grad_clip)"
                    )
                if train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                self.train_time += time.perf_counter() - start
                window_loss += loss
                window_n += 1
                lr = self.optimizer.param_groups[0]["lr"]
                progress.update(task, completed=self.step, loss=loss)
                if self.step % train.log_every == 0 or self.step == train.max_steps:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    last = {"loss": window_loss / window_n, "lr": lr, "samples_per_s": window_samples / elapsed}
                    self.log_step(self.step, last)
                    self.log(f"step {self.step}/{train.max_steps} loss {last['loss']:.4g} lr {lr:.3g} "
                             f"{last['samples_per_s']:.1f} samples/s")
                    window_loss, window_n, window_samples, window_start = 0.0, 0, 0, time.perf_counter()
                if train.checkpoint_every and self.step % train.checkpoint_every == 0:
                    self.save()
                if on_eval is not None and train.eval_every and self.step % train.eval_every == 0:
                    values = on_eval(self.step)
                    self.log_step(self.step, {f"val_{k}": v for k, v in values.items()})
                    self.model.train()
        self.save()
        return last


def _progress(total: int, done: int, enabled: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"), TimeRemainingColumn(), transient=True,
        disable=not enabled,
    )
