"""The core's evaluation metrics, registered like any third-party metric.

The metrics and their formulas are defined once, in :data:`pdebench_core.metrics.METRICS`;
this plugin hands each to ``register``. Neither importing it nor registering imports
torch.
"""

from __future__ import annotations

from typing import Callable

from pdebench_core import hookimpl
from pdebench_core.metrics import METRICS


@hookimpl
def register_metrics(register: Callable[..., None]) -> None:
    """Register every metric of :data:`pdebench_core.metrics.METRICS`."""
    for metric in METRICS.values():
        register(
            metric.name,
            metric.values,
            reduction=metric.reduction,
            finish=metric.finish,
            higher_is_better=False,
            description=metric.description,
            formula=metric.formula,
        )
