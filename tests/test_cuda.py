"""CUDA-only checks; every test here skips on a machine without a CUDA device.

Run them on a GPU machine with ``python -m pytest -q -m cuda tests/test_cuda.py`` (or through
``python benchmarks/gpu_check.py --require-cuda``). They check what CPU tests cannot:

- the spectral layers see float32 inputs under bf16 autocast, and their mode products stay
  IEEE float32 with TF32 switched on globally (within 2e-5 of the same layer on the CPU, an
  order of magnitude below TF32's error), eager and compiled, forward and backward;
- bf16 training through ``execute`` (what ``pdeb run`` calls) lowers the loss on 2D, 3D and mixed
  2D+3D data, with ``train.compile`` and with ``train.channels_last``;
- with ``train.deterministic=true`` a run resumed from a mid-run checkpoint ends with the
  same weights, bit for bit, as the run that was never interrupted;
- ``train.data_on_device`` serves the host loader's batches without a synchronizing call.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from pdebench_core.spec import DataSpec

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DEVICE = "cuda"
FFT_FUNCTIONS = ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn")
# TF32 keeps 10 mantissa bits (unit roundoff 4.9e-4): a width-64 product in TF32 is off by
# ~1e-4 relative, while two IEEE float32 computations (CUDA and CPU) agree to ~1e-6.
IEEE_TOLERANCE = 2e-5


@pytest.fixture
def tf32_on():
    """TF32 on for matmuls and cuDNN, as every CUDA run sets it; restored afterwards."""
    from pdebench_core.devices import enable_tf32

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    enable_tf32()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ----------------------------------------------------------------------------- precision


def _build(name: str, spec: DataSpec) -> torch.nn.Module:
    if name == "dpot":
        from pdeb_dpot import PROFILES, DPOTConfig, build

        return build(DPOTConfig(**PROFILES["smoke"]), spec)
    if name == "fno":
        from pdeb_fno import PROFILES, FNOConfig, build

        return build(FNOConfig(**PROFILES["smoke"]), spec)
    from pdeb_ffno import PROFILES, FFNOConfig, build

    return build(FFNOConfig(**PROFILES["smoke"]), spec)


@pytest.mark.parametrize("shape", [(32, 32), (16, 16, 16)], ids=["2d", "3d"])
@pytest.mark.parametrize("name", ["dpot", "fno", "ffno"])
def test_ffts_see_float32_under_bf16_autocast(name, shape, tf32_on, monkeypatch):
    seen: list[tuple] = []
    for fn in FFT_FUNCTIONS:
        original = getattr(torch.fft, fn)

        def recording(x, *args, _original=original, **kwargs):
            seen.append((x.dtype, x.device.type, torch.backends.cuda.matmul.allow_tf32,
                         torch.is_autocast_enabled("cuda")))
            return _original(x, *args, **kwargs)

        monkeypatch.setattr(torch.fft, fn, recording)
    spec = DataSpec(name="toy", fields=("u", "v"), spatial_shape=shape, t_in=2, t_out=1)
    model = _build(name, spec).to(DEVICE)
    x = torch.randn(2, 2, *shape, 2, device=DEVICE)
    with torch.autocast(device_type=DEVICE, dtype=torch.bfloat16):
        pred = model(x)
    pred.float().square().mean().backward()
    assert seen, "no FFT ran"
    assert {s[0] for s in seen} <= {torch.float32, torch.complex64}, seen
    assert all(s[1] == "cuda" and s[2] is False and s[3] is False for s in seen), seen
    assert torch.backends.cuda.matmul.allow_tf32  # back on after the spectral blocks


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().cpu() - want).norm() / want.norm())


def _spectral_layers() -> dict[str, tuple]:
    """``{name: (module, input shape)}`` of the bare spectral layers, with widths of 64."""
    from pdeb_dpot.mixer import FourierMixer
    from pdeb_ffno.model import AxisSpectralWeights, axis_spectral_conv
    from pdeb_fno.model import SpectralConv

    class AxisConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = AxisSpectralWeights(64, (16, 16)).weights

        def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, X, Y, W)
            return sum(axis_spectral_conv(h, w, axis=1 + j) for j, w in enumerate(self.weights))

    torch.manual_seed(0)
    mixer = FourierMixer(64, 4, (16, 16))
    with torch.no_grad():  # unit-gain weights: the official initialisation hides the MLP behind the skip
        for p in mixer.parameters():
            p.copy_(torch.randn_like(p) / 4)
    on_matmuls = copy.deepcopy(mixer)
    on_matmuls.transform = "dft"  # the CPU's choice, forced: its basis products must be IEEE too
    return {"dpot-mixer": (mixer, (2, 64, 32, 32)), "dpot-mixer-dft": (on_matmuls, (2, 64, 32, 32)),
            "fno-spectral-conv": (SpectralConv(64, 64, (12, 12)), (2, 64, 32, 32)),
            "ffno-axis-conv": (AxisConv(), (2, 32, 32, 64))}


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", ["dpot-mixer", "dpot-mixer-dft", "fno-spectral-conv", "ffno-axis-conv"])
def test_spectral_products_stay_ieee_float32_with_tf32_on(name, compiled, tf32_on):
    layer, shape = _spectral_layers()[name]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    # The reference: the same layer in float32 on the CPU, which has no TF32.
    reference = copy.deepcopy(layer)
    x_cpu = x.clone().requires_grad_(True)
    want = reference(x_cpu)
    want.square().sum().backward()
    layer = layer.to(DEVICE)
    run = torch.compile(layer) if compiled else layer
    x_gpu = x.to(DEVICE).requires_grad_(True)
    got = run(x_gpu)
    got.square().sum().backward()
    assert _relative_error(got, want.detach()) < IEEE_TOLERANCE
    assert _relative_error(x_gpu.grad, x_cpu.grad) < IEEE_TOLERANCE
    for (key, p_gpu), p_cpu in zip(layer.named_parameters(), reference.parameters()):
        assert _relative_error(p_gpu.grad, p_cpu.grad) < IEEE_TOLERANCE, key


# ----------------------------------------------------------------------------- training through pdeb run


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def _config(run_id: str, model: str, data: str, *overrides: str, steps: int = 300):
    """A smoke-sized bf16 run; 300 steps at lr 3e-3 bring every model here below half its
    initial loss (measured in fp32 and bf16 on a CPU: 0.07 to 0.48 of it)."""
    from pdebench_core.config import build_config

    return build_config(model=model, data=data, profile="smoke", device=DEVICE, run_id=run_id,
                        overrides=[f"train.max_steps={steps}", "train.log_every=1", "train.lr=3e-3",
                                   "train.precision=bf16", *overrides])


def _train(run_id: str, model: str, data: str, *overrides: str, steps: int = 300):
    """Train through ``execute``, the function ``pdeb run`` calls."""
    from pdebench_core.runner import execute

    return execute(_config(run_id, model, data, *overrides, steps=steps), quiet=True)


def _run_id(kind: str, model: str, data: str) -> str:
    return f"cuda-{kind}-{model}-{data.replace(',', '-and-')}"


def _assert_learns(ctx) -> None:
    assert ctx.device.type == "cuda"
    losses = _losses(ctx.run_dir)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss {first:.4g} -> {last:.4g}"
    for metrics in ctx.results.values():
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics


@pytest.mark.parametrize("model, data", [("dpot", "ns2d"), ("dpot", "cfd3d"), ("dpot", "ns2d,cfd3d"),
                                         ("fno", "ns2d"), ("fno", "cfd3d")])
def test_bf16_training_lowers_the_loss(model, data):
    _assert_learns(_train(_run_id("bf16", model, data), model, data))


@pytest.mark.parametrize("model, data", [("dpot", "ns2d"), ("dpot", "ns2d,cfd3d"), ("fno", "ns2d")])
def test_compiled_training_lowers_the_loss_without_falling_back(model, data):
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    ctx = _train(_run_id("compile", model, data), model, data, "train.compile=true")
    _assert_learns(ctx)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    log = (ctx.run_dir / "log.txt").read_text()
    assert "could not compile" not in log and "running eagerly" not in log


@pytest.mark.parametrize("model, data", [("unet", "ns2d"), ("fno", "ns2d"), ("dpot", "cfd3d"),
                                         ("dpot", "ns2d,cfd3d")])
def test_channels_last_training_lowers_the_loss(model, data):
    _assert_learns(_train(_run_id("nhwc", model, data), model, data, "train.channels_last=true"))


@pytest.mark.parametrize("data", ["ns2d", "ns2d,cfd3d"])
def test_deterministic_resume_is_bitwise_exact(data):
    from pdebench_core.checkpoint import load_checkpoint
    from pdebench_core.runs import run_dir_for

    # The default dpot task is pre-training: input noise, so the noise generator is resumed too.
    settings = ("train.deterministic=true", "train.checkpoint_every=5", "train.keep_checkpoints=50")
    straight = _train(_run_id("straight", "dpot", data), "dpot", data, *settings, steps=10)
    # The interrupted run: the straight run's directory as it stood at step 5.
    split_id = _run_id("split", "dpot", data)
    split_dir = run_dir_for(split_id)
    shutil.copytree(straight.run_dir, split_dir)
    checkpoints = split_dir / "checkpoints"
    shutil.copyfile(checkpoints / "step-00000005.pt", checkpoints / "last.pt")
    (checkpoints / "step-00000010.pt").unlink()
    assert load_checkpoint(checkpoints / "last.pt")["step"] == 5
    from pdebench_core.runner import execute

    resumed = execute(_config(split_id, "dpot", data, *settings, steps=10), resume=True, quiet=True)
    want = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    got = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert got["step"] == want["step"] == 10
    assert want["model"].keys() == got["model"].keys()
    for key, value in want["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert resumed.results == straight.results


# ----------------------------------------------------------------------------- data on the device


def test_device_batches_never_wait_for_the_device():
    """``train.data_on_device`` routes each batch on the host: no step waits for the GPU's queue."""
    import itertools

    import numpy as np

    from pdebench_core.data.pipeline import plan_mixture, training_loader

    class Windows:
        def __init__(self, name, grid, seed):
            rng = np.random.default_rng(seed)
            self.spec = DataSpec(name=name, fields=("u",), spatial_shape=(grid, grid), t_in=3)
            self._train = [rng.standard_normal((9, grid, grid, 1)).astype(np.float32) for _ in range(5)]

        def split(self, name):
            return self._train

    # two datasets of one grid: batches that mix them take the several-part path too
    mixture = plan_mixture({"a": Windows("a", 8, 0), "b": Windows("b", 8, 1)}, t_out=1)
    loader, _ = training_loader(mixture, "train", batch_size=4, seed=0, device=torch.device(DEVICE))
    host, _ = training_loader(mixture, "train", batch_size=4, seed=0)
    torch.cuda.set_sync_debug_mode("error")  # any synchronizing call raises
    try:
        batches = [tuple(t.clone() for t in batch) for batch in itertools.islice(loader, 20)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for (dx, dy, dm), (hx, hy, hm) in zip(batches, itertools.islice(host, 20)):
        assert torch.equal(dx.cpu(), hx) and torch.equal(dy.cpu(), hy) and torch.equal(dm.cpu(), hm)
