"""GPU check: a short DPOT training run on CUDA in bf16, then the CUDA-only tests.

Prints samples per second, peak GPU memory and achieved TFLOP/s (model FLOPs of one
training step counted with ``torch.utils.flop_counter.FlopCounterMode``, divided by the
measured step time), for DPOT-Ti at 128x128, 10 frames, 4 channels. On a machine without
CUDA it says so and exits 0.

Usage:
    python benchmarks/gpu_check.py [--size ti] [--batch 8] [--steps 30] [--no-tests]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def measure(size: str, batch: int, steps: int, grid: int) -> dict[str, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pdeb_dpot import DPOTConfig, build
    from pdebench_core.devices import autocast_for
    from pdebench_core.losses import relative_l2_loss
    from pdebench_core.spec import DataSpec

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda")
    spec = DataSpec(name="check", fields=("a", "b", "c", "d"), spatial_shape=(grid, grid), t_in=10, t_out=1)
    model = build(DPOTConfig(size=size, patch_size=8, modes=32), spec).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    x = torch.randn(batch, 10, grid, grid, 4, device=device)
    y = torch.randn(batch, 1, grid, grid, 4, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, "bf16"):
            pred = model(x)
        relative_l2_loss(pred.float(), y).backward()
        optimizer.step()

    for _ in range(3):  # warm-up: cuFFT plans, allocator
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"ms_per_step": 1000 * seconds, "samples_per_s": batch / seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "tflops": flops / seconds / 1e12,
            "gflop_per_step": flops / 1e9, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="ti", help="DPOT size: ti, s, m, l, h")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA-only tests")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check on this machine")
        return
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    figures = measure(args.size, args.batch, args.steps, args.grid)
    print(f"DPOT-{args.size.upper()} {args.grid}x{args.grid}, batch {args.batch}, bf16 autocast (FFTs in fp32):")
    for key, value in figures.items():
        print(f"  {key}: {value:.2f}")
    if not args.no_tests:
        sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]))


if __name__ == "__main__":
    main()
