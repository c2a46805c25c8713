"""A model plugin that breaks the output contract is named before any training step."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from pdebench_core import hookimpl, plugins
from pdebench_core.cli import app

runner = CliRunner()


class _Broken(torch.nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):  # x: (B, t_in, *S, C)
        if self.mode == "frames":
            return x * self.scale  # t_in frames instead of t_out
        if self.mode == "dtype":
            return (x[:, -1:] * self.scale).double()
        return x[:, -1:] * self.scale * float("nan")


@pytest.mark.parametrize("mode, message", [
    ("frames", r"returned shape \(1, 10, 32, 32, 1\) for an input \(1, 10, 32, 32, 1\); expected \(1, 1, 32, 32, 1\)"),
    ("dtype", r"returned dtype torch.float64 for a torch.float32 input"),
    ("nan", r"returned non-finite values"),
])
def test_contract_break_is_one_line_before_training(mode, message, tmp_path, monkeypatch):
    import re

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))

    class Plugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("broken-model", lambda cfg, spec: _Broken(mode), dims=(1, 2, 3))

    plugins.register_plugin(Plugin, name="broken-plugin")
    try:
        result = runner.invoke(app, ["run", "--model", "broken-model", "--data", "ns2d", "--profile", "smoke",
                                     "--device", "cpu", "--run-id", f"broken-{mode}"])
    finally:
        plugins.unregister_plugin("broken-plugin")
    assert result.exit_code == 2, result.output
    assert "model 'broken-model' (plugin 'broken-plugin')" in result.output
    assert re.search(message, result.output) and "Traceback" not in result.output
    assert not list((tmp_path / "home").rglob("*.pt"))  # no training step ran
