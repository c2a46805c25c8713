"""Shared settings for the DPOT plugin tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Run each test on one CPU thread: the test models are tiny, and OpenMP threads that
    spin while other processes hold the cores make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
