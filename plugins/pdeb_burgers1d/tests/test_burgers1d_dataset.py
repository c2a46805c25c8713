"""The ``burgers1d`` dataset factory: shapes, splits, cache, registration, published files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import pdeb_burgers1d
from pdeb_burgers1d import PROFILES, Burgers1dConfig, build, cache_key, generate, register_datasets
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


def smoke(**changes) -> Burgers1dConfig:
    return Burgers1dConfig(**{**PROFILES["smoke"], "progress": False, **changes})


def test_smoke_profile_gives_float32_trajectories_and_a_full_spec():
    dataset = build(OmegaConf.structured(smoke()))  # the core hands factories omegaconf objects
    check_dataset_contract(dataset, expected_fields=("u",), spatial_shape=(128,),
                           split_sizes={"train": 4, "val": 2, "test": 2})
    assert dataset.split("val")[1].shape == (14, 128, 1)
    assert dataset.split("train").window(0, 3, 5).shape == (5, 128, 1)
    spec = dataset.spec
    assert spec.fields == ("u",) and spec.spatial_shape == (128,) and spec.n_channels == 1 and spec.ndim == 1
    assert spec.dt == pytest.approx(0.01) and spec.n_frames == 14 and spec.t_in == 10 and spec.horizon == 4
    assert spec.boundary == "periodic" and spec.domain == ((0.0, 1.0),)
    assert spec.params == {"nu": 0.01}


def test_splits_are_disjoint():
    # The initial states of all 8 trajectories differ pairwise by more than 0.1 somewhere.
    assert_splits_disjoint(split_arrays(build(smoke())), frame=0, min_distance=0.1)


def test_cache_is_reused_and_keyed_by_what_changes_the_numbers(_private_home):
    first = split_arrays(build(smoke()))
    files = list((_private_home / "data").glob("burgers1d-*.h5"))
    assert len(files) == 1
    with generation_forbidden(pdeb_burgers1d):
        again = split_arrays(build(smoke(t_in=5, batch_size=3, device="cpu", preload=True)))
    assert_same_splits(first, again)
    assert cache_key(smoke(nu=0.1)) != cache_key(smoke())
    assert cache_key(smoke(p_window=0.5)) != cache_key(smoke())
    assert cache_key(smoke(seed=1)) != cache_key(smoke())


def test_same_numbers_in_a_fresh_home_with_other_batching(monkeypatch, tmp_path):
    first = split_arrays(build(smoke()))
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "other"))
    second = split_arrays(build(smoke(batch_size=3)))
    assert_same_splits(first, second)


def test_large_splits_are_assembled_in_a_scratch_file(monkeypatch, tmp_path):
    cfg = smoke(n_train=2, n_val=1, n_test=1)
    in_memory = generate(cfg, show_progress=False)
    monkeypatch.setattr(pdeb_burgers1d, "IN_MEMORY_LIMIT", 0)
    on_disk = generate(cfg, show_progress=True, scratch=str(tmp_path))
    assert isinstance(on_disk["train"], np.memmap)
    assert_same_splits(in_memory, on_disk)


def test_registration_card_and_profiles():
    kw = check_dataset_registration(register_datasets, "burgers1d", factory=build, config=Burgers1dConfig)
    assert kw["card"]["fields"] == ["u"] and kw["card"]["dims"] == 1
    assert kw["profiles"]["paper"]["resolution"] == 1024 and kw["profiles"]["paper"]["n_frames"] == 201


def test_reads_a_published_pdebench_file(tmp_path):
    import h5py

    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((6, 12, 64)).astype(np.float32)  # (N, T, X)
        f["x-coordinate"] = ((np.arange(64) + 0.5) / 64).astype(np.float32)
        f["t-coordinate"] = np.linspace(0, 0.12, 13, dtype=np.float32)  # PDEBench stores T + 1 times
    dataset = build(smoke(path=str(path), n_train=4, n_val=1, n_test=1))
    assert dataset.split("train")[0].shape == (12, 64, 1)
    spec = dataset.spec
    assert spec.fields == ("u",) and spec.boundary == "periodic" and spec.params["nu"] == 0.01
    assert spec.dt == pytest.approx(0.01) and spec.n_frames == 12


@pytest.mark.parametrize("changes", [{"t_in": 14}, {"solver_dtype": "float16"}, {"cfl": 0.8},
                                     {"horizon": 9}, {"n_val": -1}, {"device": "nonsense"},
                                     {"nu": -1.0}, {"p_abs": 2.0}])
def test_bad_settings_fail_with_a_usage_error(changes):
    with pytest.raises(UsageError):
        build(smoke(**changes))
