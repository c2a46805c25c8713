"""The ns2d dataset plugin: registration, profiles, generation, caching, splits."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

import pdeb_ns2d
from pdebench_core.data.canonical import H5Trajectories, read_spec
from pdebench_core.errors import UsageError
from pdebench_core.testing import check_dataset_contract, generation_forbidden
from pdeb_ns2d import PRESETS, PROFILES, Ns2dConfig, build, cache_key, register_datasets, trajectory_seed


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "pdeb_home"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small batched FFTs: extra threads only wait on a busy machine
    yield
    torch.set_num_threads(before)


def _registered() -> dict:
    found = {}
    register_datasets(lambda name, factory, config=None, profiles=None, **card:
                      found.__setitem__(name, (factory, config, profiles, card)))
    return found


def _config(name: str = "ns2d", profile: str = "smoke", **changes) -> Ns2dConfig:
    config_class = PRESETS[name][0]
    return replace(config_class(**PROFILES[name][profile]), progress=False, **changes)


def test_registers_ns2d_and_the_protocol_presets():
    found = _registered()
    assert set(found) == {"ns2d", "ns2d-nu1e-3", "ns2d-nu1e-4", "ns2d-nu1e-5"}
    expected = {"ns2d": (1e-3, 50), "ns2d-nu1e-3": (1e-3, 50), "ns2d-nu1e-4": (1e-4, 30), "ns2d-nu1e-5": (1e-5, 20)}
    for name, (nu, frames) in expected.items():
        factory, config, profiles, card = found[name]
        assert issubclass(config, Ns2dConfig) and config().nu == nu
        assert set(profiles) == {"smoke", "small", "paper"}
        paper = replace(config(), **profiles["paper"])
        assert (paper.T, paper.delta_t, paper.solver_resolution, paper.resolution, paper.scheme) == \
            (frames, 1e-4, 256, 64, "cn-euler")
        assert paper.n_train >= 1000 and paper.n_test >= 200
        # DPOT's test horizon (Table 1 protocol), not every frame after t_in
        assert card["horizon"] == (10 if name == "ns2d-nu1e-5" else 20) and card["dims"] == 2
        assert card["fields"] == ["vorticity"]
        # `small` is the default: the dataclass defaults already are that profile.
        assert replace(config(), **profiles["small"]) == config()


def test_configs_are_omegaconf_structured_configs():
    from omegaconf import OmegaConf

    for name, (config_class, _, _) in PRESETS.items():
        base = OmegaConf.structured(config_class)
        merged = OmegaConf.merge(base, PROFILES[name]["smoke"], {"nu": 2e-3})
        assert merged.nu == 2e-3 and merged.resolution == 32


def test_smoke_build_shapes_spec_and_disjoint_splits():
    ds = build(_config(), name="ns2d")
    spec = ds.spec
    assert spec.name == "ns2d" and spec.fields == ("vorticity",) and spec.spatial_shape == (32, 32)
    assert (spec.t_in, spec.horizon, spec.n_frames, spec.dt) == (10, 4, 14, 1.0)
    assert spec.boundary == "periodic" and spec.domain == ((0.0, 1.0), (0.0, 1.0)) and spec.params == {"nu": 1e-3}
    # float32 (14, 32, 32, 1) trajectories; no first frame appears twice, within or across splits.
    arrays = check_dataset_contract(ds, expected_fields=("vorticity",), spatial_shape=(32, 32), n_frames=14,
                                    split_sizes={"train": 8, "val": 2, "test": 2}, disjoint_frame=0,
                                    min_distance=1e-2)
    for split, trajectories in arrays.items():
        assert isinstance(ds.split(split), H5Trajectories)  # lazy reads from the cached file
        assert (trajectories.std(axis=(1, 2, 3, 4)) > 0.1).all()


def test_second_build_reuses_the_cache():
    cfg = _config()
    first = build(cfg, name="ns2d")
    path = first.split("train").path
    stamp = os.stat(path).st_mtime_ns
    with generation_forbidden(pdeb_ns2d):
        again = build(cfg, name="ns2d-nu1e-3")  # a preset with the same settings shares the file
    assert again.split("train").path == path and os.stat(path).st_mtime_ns == stamp
    assert again.spec.name == "ns2d-nu1e-3"
    np.testing.assert_array_equal(again.split("test")[1], first.split("test")[1])
    stored_spec, provenance = read_spec(path)
    assert stored_spec.spatial_shape == (32, 32) and stored_spec.n_frames == 14
    assert provenance["generator"] == "pdeb_ns2d" and provenance["settings"] == cache_key(cfg)
    # A setting that changes the numbers must not hit the same file.
    other = build(replace(cfg, nu=2e-3, n_val=1, n_test=1), name="ns2d")
    assert other.split("train").path != path


def test_trajectories_depend_only_on_seed_split_and_index():
    full = build(_config(), name="ns2d")
    # Fewer trajectories, solved in other batches: the shared ones are the same.
    part = build(_config(n_train=3, n_val=1, n_test=2, batch_size=2), name="ns2d")
    for split, count in (("train", 3), ("val", 1), ("test", 2)):
        for i in range(count):
            np.testing.assert_allclose(part.split(split)[i], full.split(split)[i], rtol=0, atol=1e-5)
    reseeded = build(_config(seed=1, n_train=1, n_val=0, n_test=0), name="ns2d")
    assert np.abs(reseeded.split("train")[0] - full.split("train")[0]).max() > 1e-2
    assert len({trajectory_seed(0, s, i) for s in ("train", "val", "test") for i in range(100)}) == 300


def test_path_reads_a_file_instead_of_generating(monkeypatch):
    generated = build(_config(), name="ns2d")
    published = generated.split("train").path  # a canonical file, as `pdeb data convert` writes
    monkeypatch.setattr(pdeb_ns2d, "generate", lambda *a, **k: pytest.fail("generated data although path is set"))
    ds = build(_config("ns2d-nu1e-3", path=published), name="ns2d-nu1e-3")
    assert ds.spec.name == "ns2d-nu1e-3" and ds.spec.fields == ("vorticity",)
    assert ds.spec.spatial_shape == (32, 32) and ds.spec.params["nu"] == 1e-3
    assert len(ds.split("train")) == 8
    np.testing.assert_array_equal(ds.split("val")[1], generated.split("val")[1])


def test_bad_settings_fail_before_any_compute(monkeypatch):
    monkeypatch.setattr(pdeb_ns2d, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    for changes in ({"T": 10}, {"resolution": 24}, {"scheme": "rk4"}, {"solver_dtype": "float16"}):
        with pytest.raises(UsageError):
            build(_config(**changes), name="ns2d")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_small_profile_generates_finite_data(name):
    ds = build(_config(name, "small"), name=name)
    trajectory = ds.split("test")[0]
    assert trajectory.shape == (PRESETS[name][0]().T, 64, 64, 1)
    assert np.isfinite(trajectory).all() and 0.1 < trajectory.std() < 10
