"""Tests of the declaration helpers of frames-as-channels model plugins (``pdebench_core.model_plugin``)
and their base module (``pdebench_core.folded_model``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from pdebench_core.errors import UsageError
from pdebench_core.folded_model import FoldedFrameModel, two_layer_mlp
from pdebench_core.model_plugin import folded_model, integer_fields, require_choice, require_grid_divisible
from pdebench_core.testing.models import check_model_card, check_model_contract, toy_spec
from pdebench_core.models import append_coordinates, fold_time, unfold_time


@dataclass
class ToyConfig:
    """Config of the toy model.

    Attributes:
        width: Hidden width.
        heads: Heads; must divide ``width``.
        scale: Output scale.
        use_grid: Append the coordinates.
    """

    width: int = 8
    heads: int = 2
    scale: float = 1.0
    use_grid: bool = True


class Toy(FoldedFrameModel):
    label = "Toy"

    def __init__(self, ndim: int, in_channels: int, out_frames: int, n_fields: int, width: int, heads: int,
                 scale: float, use_grid: bool, extra: str = "") -> None:
        super().__init__(ndim, in_channels, out_frames, n_fields, use_grid)
        self.received = {"width": width, "heads": heads, "scale": scale, "use_grid": use_grid, "extra": extra}
        self.net = two_layer_mlp(self.body_channels, width, self.out_channels)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        return self.received["scale"] * self.net(h)


PROFILES = {"smoke": {"width": 4}, "small": {}, "paper": {"width": 16}}


def _derive(cfg, spec) -> dict:
    if spec.spatial_shape[0] < 4:
        raise UsageError("model.toy needs 4 points")
    return {"extra": f"grid {spec.spatial_shape}"}


build, register_models = folded_model(
    "toy", ToyConfig, PROFILES, f"{__name__}:Toy", derive=_derive, heads_divide=("width",),
    dims=(1, 2), description="a toy", paper="none",
)


def test_registration_carries_the_card_and_the_factory():
    card = check_model_card(register_models, "toy", build, ToyConfig, dims=(1, 2))
    assert card["description"] == "a toy" and card["paper"] == "none" and card["profiles"] is PROFILES
    assert register_models.__doc__ == "Register the ``toy`` model."


def test_two_folded_models_in_one_module_are_both_found_whatever_their_hooks_are_called():
    import types

    import pluggy

    from pdebench_core import hookspecs

    module = types.ModuleType("two_models")
    module.build, module.register_models = build, register_models
    module.build_wide, module.register_wide = folded_model(
        "toy-wide", ToyConfig, PROFILES, f"{__name__}:Toy", description="a wide toy", paper="none")
    manager = pluggy.PluginManager("pdeb")
    manager.add_hookspecs(hookspecs)
    manager.register(module)
    manager.check_pending()  # a hook under another name is not an unknown hook
    names: list[str] = []
    manager.hook.register_models(register=lambda name, factory, **card: names.append(name))
    assert sorted(names) == ["toy", "toy-wide"]


def test_build_passes_sizes_typed_fields_and_derived_arguments():
    cfg = OmegaConf.structured(ToyConfig(width=6, scale=2))  # omegaconf values, as a run passes them
    spec = toy_spec((8, 4), fields=("u", "v"), t_out=3)
    model = build(cfg, spec)
    assert (model.ndim, model.in_channels, model.out_frames, model.n_fields) == (2, spec.t_in * 2, 3, 2)
    assert model.received == {"width": 6, "heads": 2, "scale": 2.0, "use_grid": True, "extra": "grid (8, 4)"}
    assert [type(v) for v in model.received.values()] == [int, int, float, bool, str]
    check_model_contract(build, ToyConfig(), spec)


def test_build_runs_the_common_checks_then_the_derived_ones():
    with pytest.raises(UsageError, match=r"model 'toy' supports 1D and 2D data"):
        build(ToyConfig(), toy_spec((4, 4, 4)))
    with pytest.raises(UsageError, match=r"model.width must be a positive integer for toy, got 0"):
        build(ToyConfig(width=0), toy_spec((8,)))
    with pytest.raises(UsageError, match=r"model.heads \(3\) must divide width \(8\) for toy"):
        build(ToyConfig(heads=3), toy_spec((8,)))
    with pytest.raises(UsageError, match="needs 4 points"):
        build(ToyConfig(), toy_spec((2,)))


def test_every_integer_field_is_a_size_that_must_be_positive_unless_the_plugin_says_which():
    assert integer_fields(ToyConfig) == ("width", "heads")  # not the float, not the bool
    with pytest.raises(UsageError, match=r"model.heads must be a positive integer for toy, got 0"):
        build(ToyConfig(heads=0), toy_spec((8,)))
    named, _ = folded_model("toy", ToyConfig, PROFILES, f"{__name__}:Toy", positive=("width",), description="",
                            paper="")
    with pytest.raises(UsageError, match=r"model.width must be a positive integer for toy, got -1"):
        named(ToyConfig(width=-1), toy_spec((8,)))
    assert isinstance(named(ToyConfig(heads=-1), toy_spec((8,))), Toy)  # heads is not a size here


def test_folded_frame_model_folds_appends_coordinates_and_unfolds():
    torch.manual_seed(0)
    model = Toy(ndim=2, in_channels=6, out_frames=2, n_fields=3, width=5, heads=1, scale=1.0, use_grid=True)
    x = torch.randn(2, 2, 6, 4, 3)  # (B, t_in, *S, C)
    expected = unfold_time(model.net(append_coordinates(fold_time(x))), (6, 4), 2)
    torch.testing.assert_close(model(x), expected)
    assert model.body_channels == 6 + 2 and model.out_channels == 6
    with pytest.raises(ValueError, match=r"Toy built for \(B, 2, <2 axes>, 3\) inputs"):
        model(torch.randn(2, 3, 6, 4, 3))


def test_base_holds_no_parameters_of_its_own():
    model = Toy(ndim=1, in_channels=2, out_frames=1, n_fields=1, width=3, heads=1, scale=1.0, use_grid=False)
    assert [name for name, _ in model.named_parameters()] == ["net.0.weight", "net.0.bias", "net.2.weight",
                                                               "net.2.bias"]
    assert isinstance(model.net[1], nn.GELU)


def test_choice_and_divisibility_messages_name_the_setting():
    with pytest.raises(UsageError, match=r"model.norm of toy must be one of group, none, got 'layer'"):
        require_choice(OmegaConf.create({"norm": "layer"}), "norm", ("group", "none"), model="toy")
    with pytest.raises(UsageError, match=r"divisible by 8 \(patch_size=8\); dataset 'toy' has \(12,\) "
                                         r"\(change model.patch_size or resize the data\)"):
        require_grid_divisible(toy_spec((12,)), 8, "toy", setting="patch_size", reason="patch_size=8")
    require_grid_divisible(toy_spec((16,)), 8, "toy", setting="patch_size", reason="patch_size=8")


def test_integer_fields_tolerate_annotations_only_type_checkers_can_resolve():
    namespace: dict = {}
    exec("from __future__ import annotations\nfrom dataclasses import dataclass\n"
         "@dataclass\nclass Hinted:\n    width: int = 4\n    table: Unresolvable | None = None\n", namespace)
    assert integer_fields(namespace["Hinted"]) == ("width",)


def test_a_folded_models_wrong_target_or_constructor_is_named(monkeypatch):
    """A typo in 'module:Class', or a class that does not take every config field, says so."""
    spec = toy_spec((8,))
    typo, _ = folded_model("typo", ToyConfig, PROFILES, f"{__name__}:Tyo", description="x", paper="y")
    with pytest.raises(ImportError, match=r"folded_model 'typo': target '.*:Tyo' names no class"):
        typo(ToyConfig(), spec)

    class Narrow(Toy):
        def __init__(self, ndim, in_channels, out_frames, n_fields, width, heads, scale):  # no use_grid
            super().__init__(ndim, in_channels, out_frames, n_fields, width, heads, scale, True)

    monkeypatch.setitem(globals(), "Narrow", Narrow)  # importable as f"{__name__}:Narrow"
    narrow, _ = folded_model("narrow", ToyConfig, PROFILES, f"{__name__}:Narrow", description="x", paper="y")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'use_grid'; folded_model passes every config "
                                        r"field and the data's sizes as keywords: ndim, "):
        narrow(ToyConfig(), spec)


def test_a_models_settings_are_refused_before_any_data_is_made(private_home):
    """A bad size is found when the run is configured: the paper profile's data would
    otherwise be generated first, for hours, before the model refused it."""
    from typer.testing import CliRunner

    from pdebench_core.cli import app

    registered = {}
    register_models(lambda name, factory, **settings: registered.update(settings))
    with pytest.raises(UsageError, match=r"model.heads \(3\) must divide width \(8\) for toy"):
        registered["check"](OmegaConf.structured(ToyConfig(heads=3)))
    registered["check"](OmegaConf.structured(ToyConfig()))  # fine settings pass
    result = CliRunner().invoke(app, ["run", "--model", "fno", "--data", "ns2d", "--profile", "paper",
                                      "model.width=0"])
    assert result.exit_code == 2 and result.output.strip() == ("error: model.width must be a positive integer "
                                                               "for fno, got 0")
    assert not (private_home / "data").exists() or not any((private_home / "data").iterdir())


def test_a_folded_models_own_check_runs_when_configured_and_when_built():
    """A model's `check=` (a choice, a sign) joins the size checks before any data, and guards a direct build."""
    def scale_positive(cfg) -> None:
        if not float(cfg.scale) > 0:
            raise UsageError(f"model.scale must be positive, got {cfg.scale}")

    checked, register = folded_model("toy", ToyConfig, PROFILES, f"{__name__}:Toy", check=scale_positive,
                                     description="", paper="")
    registered = {}
    register(lambda name, factory, **settings: registered.update(settings))
    with pytest.raises(UsageError, match=r"^model.scale must be positive, got 0.0$"):
        registered["check"](OmegaConf.structured(ToyConfig(scale=0.0)))
    with pytest.raises(UsageError, match=r"model.width must be a positive integer for toy, got 0"):
        registered["check"](OmegaConf.structured(ToyConfig(width=0)))  # the size checks still run first
    with pytest.raises(UsageError, match=r"^model.scale must be positive, got -1.0$"):
        checked(ToyConfig(scale=-1.0), toy_spec((8,)))


@pytest.mark.parametrize("model, setting, message", [
    ("fno", "model.padding=-1", "model.padding must be >= 0, got -1"),
    ("unet", "model.norm=layer", "model.norm of unet must be one of group, batch, none, got 'layer'"),
    ("unet", "model.padding_mode=wrap", "model.padding_mode of unet must be one of auto, zeros, circular, "
                                        "replicate, reflect, got 'wrap'"),
    ("vit", "model.mlp_ratio=0", "model.mlp_ratio must be a positive number for vit, got 0.0"),
])
def test_bundled_models_refuse_a_bad_choice_or_sign_before_any_data(model, setting, message):
    from pdebench_core.config import build_config

    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        build_config(model=model, data="cfd3d", profile="paper", overrides=[setting])


def test_a_model_check_that_fails_names_the_model_and_its_plugin(monkeypatch):
    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.errors import PluginError

    fno = plugins.get("model", "fno")

    def broken(cfg):
        raise KeyError("width")

    monkeypatch.setattr(fno, "check", broken)
    with pytest.raises(PluginError, match=r"^model 'fno' \(plugin '[^']+'\) raised while checking its settings: "
                                          r"KeyError"):
        build_config(model="fno", data="ns2d", profile="smoke")


def test_a_model_check_reads_the_settings_and_cannot_change_them(monkeypatch):
    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.errors import PluginError

    seen = []
    fno = plugins.get("model", "fno")
    monkeypatch.setattr(fno, "check", lambda cfg: seen.append(int(cfg.width)))
    assert build_config(model="fno", data="ns2d", profile="smoke", overrides=["model.width=6"]).model.width == 6
    assert seen == [6]
    monkeypatch.setattr(fno, "check", lambda cfg: setattr(cfg, "width", 1))
    with pytest.raises(PluginError, match=r"raised while checking its settings: ReadonlyConfigError"):
        build_config(model="fno", data="ns2d", profile="smoke")
