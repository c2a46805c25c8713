"""Checkpoint loading: released layouts, our run checkpoints, refusals and mismatch messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pdebench_core.errors import UsageError
from pdeb_dpot.checkpoint import load_pretrained, one_dimension, read_state_dict
from pdeb_dpot.official import build_official, from_official_layout, infer_official_config, to_official_layout

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(DATA / "dpot2d_small.pt", weights_only=True)


def official_output(model: torch.nn.Module, ref: dict) -> torch.Tensor:
    with torch.no_grad():
        return to_official_layout(model.eval()(from_official_layout(ref["input"])))


def fresh(ref: dict, **overrides) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_official({**ref["config"], **overrides})


@pytest.mark.parametrize("layout", ["released", "ddp-prefixed", "bare", "pdeb-run"])
def test_loads_every_checkpoint_layout(tmp_path: Path, reference: dict, layout: str) -> None:
    state = reference["state_dict"]
    content = {
        "released": {"model": state},
        "ddp-prefixed": {"model": {f"module.{k}": v for k, v in state.items()}},
        "bare": state,
        "pdeb-run": {"model": state, "config": {"model": {"size": "ti"}}, "step": 10,
                     "versions": {"torch": str(torch.__version__)}},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(content, path)
    model = fresh(reference)
    loaded = load_pretrained(model, path)
    assert sorted(loaded) == sorted(state)
    out = official_output(model, reference)
    assert ((out - reference["output"]).abs().max() / reference["output"].abs().max()) <= 1e-5


def test_refuses_a_pickled_module(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    refusal = "not a weights-only checkpoint.*torch.nn.modules.linear.Linear"
    with pytest.raises(UsageError, match=refusal) as info:
        read_state_dict(path)
    assert "\n" not in str(info.value)


def test_missing_corrupt_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(UsageError, match="cannot read DPOT checkpoint") as info:
        read_state_dict(corrupt)
    assert "\n" not in str(info.value)
    other = tmp_path / "other.pth"
    torch.save({"epoch": 3, "lr": 0.1}, other)
    with pytest.raises(UsageError, match="holds no model state dict"):
        read_state_dict(other)


def test_mismatch_names_the_first_keys_and_shapes(reference: dict) -> None:
    wider = fresh(reference, embed_dim=32)
    with pytest.raises(UsageError) as info:
        load_pretrained(wider, reference["state_dict"])
    message = str(info.value)
    assert "\n" not in message
    assert "shape mismatch" in message and "pos_embed (1, 64, 8, 8) vs model (1, 32, 8, 8)" in message
    assert "embed_dim=64" in message  # describes what the checkpoint is

    deeper = fresh(reference, depth=3)
    with pytest.raises(UsageError, match=r"1 missing key|missing key\(s\): blocks\.2\."):
        load_pretrained(deeper, reference["state_dict"])

    shallower = fresh(reference, depth=1)
    with pytest.raises(UsageError, match=r"unexpected key\(s\): blocks\.1\."):
        load_pretrained(shallower, reference["state_dict"])


def test_components_only_touch_their_parameters(reference: dict) -> None:
    model = fresh(reference)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_pretrained(model, reference["state_dict"], components=["blocks"])
    after = model.state_dict()
    assert loaded and all(k.startswith("blocks.") for k in loaded)
    for key in after:
        source = reference["state_dict"][key] if key.startswith("blocks.") else before[key]
        assert torch.equal(after[key], source), key
    with pytest.raises(UsageError, match="unknown DPOT component 'bloks'"):
        load_pretrained(model, reference["state_dict"], components=["bloks"])


def test_positional_embedding_is_interpolated_to_a_new_grid(reference: dict) -> None:
    model = fresh(reference, img_size=64)  # checkpoint trained at 32 (8x8 latent)
    load_pretrained(model, reference["state_dict"])
    assert model.pos_embed.shape == (1, 64, 16, 16)
    pos = reference["state_dict"]["pos_embed"]
    # Bilinear upsampling by 2 keeps the mean of the embedding.
    torch.testing.assert_close(model.pos_embed.mean(dim=(2, 3)), pos.mean(dim=(2, 3)), atol=1e-3, rtol=0)
    with torch.no_grad():
        y = model(torch.randn(1, 10, 64, 64, 4))
    assert y.shape == (1, 1, 64, 64, 4) and torch.isfinite(y).all()


def test_infer_official_config(reference: dict) -> None:
    config = infer_official_config(reference["state_dict"])
    expected = {k: v for k, v in reference["config"].items() if k != "modes"}
    assert {k: config[k] for k in expected} == expected
    assert config["ndim"] == 2 and config["normalize"] is False
    normalize = torch.load(DATA / "dpot2d_normalize.pt", weights_only=True)
    assert infer_official_config(normalize["state_dict"])["normalize"] is True
    three_d = torch.load(DATA / "dpot3d_small.pt", weights_only=True)
    assert infer_official_config(three_d["state_dict"])["ndim"] == 3
    with pytest.raises(UsageError, match="not a DPOT state dict"):
        infer_official_config({"weight": torch.zeros(2)})


def test_2d_checkpoint_in_3d_model_copies_blocks_by_default_and_time_agg_on_request() -> None:
    ref = torch.load(DATA / "dpot_2d_to_3d_transfer.pt", weights_only=True)
    two_d = ref["state_dict_2d"]
    torch.manual_seed(0)
    default = build_official(ref["config_3d"], ndim=3)
    before = {k: v.clone() for k, v in default.state_dict().items()}
    copied = load_pretrained(default, two_d)  # no components named: the official default
    assert copied and all(k.startswith("blocks.") for k in copied)
    assert torch.equal(default.time_agg_layer.w, before["time_agg_layer.w"])
    assert not torch.equal(default.time_agg_layer.w, two_d["time_agg_layer.w"])
    both = build_official(ref["config_3d"], ndim=3)
    load_pretrained(both, two_d, components=["blocks", "time_agg"])
    assert torch.equal(both.time_agg_layer.w, two_d["time_agg_layer.w"])


def _dpot(ndim: int, seed: int):
    from pdeb_dpot.model import DPOT, DPOTArchitecture

    torch.manual_seed(seed)
    return DPOT(DPOTArchitecture(ndim=ndim, img_size=8, patch_size=4, in_channels=2, out_channels=2, in_timesteps=2,
                                 embed_dim=16, depth=2, n_blocks=2, modes=2 if ndim < 3 else (2, 2, 2),
                                 out_layer_dim=4))


def test_one_dataset_fine_tunes_from_a_2d_plus_3d_pretraining(tmp_path: Path) -> None:
    """The paper's workflow: pre-train one DPOT on 2D and 3D data, fine-tune it on one dataset.
    task.checkpoint and model.init both take that dimension's model out of the mixed checkpoint."""
    from pdeb_dpot.multidim import MultiDimDPOT

    from pdebench_core.weights import load_weights

    mixed = MultiDimDPOT({2: _dpot(2, 0), 3: _dpot(3, 1)})
    path = tmp_path / "last.pt"
    torch.save({"model": mixed.state_dict(), "step": 7}, path)
    for ndim in (2, 3):
        single = _dpot(ndim, 5)
        load_weights(single, str(path))  # task.checkpoint
        theirs = mixed.by_dim[str(ndim)].state_dict()
        assert all(torch.equal(v, theirs[k].reshape(v.shape)) for k, v in single.state_dict().items())
        x = torch.randn(1, 2, *(8,) * ndim, 2)
        assert torch.equal(single(x), mixed(x))
        init = _dpot(ndim, 6)
        load_pretrained(init, one_dimension(read_state_dict(path), ndim))  # model.init
        assert torch.equal(init(x), mixed(x))
    with pytest.raises(UsageError, match="holds DPOT for 2D, 3D data, not 1D; start a 1D model from it with "
                                         "model.init"):
        load_weights(_dpot(1, 0), str(path))
    lower = tmp_path / "mixed12.pt"
    torch.save({"model": MultiDimDPOT({1: _dpot(1, 0), 2: _dpot(2, 1)}).state_dict()}, lower)
    with pytest.raises(UsageError, match="holds DPOT for 1D, 2D data, not 3D"):
        load_weights(_dpot(3, 0), str(lower))  # a whole-model load cannot transfer; model.init can
    load_pretrained(_dpot(3, 0), one_dimension(read_state_dict(lower), 3))  # the 2D blocks


def test_model_init_reads_a_file_url_as_the_local_path(tmp_path: Path) -> None:
    path = tmp_path / "init weights.pt"
    torch.save({"model": _dpot(2, 0).state_dict()}, path)
    assert read_state_dict(path.as_uri()).keys() == _dpot(2, 1).state_dict().keys()
    with pytest.raises(UsageError, match="no fsspec backend reads 'nosuch://' URLs"):
        read_state_dict("nosuch://host/model.pt")
