"""Time the FNO spectral contraction: batched matmul over modes vs einsum.

The FNO plugin multiplies every kept Fourier mode by its own complex
``width x width`` matrix with one ``torch.bmm`` (modes as the batch dimension).
The textbook version runs one ``einsum("bixy,ioxy->boxy")`` per frequency corner
with the weights stored channels-first. This script times both on the same data,
checks they agree, and prints the speed-up (einsum time / bmm time) for the
contraction alone (spectrum in, kept modes out) and for a whole spectral
convolution (FFTs included; the plugin's inverse FFT also skips the columns known
to be zero), forward and forward+backward.

Run:  python benchmarks/spectral_contraction.py [--dim 2] [--grid 64] [--modes 12]
      [--width 20] [--batch 20] [--device cpu|cuda] [--repeats 20]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from pdeb_fno.model import SpectralConv, gather_modes


def einsum_contract(x_ft: torch.Tensor, corner_weights: list[torch.Tensor], modes: tuple[int, ...]) -> torch.Tensor:
    """The classic FNO contraction: one einsum per corner, weights ``(I, O, *m)``."""
    ndim = len(modes)
    letters = "xyz"[:ndim]
    out = torch.zeros(x_ft.shape[0], corner_weights[0].shape[1], *x_ft.shape[2:], dtype=x_ft.dtype, device=x_ft.device)
    for w, signs in zip(corner_weights, itertools.product((1, -1), repeat=ndim - 1)):
        index = [slice(0, m) if s > 0 else slice(-m, None) for s, m in zip(signs, modes[:-1])]
        corner = (slice(None), slice(None), *index, slice(0, modes[-1]))
        out[corner] = torch.einsum(f"bi{letters},io{letters}->bo{letters}", x_ft[corner], w)
    return out


def bmm_contract(x_ft: torch.Tensor, weight: torch.Tensor, modes: tuple[int, ...]) -> torch.Tensor:
    """The plugin's contraction: gather the kept modes, one batched matmul."""
    block = gather_modes(x_ft, modes)  # (B, I, *K)
    batch, channels, *shape = block.shape
    a = block.reshape(batch, channels, -1).permute(2, 0, 1).contiguous()  # (K, B, I)
    y = torch.bmm(a, weight.reshape(a.shape[0], channels, -1))  # (K, B, O)
    return y.permute(1, 2, 0).reshape(batch, -1, *shape)  # (B, O, *K)


def split_corners(weight: torch.Tensor, modes: tuple[int, ...]) -> list[torch.Tensor]:
    """The bmm weight ``(*K, I, O)`` cut into per-corner ``(I, O, *m)`` tensors."""
    ndim = len(modes)
    corners = []
    for signs in itertools.product((1, -1), repeat=ndim - 1):
        index = [slice(0, m) if s > 0 else slice(m, 2 * m) for s, m in zip(signs, modes[:-1])]
        w = weight[(*index, slice(None))]  # (*m, I, O)
        corners.append(w.movedim(-2, 0).movedim(-1, 1).contiguous().detach().requires_grad_())  # (I, O, *m)
    return corners


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds per call after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--grid", type=int, default=64, help="grid points per axis")
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    grid = (args.grid,) * args.dim
    modes = tuple(min(args.modes, n // 2) for n in grid[:-1]) + (min(args.modes, grid[-1] // 2 + 1),)
    layer = SpectralConv(args.width, args.width, modes).to(args.device)
    corner_weights = split_corners(layer.weight, modes)
    x = torch.randn(args.batch, args.width, *grid, device=args.device, requires_grad=True)
    axes = tuple(range(-args.dim, 0))
    x_ft = torch.fft.rfftn(x.detach(), dim=axes)

    def einsum_conv() -> torch.Tensor:
        """Textbook spectral convolution: rfftn, one einsum per corner, irfftn."""
        return torch.fft.irfftn(einsum_contract(torch.fft.rfftn(x, dim=axes), corner_weights, modes), s=grid, dim=axes)

    fast = layer(x.detach())
    slow = einsum_conv().detach()
    error = ((fast - slow).abs().max() / slow.abs().max()).item()

    def backward(fn) -> None:
        fn().square().mean().backward()

    cases = {
        "contraction, forward": (
            lambda: bmm_contract(x_ft, layer.weight.detach(), modes),
            lambda: einsum_contract(x_ft, [w.detach() for w in corner_weights], modes),
        ),
        "spectral conv, forward": (lambda: layer(x.detach()), lambda: einsum_conv().detach()),
        "spectral conv, fwd+bwd": (lambda: backward(lambda: layer(x)), lambda: backward(einsum_conv)),
    }
    print(f"device={args.device} dim={args.dim} grid={grid} modes={modes} width={args.width} "
          f"batch={args.batch} threads={torch.get_num_threads()} max rel. difference={error:.1e}")
    print(f"{'case':<24} {'bmm ms':>9} {'einsum ms':>10} {'einsum/bmm':>11}")
    for name, (fast_fn, slow_fn) in cases.items():
        with torch.no_grad() if "forward" in name else torch.enable_grad():
            t_fast = timed(fast_fn, args.repeats, args.device)
            t_slow = timed(slow_fn, args.repeats, args.device)
        print(f"{name:<24} {1e3 * t_fast:9.3f} {1e3 * t_slow:10.3f} {t_slow / t_fast:10.2f}x")


if __name__ == "__main__":
    main()
