"""``benchmarks/loader.py --dpot-feed``: the GPU step time it feeds and how it is derived."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "loader.py"


@pytest.fixture(scope="module")
def loader():
    spec = importlib.util.spec_from_file_location("loader_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**values) -> argparse.Namespace:
    return argparse.Namespace(**{"gpu_step_ms": 0.0, "budget_gpu_hours": 0.0, "mfu": 0.4, "peak_tflops": 989.0,
                                 **values})


def test_official_ti_recipe_counts(loader):
    recipe = loader.official_ti_steps()
    assert recipe["windows_per_epoch"] == 132_400  # sum of ntrain_list x data_weights
    assert recipe["steps"] == pytest.approx(1000 * 132_400 / (6 * 20))


def test_step_time_from_a_budget_and_from_a_measurement(loader):
    seconds, how = loader.gpu_step_seconds(_args(budget_gpu_hours=600.0))
    assert seconds == pytest.approx(600 * 3600 / 6 / (1000 * 132_400 / 120))
    assert "600 GPU-hours" in how
    assert loader.gpu_step_seconds(_args(gpu_step_ms=12.5, budget_gpu_hours=600.0))[0] == pytest.approx(0.0125)


def test_step_time_from_flops(loader):
    seconds, how = loader.gpu_step_seconds(_args(mfu=0.5, peak_tflops=1000.0))
    from gpu_check import dpot_flops_per_sample  # importable now: the benchmark put its folder on the path

    assert seconds == pytest.approx(20 * dpot_flops_per_sample("ti")["flops"] / 5e14)
    assert "50% of 1000 TFLOP/s" in how


def test_nonsense_settings_are_one_line_errors():
    result = subprocess.run([sys.executable, str(SCRIPT), "--dpot-feed", "--mfu", "0"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "--mfu must lie in (0, 1]" in result.stderr
    assert "Traceback" not in result.stderr
