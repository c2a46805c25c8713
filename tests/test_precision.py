"""Spectral layers compute in IEEE float32 whatever autocast and TF32 say (CPU checks).

The CUDA counterparts, which measure the error of the spectral products against float64
with TF32 switched on, are in ``test_cuda.py``.
"""

from __future__ import annotations

import functools

import pytest
import torch

from pdebench_core.devices import enable_tf32, exact_bmm, fp32_exact
from pdebench_core.spec import DataSpec

FFT_FUNCTIONS = ("fft", "ifft", "rfft", "irfft", "fftn", "ifftn", "rfftn", "irfftn", "rfft2", "irfft2")


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def tf32_on():
    """TF32 switched on globally, as ``resolve_device`` does on CUDA; restored afterwards."""
    saved = _flags()
    enable_tf32()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def recorder(monkeypatch):
    """Wraps every ``torch.fft`` transform and ``torch.bmm``/``baddbmm``; records what each call saw."""
    calls: list[dict] = []

    def wrap(owner, name: str, kind: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def recording(*args, **kwargs):
            tensor = args[1] if name == "baddbmm" else args[0]  # baddbmm(bias, a, b): the product's input
            calls.append({"kind": kind, "name": name, "dtype": tensor.dtype, "tf32": _flags(),
                          "autocast": torch.is_autocast_enabled("cpu")})
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, recording)

    for name in FFT_FUNCTIONS:
        wrap(torch.fft, name, "fft")
    for name in ("bmm", "baddbmm"):
        wrap(torch, name, "product")
    return calls


def _dpot(transform: str, spec: DataSpec):
    from pdeb_dpot import DPOTConfig, PROFILES, build
    from pdeb_dpot.mixer import use_transform
    from pdeb_dpot.tests.oracle import use_reference_mixers

    model = build(DPOTConfig(**PROFILES["smoke"]), spec)
    if transform == "reference":
        return use_reference_mixers(model)  # the tests' oracle
    return use_transform(model, transform)


def _fno(spec: DataSpec):
    from pdeb_fno import FNOConfig, PROFILES, build

    return build(FNOConfig(**PROFILES["smoke"]), spec)


def _ffno(spec: DataSpec):
    from pdeb_ffno import FFNOConfig, PROFILES, build

    return build(FFNOConfig(**PROFILES["smoke"]), spec)


MODELS = {
    "dpot-fused-fft": functools.partial(_dpot, "fft"),
    "dpot-fused-dft": functools.partial(_dpot, "dft"),  # modes from basis products: no FFT at all
    "dpot-reference": functools.partial(_dpot, "reference"),
    "fno": _fno,
    "ffno": _ffno,
}


@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)], ids=["2d", "3d"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_spectral_layers_see_float32_with_tf32_and_autocast_off(name, shape, tf32_on, recorder):
    torch.manual_seed(0)
    spec = DataSpec(name="toy", fields=("u", "v"), spatial_shape=shape, t_in=2, t_out=1)
    model = MODELS[name](spec)
    x = torch.randn(2, 2, *shape, 2)  # (B, T, *S, C)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().mean().backward()
    ffts = [c for c in recorder if c["kind"] == "fft"]
    assert bool(ffts) == (name != "dpot-fused-dft"), "an FFT was called, or none"
    assert {c["dtype"] for c in ffts} <= {torch.float32, torch.complex64}, ffts
    products = [c for c in recorder if c["kind"] == "product"]
    if name != "dpot-reference":  # the reference mixer multiplies with einsum
        assert products, "the mode products no longer go through bmm/baddbmm"
    assert {c["dtype"] for c in products} <= {torch.float32, torch.complex64}, products
    for call in ffts + products:
        assert call["tf32"] == (False, False) and not call["autocast"], call
    assert _flags() == (True, True)  # the global setting is back after the spectral blocks


def test_fp32_exact_restores_the_flags_after_an_error(tf32_on):
    with pytest.raises(RuntimeError, match="inside"):
        with fp32_exact("cpu"):
            assert _flags() == (False, False)
            raise RuntimeError("inside")
    assert _flags() == (True, True)


def _operands(dtype: torch.dtype, bias: bool, requires_grad: bool = False):
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(3, 4, 5, dtype=dtype, generator=generator)
    b = torch.randn(3, 5, 2, dtype=dtype, generator=generator)
    c = torch.randn(3, 1, 2, dtype=dtype, generator=generator) if bias else None
    if requires_grad:
        for t in (a, b, c):
            if t is not None:
                t.requires_grad_(True)
    return a, b, c


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("bias", [False, True])
def test_ieee_operator_equals_bmm(dtype, bias):
    a, b, c = _operands(dtype, bias)
    expected = torch.bmm(a, b) if c is None else torch.baddbmm(c, a, b)
    assert torch.equal(torch.ops.pdeb.ieee_bmm(a, b, c), expected)
    assert torch.equal(exact_bmm(a, b, c), expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_ieee_operator_gradients(dtype):
    operands = _operands(dtype, bias=True, requires_grad=True)
    assert torch.autograd.gradcheck(torch.ops.pdeb.ieee_bmm, operands)


def test_ieee_operator_runs_its_forward_and_backward_products_without_tf32(tf32_on, recorder):
    a, b, c = _operands(torch.float32, bias=True, requires_grad=True)
    torch.ops.pdeb.ieee_bmm(a, b, c).sum().backward()
    products = [call for call in recorder if call["kind"] == "product"]
    assert len(products) == 3  # the product, then one for each operand's gradient
    assert all(call["tf32"] == (False, False) for call in products)
    assert _flags() == (True, True)


def test_ieee_operator_compiles_without_a_graph_break():
    # The CPU stand-in for what a CUDA run relies on: torch.compile keeps the operator
    # opaque (its TF32 switch runs with the kernel) and differentiates it.
    a, b, c = _operands(torch.float32, bias=True, requires_grad=True)
    compiled = torch.compile(lambda a, b, c: torch.ops.pdeb.ieee_bmm(a, b, c).square().sum(),
                             backend="aot_eager", fullgraph=True)
    compiled(a, b, c).backward()
    expected = [t.grad.clone() for t in (a, b, c)]
    for t in (a, b, c):
        t.grad = None
    torch.baddbmm(c, a, b).square().sum().backward()
    for got, want in zip(expected, (a.grad, b.grad, c.grad)):
        torch.testing.assert_close(got, want)


def test_the_device_layer_imports_and_works_without_torch_2_4_apis():
    """pyproject allows torch 2.3, which has no custom operators and no per-device autocast
    queries: the package must still import there (simulated by removing those APIs)."""
    import subprocess
    import sys

    code = """
import torch
del torch.library.custom_op
del torch.amp.is_autocast_available
from pdebench_core import devices
a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
assert torch.equal(devices.exact_bmm(a, b), torch.bmm(a, b))
with devices.fp32_exact("cpu"), devices.fp32_exact("meta"):
    pass
with torch.autocast("cpu", dtype=torch.bfloat16):
    assert devices.autocast_enabled("cpu")
assert not devices.autocast_enabled("cpu") and not devices.autocast_enabled("meta")
import pdeb_dpot.model
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_auto_precision_is_bf16_only_on_a_gpu_that_computes_in_it(monkeypatch):
    import torch

    from pdebench_core import devices

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulated bf16 counts there
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # a V100
    assert not devices.uses_bf16(cuda, "auto") and devices.uses_bf16(cuda, "bf16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100
    assert devices.uses_bf16(cuda, "auto") and not devices.uses_bf16(cuda, "fp32")
    assert not devices.uses_bf16(torch.device("cpu"), "auto")


def test_cuda_n_becomes_this_processs_current_device(monkeypatch):
    import torch

    from pdebench_core import devices
    from pdebench_core.errors import UsageError

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(devices, "enable_tf32", lambda: None)
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1) and chosen == [torch.device("cuda", 1)]
    with pytest.raises(UsageError, match=r"--device cuda:5: this machine shows 2 GPU\(s\)"):
        devices.resolve_device("cuda:5")
