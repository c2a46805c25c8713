"""Time one DPOT training step and its memory, fused vs reference Fourier mixer.

The fused mixer is the model's own; the reference is the straightforward form the tests
check it against (``pdeb_dpot/tests/mixer_oracle.py``), imported from the source checkout.

A step is: forward, DPOT's relative-L2 loss, backward, Adam step. Defaults: DPOT-Ti
(official settings: patch 8, modes 32), batch 4, 10 input frames, 4 channels, grids
64x64 and 128x128, on the CPU and, when present, on CUDA (float32, plus bf16 autocast
with ``--amp``).

Memory, three figures:

- ``saved``: bytes of the tensors autograd keeps for the backward pass (deduplicated by
  storage), the activation memory of training; exact and identical on every device.
- CPU ``peak``: the peak resident set size of a fresh process per configuration (each runs
  in its own subprocess), so it includes the Python and torch runtime (``baseline``, measured
  before the model is built).
- CUDA ``peak``: ``torch.cuda.max_memory_allocated`` over the timed steps.

A second table times the Fourier mixer of one Ti block alone (forward + backward), with the
fused and reference forms interleaved step by step so a busy machine affects both alike.

Usage::

    python benchmarks/dpot_step.py                     # everything available
    python benchmarks/dpot_step.py --device cpu --res 64 --steps 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# Run from a source checkout without installing: the repository root and its bundled plugins.
_ROOT = Path(__file__).resolve().parents[1]
for _path in (_ROOT, _ROOT / "plugins"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))


def relative_l2(pred, target):
    """DPOT's training loss: per sample and channel ||pred - y|| / ||y||, channel mean, batch sum."""
    import torch

    dims = tuple(range(1, pred.ndim - 1))  # time and space
    error = torch.linalg.vector_norm(pred - target, dim=dims) / torch.linalg.vector_norm(
        target, dim=dims).clamp_min(1e-12)  # (B, C)
    return error.mean(dim=1).sum()


def saved_for_backward_mib(fn):
    """Run ``fn()`` and return its result and the MiB of tensors autograd saved meanwhile."""
    import torch

    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return result, sum(storages.values()) / 2 ** 20


def run_one(device: str, res: int, fused: bool, amp: bool, size: str, batch: int, steps: int,
            warmup: int, threads: int = 0) -> dict:
    """Build the model, time ``steps`` training steps after ``warmup`` ones, return the figures."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from pdeb_dpot import SIZES
    from pdeb_dpot.model import DPOT, DPOTArchitecture
    from pdeb_dpot.tests.mixer_oracle import use_reference_mixers

    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    torch.manual_seed(0)
    model = DPOT(DPOTArchitecture(ndim=2, img_size=res, patch_size=8, in_channels=4, out_channels=4,
                                  in_timesteps=10, out_timesteps=1, modes=32, n_cls=12, **SIZES[size]))
    if not fused:
        use_reference_mixers(model)
    model.to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                 weight_decay=1e-6)
    x = torch.randn(batch, 10, res, res, 4, device=device)  # (B, T_in, X, Y, C)
    y = torch.randn(batch, 1, res, res, 4, device=device)  # (B, T_out, X, Y, C)

    def loss_fn():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            return relative_l2(model(x).float(), y)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    loss, saved_mib = saved_for_backward_mib(loss_fn)
    del loss
    for _ in range(warmup):
        step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times.sort()
    return dict(device=device, res=res, mixer="fused" if fused else "reference",
                precision="bf16-autocast" if amp else "fp32", size=size, batch=batch,
                ms_median=1e3 * times[len(times) // 2], ms_min=1e3 * times[0], peak_mib=peak_mib,
                saved_mib=saved_mib, baseline_mib=baseline_mib if device == "cpu" else 0.0,
                threads=torch.get_num_threads(), n_params=sum(p.numel() for p in model.parameters()))


def time_mixers(device: str, latent: int, batch: int, steps: int, warmup: int) -> dict[str, tuple]:
    """Median ms and saved MiB of forward + backward of a DPOT-Ti Fourier mixer, both forms."""
    import torch

    from pdeb_dpot.mixer import FourierMixer
    from pdeb_dpot.tests.mixer_oracle import ReferenceFourierMixer

    torch.manual_seed(0)
    mixers = {"fused": FourierMixer(512, 4, (32, 32)).to(device)}
    mixers["reference"] = ReferenceFourierMixer(512, 4, (32, 32)).to(device)
    mixers["reference"].load_state_dict(mixers["fused"].state_dict())
    z = torch.randn(batch, 512, latent, latent, device=device, requires_grad=True)  # (B, D, X, Y)
    times: dict[str, list[float]] = {name: [] for name in mixers}
    saved = {name: saved_for_backward_mib(lambda: mixer(z))[1] for name, mixer in mixers.items()}
    for i in range(warmup + steps):
        for name, mixer in mixers.items():  # interleaved: load drift hits both forms alike
            start = time.perf_counter()
            mixer(z).square().mean().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: (1e3 * sorted(t)[len(t) // 2], saved[name]) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--res", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--size", default="ti", choices=["ti", "s", "m", "l", "h"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="also time bf16 autocast on CUDA")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration as JSON
    args = parser.parse_args()

    if args.one:
        print(json.dumps(run_one(**json.loads(args.one))))
        return

    import torch

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA not available: CPU only", file=sys.stderr)
        devices.remove("cuda")
    print(f"Training step, DPOT-{args.size}, batch {args.batch}, 10 frames, 4 channels "
          f"(median of {args.steps} steps after {args.warmup} warm-up):")
    for device in devices:
        for res in args.res:
            precisions = [False, True] if (device == "cuda" and args.amp) else [False]
            for amp in precisions:
                for fused in (True, False):
                    job = dict(device=device, res=res, fused=fused, amp=amp, size=args.size,
                               batch=args.batch, steps=args.steps, warmup=args.warmup,
                               threads=args.threads if device == "cpu" else 0)
                    if device == "cpu":  # a fresh process, so its peak RSS is this configuration's
                        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)],
                                             capture_output=True, text=True, env=os.environ)
                        if out.returncode:
                            sys.exit(f"configuration {job} failed:\n{out.stderr.strip()}")
                        row = json.loads(out.stdout.strip().splitlines()[-1])
                    else:
                        row = run_one(**job)
                    extra = (f" (baseline {row['baseline_mib']:.0f}, {row['threads']} threads)"
                             if device == "cpu" else "")
                    print(f"  {row['device']:4s} {row['res']:4d}^2 {row['precision']:13s} {row['mixer']:9s} "
                          f"{row['ms_median']:8.1f} ms/step (min {row['ms_min']:7.1f})  "
                          f"saved {row['saved_mib']:7.1f} MiB  peak {row['peak_mib']:7.1f} MiB{extra}",
                          flush=True)
    print(f"Fourier mixer of one Ti block alone (D=512, 4 heads, modes 32), forward + backward, "
          f"batch {args.batch}:")
    for device in devices:
        if device == "cpu" and args.threads:
            torch.set_num_threads(args.threads)
        for res in args.res:
            latent = res // 8
            figures = time_mixers(device, latent, args.batch, 3 * args.steps, args.warmup)
            print(f"  {device:4s} latent {latent:2d}x{latent:<2d}: " + ", ".join(
                f"{name} {ms:7.2f} ms, saved {mib:5.1f} MiB" for name, (ms, mib) in figures.items()),
                flush=True)
    if "cuda" in devices:
        print(f"GPU: {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
