"""CUDA-only checks (run with ``pytest -m cuda`` on a GPU machine; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_training_step_keeps_ffts_in_float32():
    from pdeb_dpot import DPOTConfig, build
    from pdebench_core.devices import autocast_for
    from pdebench_core.losses import relative_l2_loss
    from pdebench_core.spec import DataSpec

    spec = DataSpec(name="x", fields=("a", "b"), spatial_shape=(32, 32), t_in=10, t_out=1)
    model = build(DPOTConfig(embed_dim=64, depth=2, n_blocks=4, out_layer_dim=16, patch_size=4, modes=8), spec).cuda()
    x = torch.randn(2, 10, 32, 32, 2, device="cuda")
    with autocast_for(torch.device("cuda"), "auto"):
        pred = model(x)
    loss = relative_l2_loss(pred.float(), torch.randn_like(pred.float()))
    loss.backward()
    assert torch.isfinite(loss)
    reference = model.float()(x)
    assert (pred.float() - reference).abs().max() / reference.abs().max() < 5e-2


def test_cuda_run_end_to_end(tmp_path, monkeypatch):
    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    for model in ("dpot", "fno"):  # fno has complex weights: plain (unfused) AdamW
        ctx = execute(build_config(model=model, data="ns2d", profile="smoke", device="cuda"), quiet=True)
        assert ctx.device.type == "cuda" and ctx.results["ns2d"]["l2re"] > 0
