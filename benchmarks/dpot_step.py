"""Time DPOT's training step and rollout against the official DPOT model, in one process.

Each comparison builds pdeb's DPOT and a baseline with the same weights and alternates
them step by step (interleaved repetitions), so load from other processes on the machine
hits both alike; the ratio of their times is the figure to read. The baseline is the
official model (``--official DIR``: a local checkout of thu-ml/DPOT holding
``models/dpot.py`` and ``models/dpot3d.py``); without it, the baseline is pdeb's DPOT with
its mixer and time aggregation in their straightforward forms (the tests' oracles,
``pdeb_dpot/tests/oracle.py``), which measures what the fused layers gain, not the rest.

Reported per configuration: median and minimum ms per step of each model, their ratio
(baseline / pdeb), the bytes autograd saves for the backward pass (deduplicated by
storage), the maximum output difference, and the fraction of this machine's matmul peak
each model reaches: the step's matmul FLOPs (counted with ``FlopCounterMode``) over its
fastest step, divided by the GFLOP/s of the fastest 2048x2048 float32 matmul timed
interleaved with the steps. pdeb's DPOT computes fewer FLOPs than the official model for the
same function (its time aggregator folds the embedding's last layer into its weight), so
its row also gives the fraction counted in the official model's FLOPs.

A training step is forward, DPOT's relative-L2 loss, backward and an Adam step, each model
with the optimizer its own training code builds: pdeb's ``make_optimizer`` (fused Adam where
torch has the kernel) and, for the official model and the reference baseline,
``torch.optim.Adam`` with default settings as the official ``train_temporal.py`` builds it
(on the CPU torch then updates one tensor at a time). A rollout
is ``--rollout`` autoregressive forward passes without gradients. Defaults: DPOT-Ti, batch
4, 10 input frames, 4 channels, patch 8, 32 modes, 2D grids 64 and 128, 3D grid 32.

Like ``pdeb run`` on the CPU, the benchmark first makes glibc keep freed memory for reuse
(:func:`pdebench_core.host_memory.keep_freed_memory`); both models run under that setting.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/dpot_step.py --official DIR --threads 1 2
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

# Run from a source checkout without installing: the repository root and its bundled plugins.
_ROOT = Path(__file__).resolve().parents[1]
for _path in (_ROOT, _ROOT / "plugins"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

import torch  # noqa: E402

from pdebench_core.errors import UsageError  # noqa: E402

OFFICIAL_FILES = {2: ("models/dpot.py", "DPOTNet"), 3: ("models/dpot3d.py", "DPOTNet3D")}


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DPOT's training loss: per sample and channel ||pred - y|| / ||y||, channel mean, batch sum."""
    dims = tuple(range(1, pred.ndim - 1))  # time and space
    error = torch.linalg.vector_norm(pred - target, dim=dims) / torch.linalg.vector_norm(
        target, dim=dims).clamp_min(1e-12)  # (B, C)
    return error.mean(dim=1).sum()


def load_official_class(directory: Path, ndim: int) -> type:
    """Import the official ``DPOTNet`` (2D) or ``DPOTNet3D`` from a local checkout."""
    relative, name = OFFICIAL_FILES[ndim]
    path = directory / relative
    if not path.is_file():
        raise UsageError(f"--official {directory}: no {relative} there; pass the root of a checkout "
                         f"of the official DPOT code")
    spec = importlib.util.spec_from_file_location(f"official_dpot_{ndim}d", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise UsageError(f"cannot import {path}: {exc}; install what it needs (e.g. einops)") from None
    except Exception as exc:  # a broken or foreign checkout: say so in one line
        raise UsageError(f"cannot import {path}: {type(exc).__name__}: {exc}; pass a checkout of thu-ml/DPOT") from None
    return getattr(module, name)


class Contender:
    """One model with its own layout: ``forward(x)`` takes and returns pdeb's ``(B, T, *S, C)``."""

    def __init__(self, name: str, model: torch.nn.Module, *, official_layout: bool, pdeb_optimizer: bool) -> None:
        self.name, self.model, self.official_layout = name, model, official_layout
        if pdeb_optimizer:
            from pdebench_core.optim import make_optimizer
            from pdebench_core.settings import TrainSection

            train = TrainSection(optimizer="adam", lr=1e-4, weight_decay=1e-6, betas=[0.9, 0.9])
            self.optimizer = make_optimizer(model, train, torch.device("cpu"))
        else:  # as the official train_temporal.py builds it
            self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                              betas=(0.9, 0.9), weight_decay=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.official_layout:
            return self.model(x)
        out = self.model(x.movedim(1, -2))  # official (B, *S, T, C)
        out = out[0] if isinstance(out, tuple) else out  # the 2D model also returns class logits
        return out.movedim(-2, 1)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        relative_l2(self.forward(x), y).backward()
        self.optimizer.step()

    @torch.no_grad()
    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        window = x
        for _ in range(steps):
            window = torch.cat([window[:, 1:], self.forward(window)], dim=1)
        return window


def build_pair(ndim: int, grid: int, size: str, official_dir: Path | None) -> tuple[Contender, Contender]:
    """pdeb's DPOT and the baseline, with the same weights."""
    from pdeb_dpot import SIZES
    from pdeb_dpot.official import build_official

    config = dict(img_size=grid, patch_size=8, in_channels=4, out_channels=4, in_timesteps=10,
                  out_timesteps=1, modes=32, n_cls=12, **SIZES[size])
    torch.manual_seed(0)
    ours = build_official(config, ndim=ndim)
    if official_dir is None:
        from pdeb_dpot.tests.oracle import use_reference_layers

        baseline = use_reference_layers(build_official(config, ndim=ndim))
        baseline.load_state_dict(ours.state_dict(), strict=True)
        return (Contender("pdeb", ours, official_layout=False, pdeb_optimizer=True),
                Contender("reference", baseline, official_layout=False, pdeb_optimizer=False))
    official = load_official_class(official_dir, ndim)(**config)
    official.load_state_dict(ours.state_dict(), strict=True)  # the official keys and shapes
    return (Contender("pdeb", ours, official_layout=False, pdeb_optimizer=True),
            Contender("official", official, official_layout=True, pdeb_optimizer=False))


def saved_for_backward_mib(fn: Callable[[], torch.Tensor]) -> float:
    """MiB of the tensors autograd saves while ``fn()`` runs (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values()) / 2 ** 20


def matmul_flops(fn: Callable[[], None], model: torch.nn.Module) -> int:
    """FLOPs of the matmuls and convolutions ``fn()`` runs (FFTs and elementwise work are not counted).

    pdeb's mixers are counted on FFTs: on the CPU they compute their modes with matmuls, an
    implementation of the same transform that is not the model's work.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from pdeb_dpot.mixer import transform_in

    with transform_in(model, "fft"), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_task() -> tuple[Callable[[], object], Callable[[list[float]], float]]:
    """A 2048x2048 float32 matmul to time among the others, and ms -> GFLOP/s (of the fastest)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return (lambda: a @ b), (lambda ms: 2 * 2048 ** 3 / min(ms) / 1e6)


def interleaved_ms(tasks: dict[str, Callable[[], object]], repeats: int,
                   warmup: int) -> dict[str, list[float]]:
    """Run the tasks in turn ``warmup + repeats`` times; ms of each timed repetition."""
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for i in range(warmup + repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            if i >= warmup:
                times[name].append(1e3 * (time.perf_counter() - start))
    return times


def compare(ndim: int, grid: int, args: argparse.Namespace) -> None:
    """Print the training-step and rollout rows of one configuration.

    The matmul that sets the peak runs interleaved with the models, so it sees the same load.
    """
    ours, base = build_pair(ndim, grid, args.size, args.official)
    shape = (args.batch, 10, *([grid] * ndim), 4)
    torch.manual_seed(1)
    x, y = torch.randn(shape), torch.randn(args.batch, 1, *shape[2:])
    with torch.no_grad():
        diff = (ours.forward(x) - base.forward(x)).abs().max().item()
    label = f"{ndim}D {grid}^{ndim}"
    saved = {c.name: saved_for_backward_mib(lambda c=c: relative_l2(c.forward(x), y)) for c in (ours, base)}
    flops = {c.name: matmul_flops(lambda c=c: c.train_step(x, y), c.model) for c in (ours, base)}
    matmul, gflops = matmul_task()
    tasks = {c.name: (lambda c=c: c.train_step(x, y)) for c in (ours, base)}
    times = interleaved_ms({**tasks, "matmul": matmul}, args.steps, args.warmup)
    peak = gflops(times.pop("matmul"))
    print_rows(f"{label} train", times, base.name, ours.name, saved, flops, peak,
               f"max |diff| {diff:.1e}; 2048^2 matmul {peak:.0f} GFLOP/s")
    tasks = {c.name: (lambda c=c: c.rollout(x, args.rollout)) for c in (ours, base)}
    times = interleaved_ms(tasks, args.steps, 1)
    print_rows(f"{label} rollout x{args.rollout}", times, base.name, ours.name, None, None, peak, "")


def print_rows(label: str, times: dict[str, list[float]], base: str, ours: str, saved: dict | None,
               flops: dict | None, peak: float, note: str) -> None:
    """One line per model, then the ratio baseline / pdeb of medians and of minima."""
    for name, ms in times.items():
        line = f"  {label:22s} {name:15s} median {statistics.median(ms):8.1f} ms  min {min(ms):8.1f} ms"
        if saved is not None:
            line += f"  saved {saved[name]:6.1f} MiB"
        if flops is not None:
            fraction = flops[name] / min(ms) / 1e6 / peak
            line += f"  {flops[name] / 1e9:5.2f} GFLOP, {fraction:4.0%} of peak (at min)"
            if name == ours and base == "official":
                # Model FLOPs: what the official formulation of the same network computes.
                line += f", {flops[base] / min(ms) / 1e6 / peak:4.0%} in the official model's FLOPs"
        print(line, flush=True)
    ratio_median = statistics.median(times[base]) / statistics.median(times[ours])
    ratio_min = min(times[base]) / min(times[ours])
    print(f"  {label:22s} {base} / pdeb: {ratio_median:.2f}x (medians), {ratio_min:.2f}x (minima)  {note}",
          flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=None, metavar="DIR",
                        help="root of a local checkout of the official DPOT code (thu-ml/DPOT)")
    parser.add_argument("--res", type=int, nargs="*", default=[64, 128], help="2D grids")
    parser.add_argument("--res3d", type=int, nargs="*", default=[32], help="3D grids")
    parser.add_argument("--size", default="ti", choices=["ti", "s", "m", "l", "h"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=7, help="timed repetitions of each model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rollout", type=int, default=5, help="autoregressive steps per rollout")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="CPU thread counts to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.official is not None and not args.official.is_dir():
        print(f"error: --official {args.official} is not a directory; pass a checkout of thu-ml/DPOT",
              file=sys.stderr)
        return 2
    if args.official is None:
        print("no --official DIR given: comparing with pdeb's DPOT using the reference mixer and time "
              "aggregation only")
    from pdebench_core.host_memory import keep_freed_memory

    kept = keep_freed_memory()  # as pdeb run does on the CPU
    print(f"freed host memory kept for reuse: {'yes' if kept else 'no (not glibc, or PDEB_KEEP_FREED_MEMORY=0)'}")
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"DPOT-{args.size}, batch {args.batch}, 10 frames, 4 channels, {threads} thread(s); "
                  f"{args.steps} interleaved repetitions after {args.warmup} warm-up", flush=True)
            for ndim, grids in ((2, args.res), (3, args.res3d)):
                for grid in grids:
                    compare(ndim, grid, args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
