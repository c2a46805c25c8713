"""Shapes, generality (resolution, channels, 1D/3D), errors and the fused Fourier mixer."""

from __future__ import annotations

import pytest
import torch

from pdebench_core.errors import UsageError
from pdeb_dpot.mixer import FourierMixer, kept_indices, use_transform
from pdeb_dpot.model import DPOT, Block, DPOTArchitecture
from pdeb_dpot.multidim import MultiDimDPOT
from pdeb_dpot.tests.oracle import ReferenceFourierMixer, use_reference_layers


def tiny(ndim: int = 2, **overrides) -> DPOT:
    args = dict(ndim=ndim, img_size=16, patch_size=4, in_channels=3, out_channels=3, in_timesteps=4,
                out_timesteps=1, embed_dim=16, depth=2, n_blocks=2, out_layer_dim=8, modes=8, n_cls=5)
    args.update(overrides)
    return DPOT(DPOTArchitecture(**args))


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("t_out", [1, 2])
def test_output_shape_and_backward(ndim: int, t_out: int) -> None:
    torch.manual_seed(0)
    model = tiny(ndim, out_timesteps=t_out, img_size=8 if ndim == 3 else 16)
    spatial = (8,) * 3 if ndim == 3 else (16,) * ndim
    x = torch.randn(2, 4, *spatial, 3)
    y, logits = model(x, return_cls_logits=True)
    assert y.shape == (2, t_out, *spatial, 3)
    assert logits.shape == (2, 5)
    y.square().mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    # The dataset-class head is never trained by DPOT and is frozen.
    assert all(not p.requires_grad for p in model.cls_head.parameters())


def test_samples_are_independent() -> None:
    torch.manual_seed(0)
    model = tiny(normalize=True).eval()
    x = torch.randn(3, 4, 16, 16, 3)
    with torch.no_grad():
        together = model(x)
        alone = model(x[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-5, atol=1e-6)


def test_other_resolution_interpolates_positional_embedding() -> None:
    torch.manual_seed(0)
    model = tiny().eval()  # built for 16x16: a 4x4 latent grid
    x = torch.randn(1, 4, 32, 24, 3)  # another, non-square grid
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 1, 32, 24, 3)
    # The same as a model built for 32x24 holding the bilinearly resized embedding.
    native = tiny(img_size=(32, 24)).eval()
    state = model.state_dict()
    state["pos_embed"] = torch.nn.functional.interpolate(state["pos_embed"], size=(8, 6), mode="bilinear")
    native.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(native(x), y)
        # And the embedding matters: without resizing it the answer changes.
        state["pos_embed"] = torch.zeros_like(state["pos_embed"])
        native.load_state_dict(state)
        assert not torch.allclose(native(x), y)


def test_fewer_channels_are_padded_with_ones_and_dropped_on_output() -> None:
    torch.manual_seed(0)
    model = tiny(in_channels=4, out_channels=4).eval()
    x = torch.randn(2, 4, 16, 16, 2)
    padded = torch.cat([x, torch.ones(2, 4, 16, 16, 2)], dim=-1)
    with torch.no_grad():
        y = model(x)
        y_full = model(padded)
    assert y.shape == (2, 1, 16, 16, 2)
    torch.testing.assert_close(y, y_full[..., :2])
    with torch.no_grad():  # zero padding is not the convention and must differ
        y_zero = model(torch.cat([x, torch.zeros(2, 4, 16, 16, 2)], dim=-1))
    assert not torch.allclose(y_zero[..., :2], y)


def test_input_errors_are_one_line_usage_errors() -> None:
    model = tiny()
    with pytest.raises(UsageError, match="divisible by patch_size 4"):
        model(torch.randn(1, 4, 18, 16, 3))
    with pytest.raises(UsageError, match="at most 3"):
        model(torch.randn(1, 4, 16, 16, 5))
    with pytest.raises(UsageError, match="4 input frames"):
        model(torch.randn(1, 6, 16, 16, 3))
    with pytest.raises(UsageError, match="expects input"):
        model(torch.randn(1, 4, 16, 3))
    with pytest.raises(UsageError, match="divisible by patch_size"):
        tiny(img_size=18)
    with pytest.raises(UsageError, match="multiple of 8"):
        tiny(embed_dim=12)
    with pytest.raises(UsageError, match="unknown activation 'swish'"):
        tiny(act="swish")
    with pytest.raises(UsageError, match="unknown time aggregation"):
        tiny(time_agg="attention")


@pytest.mark.parametrize("transform", ["fft", "dft"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["official", "symmetric"])
@pytest.mark.parametrize("shape,modes", [
    ((16,), (5,)),
    ((12, 10), (4, 3)),  # truncated on both axes
    ((8, 8), (32, 32)),  # nothing truncated
    ((6, 8, 10), (3, 3, 2)),
    ((7, 9), (2, 5)),  # odd grids: no Nyquist mode
])
def test_fused_mixer_equals_reference(shape, modes, symmetric: bool, transform: str) -> None:
    torch.manual_seed(0)
    fused = FourierMixer(16, 4, modes, symmetric=symmetric)
    fused.transform = transform
    reference = ReferenceFourierMixer(16, 4, modes, symmetric=symmetric)
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(3, 16, *shape, requires_grad=True)
    y_fused = fused(x)
    y_ref = reference(x)
    torch.testing.assert_close(y_fused, y_ref, rtol=1e-5, atol=1e-6)
    g_fused = torch.autograd.grad(y_fused.sin().sum(), [x, fused.w1, fused.b2])
    g_ref = torch.autograd.grad(y_ref.sin().sum(), [x, reference.w1, reference.b2])
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_transform_is_the_dft_on_the_cpu_and_the_fft_elsewhere() -> None:
    from pdeb_dpot.spectral import transform_for

    assert transform_for(torch.device("cpu")) == "dft"
    assert transform_for(torch.device("meta")) == "fft" and transform_for(torch.device("cuda")) == "fft"
    assert transform_for(torch.device("cpu"), "fft") == "fft"
    with pytest.raises(ValueError, match="unknown spectral transform 'fast'"):
        use_transform(tiny(), "fast")


def test_kept_indices() -> None:
    assert kept_indices(16, 5, symmetric=False, half_axis=False) == [0, 1, 2, 3, 4]
    assert kept_indices(16, 5, symmetric=True, half_axis=False) == [0, 1, 2, 3, 4, 12, 13, 14, 15]
    assert kept_indices(9, 5, symmetric=True, half_axis=True) == [0, 1, 2, 3, 4]
    assert kept_indices(8, 5, symmetric=True, half_axis=False) == list(range(8))
    assert kept_indices(4, 32, symmetric=False, half_axis=False) == [0, 1, 2, 3]


def bias_only_mixer(modes, symmetric: bool, fused: str) -> FourierMixer:
    """A mixer with zero weights: it adds its bias b2 on every kept mode and nothing else."""
    mixer = (FourierMixer if fused else ReferenceFourierMixer)(8, 1, modes, symmetric=symmetric)
    if fused:
        mixer.transform = fused
    with torch.no_grad():
        for p in (mixer.w1, mixer.b1, mixer.w2):
            p.zero_()
        mixer.b2.fill_(1.0)
    return mixer


@pytest.mark.parametrize("fused", ["fft", "dft", ""], ids=["fft", "dft", "reference"])
def test_truncation_keeps_the_right_frequencies(fused: str) -> None:
    n = 12

    def kept(mixer: FourierMixer) -> tuple[set[int], set[int]]:
        spectrum = torch.fft.rfft2(mixer(torch.zeros(1, 8, n, n)), norm="ortho")[0, 0]  # (n, n//2+1)
        # Column 1 is not Hermitian-constrained along the first axis, so it shows the rows kept.
        rows = {i for i in range(n) if spectrum[i, 1].abs() > 1e-4}
        cols = {j for j in range(n // 2 + 1) if spectrum[0, j].abs() > 1e-4}
        return rows, cols

    assert kept(bias_only_mixer((3, 2), symmetric=False, fused=fused)) == ({0, 1, 2}, {0, 1})
    assert kept(bias_only_mixer((3, 2), symmetric=True, fused=fused)) == ({0, 1, 2, 10, 11}, {0, 1})
    assert kept(bias_only_mixer((32, 32), symmetric=False, fused=fused)) == (set(range(n)), set(range(7)))


@pytest.mark.parametrize("transform", ["fft", "dft"])
def test_transforms_run_in_float32_under_bf16(transform: str) -> None:
    torch.manual_seed(0)
    model = use_transform(tiny(), transform).eval()
    x = torch.randn(2, 4, 16, 16, 3)
    with torch.no_grad():
        exact = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
        half = model.to(torch.bfloat16)(x.to(torch.bfloat16))  # rfftn has no bf16 kernel
    for approx in (mixed, half):
        assert torch.isfinite(approx).all()
        rel = ((approx.float() - exact).norm() / exact.norm()).item()
        assert rel < 0.05
    mixer = use_transform(FourierMixer(16, 2, (4, 4)), transform).to(torch.bfloat16)
    assert mixer(torch.randn(1, 16, 8, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_smoke_model_learns_a_travelling_wave() -> None:
    from dataclasses import replace

    from pdebench_core.spec import DataSpec
    from pdeb_dpot import PROFILES, DPOTConfig, build

    n = 16
    generator = torch.Generator().manual_seed(0)
    axis = torch.arange(n) * (2 * torch.pi / n)

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        phase = torch.rand(size, 1, 1, 1, 1, generator=generator) * 2 * torch.pi
        t = torch.arange(11).view(1, 11, 1, 1, 1)
        u = torch.sin(axis.view(1, 1, n, 1, 1) - 0.3 * t + phase) \
            * torch.cos(2 * axis.view(1, 1, 1, n, 1) + 0.2 * t)  # (B, 11, X, Y, 1)
        return u[:, :10], u[:, 10:]  # (B, 10, X, Y, 1), (B, 1, X, Y, 1)

    torch.manual_seed(0)
    spec = DataSpec(name="wave", fields=("u",), spatial_shape=(n, n))
    model = build(replace(DPOTConfig(), **PROFILES["smoke"]), spec)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(60):
        x, y = batch(8)
        norm = lambda v: torch.linalg.vector_norm(v, dim=(1, 2, 3))  # noqa: E731  (B, C)
        error = norm(model(x) - y) / norm(y)
        loss = error.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.8
    assert max(losses[-10:]) < 0.2


def two_and_three_d(**overrides) -> MultiDimDPOT:
    torch.manual_seed(0)
    return MultiDimDPOT({2: tiny(2, **overrides), 3: tiny(3, img_size=8, modes=(4, 4, 2), **overrides)})


def test_multidim_shares_a_parameter_added_to_a_block_without_other_changes(monkeypatch) -> None:
    def with_gain(cls, forward_name: str) -> None:
        """Give every instance of ``cls`` a new scalar parameter that scales its output."""
        init, forward = cls.__init__, getattr(cls, forward_name)

        def patched_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            self.gain = torch.nn.Parameter(torch.full((), 1.5))

        monkeypatch.setattr(cls, "__init__", patched_init)
        monkeypatch.setattr(cls, forward_name, lambda self, *args: self.gain * forward(self, *args))

    with_gain(Block, "forward")
    with_gain(FourierMixer, "mix_modes")
    model = two_and_three_d()
    two, three = model.by_dim["2"], model.by_dim["3"]
    for index in range(2):
        assert two.blocks[index].gain is three.blocks[index].gain
        assert two.blocks[index].filter.gain is three.blocks[index].filter.gain
    three_only = {id(p) for p in three.parameters()} - {id(p) for p in two.parameters()}
    assert three_only == {id(p) for name, p in three.named_parameters()
                          if not name.startswith(("blocks.", "time_agg_layer."))}
    model(torch.randn(1, 4, 8, 8, 8, 3)).square().mean().backward()  # 3D data only
    for block in two.blocks:  # the 2D model's (shared) parameters learn from 3D data
        assert block.gain.grad is not None and block.filter.gain.grad is not None


def test_multidim_mixers_keep_each_dimensions_modes() -> None:
    model = two_and_three_d()
    mixer = model.by_dim["3"].blocks[0].filter
    assert mixer.modes_by_ndim == {2: (8, 8), 3: (4, 4, 2)}
    # The 3D model computes what a lone 3D model with the same weights computes.
    alone = tiny(3, img_size=8, modes=(4, 4, 2)).eval()
    own = alone.state_dict()  # the shared 1x1 convs keep the owner's 2D kernel shape
    alone.load_state_dict({key: value.reshape(own[key].shape) for key, value in model.by_dim["3"].state_dict().items()})
    x = torch.randn(2, 4, 8, 8, 8, 3)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), alone(x))


def test_multidim_refuses_models_that_cannot_share() -> None:
    with pytest.raises(UsageError, match="cannot share blocks: depth 2 vs 3"):
        MultiDimDPOT({2: tiny(2), 3: tiny(3, img_size=8, depth=3)})


def test_architecture_is_checked_when_created() -> None:
    arch = DPOTArchitecture(ndim=3, img_size=16, modes=(8, 8, 4), patch_size=4)
    assert arch.img_size == (16, 16, 16) and arch.modes == (8, 8, 4) and arch.latent_shape == (4, 4, 4)
    with pytest.raises(UsageError, match="one value per axis"):
        DPOTArchitecture(ndim=3, modes=(8, 8))
    with pytest.raises(UsageError, match="1, 2 or 3 spatial dimensions"):
        DPOTArchitecture(ndim=4)
    with pytest.raises(UsageError, match="normalize=True needs out_channels == in_channels"):
        DPOTArchitecture(normalize=True, in_channels=4, out_channels=2)


def test_the_cpu_transform_trains_after_its_first_call_ran_in_inference_mode() -> None:
    mixer = FourierMixer(8, 2, (3, 2))  # a grid no other test uses, so its bases are built here
    mixer.transform = "dft"
    x = torch.randn(1, 8, 13, 11)
    with torch.inference_mode():
        mixer(x)
    mixer(x.requires_grad_()).square().sum().backward()  # the cached bases are not inference tensors
    assert torch.isfinite(x.grad).all() and mixer.w1.grad is not None


@pytest.mark.parametrize("time_agg", ["exp_mlp", "mlp"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_the_folded_time_aggregation_equals_the_official_form(ndim: int, time_agg: str) -> None:
    torch.manual_seed(0)
    fused = tiny(ndim, img_size=8, time_agg=time_agg)
    reference = use_reference_layers(tiny(ndim, img_size=8, time_agg=time_agg))
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, *(8,) * ndim, 3)
    results = []
    for model in (fused, reference):
        out = model(x)
        trainable = [p for p in model.parameters() if p.requires_grad]
        results.append((out, torch.autograd.grad(out.sin().sum(), trainable)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    names = [name for name, p in fused.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
