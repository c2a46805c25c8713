"""Shared test settings for this plugin."""

from pdebench_core.model_testing import one_intra_op_thread

__all__ = ["one_intra_op_thread"]  # autouse: every test here runs on one intra-op thread
