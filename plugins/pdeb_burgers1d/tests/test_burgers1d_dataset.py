"""The ``burgers1d`` dataset: shapes, splits, cache, registration, published files."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from pdeb_burgers1d import BURGERS1D, Burgers1dConfig, register_datasets
from pdebench_core.errors import UsageError
from pdebench_core.testing import (assert_splits_disjoint, check_dataset_contract, check_dataset_registration,
                                   check_generated_dataset, split_arrays)

pytestmark = pytest.mark.usefixtures("private_home")


def smoke(**changes) -> Burgers1dConfig:
    return BURGERS1D.config_for("smoke", progress=False, **changes)


def test_smoke_profile_gives_float32_trajectories_and_a_full_spec():
    dataset = BURGERS1D(OmegaConf.structured(smoke()))  # the core hands factories omegaconf objects
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
    assert_splits_disjoint(split_arrays(BURGERS1D(smoke())), frame=0, min_distance=0.1)


def test_cache_fingerprint_and_batching(private_home):
    # The key follows every physics setting, seed and split size; usage settings reuse the file;
    # other batch sizes give the same numbers.
    check_generated_dataset(BURGERS1D, smoke())
    assert len(list((private_home / "data").glob("burgers1d-*.h5"))) == 1
    assert {"nu", "p_window", "max_mode", "cfl", "seed", "n_train"} <= set(BURGERS1D.cache_key(smoke()))


def test_registration_card_and_profiles():
    kw = check_dataset_registration(register_datasets, "burgers1d", factory=BURGERS1D, config=Burgers1dConfig)
    assert kw["card"]["fields"] == ["u"] and kw["card"]["dims"] == 1
    paper = BURGERS1D.config_for("paper")  # PDEBench's grid and frames
    assert (paper.resolution, paper.n_frames) == (1024, 201)


def test_reads_a_published_pdebench_file(tmp_path):
    import h5py

    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((6, 12, 64)).astype(np.float32)  # (N, T, X)
        f["x-coordinate"] = ((np.arange(64) + 0.5) / 64).astype(np.float32)
        f["t-coordinate"] = np.linspace(0, 0.12, 13, dtype=np.float32)  # PDEBench stores T + 1 times
    dataset = BURGERS1D(smoke(path=str(path), n_train=4, n_val=1, n_test=1))
    assert dataset.split("train")[0].shape == (12, 64, 1) and dataset.fingerprint is None
    spec = dataset.spec
    assert spec.fields == ("u",) and spec.boundary == "periodic" and spec.params["nu"] == 0.01
    assert spec.dt == pytest.approx(0.01) and spec.n_frames == 12


def test_a_grid_too_coarse_for_the_initial_modes_is_refused(monkeypatch):
    """Wavenumbers up to max_mode need more than 2 * max_mode cells; at Nyquist or below they alias."""
    monkeypatch.setattr(BURGERS1D, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    with pytest.raises(UsageError, match=r"^data.burgers1d.resolution must exceed 2 \* max_mode = 12 cells "
                                         r"to resolve the initial modes, got 12$"):
        BURGERS1D(smoke(resolution=12, max_mode=6))
    assert BURGERS1D.make_spec(smoke(resolution=3, max_mode=1)).spatial_shape == (3,)


@pytest.mark.parametrize("changes", [{"t_in": 14}, {"solver_dtype": "float16"}, {"cfl": 0.8},
                                     {"horizon": 9}, {"n_val": -1}, {"device": "nonsense"},
                                     {"nu": -1.0}, {"p_abs": 2.0}])
def test_bad_settings_fail_with_a_usage_error(monkeypatch, changes):
    monkeypatch.setattr(BURGERS1D, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    with pytest.raises(UsageError):
        BURGERS1D(smoke(**changes))
