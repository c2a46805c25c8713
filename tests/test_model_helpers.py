"""Tests of the shared model-plugin helpers (``pdebench_core.models``) and the model
test helpers (``pdebench_core.testing.models``)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from pdebench_core.errors import UsageError
from pdebench_core.testing.models import (
    ModelPlugin,
    check_model_card,
    check_model_contract,
    check_model_learns,
    check_rejects_unsupported_dims,
    one_intra_op_thread,
    param_count,
    smooth_shift_problem,
    toy_spec,
)
from pdebench_core.models import (
    append_coordinates,
    check_dims,
    check_folded_input,
    check_min_grid,
    describe_dims,
    fold_time,
    folded_sizes,
    grid_coordinates,
    require_positive,
    unfold_time,
)

__all__ = ["one_intra_op_thread"]  # autouse in this module


# A minimal frames-as-channels model built from the helpers under test.
@dataclass
class PointwiseConfig:
    """Config of the toy model.

    Attributes:
        hidden: Hidden width of the pointwise MLP.
    """

    hidden: int = 8


class Pointwise(nn.Module):
    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, hidden: int) -> None:
        super().__init__()
        self.ndim, self.in_channels, self.out_frames, self.n_fields = ndim, in_channels, out_frames, n_fields
        self.net = nn.Sequential(nn.Linear(in_channels + ndim, hidden), nn.GELU(), nn.Linear(hidden, out_frames * n_fields))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_folded_input(x, self.ndim, self.in_channels, self.n_fields, "Pointwise")
        h = append_coordinates(fold_time(x))  # (B, *S, T*C + ndim)
        return unfold_time(self.net(h), x.shape[2:-1], self.out_frames)  # (B, t_out, *S, C)


def build_pointwise(cfg: PointwiseConfig, spec) -> nn.Module:
    check_dims(spec, (1, 2, 3), "pointwise")
    require_positive(cfg, "hidden", model="pointwise")
    return Pointwise(**folded_sizes(spec), hidden=int(cfg.hidden))


class WrongFrames(nn.Module):
    """Returns ``t_in`` frames instead of ``t_out``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Frozen(nn.Module):
    """Has a parameter that does not reach the output: its loss can never fall."""

    def __init__(self, t_out: int) -> None:
        super().__init__()
        self.t_out = t_out
        self.unused = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1:].expand(-1, self.t_out, *x.shape[2:]) + 0 * self.unused.sum()


# ---- pdebench_core.models -------------------------------------------------------------


def test_describe_dims():
    assert describe_dims((1, 2, 3)) == "1D, 2D and 3D"
    assert describe_dims((1, 2)) == "1D and 2D"
    assert describe_dims((2,)) == "2D"


def test_check_dims_message():
    check_dims(toy_spec((8, 8)), (2, 3), "m")
    with pytest.raises(UsageError) as error:
        check_dims(toy_spec((8,), name="line"), (2, 3), "m")
    assert str(error.value) == "model 'm' supports 2D and 3D data; dataset 'line' has 1 spatial axes"


def test_require_positive_reports_the_first_bad_key():
    @dataclass
    class Cfg:
        a: int = 1
        b: int = 0
        c: int = -2

    require_positive(Cfg(b=3, c=1), "a", "b", "c", model="m")
    with pytest.raises(UsageError) as error:
        require_positive(Cfg(), "a", "c", "b", model="my-model")
    assert str(error.value) == "model.c must be a positive integer for my-model, got -2"


def test_require_positive_reads_omegaconf_sections():
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.structured(PointwiseConfig), {"hidden": 0})
    with pytest.raises(UsageError, match="model.hidden must be a positive integer for pointwise, got 0"):
        require_positive(cfg, "hidden", model="pointwise")


def test_check_min_grid_counts_the_padding():
    check_min_grid(toy_spec((2, 5)), "m")
    check_min_grid(toy_spec((1, 5)), "m", padding=1)
    with pytest.raises(UsageError) as error:
        check_min_grid(toy_spec((1, 5)), "m")
    assert str(error.value) == "model 'm' needs at least 2 grid points per axis, got (1, 5)"
    with pytest.raises(UsageError, match="at least 4 grid points"):
        check_min_grid(toy_spec((3, 5)), "m", minimum=4)


def test_folded_sizes():
    spec = toy_spec((8, 6), fields=("u", "v", "p"), t_in=4, t_out=2)
    assert folded_sizes(spec) == {"ndim": 2, "in_channels": 12, "out_frames": 2, "n_fields": 3}


def test_fold_time_layout_and_unfold_inverse():
    x = torch.randn(2, 4, 5, 6, 3)  # (B, T, X, Y, C)
    folded = fold_time(x)
    assert folded.shape == (2, 5, 6, 12)
    for t in range(4):
        for c in range(3):
            assert torch.equal(folded[..., t * 3 + c], x[:, t, ..., c])
    assert torch.equal(unfold_time(folded, (5, 6), 4), x)
    # points flattened into one axis, as attention models hold them
    assert torch.equal(unfold_time(folded.reshape(2, 30, 12), (5, 6), 4), x)


def test_grid_coordinates_values_and_dtype():
    like = torch.zeros((), dtype=torch.float64)
    coords = grid_coordinates((3, 5), like)
    assert coords.shape == (3, 5, 2) and coords.dtype == torch.float64
    assert torch.equal(coords[:, 0, 0], torch.tensor([0.0, 1 / 3, 2 / 3], dtype=torch.float64))
    assert torch.equal(coords[0, :, 1], torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8], dtype=torch.float64))
    assert torch.equal(coords[2, 3], torch.tensor([2 / 3, 0.6], dtype=torch.float64))
    fine = grid_coordinates((6, 10), like)
    assert torch.equal(fine[::2, ::2], coords)  # nested grids share their points
    assert grid_coordinates((4,), torch.zeros(1)).shape == (4, 1)


def test_append_coordinates():
    h = torch.randn(2, 4, 3, 5)  # (B, X, Y, F)
    out = append_coordinates(h)
    assert out.shape == (2, 4, 3, 7)
    assert torch.equal(out[..., :5], h)
    assert torch.equal(out[1, ..., 5:], grid_coordinates((4, 3), h))


def test_check_folded_input_message():
    x = torch.zeros(1, 3, 8, 8, 2)
    check_folded_input(x, ndim=2, in_channels=6, n_fields=2, model="Toy")
    for bad in (torch.zeros(1, 4, 8, 8, 2), torch.zeros(1, 3, 8, 2), torch.zeros(1, 6, 8, 8, 1)):
        with pytest.raises(ValueError) as error:
            check_folded_input(bad, ndim=2, in_channels=6, n_fields=2, model="Toy")
        assert str(error.value) == f"Toy built for (B, 3, <2 axes>, 2) inputs, got {tuple(bad.shape)}"


# ---- pdebench_core.testing.models -------------------------------------------------------


def test_fixture_runs_on_one_thread():
    assert torch.get_num_threads() == 1


def test_contract_holds_for_a_correct_model():
    spec = toy_spec((8, 6), fields=("u", "v"), t_in=3, t_out=2)
    model = check_model_contract(build_pointwise, PointwiseConfig(), spec)
    assert isinstance(model, Pointwise)
    assert param_count(model) == (6 + 2) * 8 + 8 + 8 * 4 + 4


def test_contract_fails_on_a_wrong_output_shape():
    with pytest.raises(AssertionError, match=r"output shape \(2, 3, 8, 1\).*expected \(2, 1, 8, 1\)"):
        check_model_contract(lambda cfg, spec: WrongFrames(), None, toy_spec((8,)))


def test_contract_fails_on_non_finite_output_dtype_or_no_module():
    class Nan(WrongFrames):
        def forward(self, x):
            return x[:, -1:] * float("nan")

    class Double(WrongFrames):
        def forward(self, x):
            return x[:, -1:].double()

    with pytest.raises(AssertionError, match="non-finite"):
        check_model_contract(lambda cfg, spec: Nan(), None, toy_spec((8,)))
    with pytest.raises(AssertionError, match="dtype"):
        check_model_contract(lambda cfg, spec: Double(), None, toy_spec((8,)))
    with pytest.raises(AssertionError, match="not a torch.nn.Module"):
        check_model_contract(lambda cfg, spec: (lambda x: x), None, toy_spec((8,)))


@pytest.mark.parametrize("shape, t_out", [((12,), 1), ((8, 6), 1), ((4, 6, 5), 2)])
def test_smooth_shift_problem(shape, t_out):
    spec = toy_spec(shape, fields=("u", "v"), t_in=2, t_out=t_out)
    torch.manual_seed(0)
    x, target = smooth_shift_problem(spec, batch=3)
    assert x.shape == (3, 2, *shape, 2) and target.shape == (3, t_out, *shape, 2)
    for j in range(t_out):
        assert torch.equal(target[:, j], torch.roll(x[:, -1], shifts=j + 1, dims=1))
    assert x.abs().max() <= len(shape) + 1e-6  # a sum of one sine or cosine per axis
    torch.manual_seed(0)
    again, _ = smooth_shift_problem(spec, batch=3)
    assert torch.equal(x, again)


def test_learning_check_passes_and_fails():
    spec = toy_spec((16,), t_in=2)
    losses = check_model_learns(build_pointwise, PointwiseConfig(hidden=16), spec, steps=40, factor=0.9)
    assert len(losses) == 40 and losses[-1] < 0.9 * losses[0]
    with pytest.raises(AssertionError, match="loss went from"):
        check_model_learns(lambda cfg, s: Frozen(s.t_out), None, spec, steps=5, factor=0.9)
    with pytest.raises(ValueError, match="both"):
        check_model_learns(build_pointwise, PointwiseConfig(), spec, steps=1, factor=1.0, inputs=torch.zeros(1))


def test_learning_check_is_reproducible_for_a_seed():
    spec = toy_spec((8, 8), t_in=2)
    first = check_model_learns(build_pointwise, PointwiseConfig(), spec, steps=3, factor=1.0, seed=5)
    second = check_model_learns(build_pointwise, PointwiseConfig(), spec, steps=3, factor=1.0, seed=5)
    assert first == second


def _register_hook(**card_changes):
    def register_models(register):
        card = dict(config=PointwiseConfig, profiles={"smoke": {"hidden": 2}, "small": {}, "paper": {}},
                    dims=(1, 2, 3), paper="Nobody, 2024")
        card.update(card_changes)
        register("pointwise", build_pointwise, **card)

    return register_models


def test_card_check():
    card = check_model_card(_register_hook(), "pointwise", build_pointwise, PointwiseConfig)
    assert card["paper"] == "Nobody, 2024"
    with pytest.raises(AssertionError, match="not 'other'"):
        check_model_card(_register_hook(), "other", build_pointwise, PointwiseConfig)
    with pytest.raises(AssertionError, match="factory"):
        check_model_card(_register_hook(), "pointwise", lambda cfg, spec: None, PointwiseConfig)
    with pytest.raises(AssertionError, match="dims"):
        check_model_card(_register_hook(dims=(2,)), "pointwise", build_pointwise, PointwiseConfig)
    assert check_model_card(_register_hook(dims=None), "pointwise", build_pointwise, PointwiseConfig)  # any data
    with pytest.raises(AssertionError, match="dims"):
        check_model_card(_register_hook(dims=None), "pointwise", build_pointwise, PointwiseConfig, dims=(2,))
    with pytest.raises(AssertionError, match="profiles"):
        check_model_card(_register_hook(profiles={"smoke": {}}), "pointwise", build_pointwise, PointwiseConfig)
    with pytest.raises(AssertionError, match="profile 'small'"):
        bad = {"smoke": {}, "small": {"width": 3}, "paper": {}}
        check_model_card(_register_hook(profiles=bad), "pointwise", build_pointwise, PointwiseConfig)


def test_unsupported_dims_check():
    message = check_rejects_unsupported_dims(build_pointwise, PointwiseConfig())
    assert message == "model 'pointwise' supports 1D, 2D and 3D data; dataset 'toy4d' has 4 spatial axes"
    with pytest.raises(AssertionError, match="accepted"):
        check_rejects_unsupported_dims(lambda cfg, spec: None, None)

    def vague(cfg, spec):
        raise UsageError("bad data")

    with pytest.raises(AssertionError, match="does not name"):
        check_rejects_unsupported_dims(vague, None)


def test_model_plugin_binds_the_checks_to_its_factory_and_profiles():
    profiles = {"smoke": {"hidden": 3}, "small": {"hidden": 5}, "paper": {}}
    # Only the hook is needed: the factory and profiles are what it registers.
    package = SimpleNamespace(register_models=_register_hook(profiles=profiles))
    plugin = ModelPlugin.of(package, "pointwise", PointwiseConfig)
    assert plugin.build is build_pointwise and plugin.profiles == profiles
    assert plugin.smoke == PointwiseConfig(hidden=3)
    assert plugin.check_card()["paper"] == "Nobody, 2024"
    model = plugin.check_contract(plugin.smoke, toy_spec((8,), t_out=2))
    assert model.net[0].out_features == 3
    assert "pointwise" in plugin.check_rejects_unsupported_dims(plugin.smoke)
    with pytest.raises(AssertionError, match=r"registered \['pointwise'\], not 'other'; if another hook of .* "
                                             r"registers it, pass that hook: ModelPlugin.of\(\.\.\., register_models="):
        ModelPlugin.of(package, "other", PointwiseConfig)
    elsewhere = ModelPlugin.of(SimpleNamespace(), "pointwise", PointwiseConfig, register_models=package.register_models)
    assert elsewhere.smoke == plugin.smoke
    wrong = ModelPlugin(name="wrong", build=lambda cfg, spec: WrongFrames(), config=PointwiseConfig, profiles=profiles,
                        register_models=package.register_models)
    with pytest.raises(AssertionError, match="output shape"):
        wrong.check_contract(wrong.smoke, toy_spec((8,)))


def test_the_plugin_checks_default_to_the_dimensions_the_model_registers():
    """A model registered for 2D data only passes the shared checks without restating its dims."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from pdebench_core.model_plugin import folded_model
    from pdebench_core.testing.models import ModelPlugin

    @dataclass
    class FlatConfig:
        width: int = 4

    build, register_models = folded_model(
        "flat-2d", FlatConfig, {"smoke": {}, "small": {}, "paper": {}}, "pdeb_fno.model:FNO",
        description="a 2D-only model", paper="none", dims=(2,))
    model = ModelPlugin.of(SimpleNamespace(register_models=register_models), "flat-2d", FlatConfig)
    assert model.dims == (2,)
    assert "supports 2D data" in model.check_rejects_unsupported_dims(model.smoke)


def test_the_learning_check_names_a_wrong_output_shape_first():
    """(B, *S, C) instead of (B, t_out, *S, C) broadcasts in the loss; the check says so."""
    spec = toy_spec((8,))

    def squeezed(cfg, spec):
        import torch

        class Squeezed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = torch.nn.Parameter(torch.ones(1))

            def forward(self, x):
                return self.scale * x[:, -1]  # (B, *S, C): the time axis dropped

        return Squeezed()

    with pytest.raises(AssertionError, match=r"the model returned shape \(3, 8, 1\) for targets \(3, 1, 8, 1\)"):
        check_model_learns(squeezed, None, spec, steps=2, factor=0.9)

