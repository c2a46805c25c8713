"""The small profile is a real run: FNO beats persistence by at least 3x (minutes; run with -m slow)."""

from __future__ import annotations

import pytest

from pdebench_core.config import build_config
from pdebench_core.runner import execute


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fno"])
def test_small_profile_beats_persistence_threefold(fresh_home, model):
    baseline = execute(build_config(model="persistence", data="ns2d", task="evaluate", device="cpu"), quiet=True)
    trained = execute(build_config(model=model, data="ns2d", device="cpu"), quiet=True)
    assert trained.results["ns2d"]["l2re"] * 3 <= baseline.results["ns2d"]["l2re"]
