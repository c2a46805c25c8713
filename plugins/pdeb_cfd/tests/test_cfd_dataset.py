"""The ``cfd2d`` / ``cfd3d`` datasets: shapes, splits, caching, configs, registration."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import h5py
import numpy as np
import pytest

import pdeb_cfd
from pdeb_cfd import CFD2D, CFD3D
from pdeb_cfd.dataset import CNS_PRESETS, Cfd2dConfig, Cfd3dConfig
from pdebench_core.data.cache import cache_path
from pdebench_core.errors import DataError, UsageError
from pdebench_core.testing import (check_cache_key, check_dataset_contract, check_dataset_registration,
                                   generation_forbidden)

CASES = {
    "cfd2d": (CFD2D, (12, 32, 32, 4), ("density", "pressure", "Vx", "Vy")),
    "cfd3d": (CFD3D, (12, 16, 16, 16, 5), ("density", "pressure", "Vx", "Vy", "Vz")),
}

pytestmark = pytest.mark.usefixtures("private_home")


@pytest.mark.parametrize("name", sorted(CASES))
def test_smoke_dataset_shapes_splits_and_cache(name, tmp_path):
    dataset, shape, fields = CASES[name]
    cfg = dataset.config_for("smoke", progress=False)
    ds = dataset(cfg)
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
    path = cache_path(name, dataset.cache_key(cfg))
    assert path.exists() and str(path).startswith(str(tmp_path))
    window = ds.split("train").window(1, 3, 4)
    np.testing.assert_array_equal(window, trajectories["train"][1][3:7])

    # A second build reuses the cache: generating again would fail.
    with generation_forbidden(dataset):
        again = dataset(dataset.config_for("smoke", progress=False))
        np.testing.assert_array_equal(again.split("test")[1], trajectories["test"][1])
        assert again.fingerprint == ds.fingerprint
        # Any setting that changes the numbers gets its own file.
        with pytest.raises(AssertionError, match="ran although the cache holds"):
            dataset(dataset.config_for("smoke", progress=False, mach=0.5))


def test_cache_keys_follow_every_setting_and_tell_the_dimensions_apart():
    key_2d, key_3d = check_cache_key(CFD2D), check_cache_key(CFD3D)
    assert (key_2d["name"], key_2d["ndim"], key_3d["name"], key_3d["ndim"]) == ("cfd2d", 2, "cfd3d", 3)
    same = {"resolution": 16, "eta": 0.01, "zeta": 0.01}
    assert CFD2D.fingerprint(Cfd2dConfig(**same)) != CFD3D.fingerprint(Cfd3dConfig(**same))


def test_trajectory_seeds_are_distinct_and_stable():
    cfg = Cfd2dConfig()
    seeds = {CFD2D.seed(cfg, split, i) for split in ("train", "val", "test") for i in range(200)}
    assert len(seeds) == 600
    assert CFD2D.seed(cfg, "train", 3) == CFD2D.seed(Cfd2dConfig(), "train", 3) != CFD3D.seed(cfg, "train", 3)
    assert CFD2D.seed(Cfd2dConfig(seed=1), "train", 3) != CFD2D.seed(cfg, "train", 3)


def test_generation_does_not_depend_on_split_sizes_or_batching():
    base = dict(CFD2D.profiles["smoke"], resolution=16, n_frames=11, t_end=0.1, progress=False)
    small = CFD2D.generate(Cfd2dConfig(**{**base, "n_train": 2, "n_val": 1, "n_test": 1}))
    large = CFD2D.generate(Cfd2dConfig(**{**base, "n_train": 3, "n_val": 2, "n_test": 1, "batch_size": 2}))
    np.testing.assert_array_equal(small["train"], large["train"][:2])
    np.testing.assert_array_equal(small["val"], large["val"][:1])
    assert small["train"].shape == (2, 11, 16, 16, 4)


@pytest.mark.parametrize("change, message", [
    ({"limiter": "superbee"}, "limiter"),
    ({"resolution": 8}, "k_max"),
    ({"n_frames": 10}, "frames"),
    ({"cfl": 1.5}, "cfl"),
    ({"eta": -0.1}, "non-negative"),
    ({"gamma": 1.0}, "gamma"),
    ({"horizon": 5}, "horizon"),
])
def test_bad_settings_fail_before_any_compute(monkeypatch, change, message):
    monkeypatch.setattr(CFD2D, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    with pytest.raises(UsageError, match=message):
        CFD2D(CFD2D.config_for("smoke", **change))


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
    ds = CFD2D(cfg)
    assert ds.spec.fields == ("density", "pressure", "Vx", "Vy") and ds.spec.spatial_shape == (8, 8)
    assert ds.fingerprint is None
    everything = np.stack([ds.split(s)[i] for s in ("train", "val", "test") for i in range(len(ds.split(s)))])
    expected = np.stack([values[k] for k in ["density", "pressure", "Vx", "Vy"]], axis=-1)  # (N, T, X, Y, C)
    for item in everything:
        assert any(np.array_equal(item, row) for row in expected)


def test_the_parameters_a_pdebench_file_states_are_its_specs(tmp_path):
    # PDEBench's Data_Merge.py writes M, eta and zeta as root attributes of the merged file.
    path = tmp_path / "2D_CFD_Rand_M0.1_Eta0.1_Zeta0.1_periodic_Train.hdf5"
    with h5py.File(path, "w") as f:
        for i, key in enumerate(["density", "pressure", "Vx", "Vy"]):
            f[key] = np.full((5, 12, 8, 8), 1.0 + i, dtype=np.float32)
        f.attrs.update(M=0.1, eta=0.1, zeta=0.1)
    ds = CFD2D(Cfd2dConfig(path=str(path), n_train=3, n_val=1, n_test=1, progress=False))
    assert {k: ds.spec.params[k] for k in ("mach", "eta", "zeta")} == {"mach": 0.1, "eta": 0.1, "zeta": 0.1}


@pytest.mark.parametrize("dataset, order", [(CFD2D, ("Vx", "Vy", "density", "pressure")),
                                            (CFD3D, ("Vx", "Vy", "Vz", "pressure", "density"))])
def test_dpot_preprocessed_files_keep_their_channel_order_under_their_names(tmp_path, dataset, order):
    # DPOT's data_generation/preprocess.py stacks [vx, vy, density, pressure] (3D: vx, vy, vz,
    # pressure, density) and stores no names: the channels are labelled in that order.
    ndim = len(order) - 2
    path = tmp_path / "ns_pdb_test.hdf5"
    data = np.stack([np.full((3, *(4,) * ndim, 12), float(c)) for c in range(len(order))], axis=-1)
    with h5py.File(path, "w") as f:
        f["data"] = data.astype(np.float32)  # (N, *S, T, C)
    ds = dataset(dataset.config(path=str(path), n_train=1, n_val=1, n_test=1, progress=False))
    assert ds.spec.fields == order
    assert ds.split("test")[0][..., order.index("density")].max() == order.index("density")


def test_files_of_another_dimension_are_refused(tmp_path):
    path = tmp_path / "1D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train.hdf5"
    with h5py.File(path, "w") as f:
        for key in ["density", "pressure", "Vx"]:
            f[key] = np.ones((4, 12, 16), dtype=np.float32)
    with pytest.raises(DataError, match="holds 1D trajectories .*dataset 'cfd2d' is 2D"):
        CFD2D(Cfd2dConfig(path=str(path), n_train=2, n_val=1, n_test=1, progress=False))


def test_registration_card_and_configs():
    seen = {}

    def register(name, factory, config=None, profiles=None, **card):
        seen[name] = (factory, config, profiles, card)

    pdeb_cfd.register_datasets(register)
    assert set(seen) == {"cfd2d", "cfd3d", *CNS_PRESETS}
    for name, dims, build, config_class in (("cfd2d", 2, CFD2D, Cfd2dConfig), ("cfd3d", 3, CFD3D, Cfd3dConfig)):
        check_dataset_registration(pdeb_cfd.register_datasets, name, factory=build, config=config_class)
        factory, config, profiles, card = seen[name]
        assert card["dims"] == dims and set(profiles) == {"smoke", "small", "paper"}
        assert profiles["paper"]["resolution"] == 128 and profiles["paper"]["n_frames"] == 21
        fields = {f.name for f in dataclasses.fields(config)}
        assert {"mach", "eta", "zeta", "gamma", "t_end", "n_frames", "cfl", "path", "t_in"} <= fields
        assert config().t_in == 10
        assert set(profiles["smoke"]) <= fields and set(profiles["paper"]) <= fields
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(Cfd3dConfig), CFD3D.profiles["paper"])
    assert merged.resolution == 128 and merged.eta == pytest.approx(1e-8)


@pytest.mark.parametrize("name", sorted(CNS_PRESETS))
def test_each_table1_column_is_a_preset_that_shares_cfd2ds_cache(name):
    """DPOT pre-trains on all four PDEBench 2D sets at once: each is a dataset name of its own
    (so one --data mixture holds them, each with its weight), and its data is cfd2d's with
    those parameters, down to the cache file."""
    from pdebench_core import plugins

    mach, viscosity = CNS_PRESETS[name]
    preset = pdeb_cfd.DATASETS[name]
    component = plugins.get("dataset", name)
    assert component.config is preset.config and component.dims == (2,)
    for profile in ("smoke", "small", "paper"):
        settings = preset.config_for(profile)
        assert (settings.mach, settings.eta, settings.zeta) == (mach, viscosity, viscosity)
        same = CFD2D.config_for(profile, mach=mach, eta=viscosity, zeta=viscosity)
        assert preset.fingerprint(settings) == CFD2D.fingerprint(same)
        assert preset.make_spec(settings).params["mach"] == mach
    paper = preset.config_for("paper")
    assert (paper.resolution, paper.n_frames, paper.n_train) == (128, 21, 8000)


def test_importing_the_plugin_is_cheap():
    code = "import sys, pdeb_cfd; print('torch' in sys.modules, 'h5py' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_a_mixture_of_the_four_presets_takes_a_weight_each():
    """One --data list holds the four columns of Table 1, each with a weight of its own."""
    from pdebench_core.config import build_config

    names = ",".join(sorted(CNS_PRESETS))
    cfg = build_config(model="dpot", data=names, profile="smoke",
                       overrides=[f"data.{name}.weight={i + 1}" for i, name in enumerate(sorted(CNS_PRESETS))])
    assert [cfg.data[name].weight for name in sorted(CNS_PRESETS)] == [1.0, 2.0, 3.0, 4.0]
    assert [cfg.data[name].mach for name in sorted(CNS_PRESETS)] == [CNS_PRESETS[n][0] for n in sorted(CNS_PRESETS)]
