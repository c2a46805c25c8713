"""Draw the generated-data gallery: frames, energy spectra and value ranges per dataset.

For every dataset, the first ``--trajectories`` test trajectories of ``--profile``
(default ``small``) are built through ``pdebench_core.config.build_dataset``; only the
test split is generated (``n_train=0 n_val=0``): trajectory seeds derive from
``(seed, split, index)``, so these are exactly the test trajectories of the full
profile. One PNG per dataset goes to ``--out`` (default ``docs/images/datasets``):

- 2D: every field (rows) of test trajectory 0 at four times (columns), one colour
  scale per field; 3D: the same on the mid-plane ``z = Z/2``; 1D: space-time diagrams
  of two trajectories and profiles at four times.
- The radially averaged energy spectrum of every field at the first, middle and last
  frame, averaged over the trajectories: ``E(k) = sum over |k'| in [k - 1/2, k + 1/2)
  of |FFT(u - mean u)|^2 / n^2`` with integer wavenumbers per domain length, so that
  the sum over all shells is the spatial variance (Parseval); shells beyond ``min(S)/2``
  (the corners of the Fourier grid) are not drawn. The FFT treats every grid as
  periodic; for the wall-bounded data (``dr2d``, ``swe2d``) the jump across the
  boundary adds a ``k^-2`` tail that is not physics.

The script prints a Markdown table of min / max / mean / std per field over every
frame of every trajectory used, and the time it took. ``PDEB_HOME`` is respected (the
generated files stay cached there); when unset, a temporary folder is used and removed.
Torch runs with ``--threads`` threads (default 1).

Usage::

    python benchmarks/make_gallery.py
    python benchmarks/make_gallery.py --datasets ns2d,dr2d --trajectories 2 --out /tmp/gallery
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run from a source checkout without installing: the repository root and its bundled plugins.
_ROOT = Path(__file__).resolve().parents[1]
for _path in (_ROOT, _ROOT / "plugins"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

DEFAULT_DATASETS = ("ns2d", "ns2d-nu1e-4", "ns2d-nu1e-5", "cfd2d", "cfd3d", "dr2d", "swe2d", "burgers1d")
DPI = 80
PANEL_INCHES = 2.1
# Diverging colour maps for signed fields centred near zero, sequential ones otherwise.
SIGNED_FIELDS = {"vorticity", "u", "v", "Vx", "Vy", "Vz"}


def load_test(name: str, profile: str, n: int):
    """``(spec, array (n, T, *S, C))`` of the first ``n`` test trajectories of ``profile``."""
    import numpy as np

    from pdebench_core import plugins
    from pdebench_core.config import build_dataset

    comp = plugins.get("dataset", name)
    available = int(comp.profiles.get(profile, {}).get("n_test", n))
    n = max(1, min(n, available))
    dataset = build_dataset(name, profile, ["n_train=0", "n_val=0", f"n_test={n}", "progress=false"])
    test = dataset.split("test")
    return dataset.spec, np.stack([np.asarray(test[i]) for i in range(len(test))])


def radial_spectrum(frames):
    """Radially averaged energy spectrum of ``(n, *S)`` fields, averaged over ``n``.

    Returns:
        ``(k, E)``: integer wavenumbers ``1 .. min(S) // 2`` and the energy per shell.
    """
    import numpy as np

    shape = frames.shape[1:]
    centred = frames - frames.mean(axis=tuple(range(1, frames.ndim)), keepdims=True)
    power = np.abs(np.fft.fftn(centred, axes=tuple(range(1, frames.ndim)))) ** 2 / np.prod(shape) ** 2
    power = power.mean(axis=0)  # (*S)
    axes = np.meshgrid(*[np.fft.fftfreq(s, 1.0 / s) for s in shape], indexing="ij")
    radius = np.sqrt(sum(a ** 2 for a in axes))
    shell = np.rint(radius).astype(int).ravel()
    energy = np.bincount(shell, weights=power.ravel())
    k_max = min(shape) // 2
    k = np.arange(1, k_max + 1)
    return k, energy[1:k_max + 1]


def field_stats(spec, data) -> list[dict[str, Any]]:
    """min / max / mean / std per field over all trajectories and frames of ``data`` (n, T, *S, C)."""
    rows = []
    for c, field in enumerate(spec.fields):
        values = data[..., c].astype("float64")
        rows.append({"dataset": spec.name, "field": field, "min": float(values.min()), "max": float(values.max()),
                     "mean": float(values.mean()), "std": float(values.std()),
                     "first_min": float(values[:, 0].min()), "first_max": float(values[:, 0].max()),
                     "last_min": float(values[:, -1].min()), "last_max": float(values[:, -1].max())})
    return rows


def frame_indices(n_frames: int) -> list[int]:
    """Four frames: first, one third, two thirds, last."""
    return sorted({0, (n_frames - 1) // 3, 2 * (n_frames - 1) // 3, n_frames - 1})


def _time_of(spec, index: int) -> float:
    # ns2d stores frames at t = 1, 2, ... (no initial condition); the others start at t = 0.
    offset = spec.dt if spec.name.startswith("ns2d") else 0.0
    return offset + index * spec.dt


def _limits(field: str, planes) -> tuple[float, float]:
    """Colour limits of ``planes``: symmetric about zero for signed fields."""
    import numpy as np

    if field in SIGNED_FIELDS:
        limit = float(np.abs(planes).max()) or 1.0
        return -limit, limit
    return float(planes.min()), float(planes.max())


def _cmap(field: str) -> str:
    return "RdBu_r" if field in SIGNED_FIELDS else "viridis"


def _spectrum_panel(ax, data, c: int, label_times: list[tuple[int, float]]) -> None:
    """Energy spectra of field ``c`` at the given ``(frame, time)`` pairs, on log-log axes."""
    top = 0.0
    for (index, t), colour in zip(label_times, ("#1b9e77", "#d95f02", "#7570b3"), strict=False):
        k, energy = radial_spectrum(data[:, index, ..., c])
        keep = energy > 0
        ax.loglog(k[keep], energy[keep], color=colour, lw=1.2, label=f"t={t:.2g}")
        top = max(top, float(energy.max()))
    if top > 0:  # round-off floors (1e-30 and below) would squash the physics into the top of the panel
        ax.set_ylim(bottom=top * 1e-10)
    ax.set_xlabel("k", labelpad=1)
    ax.grid(True, which="major", lw=0.3, alpha=0.5)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, frameon=False, loc="lower left")
    ax.set_title("E(k)", fontsize=8)


def draw(spec, data, title: str, path: Path) -> int:
    """Draw one dataset's figure to ``path``; returns its size in bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n_frames, ndim = data.shape[1], spec.ndim
    spectrum_times = [(i, _time_of(spec, i)) for i in (0, (n_frames - 1) // 2, n_frames - 1)]
    if ndim == 1:
        fig, axes = plt.subplots(1, 4, figsize=(4 * PANEL_INCHES, PANEL_INCHES * 1.15), dpi=DPI,
                                 constrained_layout=True)
        lo, hi = spec.domain[0] if spec.domain else (0.0, 1.0)
        t_end = _time_of(spec, n_frames - 1)
        limit = float(np.abs(data[..., 0]).max())
        for j, ax in enumerate(axes[:2]):
            if j >= len(data):
                ax.axis("off")
                continue
            image = ax.imshow(data[j, :, :, 0], origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit,
                              vmax=limit, extent=(lo, hi, _time_of(spec, 0), t_end), interpolation="nearest")
            ax.set_title(f"{spec.fields[0]}(x, t), test {j}", fontsize=8)
            ax.set_xlabel("x", labelpad=1)
            ax.set_ylabel("t", labelpad=1)
            ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=axes[:2], shrink=0.85, pad=0.01).ax.tick_params(labelsize=7)
        x = np.linspace(lo, hi, data.shape[2], endpoint=False) + (hi - lo) / (2 * data.shape[2])
        for index in frame_indices(n_frames):
            axes[2].plot(x, data[0, index, :, 0], lw=1, label=f"t={_time_of(spec, index):.2g}")
        axes[2].set_title("test 0 profiles", fontsize=8)
        axes[2].legend(fontsize=6, frameon=False)
        axes[2].tick_params(labelsize=7)
        axes[2].set_xlabel("x", labelpad=1)
        _spectrum_panel(axes[3], data, 0, spectrum_times)
    else:
        fields = spec.fields
        frames = frame_indices(n_frames)
        cols = len(frames) + 1
        fig, axes = plt.subplots(len(fields), cols, figsize=(cols * PANEL_INCHES, len(fields) * PANEL_INCHES * 0.95),
                                 dpi=DPI, constrained_layout=True, squeeze=False)
        domain = spec.domain or tuple((0.0, 1.0) for _ in range(ndim))
        extent = (domain[0][0], domain[0][1], domain[1][0], domain[1][1])
        for r, field in enumerate(fields):
            planes = data[0, frames, ..., r]  # (F, X, Y[, Z])
            if ndim == 3:
                planes = planes[..., planes.shape[-1] // 2]  # mid-plane z = Z/2
            later = _limits(field, planes[1:])
            first = _limits(field, planes[:1])
            # An initial state far wider than the flow it becomes (dr2d's white noise) gets its own scale.
            own_scale = later[1] - later[0] < (first[1] - first[0]) / 1.5
            for j, index in enumerate(frames):
                ax = axes[r, j]
                vmin, vmax = first if own_scale and j == 0 else _limits(field, planes) if not own_scale else later
                # Axis 1 of the data is x: transpose so x runs left to right and y upwards.
                image = ax.imshow(planes[j].T, origin="lower", cmap=_cmap(field), vmin=vmin, vmax=vmax,
                                  extent=extent, interpolation="nearest")
                if own_scale and j == 0:
                    fig.colorbar(image, ax=ax, shrink=0.9, pad=0.01, aspect=15).ax.tick_params(labelsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"t = {_time_of(spec, index):.3g}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(field, fontsize=9)
            shared = axes[r, 1:len(frames)] if own_scale else axes[r, :len(frames)]
            fig.colorbar(image, ax=shared, shrink=0.9, pad=0.01, aspect=15).ax.tick_params(labelsize=7)
            _spectrum_panel(axes[r, -1], data, r, spectrum_times)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    _write_small_png(buffer.getvalue(), path)
    return path.stat().st_size


def _write_small_png(png: bytes, path: Path) -> None:
    """Save ``png`` as a 256-colour palette PNG (a third of the size, no visible loss at this dpi)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:  # matplotlib normally brings Pillow; keep the full-colour file otherwise
        path.write_bytes(png)
        return
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def title_of(spec, n: int, profile: str) -> str:
    """One-line description shown above a figure."""
    grid = "x".join(map(str, spec.spatial_shape))
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in dict(spec.params).items())
    where = "mid-plane z=Z/2, " if spec.ndim == 3 else ""
    return (f"{spec.name} ({profile}): {grid}, {spec.n_frames} frames, dt={spec.dt:g}, {spec.boundary}; {params}\n"
            f"{where}test trajectory 0; spectra averaged over {n} test trajectories")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS), help="comma-separated dataset names")
    parser.add_argument("--profile", default="small", help="profile of the generated data")
    parser.add_argument("--trajectories", type=int, default=8,
                        help="test trajectories used for spectra and ranges (capped by the profile's n_test)")
    parser.add_argument("--out", default=str(_ROOT / "docs" / "images" / "datasets"), help="folder of the PNGs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while generating")
    parser.add_argument("--json", default="", help="also write the value ranges to this JSON file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    temporary = None
    if not os.environ.get("PDEB_HOME"):
        temporary = tempfile.mkdtemp(prefix="pdeb-gallery-")
        os.environ["PDEB_HOME"] = temporary
    stats: list[dict[str, Any]] = []
    try:
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            start = time.perf_counter()
            spec, data = load_test(name, args.profile, args.trajectories)
            ready = time.perf_counter() - start
            size = draw(spec, data, title_of(spec, len(data), args.profile), Path(args.out) / f"{name}.png")
            stats.extend(field_stats(spec, data))
            print(f"{name}: {len(data)} test trajectories {tuple(data.shape[1:])}, data in {ready:.1f} s, "
                  f"{Path(args.out) / f'{name}.png'} {size / 1024:.0f} KiB", flush=True)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    print("\nall frames of all trajectories used; first / last: range over the first / last stored frame")
    print("\n| dataset | field | min | max | mean | std | first frame | last frame |")
    print("|---|---|---|---|---|---|---|---|")
    for s in stats:
        print(f"| {s['dataset']} | {s['field']} | {s['min']:.3g} | {s['max']:.3g} | {s['mean']:.3g} | "
              f"{s['std']:.3g} | {s['first_min']:.3g} .. {s['first_max']:.3g} | "
              f"{s['last_min']:.3g} .. {s['last_max']:.3g} |")
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=1))


if __name__ == "__main__":
    from pdebench_core.cli_common import run_script

    run_script(main)
