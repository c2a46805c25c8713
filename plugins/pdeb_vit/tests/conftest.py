"""Shared test settings for this plugin."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """Run the tiny test models on one thread: intra-op threading only adds overhead at
    these sizes, and on a busy machine it makes the tests many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
