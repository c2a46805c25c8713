"""The ns2d dataset plugin: registration, profiles, generation, caching, splits."""

from __future__ import annotations

import os
from dataclasses import make_dataclass, replace

import numpy as np
import pytest

from pdebench_core.data.canonical import H5Trajectories, read_spec
from pdebench_core.errors import UsageError
from pdebench_core.testing import (assert_same_splits, check_cache_key, check_dataset_contract,
                                   check_dataset_registration, generation_forbidden, split_arrays)
from pdeb_ns2d import DATASETS, NS2D, PRESETS, Ns2dConfig, register_datasets

pytestmark = pytest.mark.usefixtures("private_home")


def _config(name: str = "ns2d", profile: str = "smoke", **changes) -> Ns2dConfig:
    return DATASETS[name].config_for(profile, progress=False, **changes)


def test_registers_ns2d_and_the_protocol_presets():
    expected = {"ns2d": (1e-3, 50), "ns2d-nu1e-3": (1e-3, 50), "ns2d-nu1e-4": (1e-4, 30), "ns2d-nu1e-5": (1e-5, 20)}
    assert set(DATASETS) == set(expected)
    for name, (nu, frames) in expected.items():
        entry = check_dataset_registration(register_datasets, name, factory=DATASETS[name], config=PRESETS[name][0])
        config, profiles, card = entry["config"], entry["profiles"], entry["card"]
        assert issubclass(config, Ns2dConfig) and config().nu == nu
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

    for name, (config_class, _) in PRESETS.items():
        merged = OmegaConf.merge(OmegaConf.structured(config_class), DATASETS[name].profiles["smoke"], {"nu": 2e-3})
        assert merged.nu == 2e-3 and merged.resolution == 32


def test_smoke_build_shapes_spec_and_disjoint_splits():
    ds = NS2D(_config())
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


def test_second_build_reuses_the_cache_and_keeps_the_fingerprint():
    cfg = _config()
    first = NS2D(cfg)
    path = first.split("train").path
    stamp = os.stat(path).st_mtime_ns
    preset = DATASETS["ns2d-nu1e-3"]
    with generation_forbidden(preset):
        again = preset(replace(cfg, t_in=5, batch_size=3, device="cpu"))  # a preset with the same numbers
    assert again.split("train").path == path and os.stat(path).st_mtime_ns == stamp
    assert again.spec.name == "ns2d-nu1e-3" and again.spec.t_in == 5
    assert again.fingerprint == first.fingerprint == NS2D.fingerprint(cfg) and len(first.fingerprint) == 64
    np.testing.assert_array_equal(again.split("test")[1], first.split("test")[1])
    stored_spec, provenance = read_spec(path)
    assert stored_spec.name == "ns2d" and stored_spec.spatial_shape == (32, 32) and stored_spec.n_frames == 14
    assert provenance["generator"] == "pdeb_ns2d" and provenance["settings"] == NS2D.cache_key(cfg)
    # A setting that changes the numbers must not hit the same file.
    other = NS2D(replace(cfg, nu=2e-3, n_val=1, n_test=1))
    assert other.split("train").path != path and other.fingerprint != first.fingerprint


def test_cache_key_follows_every_setting_that_changes_the_numbers():
    key = check_cache_key(NS2D)
    assert key["generator"] == "pdeb_ns2d" and key["generator_version"] == 1
    assert {"batch_size", "device", "progress", "t_in", "horizon", "path"}.isdisjoint(key)
    check_cache_key(DATASETS["ns2d-nu1e-5"])
    assert NS2D.cache_key(_config(resolution=0)) == NS2D.cache_key(_config(resolution=64))  # 0: the default
    # A setting added to the config enters the key with no change to the plugin's code.
    Grown = make_dataclass("Grown", [("hyperviscosity", float, 0.0)], bases=(Ns2dConfig,))
    assert NS2D.fingerprint(Grown(hyperviscosity=1e-6)) != NS2D.fingerprint(Grown())


def test_trajectories_depend_only_on_seed_split_and_index():
    full = split_arrays(NS2D(_config()))  # one batch of 12
    # Fewer trajectories, solved in other batches (one batch of a single trajectory too): the same numbers.
    for changes in ({"n_train": 3, "n_val": 1, "n_test": 2, "batch_size": 2}, {"n_train": 3, "n_val": 1,
                                                                                 "n_test": 0, "batch_size": 3}):
        part = NS2D.generate(_config(**changes))
        assert_same_splits(part, {split: full[split][:len(part[split])] for split in part})
    reseeded = NS2D.generate(_config(seed=1, n_train=1, n_val=0, n_test=0))
    assert np.abs(reseeded["train"][0] - full["train"][0]).max() > 1e-2
    assert len({NS2D.seed(_config(), s, i) for s in ("train", "val", "test") for i in range(100)}) == 300


def test_path_reads_a_file_instead_of_generating(monkeypatch):
    generated = NS2D(_config())
    published = generated.split("train").path  # a canonical file, as `pdeb data convert` writes
    preset = DATASETS["ns2d-nu1e-3"]
    monkeypatch.setattr(preset, "generate", lambda *a, **k: pytest.fail("generated data although path is set"))
    ds = preset(_config("ns2d-nu1e-3", path=published))
    assert ds.spec.name == "ns2d-nu1e-3" and ds.spec.fields == ("vorticity",)
    assert ds.spec.spatial_shape == (32, 32) and ds.spec.params["nu"] == 1e-3
    assert len(ds.split("train")) == 8 and ds.fingerprint is None  # file contents are not known by settings
    np.testing.assert_array_equal(ds.split("val")[1], generated.split("val")[1])


@pytest.mark.parametrize("changes", [{"T": 10}, {"resolution": 24}, {"scheme": "rk4"}, {"solver_dtype": "float16"},
                                     {"horizon": 5}, {"device": "nonsense"}, {"n_val": -1}])
def test_bad_settings_fail_before_any_compute(monkeypatch, changes):
    monkeypatch.setattr(NS2D, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    with pytest.raises(UsageError):
        NS2D(_config(**changes))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_small_profile_generates_finite_data(name):
    ds = DATASETS[name](_config(name, "small"))
    trajectory = ds.split("test")[0]
    assert trajectory.shape == (PRESETS[name][0]().T, 64, 64, 1)
    assert np.isfinite(trajectory).all() and 0.1 < trajectory.std() < 10
