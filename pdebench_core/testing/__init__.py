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
``conftest.py``). It provides the fixtures :func:`private_home` and :func:`pdeb` (the CLI
in a subprocess) and runs every test
under the folders of the ini option ``pdeb_single_thread_paths`` on one intra-op
torch thread (see :func:`single_thread_where_configured`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pdebench_core.testing.datasets import (DATASET_CARD_KEYS, PROFILE_NAMES, SPLITS, assert_same_splits,
                                            assert_splits_disjoint, check_cache_key, check_dataset_contract,
                                            check_dataset_registration, check_generated_dataset,
                                            generation_forbidden, split_arrays)

__all__ = [
    "DATASET_CARD_KEYS", "PROFILE_NAMES", "SPLITS", "assert_same_splits", "assert_splits_disjoint", "check_cache_key",
    "check_dataset_contract", "check_dataset_registration", "check_generated_dataset", "generation_forbidden",
    "pdeb", "private_home", "pytest_addoption", "run_pdeb", "single_thread_where_configured", "split_arrays",
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


def run_pdeb(*args: str, env: dict[str, str] | None = None, check: bool = False,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``pdeb`` CLI in a subprocess, as a user would, with this environment plus ``env``.

    Args:
        *args: The command line after ``pdeb``.
        env: Variables set on top of the current environment.
        check: Fail with the command's output when it exits non-zero.
        timeout: Seconds before the command is killed.

    Returns:
        The finished process (``returncode``, ``stdout``, ``stderr`` as text).
    """
    result = subprocess.run([sys.executable, "-m", "pdebench_core.cli", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"pdeb {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def pdeb() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`run_pdeb`: ``pdeb("run", "--model", "mymodel", "--data", "ns2d", "--profile", "smoke", check=True)``."""
    return run_pdeb
