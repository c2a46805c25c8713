"""GPU check: pdeb's own DPOT training on one CUDA device, timed, with MFU; then the CUDA tests.

For DPOT-Ti, -S and -L at 128x128 (10 input frames, 4 channels, patch 8, 32 modes, the
per-GPU batch of the official pre-training configs) it runs the engine exactly as
``pdeb run --task pretrain`` does: ``execute`` -> ``pretrain`` task -> ``Trainer``, with
DataLoader workers reading a canonical HDF5 file of random trajectories, DPOT's input
noise, bf16 autocast, Adam and, for models up to 100M parameters, ``torch.compile``.
Checkpoints are not written and there is no evaluation. Throughput comes from the
engine's own step log after the warm-up steps, which hold the compilation. Per model:

- samples/s and ms per optimizer step (data loading, noise and optimizer included);
- peak GPU memory (``torch.cuda.max_memory_allocated`` over the run);
- FLOPs per sample of one training step (forward and backward), counted on the ``meta``
  device with ``torch.utils.flop_counter`` plus the FFTs (5 N log2 N per complex FFT of N
  points, half that for a real one) and pdeb's exact spectral products;
- MFU: achieved FLOP/s over the card's dense bf16 peak, looked up by the card's name
  (FFT and float32 spectral FLOPs are counted against that same peak).

Then the official float32 model (no autocast, no TF32, Adam) is timed in a plain loop on
one fixed batch for the ratio: the official code itself with ``--official DIR`` (a checkout
of thu-ml/DPOT), else pdeb's DPOT with its mixer and time aggregation in the official forms
(the tests' oracles). It loads no data, so the ratio is conservative. Last, the CUDA-only tests run
(``python -m pytest -q -m cuda tests/test_cuda.py``).

Without a CUDA device it says so and exits 0; with ``--require-cuda`` it exits 1.
``--flops-only`` prints the FLOP counts alone, on any machine.

Usage::

    python benchmarks/gpu_check.py --require-cuda          # the check, then the CUDA tests
    python benchmarks/gpu_check.py --sizes ti --steps 20 --no-tests --json gpu.json
    python benchmarks/gpu_check.py --flops-only            # no GPU needed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # annotations only: the check imports torch once it has chosen its device
    import torch

# Run from a source checkout without installing: the repository root and its bundled plugins.
_ROOT = Path(__file__).resolve().parents[1]
for _path in (_ROOT, _ROOT / "plugins", _ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendor data sheets, matched
# in order against ``torch.cuda.get_device_name()``; GeForce figures use fp32 accumulation.
BF16_PEAKS: list[tuple[str, str, float]] = [
    (r"GH200", "GH200", 989.0),
    (r"H200.*NVL", "H200 NVL", 835.0),
    (r"H200", "H200", 989.0),
    (r"H100.*PCIe", "H100 PCIe", 756.0),
    (r"H100.*NVL", "H100 NVL", 835.0),
    (r"H800.*PCIe", "H800 PCIe", 756.0),
    (r"H100|H800", "H100 SXM", 989.0),
    (r"GB200", "GB200", 2500.0),
    (r"B200", "B200", 2250.0),
    (r"A100|A800", "A100", 312.0),
    (r"L40S", "L40S", 362.0),
    (r"L40\b", "L40", 181.0),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 364.0),
    (r"RTX 4090", "RTX 4090", 165.0),
    (r"RTX 3090", "RTX 3090", 71.0),
]
GRID, FRAMES_IN, CHANNELS = 128, 10, 4
# Per-GPU batch of the official configs (configs/pretrain_tiny.yaml, _s.yaml, _large.yaml).
OFFICIAL_BATCH = {"ti": 20, "s": 20, "m": 20, "l": 25, "h": 25}
COMPILE_LIMIT = 100e6  # parameters; compiling the 24-block L alone would take minutes


def bf16_peak(name: str) -> Optional[tuple[str, float]]:
    """``(card, dense bf16 TFLOP/s)`` for a CUDA device name, or None for a card not in the table."""
    for pattern, card, tflops in BF16_PEAKS:
        if re.search(pattern, name):
            return card, tflops
    return None


# ----------------------------------------------------------------------------- FLOP counting


def fft_flops(points: int, transforms: int, real: bool) -> int:
    """FLOPs of ``transforms`` FFTs of ``points`` points each: 5 N log2 N complex, half for real."""
    if points <= 1:
        return 0
    per = 5 * points * math.log2(points) * (0.5 if real else 1.0)
    return int(round(per * transforms))


def _fft_formula(real: bool, size_of: str) -> Callable[..., int]:
    """A raw flop formula for ``aten._fft_*``; ``size_of`` names the tensor whose axes are transformed."""

    def formula(x, dim, *args, out_val=None, **kwargs) -> int:
        shaped = out_val if size_of == "output" else x
        points = math.prod(shaped.shape[d] for d in dim)
        return fft_flops(points, shaped.numel() // max(points, 1), real)

    formula._get_raw = True  # receive tensors, not shapes
    return formula


def _exact_bmm_formula(a, b, bias=None, out_val=None, **kwargs) -> int:
    """FLOPs of ``pdeb::ieee_bmm``: 2 per multiply-add, 8 for a complex one."""
    batch, m, k = a.shape
    return 2 * batch * m * k * b.shape[-1] * (4 if a.is_complex() else 1)


_exact_bmm_formula._get_raw = True


def flop_mapping() -> dict[Any, Callable[..., int]]:
    """FLOP formulas the stock counter lacks: FFTs and pdeb's exact spectral product."""
    import torch

    import pdebench_core.devices  # noqa: F401  (registers pdeb::ieee_bmm)

    aten = torch.ops.aten
    return {aten._fft_r2c: _fft_formula(True, "input"), aten._fft_c2r: _fft_formula(True, "output"),
            aten._fft_c2c: _fft_formula(False, "input"), torch.ops.pdeb.ieee_bmm: _exact_bmm_formula}


def training_flops(model, x, autocast: bool = True) -> dict[str, int]:
    """FLOPs of forward and backward of ``model`` on ``x`` (counted on any device, ``meta`` too).

    DPOT's Fourier mixers are counted on FFTs, as they run on a GPU (on the CPU they compute
    the same modes with matmuls).

    Returns:
        ``{"total": ..., "fft": ...}`` for the whole batch.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pdeb_dpot.mixer import transform_in

    counter = FlopCounterMode(display=False, custom_mapping=flop_mapping())
    with transform_in(model, "fft"), counter:
        with torch.autocast(device_type="cuda" if x.is_cuda else "cpu", dtype=torch.bfloat16, enabled=autocast):
            pred = model(x)
        pred.float().square().sum().backward()
    counts = counter.get_flop_counts()["Global"]
    fft = sum(v for op, v in counts.items() if "_fft_" in str(op))
    return {"total": counter.get_total_flops(), "fft": fft}


def dpot_flops_per_sample(size: str, batch: int | None = None) -> dict[str, float]:
    """Training FLOPs per sample of DPOT-``size`` at 128x128 and ``batch`` (default: the official
    per-GPU batch), counted on the meta device. The time aggregation's weight-only products cost
    the same at any batch, so the count per sample depends on it."""
    batch = batch or OFFICIAL_BATCH[size]
    import torch

    from pdeb_dpot import DPOTConfig, build
    from pdebench_core.spec import DataSpec

    spec = DataSpec(name="check", fields=tuple("abcd"), spatial_shape=(GRID, GRID), t_in=FRAMES_IN, t_out=1)
    with torch.device("meta"):
        model = build(DPOTConfig(size=size, patch_size=8, modes=32), spec)
        x = torch.empty(batch, FRAMES_IN, GRID, GRID, CHANNELS)
    counts = training_flops(model, x)
    return {"flops": counts["total"] / batch, "fft_share": counts["fft"] / max(counts["total"], 1),
            "params": float(sum(p.numel() for p in model.parameters()))}


# ----------------------------------------------------------------------------- the engine, timed


def write_synthetic(folder: Path, n_train: int = 24, frames: int = 21) -> Path:
    """A canonical file of random 128x128, 4-field trajectories (the DPOT pre-training shape)."""
    import numpy as np

    from pdebench_core.data.canonical import write_canonical
    from pdebench_core.spec import DataSpec

    rng = np.random.default_rng(0)
    shape = (frames, GRID, GRID, CHANNELS)
    splits = {"train": rng.standard_normal((n_train, *shape), dtype=np.float32),
              "val": rng.standard_normal((1, *shape), dtype=np.float32),
              "test": rng.standard_normal((1, *shape), dtype=np.float32)}
    spec = DataSpec(name="gpu-check", fields=tuple("abcd"), spatial_shape=(GRID, GRID), t_in=FRAMES_IN,
                    t_out=1, n_frames=frames, horizon=frames - FRAMES_IN)
    return write_canonical(folder / "gpu-check.h5", splits, spec, {"generator": "benchmarks/gpu_check.py"})


def _synthetic_plugin(path: Path):
    """A plugin registering the dataset ``gpu-check`` that reads ``path`` lazily."""
    from dataclasses import dataclass

    from pdebench_core import hookimpl

    @dataclass
    class GpuCheckData:
        """No settings: the file is fixed."""

    def build(cfg):
        from pdebench_core.data import TrajectoryDataset
        from pdebench_core.data.canonical import open_canonical

        spec, splits = open_canonical(path)
        return TrajectoryDataset(spec, splits)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_datasets(register):
            register("gpu-check", build, config=GpuCheckData, dims=2)

    return Plugin


@contextlib.contextmanager
def engine_sandbox(folder: Path):
    """A private pdeb home, the synthetic dataset registered, and no checkpoint writing."""
    from pdebench_core import engine, plugins

    saved_home, saved_save = os.environ.get("PDEB_HOME"), engine.Trainer.save
    os.environ["PDEB_HOME"] = str(folder / "home")
    plugins.register_plugin(_synthetic_plugin(write_synthetic(folder)), name="gpu-check")
    engine.Trainer.save = lambda self, best=False: None  # gigabytes for L; not what is measured
    try:
        yield
    finally:
        engine.Trainer.save = saved_save
        plugins.unregister_plugin("gpu-check")
        if saved_home is None:
            os.environ.pop("PDEB_HOME", None)
        else:
            os.environ["PDEB_HOME"] = saved_home


def time_engine(size: str, batch: int, warmup: int, steps: int, compile_model: bool) -> dict[str, float]:
    """Train DPOT-``size`` through ``execute`` and read its throughput off the step log.

    ``warmup`` steps (compilation, cuDNN autotuning, worker start-up) are left out;
    the rest are timed by the engine itself, in windows of ``log_every`` steps.
    """
    import torch

    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    log_every = math.gcd(warmup, steps) or 1
    cfg = build_config(model="dpot", data="gpu-check", task="pretrain", profile="paper", device="cuda",
                       run_id=f"gpu-check-{size}", overrides=[
                           f"model.size={size}", "model.patch_size=8", "model.modes=32",
                           f"train.batch_size={batch}", f"train.max_steps={warmup + steps}",
                           f"train.log_every={log_every}", "train.precision=bf16",
                           f"train.compile={str(compile_model).lower()}", "train.eval_every=0",
                           "task.evaluate=false", "run.sinks=[jsonl]"])
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    ctx = execute(cfg, quiet=True)
    rows = [json.loads(line) for line in (ctx.run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r and r["step"] > warmup]
    if not rates:
        raise RuntimeError(f"the engine logged no step after the {warmup} warm-up steps")
    samples_per_s = len(rates) / sum(1.0 / r for r in rates)  # equal windows: the harmonic mean
    return {"samples_per_s": samples_per_s, "ms_per_step": 1e3 * batch / samples_per_s,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "timed_steps": len(rates) * log_every}


def official_config(size: str) -> dict[str, Any]:
    """The official constructor's arguments for DPOT-``size`` at the check's grid."""
    from pdeb_dpot import SIZES

    return dict(img_size=GRID, patch_size=8, in_channels=CHANNELS, out_channels=CHANNELS,
                in_timesteps=FRAMES_IN, out_timesteps=1, modes=32, n_cls=12, **SIZES[size])


def official_model(size: str, official_dir: Optional[Path]) -> tuple["torch.nn.Module", bool]:
    """The official DPOT-``size`` from a checkout of thu-ml/DPOT, or else pdeb's DPOT computing as the
    official code does (the tests' reference layers); and whether it takes the official ``(B, *S, T, C)``."""
    from pdeb_dpot.official import build_official
    from pdeb_dpot.tests.oracle import use_reference_layers

    config = official_config(size)
    if official_dir is None:
        return use_reference_layers(build_official(config)), False
    from dpot_step import load_official_class  # the same loader as the CPU step benchmark

    return load_official_class(official_dir, 2)(**config), True


def time_official(size: str, batch: int, warmup: int, steps: int, device: str = "cuda",
                  official_dir: Optional[Path] = None) -> dict[str, float]:
    """Samples/s of the official float32 model (or the official-style one): no autocast, no TF32."""
    import torch

    from pdebench_core.devices import tf32_disabled
    from pdebench_core.losses import relative_l2_loss

    model, official_layout = official_model(size, official_dir)
    model = model.to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.9),
                                 weight_decay=1e-6)
    x = torch.randn(batch, FRAMES_IN, GRID, GRID, CHANNELS, device=device)
    y = torch.randn(batch, 1, GRID, GRID, CHANNELS, device=device)
    if official_layout:  # (B, X, Y, T, C) in and out; the 2D model also returns class logits
        x, y = x.movedim(1, -2).contiguous(), y.movedim(1, -2).contiguous()
        forward = lambda inputs: model(inputs)[0]  # noqa: E731
    else:
        forward = model
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with tf32_disabled():  # the official scripts leave torch's default (no TF32 matmuls)
        for i in range(warmup + steps):
            if i == warmup:
                if on_cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            relative_l2_loss(forward(x), y).backward()
            optimizer.step()
        if on_cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    figures = {"samples_per_s": batch * steps / seconds, "ms_per_step": 1e3 * seconds / steps}
    if on_cuda:
        figures["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return figures


# ----------------------------------------------------------------------------- report


def _guarded(fn: Callable[..., dict], *args) -> dict:
    """Run one measurement; an out-of-memory error becomes a figure, not the end of the check
    (also when pdeb reports it as a plugin's error: the run names the model that raised it)."""
    import torch

    try:
        return fn(*args)
    except Exception as exc:
        causes, cause = [], exc
        while cause is not None and all(cause is not seen for seen in causes):  # a chain may loop
            causes.append(cause)
            cause = cause.__cause__ or cause.__context__
        if not any(isinstance(c, torch.cuda.OutOfMemoryError) or "out of memory" in str(c) for c in causes):
            raise
        torch.cuda.empty_cache()
        return {"error": "out of GPU memory"}


def measure(size: str, args: argparse.Namespace, peak: Optional[tuple[str, float]]) -> dict[str, Any]:
    """Every figure for one DPOT size."""
    batch = args.batch or OFFICIAL_BATCH[size]
    counted = dpot_flops_per_sample(size, batch)  # at the batch timed: some products cost the same at any batch
    compile_model = {"on": True, "off": False}.get(args.compile, counted["params"] <= COMPILE_LIMIT)
    row: dict[str, Any] = {"size": size, "batch": batch, "params_m": counted["params"] / 1e6,
                           "gflop_per_sample": counted["flops"] / 1e9, "fft_share": counted["fft_share"],
                           "compiled": compile_model}
    started = time.perf_counter()
    ours = _guarded(time_engine, size, batch, args.warmup, args.steps, compile_model)
    row["ours"] = ours
    if "samples_per_s" in ours:
        row["tflops"] = ours["samples_per_s"] * counted["flops"] / 1e12
        row["mfu"] = row["tflops"] / peak[1] if peak else None
    if not args.no_official:
        row["official"] = _guarded(time_official, size, batch, 3, max(5, args.steps // 3), "cuda", args.official)
        if "samples_per_s" in row["official"] and "samples_per_s" in ours:
            row["ratio"] = ours["samples_per_s"] / row["official"]["samples_per_s"]
    row["seconds"] = time.perf_counter() - started
    return row


def card_header(peak: Optional[tuple[str, float]]) -> str:
    """GPU name, memory, bf16 peak and software versions."""
    import torch

    props = torch.cuda.get_device_properties(0)
    peak_text = (f"{peak[0]}, dense bf16 peak {peak[1]:.0f} TFLOP/s" if peak
                 else "not in the table of bf16 peaks: MFU not reported")
    return (f"GPU: {props.name} ({peak_text}), {props.total_memory / 2**30:.1f} GiB\n"
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")


def format_row(row: dict[str, Any]) -> str:
    """One size as a markdown table row."""
    ours, official = row["ours"], row.get("official", {})
    if "error" in ours:
        return f"| DPOT-{row['size'].upper()} | {row['batch']} | {ours['error']} | | | | | | |"
    mfu = f"{row['mfu']:.1%}" if row.get("mfu") is not None else "n/a"
    off = (f"{official['samples_per_s']:.1f}" if "samples_per_s" in official
           else official.get("error", "not run"))
    ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
    return (f"| DPOT-{row['size'].upper()} ({row['params_m']:.1f}M, {'compiled' if row['compiled'] else 'eager'}) "
            f"| {row['batch']} | {ours['samples_per_s']:.1f} | {ours['ms_per_step']:.1f} | {ours['peak_gib']:.2f} "
            f"| {row['gflop_per_sample']:.2f} ({row['fft_share']:.2%} FFT) | {row['tflops']:.1f} | {mfu} "
            f"| {off} | {ratio} |")


TABLE_HEAD = ("| model | batch | samples/s | ms/step | peak GiB | GFLOP/sample (train) | TFLOP/s | MFU (bf16) "
              "| official-style fp32 samples/s | ours/official |\n|---|---|---|---|---|---|---|---|---|---|")


def run_cuda_tests() -> int:
    """``pytest -m cuda tests/test_cuda.py``; returns its exit status."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
               str(_ROOT / "tests" / "test_cuda.py")]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    return subprocess.call(command, cwd=_ROOT)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-cuda", action="store_true", help="exit 1 when there is no CUDA device")
    parser.add_argument("--sizes", default="ti,s,l", help="DPOT sizes, comma-separated (ti, s, m, l, h)")
    parser.add_argument("--batch", type=int, default=0, help="batch per step (0 = the official per-GPU batch)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (they hold compilation)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help=f"torch.compile: auto = models up to {COMPILE_LIMIT / 1e6:.0f}M parameters")
    parser.add_argument("--official", type=Path, default=None, metavar="DIR",
                        help="a checkout of thu-ml/DPOT: time its model as the fp32 baseline (default: pdeb's DPOT "
                             "with the official forms of the mixer and time aggregation)")
    parser.add_argument("--no-official", action="store_true", help="skip the fp32 baseline")
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA-only tests")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--flops-only", action="store_true", help="print the FLOP counts only (no GPU needed)")
    args = parser.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(sizes) - set(OFFICIAL_BATCH))
    if unknown or args.warmup < 1 or args.steps < 1:
        parser.error(f"unknown size {unknown}" if unknown else "--warmup and --steps must be at least 1")
    if args.official is not None and not (args.official / "models" / "dpot.py").is_file():
        parser.error(f"--official {args.official}: no models/dpot.py there; pass the root of a checkout of thu-ml/DPOT")
    args.sizes = sizes
    return args


def print_flops(sizes: list[str]) -> None:
    """Training FLOPs per sample of each DPOT size (forward and backward, FFTs included)."""
    print(f"DPOT at {GRID}x{GRID}, {FRAMES_IN} frames, {CHANNELS} channels, patch 8, 32 modes: "
          "training FLOPs per sample (forward + backward)\n\n| model | parameters | GFLOP/sample | FFT share |"
          "\n|---|---|---|---|")
    for size in sizes:
        counted = dpot_flops_per_sample(size)
        print(f"| DPOT-{size.upper()} | {counted['params'] / 1e6:.1f}M | {counted['flops'] / 1e9:.2f} "
              f"| {counted['fft_share']:.2%} |")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    if args.flops_only:
        print_flops(args.sizes)
        return 0
    if args.official is not None:  # refuse code that will not import before any GPU time is spent
        from dpot_step import load_official_class

        from pdebench_core.errors import UsageError

        try:
            load_official_class(args.official, 2)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not torch.cuda.is_available():
        if args.require_cuda:
            print("error: no CUDA device is available; run this check on a machine with an NVIDIA GPU",
                  file=sys.stderr)
            return 1
        print("no CUDA device on this machine: nothing to check here. On a GPU machine run\n"
              "  python benchmarks/gpu_check.py --require-cuda")
        return 0
    started = time.perf_counter()
    peak = bf16_peak(torch.cuda.get_device_name(0))
    print(card_header(peak), flush=True)
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="pdeb-gpu-check-"))
    try:
        with engine_sandbox(folder):
            for size in args.sizes:
                rows.append(measure(size, args, peak))
                print(f"  DPOT-{size.upper()} measured in {rows[-1]['seconds']:.0f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nDPOT {GRID}x{GRID}, {FRAMES_IN} frames, {CHANNELS} channels, bf16 autocast; pdeb's engine with "
          f"data loading, noise and Adam; {args.steps} timed steps after {args.warmup} warm-up steps\n")
    print(TABLE_HEAD)
    for row in rows:
        print(format_row(row))
    print(f"\nbenchmark time {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": card_header(peak), "rows": rows}, indent=1))
    if args.no_tests:
        print("CUDA tests skipped; run them with: python -m pytest -q -m cuda tests/test_cuda.py")
        return 0
    return run_cuda_tests()


if __name__ == "__main__":
    sys.exit(main())
