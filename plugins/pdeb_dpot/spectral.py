"""Truncated real Fourier transforms of channels-last fields, for DPOT's Fourier mixer.

The mixer needs the modes it keeps of ``rfftn(x, norm="ortho")`` over the spatial axes of
``x`` ``(B, *S, D)``, and the inverse that treats every other mode as zero. Two
implementations give the same numbers (to float32 rounding):

- ``"fft"``: ``torch.fft`` on the whole grid, then the kept modes gathered; the inverse
  scatters them back and zero-pads. FFTs want the transformed axes innermost, so each
  transform copies the channels-last field and its spectrum.
- ``"dft"``: one matmul per axis with a cached basis of the kept modes only, applied to the
  channels-last field where it lies (a batched left-multiplication over the axis). On a
  CPU the latent grids of DPOT (4 to 32 cells an axis) are small enough that these
  matmuls beat the FFTs and their copies: a DPOT-Ti training step at 64x64 takes about
  5% less time, in 3D (32^3) about 11% less. On a GPU the FFTs are expected to stay
  cheaper, since the transforms run in exact float32 beside a bf16 network; that has not
  been measured.

``"auto"`` (:func:`transform_for`) picks the DFT on the CPU and the FFT elsewhere.

Spectra are complex ``(B, *M, D)``, ``M`` the kept modes per axis; the last spatial axis is
the one-sided (real-input) axis, as in ``rfftn``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from pdebench_core.devices import exact_bmm

#: Kept mode indices per spatial axis; the last axis indexes the one-sided spectrum.
Kept = tuple[tuple[int, ...], ...]

TRANSFORMS = ("auto", "fft", "dft")


def transform_for(device: torch.device, choice: str = "auto") -> str:
    """``"dft"`` or ``"fft"``: ``choice`` itself, or for ``"auto"`` the faster one on ``device``."""
    if choice not in TRANSFORMS:
        raise ValueError(f"unknown spectral transform '{choice}'; choose one of {', '.join(TRANSFORMS)}")
    if choice != "auto":
        return choice
    return "dft" if device.type == "cpu" else "fft"


def forward_modes(x: torch.Tensor, kept: Kept, transform: str) -> torch.Tensor:
    """The kept modes of ``rfftn(x, norm="ortho")`` over the spatial axes.

    Args:
        x: Real ``(B, *S, D)``.
        kept: Kept mode indices per spatial axis.
        transform: ``"fft"`` or ``"dft"``.

    Returns:
        Complex ``(B, *M, D)``.
    """
    return _dft_forward(x, kept) if transform == "dft" else _fft_forward(x, kept)


def inverse_modes(modes: torch.Tensor, spatial: Sequence[int], kept: Kept, transform: str) -> torch.Tensor:
    """``irfftn(spectrum, s=spatial, norm="ortho")`` of the spectrum holding ``modes`` and zeros elsewhere.

    Args:
        modes: Complex ``(B, *M, D)``, the kept modes.
        spatial: The grid ``S``.
        kept: Kept mode indices per spatial axis.
        transform: ``"fft"`` or ``"dft"``.

    Returns:
        Real ``(B, *S, D)``.
    """
    if transform == "dft":
        return _dft_inverse(modes, tuple(spatial), kept)
    return _fft_inverse(modes, tuple(spatial), kept)


# --- FFT ---------------------------------------------------------------------------------------


def _fft_forward(x: torch.Tensor, kept: Kept) -> torch.Tensor:
    axes = tuple(range(1, x.ndim - 1))
    spectrum = torch.fft.rfftn(x, dim=axes, norm="ortho")  # (B, *K, D)
    for axis, index in zip(axes, kept):
        if len(index) == spectrum.shape[axis]:
            continue  # every mode: no slice, whose backward would zero-fill a copy of the gradient
        if _is_prefix(index):
            spectrum = spectrum.narrow(axis, 0, len(index))  # a prefix: a view, no copy
        else:  # the symmetric option: [0, m) and [n - m + 1, n)
            spectrum = spectrum.index_select(axis, _index(index, x.device))
    return spectrum


def _fft_inverse(modes: torch.Tensor, spatial: tuple[int, ...], kept: Kept) -> torch.Tensor:
    axes = tuple(range(1, modes.ndim - 1))
    for axis, index, n in zip(axes[:-1], kept[:-1], spatial[:-1]):
        if not _is_prefix(index):
            # Put the two frequency ranges of the symmetric option back in place.
            shape = list(modes.shape)
            shape[axis] = n
            modes = modes.new_zeros(shape).index_copy(axis, _index(index, modes.device), modes)
    # irfftn zero-pads every axis up to the full spectrum, which zeroes the dropped modes.
    return torch.fft.irfftn(modes, s=spatial, dim=axes, norm="ortho")


def _is_prefix(index: tuple[int, ...]) -> bool:
    """Whether the kept modes are the first ones of their axis (else the symmetric option's two ranges)."""
    return index == tuple(range(len(index)))


# --- DFT as matmuls ----------------------------------------------------------------------------


def _dft_forward(x: torch.Tensor, kept: Kept) -> torch.Tensor:
    ndim = x.ndim - 2
    last = ndim  # position of the one-sided axis in (B, *S, D)
    n_kept = len(kept[-1])
    halves = _along(_real_basis(x.shape[last], kept[-1], x.device), x, last)  # (B, ..., 2k, D): [re; im]
    spectrum = torch.complex(halves.narrow(last, 0, n_kept), halves.narrow(last, n_kept, n_kept))
    for axis in range(ndim - 1, 0, -1):
        spectrum = _along(_complex_basis(x.shape[axis], kept[axis - 1], x.device, inverse=False), spectrum, axis)
    return spectrum  # (B, *M, D)


def _dft_inverse(modes: torch.Tensor, spatial: tuple[int, ...], kept: Kept) -> torch.Tensor:
    ndim = len(spatial)
    for axis in range(1, ndim):
        modes = _along(_complex_basis(spatial[axis - 1], kept[axis - 1], modes.device, inverse=True), modes, axis)
    halves = torch.cat([modes.real, modes.imag], dim=ndim)  # (B, *S[:-1], 2k, D)
    return _along(_real_inverse_basis(spatial[-1], kept[-1], modes.device), halves, ndim)  # (B, *S, D)


def _along(basis: torch.Tensor, field: torch.Tensor, axis: int) -> torch.Tensor:
    """``basis`` ``(out, n)`` applied along ``axis`` of ``field`` (length ``n``), where it lies."""
    shape = list(field.shape)
    before, after = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    out = exact_bmm(basis.expand(before, *basis.shape), field.reshape(before, shape[axis], after))
    shape[axis] = basis.shape[0]
    return out.view(shape)


# --- constants: bases and indices ---------------------------------------------------------------
#
# Built with numpy and cached per device, but only when torch returned a plain tensor, so a
# first call under inference mode, a fake-tensor mode or a tracer cannot leave a stand-in
# behind for later real calls.

_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _constant(key: tuple, build: Callable[[], "np.ndarray"], device: torch.device) -> torch.Tensor:
    """The array ``build()`` makes, as a tensor on ``device``; made once per ``key`` and device."""
    cached = _CONSTANTS.get((*key, device))
    if cached is not None:
        return cached
    with torch.inference_mode(False):
        if device.type == "cpu":
            tensor = torch.from_numpy(np.ascontiguousarray(build()))
        else:
            tensor = _constant(key, build, torch.device("cpu")).to(device)
    if type(tensor) is torch.Tensor:
        _CONSTANTS[(*key, device)] = tensor
    return tensor


def _index(index: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The kept indices as a tensor on ``device``, for ``index_select`` and ``index_copy``."""
    return _constant(("index", index), lambda: np.asarray(index, dtype=np.int64), device)


def _angles(n: int, kept: tuple[int, ...]) -> "np.ndarray":
    """``2 pi k x / n`` in float64: ``(len(kept), n)``."""
    return 2 * np.pi * np.outer(np.asarray(kept, dtype=np.float64), np.arange(n, dtype=np.float64)) / n


def _real_basis(n: int, kept: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Real input to ``[re; im]`` of the kept one-sided modes: ``(2k, n)`` float32."""
    def build() -> "np.ndarray":
        angle = _angles(n, kept)
        return (np.concatenate([np.cos(angle), -np.sin(angle)]) / math.sqrt(n)).astype(np.float32)

    return _constant(("real", n, kept), build, device)


def _real_inverse_basis(n: int, kept: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``[re; im]`` of one-sided modes to the real signal: ``(n, 2k)`` float32.

    Each mode but the zero and Nyquist ones stands for itself and its conjugate, so counts
    twice; the imaginary parts of those two are ignored, as ``irfft`` does.
    """
    def build() -> "np.ndarray":
        angle = _angles(n, kept)
        twice = np.asarray([1.0 if k == 0 or 2 * k == n else 2.0 for k in kept])[:, None]
        return (np.concatenate([twice * np.cos(angle), -twice * np.sin(angle)]).T / math.sqrt(n)).astype(np.float32)

    return _constant(("real-inverse", n, kept), build, device)


def _complex_basis(n: int, kept: tuple[int, ...], device: torch.device, inverse: bool) -> torch.Tensor:
    """``exp(-2 pi i k x / n) / sqrt(n)``: ``(k, n)`` forward, or its adjoint ``(n, k)``; complex64."""
    def build() -> "np.ndarray":
        basis = np.exp(-1j * _angles(n, kept)) / math.sqrt(n)  # (k, n)
        return (basis.conj().T if inverse else basis).astype(np.complex64)

    return _constant(("complex", n, kept, inverse), build, device)
