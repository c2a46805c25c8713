"""``benchmarks/gpu_check.py`` on a CPU: its refusal without CUDA, its peak table and its FLOP counts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@no_cuda
def test_without_cuda_it_says_so_and_succeeds():
    result = _run()
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout and "--require-cuda" in result.stdout


@no_cuda
def test_require_cuda_fails_with_one_line():
    result = _run("--require-cuda")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_flop_counts_print_without_a_gpu(gpu_check):
    result = _run("--flops-only", "--sizes", "ti")
    assert result.returncode == 0, result.stderr
    counted = gpu_check.dpot_flops_per_sample("ti")
    assert f"| DPOT-TI | 7.5M | {counted['flops'] / 1e9:.2f} | {counted['fft_share']:.2%} |" in result.stdout


def test_bad_arguments_are_refused(tmp_path):
    result = _run("--sizes", "xl")
    assert result.returncode == 2 and "unknown size ['xl']" in result.stderr
    result = _run("--official", str(tmp_path))
    assert result.returncode == 2 and "no models/dpot.py there" in result.stderr


def test_without_the_official_code_the_baseline_computes_as_the_official_model(gpu_check):
    from pdeb_dpot.tests.oracle import ReferenceFourierMixer, ReferenceTimeAggregator

    baseline, official_layout = gpu_check.official_model("ti", None)
    assert not official_layout
    assert isinstance(baseline.time_agg_layer, ReferenceTimeAggregator)
    assert all(isinstance(block.filter, ReferenceFourierMixer) for block in baseline.blocks)
    from pdeb_dpot.official import build_official

    fused = build_official(gpu_check.official_config("ti"))  # pdeb's own layers, the same weights
    fused.load_state_dict(baseline.state_dict())
    x = torch.randn(1, 10, 128, 128, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fused(x), baseline(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, card, tflops", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", "H100 NVL", 835.0),
    ("NVIDIA H200", "H200", 989.0),
    ("NVIDIA GH200 480GB", "GH200", 989.0),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
    ("NVIDIA A100 80GB PCIe", "A100", 312.0),
    ("NVIDIA L40S", "L40S", 362.0),
    ("NVIDIA L40", "L40", 181.0),
    ("NVIDIA L4", "L4", 121.0),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.0),
])
def test_bf16_peak_by_card_name(gpu_check, name, card, tflops):
    assert gpu_check.bf16_peak(name) == (card, tflops)


@pytest.mark.parametrize("name", ["Tesla V100-SXM2-16GB", "Tesla T4", "Some Future GPU"])
def test_cards_without_a_known_bf16_peak(gpu_check, name):
    assert gpu_check.bf16_peak(name) is None


def _forward_flops(gpu_check, fn) -> tuple[int, dict]:
    counter = FlopCounterMode(display=False, custom_mapping=gpu_check.flop_mapping())
    with counter:
        fn()
    return counter.get_total_flops(), counter.get_flop_counts()["Global"]


def test_fft_flops_follow_5_n_log2_n(gpu_check):
    real = torch.randn(3, 8, 64)
    spectrum = torch.randn(2, 16, 16, dtype=torch.complex64)
    half = torch.randn(24, 33, dtype=torch.complex64)
    # real FFT: 2.5 N log2 N per transform; complex: 5 N log2 N (N = points over all transformed axes)
    assert _forward_flops(gpu_check, lambda: torch.fft.rfft(real))[0] == 2.5 * 64 * 6 * 24
    assert _forward_flops(gpu_check, lambda: torch.fft.fftn(spectrum, dim=(-2, -1)))[0] == 5 * 256 * 8 * 2
    assert _forward_flops(gpu_check, lambda: torch.fft.irfft(half, n=64))[0] == 2.5 * 64 * 6 * 24
    assert gpu_check.fft_flops(1, 10, real=False) == 0


def test_exact_spectral_product_is_counted(gpu_check):
    # The stock counter sees pdeb::ieee_bmm (the CUDA path of exact_bmm) as an unknown op: zero.
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    op = torch.ops.pdeb.ieee_bmm
    assert _forward_flops(gpu_check, lambda: op(a, b, None))[0] == 2 * 2 * 3 * 4 * 5
    ac, bc = a.to(torch.complex64), b.to(torch.complex64)
    assert _forward_flops(gpu_check, lambda: op(ac, bc, None))[0] == 8 * 2 * 3 * 4 * 5  # 4 real products, 4 sums
    with FlopCounterMode(display=False) as stock:
        op(a, b, None)
    assert stock.get_total_flops() == 0


def test_dpot_flops_on_meta_equal_a_real_count_and_include_the_ffts(gpu_check):
    from pdeb_dpot import SIZES, DPOTConfig, build
    from pdeb_dpot.mixer import FourierMixer, use_transform
    from pdebench_core.spec import DataSpec

    counted = gpu_check.dpot_flops_per_sample("ti", batch=1)
    spec = DataSpec(name="check", fields=tuple("abcd"), spatial_shape=(128, 128), t_in=10, t_out=1)
    model = build(DPOTConfig(size="ti", patch_size=8, modes=32), spec)
    x = torch.randn(1, 10, 128, 128, 4)
    real = gpu_check.training_flops(model, x, autocast=False)
    assert real["total"] == counted["flops"]
    assert counted["params"] == sum(p.numel() for p in model.parameters())
    assert all(m.transform == "auto" for m in model.modules() if isinstance(m, FourierMixer))  # restored
    # Forward FFTs of DPOT-Ti: per block one real FFT and one inverse over the 16x16 latent grid, 512 channels,
    # with the mixers on FFTs as on a GPU (on the CPU they use matmuls).
    _, forward = _forward_flops(gpu_check, lambda: use_transform(model, "fft")(x))
    fft = sum(v for op, v in forward.items() if "_fft_" in str(op))
    assert fft == 2 * gpu_check.fft_flops(16 * 16, 512 * SIZES["ti"]["depth"], real=True)
    assert 0 < counted["fft_share"] < 0.05


def test_the_fp32_baseline_trains_and_is_timed(gpu_check):
    figures = gpu_check.time_official("ti", batch=1, warmup=1, steps=1, device="cpu")
    assert figures["samples_per_s"] > 0 and figures["ms_per_step"] > 0


def test_an_official_checkout_that_does_not_import_is_one_line(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "dpot.py").write_text("def broken(:\n")
    result = _run("--official", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot import") and result.stderr.count("\n") == 1, result.stderr


def test_flops_are_counted_at_the_batch_timed(gpu_check):
    """The time aggregation's weight-only products cost the same at any batch: per sample, the
    count at the official batch of 20 is lower than at 2 (by about 6% for Ti)."""
    at_two, at_twenty = gpu_check.dpot_flops_per_sample("ti", 2), gpu_check.dpot_flops_per_sample("ti", 20)
    assert at_twenty["flops"] < 0.97 * at_two["flops"]
    assert gpu_check.dpot_flops_per_sample("ti")["flops"] == at_twenty["flops"]  # the official per-GPU batch


def test_an_out_of_memory_error_reported_as_a_plugins_is_still_a_figure(gpu_check):
    """pdeb reports an error inside a model as the plugin's (PluginError, the OOM its cause): one
    size running out of memory must not end the whole check."""
    import torch

    from pdebench_core.errors import PluginError

    def runs_out(*args):
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.cuda.OutOfMemoryError as exc:
            raise PluginError("task 'pretrain' (plugin 'dpot') raised OutOfMemoryError") from exc

    def other_bug(*args):
        raise ValueError("a real bug")

    assert gpu_check._guarded(runs_out) == {"error": "out of GPU memory"}
    with pytest.raises(ValueError):
        gpu_check._guarded(other_bug)
