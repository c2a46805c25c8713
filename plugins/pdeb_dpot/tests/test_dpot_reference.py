"""Our DPOT against vectors produced by the official implementation (see data/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from pdeb_dpot import SIZES
from pdeb_dpot.checkpoint import transfer_2d_to_3d
from pdeb_dpot.official import build_official, from_official_layout, to_official_layout
from pdeb_dpot.tests.oracle import use_reference_layers

DATA = Path(__file__).parent / "data"
MODEL_FILES = {
    "dpot2d_small": 2,
    "dpot2d_truncated_modes": 2,
    "dpot2d_normalize": 2,
    "dpot3d_small": 3,
}
RELEASED_PARAMS = {"Ti": 7_534_643, "S": 30_801_459, "M": 122_125_875, "L": 509_018_739,
                   "H": 1_031_082_099}


def max_relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def load(name: str) -> dict:
    return torch.load(DATA / f"{name}.pt", weights_only=True)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference-layers"])
@pytest.mark.parametrize("name", list(MODEL_FILES))
def test_reproduces_official_output(name: str, fused: bool) -> None:
    ref = load(name)
    model = build_official(ref["config"], ndim=MODEL_FILES[name]).eval()
    if not fused:
        use_reference_layers(model)  # the mixer and the time aggregation as the official code computes them
    model.load_state_dict(ref["state_dict"], strict=True)
    with torch.no_grad():
        out, logits = model(from_official_layout(ref["input"]), return_cls_logits=True)
    out = to_official_layout(out)
    assert out.shape == ref["output"].shape
    assert max_relative_error(out, ref["output"]) <= 1e-5
    if "cls_logits" in ref:
        assert max_relative_error(logits, ref["cls_logits"]) <= 1e-5


def test_truncation_matters_in_the_truncated_reference() -> None:
    # Guards the truncated-modes vector: keeping every mode must give a different answer.
    ref = load("dpot2d_truncated_modes")
    model = build_official({**ref["config"], "modes": 64}).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    with torch.no_grad():
        out = to_official_layout(model(from_official_layout(ref["input"])))
    assert max_relative_error(out, ref["output"]) > 1e-3


def test_2d_to_3d_transfer_matches_official() -> None:
    ref = load("dpot_2d_to_3d_transfer")
    model = build_official(ref["config_3d"], ndim=3).eval()
    model.load_state_dict(ref["state_dict_3d_before"], strict=True)
    copied = transfer_2d_to_3d(model, ref["state_dict_2d"], ref["components"])
    assert copied and all(k.startswith(("blocks.", "time_agg_layer.")) for k in copied)
    after = model.state_dict()
    assert after.keys() == ref["state_dict_3d_after"].keys()
    for key, value in ref["state_dict_3d_after"].items():
        assert torch.equal(after[key], value), key
    with torch.no_grad():
        out = to_official_layout(model(from_official_layout(ref["input"])))
    assert max_relative_error(out, ref["output"]) <= 1e-5


def read_keys_file(size: str) -> tuple[dict[str, tuple[int, ...]], int]:
    text = (DATA / f"dpot_{size}_state_dict_keys.txt").read_text()
    total = int(re.search(r"total parameters: (\d+)", text).group(1))
    shapes = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        shapes[key] = tuple(int(n) for n in re.findall(r"\d+", shape))
    return shapes, total


@pytest.mark.parametrize("size", list(RELEASED_PARAMS))
def test_released_sizes_keys_shapes_and_parameter_counts(size: str) -> None:
    expected_shapes, total = read_keys_file(size)
    assert total == RELEASED_PARAMS[size]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_official(dict(img_size=128, patch_size=8, in_channels=4, out_channels=4,
                                    in_timesteps=10, out_timesteps=1, modes=32, n_cls=12,
                                    **SIZES[size.lower()]))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected_shapes
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMS[size]
