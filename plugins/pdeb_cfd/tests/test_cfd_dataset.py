"""The ``cfd2d`` / ``cfd3d`` dataset factories: shapes, splits, caching, configs, registration."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import pdeb_cfd
from pdeb_cfd import dataset as cfd_dataset
from pdeb_cfd.dataset import PROFILES, Cfd2dConfig, Cfd3dConfig, build_cfd2d, build_cfd3d, trajectory_seed
from pdebench_core.data.cache import cache_path
from pdebench_core.errors import UsageError
from pdebench_core.testing import check_dataset_contract, check_dataset_registration, generation_forbidden

CASES = {
    "cfd2d": (Cfd2dConfig, build_cfd2d, PROFILES[2]["smoke"], (12, 32, 32, 4),
              ("density", "pressure", "Vx", "Vy")),
    "cfd3d": (Cfd3dConfig, build_cfd3d, PROFILES[3]["smoke"], (12, 16, 16, 16, 5),
              ("density", "pressure", "Vx", "Vy", "Vz")),
}


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(CASES))
def test_smoke_dataset_shapes_splits_and_cache(name, tmp_path):
    config_cls, build, smoke, shape, fields = CASES[name]
    cfg = config_cls(**smoke, progress=False)
    ds = build(cfg)
    spec = ds.spec
    assert spec.name == name and spec.fields == fields and spec.spatial_shape == shape[1:-1]
    assert spec.n_frames == 12 and spec.t_in == 10 and spec.horizon == 2
    assert spec.dt == pytest.approx(0.05) and spec.boundary == "periodic"
    assert spec.params == {"mach": 1.0, "eta": cfg.eta, "zeta": cfg.zeta, "gamma": pytest.approx(5 / 3)}
    # float32 trajectories of this shape; disjoint splits: no initial state appears twice anywhere.
    trajectories = check_dataset_contract(ds, expected_fields=fields, spatial_shape=shape[1:-1], n_frames=shape[0],
                                          split_sizes={"train": 4, "val": 2, "test": 2}, disjoint_frame=0)
    for items in trajectories.values():
        assert items[..., 0].min() > 0 and items[..., 1].min() > 0  # density, pressure
    # The file lives in the temporary home and is read back lazily.
    path = cache_path(name, cfd_dataset.cache_key(cfg, name, len(shape) - 2))
    assert path.exists() and str(path).startswith(str(tmp_path))
    window = ds.split("train").window(1, 3, 4)
    np.testing.assert_array_equal(window, trajectories["train"][1][3:7])

    # A second build reuses the cache: generating again would fail.
    with generation_forbidden(cfd_dataset):
        again = build(config_cls(**smoke, progress=False))
        np.testing.assert_array_equal(again.split("test")[1], trajectories["test"][1])
        # Any setting that changes the numbers gets its own file.
        with pytest.raises(AssertionError, match="ran although the cache holds"):
            build(config_cls(**{**smoke, "mach": 0.5}, progress=False))


def test_trajectory_seeds_are_distinct_and_stable():
    seeds = {trajectory_seed(0, "cfd2d", split, i) for split in ("train", "val", "test") for i in range(200)}
    assert len(seeds) == 600
    assert trajectory_seed(0, "cfd2d", "train", 3) == trajectory_seed(0, "cfd2d", "train", 3)
    assert trajectory_seed(1, "cfd2d", "train", 3) != trajectory_seed(0, "cfd2d", "train", 3)


def test_generation_does_not_depend_on_split_sizes_or_batching():
    base = dict(PROFILES[2]["smoke"], resolution=16, n_frames=11, t_end=0.1, progress=False)
    small = cfd_dataset.generate(Cfd2dConfig(**{**base, "n_train": 2, "n_val": 1, "n_test": 1}), "cfd2d", 2)
    large = cfd_dataset.generate(Cfd2dConfig(**{**base, "n_train": 3, "n_val": 2, "n_test": 1, "batch_size": 2}),
                                 "cfd2d", 2)
    np.testing.assert_array_equal(small["train"], large["train"][:2])
    np.testing.assert_array_equal(small["val"], large["val"][:1])
    assert small["train"].shape == (2, 11, 16, 16, 4)


@pytest.mark.parametrize("change, message", [
    ({"limiter": "superbee"}, "limiter"),
    ({"resolution": 8}, "k_max"),
    ({"n_frames": 10}, "n_frames"),
    ({"cfl": 1.5}, "cfl"),
    ({"eta": -0.1}, "non-negative"),
    ({"gamma": 1.0}, "gamma"),
    ({"horizon": 5}, "horizon"),
])
def test_bad_settings_fail_before_any_compute(change, message):
    cfg = Cfd2dConfig(**{**PROFILES[2]["smoke"], **change})
    with pytest.raises(UsageError, match=message):
        build_cfd2d(cfg)


def test_published_pdebench_file_is_read_in_field_order(tmp_path):
    shape = (5, 12, 8, 8)  # (N, T, X, Y)
    values = {key: np.random.default_rng(i).random(shape).astype(np.float32) + i
              for i, key in enumerate(["density", "pressure", "Vx", "Vy"])}
    path = tmp_path / "2D_CFD_Rand_M1.0_Eta0.01_Zeta0.01_periodic_Train.hdf5"
    with h5py.File(path, "w") as f:
        for key in ["Vy", "Vx", "pressure", "density"]:
            f[key] = values[key]
        f["x-coordinate"] = (np.arange(8) + 0.5) / 8
        f["y-coordinate"] = (np.arange(8) + 0.5) / 8
        f["t-coordinate"] = np.linspace(0, 0.05 * 12, 13)
    cfg = Cfd2dConfig(path=str(path), n_train=3, n_val=1, n_test=1, progress=False)
    ds = build_cfd2d(cfg)
    assert ds.spec.fields == ("density", "pressure", "Vx", "Vy") and ds.spec.spatial_shape == (8, 8)
    everything = np.stack([ds.split(s)[i] for s in ("train", "val", "test") for i in range(len(ds.split(s)))])
    expected = np.stack([values[k] for k in ["density", "pressure", "Vx", "Vy"]], axis=-1)  # (N, T, X, Y, C)
    for item in everything:
        assert any(np.array_equal(item, row) for row in expected)


def test_registration_card_and_configs():
    seen = {}

    def register(name, factory, config=None, profiles=None, **card):
        seen[name] = (factory, config, profiles, card)

    pdeb_cfd.register_datasets(register)
    assert set(seen) == {"cfd2d", "cfd3d"}
    for name, dims, build, config_class in (("cfd2d", 2, build_cfd2d, Cfd2dConfig),
                                            ("cfd3d", 3, build_cfd3d, Cfd3dConfig)):
        check_dataset_registration(pdeb_cfd.register_datasets, name, factory=build, config=config_class)
        factory, config, profiles, card = seen[name]
        assert card["dims"] == dims and set(profiles) == {"smoke", "small", "paper"}
        assert profiles["paper"]["resolution"] == 128 and profiles["paper"]["n_frames"] == 21
        fields = {f.name for f in dataclasses.fields(config)}
        assert {"mach", "eta", "zeta", "gamma", "t_end", "n_frames", "cfl", "path", "t_in"} <= fields
        assert config().t_in == 10
        assert set(profiles["smoke"]) <= fields and set(profiles["paper"]) <= fields
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(Cfd3dConfig), PROFILES[3]["paper"])
    assert merged.resolution == 128 and merged.eta == pytest.approx(1e-8)


def test_importing_the_plugin_is_cheap():
    code = "import sys, pdeb_cfd; print('torch' in sys.modules, 'h5py' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
