"""Checks and fixtures for the tests of plugins, bundled and third-party alike.

Each check raises ``AssertionError`` with a message that says what is wrong, so it
reads naturally inside a pytest test::

    from pdebench_core.testing import check_dataset_contract, check_dataset_registration

    def test_smoke_dataset_keeps_the_contract():
        arrays = check_dataset_contract(MY_DATASET(MY_DATASET.config_for("smoke")),
                                        expected_fields=("u", "v"), spatial_shape=(32, 32))
        assert arrays["train"].std() > 0

The checks read every trajectory into memory: use them on ``smoke``-sized data.

Model plugins find their checks in :mod:`pdebench_core.testing.models`.

The package is also a pytest plugin (pdeb's ``pyproject.toml`` loads it with
``-p pdebench_core.testing``; elsewhere, name it in ``pytest_plugins`` of a root
``conftest.py``). It provides the fixture :func:`private_home` and runs every test
under the folders of the ini option ``pdeb_single_thread_paths`` on one intra-op
torch thread (see :func:`single_thread_where_configured`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from pdebench_core.testing.datasets import (DATASET_CARD_KEYS, PROFILE_NAMES, SPLITS, assert_same_splits,
                                            assert_splits_disjoint, check_cache_key, check_dataset_contract,
                                            check_dataset_registration, check_generated_dataset,
                                            generation_forbidden, split_arrays)

__all__ = [
    "DATASET_CARD_KEYS", "PROFILE_NAMES", "SPLITS", "assert_same_splits", "assert_splits_disjoint", "check_cache_key",
    "check_dataset_contract", "check_dataset_registration", "check_generated_dataset", "generation_forbidden",
    "private_home", "pytest_addoption", "single_thread_where_configured", "split_arrays",
]


# --- pytest plugin -------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini option ``pdeb_single_thread_paths``."""
    parser.addini("pdeb_single_thread_paths", type="paths", default=[],
                  help="folders whose tests run on one intra-op torch thread (pdebench_core.testing)")


@pytest.fixture(autouse=True)
def single_thread_where_configured(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run tests under ``pdeb_single_thread_paths`` on one intra-op torch thread.

    Plugin tests solve and train tiny problems: extra threads only add overhead, and on
    a busy machine threads that spin while others hold the cores make them many times
    slower. Other tests keep torch's setting.
    """
    folders = request.config.getini("pdeb_single_thread_paths")
    if not any(Path(request.node.path).is_relative_to(folder) for folder in folders):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``PDEB_HOME`` for one test, so every data cache starts empty.

    Returns:
        The home folder (created on first use by the code under test).
    """
    home = tmp_path / "pdeb-home"
    monkeypatch.setenv("PDEB_HOME", str(home))
    return home
