"""The report's figures: error per rollout step, fields and radially averaged spectra.

Figures are drawn with matplotlib's Agg canvas (pyplot's global state is never touched) and
embedded in the page as base64 PNGs.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping

from .rollouts import Rollout

MAX_CHANNELS_SHOWN = 4
SNAPSHOTS = 4


def radial_spectrum(field: Any) -> tuple[Any, Any]:
    """Radially averaged power spectrum of a field on a periodic grid.

    ``P(k)`` is the mean of ``|F_k|^2`` over the shell of integer wavenumber magnitude
    ``k = round(|k_vec|)``, with ``F = fftn(u) / N`` over all axes of ``field`` (1 to 3
    spatial axes), for ``k = 0 .. min(S) // 2``.

    Returns:
        ``(k, P)`` numpy arrays.
    """
    import numpy as np

    u = np.asarray(field, dtype=np.float64)
    coeffs = np.fft.fftn(u) / u.size
    power = np.abs(coeffs) ** 2
    axes = np.meshgrid(*[np.fft.fftfreq(n) * n for n in u.shape], indexing="ij")
    magnitude = np.sqrt(sum(a ** 2 for a in axes))
    shell = np.rint(magnitude).astype(int)
    k_max = min(u.shape) // 2
    keep = shell <= k_max
    sums = np.bincount(shell[keep], weights=power[keep], minlength=k_max + 1)
    counts = np.bincount(shell[keep], minlength=k_max + 1)
    k = np.arange(k_max + 1)
    return k, sums / np.maximum(counts, 1)


def _figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas, without touching pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_data_uri(fig) -> str:
    """``data:image/png;base64,...`` of a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def error_curve_figure(evaluation: Mapping[str, Any], dataset: str):
    """Error of every metric against the rollout step (from ``eval/<dataset>.json``)."""
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    positive = True
    for name, curve in (evaluation.get("per_step") or {}).items():
        steps = list(range(1, len(curve) + 1))
        ax.plot(steps, curve, marker="o" if len(curve) <= 20 else None, markersize=3, label=name)
        positive = positive and all(v > 0 for v in curve)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("error")
    ax.set_title(f"{dataset}: error per rollout step")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def snapshot_steps(steps: int, count: int = SNAPSHOTS) -> list[int]:
    """Up to ``count`` rollout step indices spread from the first to the last."""
    if steps <= count:
        return list(range(steps))
    return sorted({round(i * (steps - 1) / (count - 1)) for i in range(count)})


def _plane(frame: Any) -> Any:
    """A 2D view of a spatial frame: itself (2D) or its middle slice along the last axis (3D)."""
    return frame if frame.ndim == 2 else frame[..., frame.shape[-1] // 2]


def field_figure(sample: Rollout, channel: int):
    """Truth, prediction and error of trajectory 0 at a few rollout steps, for one channel."""
    import numpy as np

    true = sample.true[0, ..., channel]  # (steps, *S)
    pred = sample.pred[0, ..., channel]  # (steps, *S)
    shown = snapshot_steps(true.shape[0])
    name = sample.fields[channel] if channel < len(sample.fields) else f"channel {channel}"
    ndim = true.ndim - 1
    if ndim == 1:
        fig = _figure(3.0 * len(shown) + 0.6, 4.4)
        axes = fig.subplots(2, len(shown), squeeze=False, sharex=True)
        x = np.linspace(0.0, 1.0, true.shape[1], endpoint=False)
        for col, step in enumerate(shown):
            top, bottom = axes[0][col], axes[1][col]
            top.plot(x, true[step], label="truth", color="black")
            top.plot(x, pred[step], label="prediction", color="tab:orange", linestyle="--")
            top.set_title(f"step {step + 1}")
            bottom.plot(x, pred[step] - true[step], color="tab:red")
            bottom.set_xlabel("x")
        axes[0][0].set_ylabel(name)
        axes[1][0].set_ylabel("prediction - truth")
        axes[0][0].legend(fontsize="small")
        fig.suptitle(f"{sample.dataset}: {name}, trajectory 0")
        return fig
    slice_note = " (middle z slice)" if ndim == 3 else ""
    fig = _figure(2.6 * len(shown) + 1.2, 7.4)
    axes = fig.subplots(3, len(shown), squeeze=False)
    planes_true = [_plane(true[s]) for s in shown]
    planes_pred = [_plane(pred[s]) for s in shown]
    low = float(min(p.min() for p in planes_true + planes_pred))
    high = float(max(p.max() for p in planes_true + planes_pred))
    err_max = float(max(np.abs(p - t).max() for p, t in zip(planes_pred, planes_true))) or 1.0
    for col, step in enumerate(shown):
        images = [
            axes[0][col].imshow(planes_true[col].T, origin="lower", cmap="viridis", vmin=low, vmax=high),
            axes[1][col].imshow(planes_pred[col].T, origin="lower", cmap="viridis", vmin=low, vmax=high),
            axes[2][col].imshow((planes_pred[col] - planes_true[col]).T, origin="lower", cmap="RdBu_r",
                                vmin=-err_max, vmax=err_max),
        ]
        axes[0][col].set_title(f"step {step + 1}")
        for ax in (axes[0][col], axes[1][col], axes[2][col]):
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("truth", "prediction", "error")):
        axes[row][0].set_ylabel(label)
    fig.colorbar(images[1], ax=[axes[0][-1], axes[1][-1]], shrink=0.8)
    fig.colorbar(images[2], ax=axes[2][-1], shrink=0.8)
    fig.suptitle(f"{sample.dataset}: {name}, trajectory 0{slice_note}")
    return fig


def spectrum_figure(sample: Rollout):
    """Radially averaged power spectra of prediction and truth at the first and last rollout step,
    averaged over the trajectories shown, one panel per channel."""
    import numpy as np

    channels = min(sample.true.shape[-1], MAX_CHANNELS_SHOWN)
    fig = _figure(3.6 * channels + 0.4, 3.6)
    axes = fig.subplots(1, channels, squeeze=False)[0]
    last = sample.true.shape[1] - 1
    for c in range(channels):
        ax = axes[c]
        for step, alpha in ((0, 0.45), (last, 1.0)):
            for kind, data, style in (("truth", sample.true, "-"), ("prediction", sample.pred, "--")):
                spectra = [radial_spectrum(data[b, step, ..., c]) for b in range(data.shape[0])]
                k = spectra[0][0]
                power = np.mean([s[1] for s in spectra], axis=0)
                keep = (k > 0) & (power > 0)
                if keep.any():
                    colour = "black" if kind == "truth" else "tab:orange"
                    ax.loglog(k[keep], power[keep], style, alpha=alpha, color=colour, label=f"{kind}, step {step + 1}")
        ax.set_xlabel("wavenumber k")
        ax.set_title(sample.fields[c] if c < len(sample.fields) else f"channel {c}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("power P(k)")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{sample.dataset}: radially averaged power spectrum")
    return fig
