"""The ``swe2d`` dataset factory: shapes, splits, cache, registration, published files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import pdeb_swe2d
from pdeb_swe2d import PROFILES, Swe2dConfig, build, cache_key, dam_radius, generate, register_datasets
from pdebench_core.errors import UsageError
from pdebench_core.testing import (assert_same_splits, assert_splits_disjoint, check_dataset_contract,
                                   check_dataset_registration, generation_forbidden, split_arrays)


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Each test gets its own empty data cache; small grids run best on one thread here."""
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "home"
    torch.set_num_threads(threads)


def smoke(**changes) -> Swe2dConfig:
    return Swe2dConfig(**{**PROFILES["smoke"], "progress": False, **changes})


def test_smoke_profile_gives_float32_trajectories_and_a_full_spec():
    dataset = build(OmegaConf.structured(smoke()))  # the core hands factories omegaconf objects
    check_dataset_contract(dataset, expected_fields=("h",), spatial_shape=(32, 32),
                           split_sizes={"train": 4, "val": 2, "test": 2})
    item = dataset.split("val")[1]
    assert item.shape == (14, 32, 32, 1)
    assert item.min() > 0.5 and item[0].max() == 2.0 and item[0].min() == 1.0  # dam at rest at t = 0
    assert dataset.split("train").window(0, 3, 5).shape == (5, 32, 32, 1)
    spec = dataset.spec
    assert spec.fields == ("h",) and spec.spatial_shape == (32, 32) and spec.n_channels == 1
    assert spec.dt == pytest.approx(0.01) and spec.n_frames == 14 and spec.t_in == 10 and spec.horizon == 4
    assert spec.boundary == "transmissive" and spec.domain == ((-2.5, 2.5), (-2.5, 2.5))
    assert spec.params["g"] == 1.0 and spec.params["radius_range"] == [0.3, 0.7]


def test_splits_are_disjoint_and_radii_follow_pdebench():
    cfg = smoke()
    radii = {(s, i): dam_radius(cfg, s, i) for s, n in (("train", 4), ("val", 2), ("test", 2)) for i in range(n)}
    assert len(set(radii.values())) == 8 and all(0.3 <= r <= 0.7 for r in radii.values())
    # The last frames of all 8 trajectories differ pairwise by more than 1e-3 somewhere.
    assert_splits_disjoint(split_arrays(build(cfg)), frame=-1, min_distance=1e-3)


def test_cache_is_reused_and_keyed_by_what_changes_the_numbers(_private_home):
    first = split_arrays(build(smoke()))
    files = list((_private_home / "data").glob("swe2d-*.h5"))
    assert len(files) == 1
    with generation_forbidden(pdeb_swe2d):
        again = split_arrays(build(smoke(t_in=5, batch_size=3, device="cpu", preload=True)))
    assert_same_splits(first, again)
    assert cache_key(smoke(wall="reflective")) != cache_key(smoke())
    assert cache_key(smoke(radius_max=0.6)) != cache_key(smoke())
    assert cache_key(smoke(seed=1)) != cache_key(smoke())


def test_same_numbers_in_a_fresh_home_with_other_batching(monkeypatch, tmp_path):
    first = split_arrays(build(smoke()))
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "other"))
    second = split_arrays(build(smoke(batch_size=3)))
    assert_same_splits(first, second)


def test_large_splits_are_assembled_in_a_scratch_file(monkeypatch, tmp_path):
    cfg = smoke(n_train=2, n_val=1, n_test=1)
    in_memory = generate(cfg, show_progress=False)
    monkeypatch.setattr(pdeb_swe2d, "IN_MEMORY_LIMIT", 0)
    on_disk = generate(cfg, show_progress=True, scratch=str(tmp_path))
    assert isinstance(on_disk["train"], np.memmap)
    assert_same_splits(in_memory, on_disk)


def test_registration_card_and_profiles():
    kw = check_dataset_registration(register_datasets, "swe2d", factory=build, config=Swe2dConfig)
    assert kw["card"]["fields"] == ["h"] and kw["card"]["dims"] == 2
    assert kw["profiles"]["paper"]["resolution"] == 128 and kw["profiles"]["paper"]["n_frames"] == 101


def test_reads_a_published_pdebench_file(tmp_path):
    import h5py

    path = tmp_path / "2D_rdb_NA_NA.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i in range(6):
            group = f.create_group(f"{i:04d}")
            group["data"] = (1 + rng.random((12, 16, 16, 1))).astype(np.float32)
            group["grid/x"] = np.linspace(-2.5 + 5 / 32, 2.5 - 5 / 32, 16, dtype=np.float32)
            group["grid/y"] = np.linspace(-2.5 + 5 / 32, 2.5 - 5 / 32, 16, dtype=np.float32)
            group["grid/t"] = np.linspace(0, 0.11, 12, dtype=np.float32)
    dataset = build(smoke(path=str(path), n_train=4, n_val=1, n_test=1))
    assert dataset.split("train")[0].shape == (12, 16, 16, 1)
    spec = dataset.spec
    assert spec.fields == ("h",) and spec.boundary == "transmissive" and spec.params["g"] == 1.0
    assert spec.dt == pytest.approx(0.01) and spec.n_frames == 12


@pytest.mark.parametrize("changes", [{"t_in": 14}, {"solver_dtype": "float16"}, {"cfl": 0.8},
                                     {"horizon": 9}, {"n_val": -1}, {"device": "nonsense"},
                                     {"wall": "periodic"}, {"radius_min": 0.9}])
def test_bad_settings_fail_with_a_usage_error(changes):
    with pytest.raises(UsageError):
        build(smoke(**changes))
