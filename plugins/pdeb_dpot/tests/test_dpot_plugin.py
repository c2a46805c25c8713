"""The ``dpot`` plugin: registration, config schema, profiles and the factory."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import pdeb_dpot
from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec
from pdeb_dpot import PROFILES, SIZES, DPOTConfig, build, resolve_architecture

DATA = Path(__file__).parent / "data"


def registered() -> dict:
    calls = {}

    def register(name, factory, **card):
        calls[name] = dict(factory=factory, **card)

    pdeb_dpot.register_models(register)
    return calls


def config(profile: str = "smoke", **overrides):
    """The config as the core builds it: dataclass schema, then profile, then overrides."""
    cfg = OmegaConf.structured(DPOTConfig)
    return OmegaConf.merge(cfg, PROFILES[profile], overrides)


def spec(shape=(16, 16), fields=("u", "v"), t_in=10, t_out=1) -> DataSpec:
    return DataSpec(name="test", fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out)


def test_registration_card() -> None:
    card = registered()["dpot"]
    assert card["factory"] is build and card["config"] is DPOTConfig
    assert set(card["profiles"]) == {"smoke", "small", "paper"}
    assert tuple(card["dims"]) == (1, 2, 3)
    assert "ICML 2024" in card["paper"]
    names = {f.name for f in dataclasses.fields(DPOTConfig)}
    for profile in card["profiles"].values():
        assert set(profile) <= names


def test_import_is_cheap() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = "import sys, pdeb_dpot; print(sorted(m for m in ('torch', 'numpy', 'h5py') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("shape", [(32,), (16, 16), (8, 8, 8)])
def test_smoke_profile_builds_every_dimension(shape) -> None:
    model = build(config("smoke"), spec(shape, t_out=2))
    x = torch.randn(2, 10, *shape, 2)
    y = model(x)
    assert y.shape == (2, 2, *shape, 2)
    assert model.arch.in_channels == 2  # from the data when no checkpoint is given


def test_size_preset_and_explicit_overrides() -> None:
    assert resolve_architecture(config("paper")) == SIZES["ti"]
    arch = resolve_architecture(config("paper", size="m", depth=3))
    assert arch == {**SIZES["m"], "depth": 3}
    with pytest.raises(UsageError, match="did you mean 'ti'"):
        resolve_architecture(config("paper", size="tii"))
    with torch.device("meta"):
        model = build(config("paper"), spec((128, 128), fields=("a", "b", "c", "d")))
    assert sum(p.numel() for p in model.parameters()) == 7_534_643


def test_small_profile_is_small() -> None:
    model = build(config("small"), spec((64, 64), fields=("u",)))
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e5 < n_params < 2e6


def test_factory_errors() -> None:
    with pytest.raises(UsageError, match="divisible by patch_size 4"):
        build(config("smoke"), spec((30, 30)))
    with pytest.raises(UsageError, match="in_channels is 1"):
        build(config("smoke", in_channels=1), spec((16, 16), fields=("u", "v")))
    with pytest.raises(UsageError, match="does not exist"):
        build(config("smoke", init="no/such/file.pth"), spec())


def test_init_from_official_checkpoint_pads_channels(tmp_path: Path) -> None:
    ref = torch.load(DATA / "dpot2d_small.pt", weights_only=True)  # 4 channels, 32x32, patch 4
    path = tmp_path / "released.pth"
    torch.save({"model": {f"module.{k}": v for k, v in ref["state_dict"].items()}}, path)
    arch = dict(embed_dim=64, depth=2, n_blocks=4, mlp_ratio=1, out_layer_dim=16)
    cfg = config("paper", patch_size=4, init=str(path), **arch)
    # One-field data at another resolution: channels come from the checkpoint, the
    # positional embedding is interpolated.
    model = build(cfg, spec((16, 16), fields=("u",)))
    assert model.arch.in_channels == 4
    assert torch.equal(model.blocks[0].filter.w1, ref["state_dict"]["blocks.0.filter.w1"])
    y = model(torch.randn(2, 10, 16, 16, 1))
    assert y.shape == (2, 1, 16, 16, 1)
    # At the checkpoint's own grid, the output is the official one.
    model = build(cfg, spec((32, 32), fields=("a", "b", "c", "d"))).eval()
    with torch.no_grad():
        out = model(ref["input"].movedim(-2, 1)).movedim(1, -2)
    assert ((out - ref["output"]).abs().max() / ref["output"].abs().max()) <= 1e-5
    with pytest.raises(UsageError, match="does not fit the DPOT model"):
        build(config("paper", patch_size=4, init=str(path)), spec((32, 32)))


def test_init_3d_from_2d_checkpoint(tmp_path: Path) -> None:
    ref = torch.load(DATA / "dpot_2d_to_3d_transfer.pt", weights_only=True)
    path = tmp_path / "two_d.pth"
    torch.save({"model": ref["state_dict_2d"]}, path)
    arch = dict(embed_dim=32, depth=2, n_blocks=4, mlp_ratio=1, out_layer_dim=8)
    model = build(config("paper", patch_size=4, modes=4, init=str(path), **arch),
                  spec((8, 8, 8), fields=("a", "b", "c", "d", "e")))
    block_weight = ref["state_dict_2d"]["blocks.1.mlp.2.weight"]
    assert torch.equal(model.blocks[1].mlp[2].weight, block_weight.unsqueeze(-1))
    # The official default (finetune3d.py's load_components=['blocks']) leaves time aggregation fresh.
    assert not torch.equal(model.time_agg_layer.w, ref["state_dict_2d"]["time_agg_layer.w"])
    assert model.arch.in_channels == 5  # not taken from a checkpoint of another dimension
    with_time = build(config("paper", patch_size=4, modes=4, init=str(path), init_components=["blocks", "time_agg"],
                             **arch), spec((8, 8, 8), fields=("a", "b", "c", "d", "e")))
    assert torch.equal(with_time.time_agg_layer.w, ref["state_dict_2d"]["time_agg_layer.w"])


@pytest.mark.parametrize("setting, message", [
    ("model.size=xl", r"unknown DPOT size 'xl'"),
    ("model.embed_dim=36", r"model.embed_dim 36 must be a multiple of 8 \(GroupNorm groups\) and of model.n_blocks"),
    ("model.depth=0", r"model.depth must be a positive integer for dpot, got 0"),
    ("model.patch_size=-2", r"model.patch_size must be a positive integer for dpot, got -2"),
    ("model.act=swish", r"^model.act must be one of gelu, tanh, sigmoid, relu, leaky_relu, softplus, elu, silu for "
                        r"dpot, got 'swish'$"),
    ("model.time_agg=attention", r"^model.time_agg must be one of exp_mlp, mlp for dpot, got 'attention'$"),
])
def test_settings_dpot_cannot_take_are_refused_before_any_data(setting, message):
    """At the paper profile the data of ns2d and cfd3d takes hours to generate: a DPOT setting
    no grid can fix is refused when the run is configured."""
    from pdebench_core.config import build_config

    with pytest.raises(UsageError, match=message):
        build_config(model="dpot", data="ns2d,cfd3d", profile="paper", overrides=[setting])


def test_the_checked_activations_are_the_ones_the_model_builds():
    """The torch-free check and the mixer's constructors name the same activations."""
    from pdeb_dpot import ACTIVATION_NAMES
    from pdeb_dpot.mixer import ACTIVATIONS

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS)
