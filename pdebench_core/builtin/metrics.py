"""The core's evaluation metrics, registered like any third-party metric.

The formulas live in :mod:`pdebench_core.metrics`; this plugin only names them
and describes them. Importing it does not import torch: each registered
function imports the metrics module on its first call.
"""

from __future__ import annotations

from typing import Any, Callable

from pdebench_core import hookimpl

# name, reduction over samples, one-line description, formula (p = prediction,
# y = target, x = grid point, t = step, c = real channel, per sample).
METRIC_CARDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "l2re",
        "mean",
        "DPOT's relative L2 error, rollout steps pooled",
        "mean_c sqrt(sum_{t,x} (p-y)^2) / (sqrt(sum_{t,x} y^2) + 1e-8)",
    ),
    (
        "rmse",
        "mean",
        "Root mean squared error (PDEBench RMSE)",
        "mean_{t,c} sqrt(mean_x (p-y)^2)",
    ),
    (
        "nrmse",
        "mean",
        "RMSE over the target's RMS (PDEBench nRMSE)",
        "mean_{t,c} sqrt(mean_x (p-y)^2) / sqrt(mean_x y^2)",
    ),
    (
        "crmse",
        "mean",
        "Error of the spatial mean (PDEBench cRMSE)",
        "mean_{t,c} |mean_x p - mean_x y|",
    ),
    (
        "brmse",
        "mean",
        "RMSE on the boundary points (PDEBench bRMSE)",
        "mean_{t,c} sqrt(mean_{x on a face} (p-y)^2)",
    ),
    (
        "vrmse",
        "mean",
        "RMSE over the target's spatial std (the Well)",
        "mean_{t,c} sqrt(mean_x (p-y)^2 / (var_x y + 1e-7)), population variance",
    ),
    (
        "frmse_low",
        "mean",
        "Fourier-coefficient RMSE, 0 <= |k| < 4",
        "mean_{t,c} sqrt(mean_{0<=|k|<4} |F_k|^2), F = fftn(p-y)/N",
    ),
    (
        "frmse_mid",
        "mean",
        "Fourier-coefficient RMSE, 4 <= |k| < 12",
        "mean_{t,c} sqrt(mean_{4<=|k|<12} |F_k|^2), F = fftn(p-y)/N",
    ),
    (
        "frmse_high",
        "mean",
        "Fourier-coefficient RMSE, 12 <= |k| <= min(S)/2",
        "mean_{t,c} sqrt(mean_{12<=|k|<=min(S)/2} |F_k|^2), F = fftn(p-y)/N",
    ),
    (
        "max_error",
        "max",
        "Largest absolute error; worst sample of the set",
        "max_{t,x,c} |p-y|",
    ),
)


def _lazy_metric(name: str, description: str) -> Callable[..., Any]:
    """A function with the metric contract that imports torch only when called."""

    def metric(pred: Any, target: Any, channel_mask: Any = None) -> Any:
        from pdebench_core import metrics

        return metrics.METRICS[name](pred, target, channel_mask=channel_mask)

    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = f"{description}. Returns one value per sample, shape (B,)."
    return metric


@hookimpl
def register_metrics(register: Callable[..., None]) -> None:
    """Register every metric of :mod:`pdebench_core.metrics`."""
    for name, reduction, description, formula in METRIC_CARDS:
        register(
            name,
            _lazy_metric(name, description),
            reduction=reduction,
            higher_is_better=False,
            description=description,
            formula=formula,
        )
