"""The ``dr2d`` dataset: shapes, splits, cache, registration, published files."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from pdeb_dr2d import DR2D, Dr2dConfig, register_datasets
from pdebench_core.errors import UsageError
from pdebench_core.testing import (assert_splits_disjoint, check_dataset_contract, check_dataset_registration,
                                   check_generated_dataset, split_arrays)

pytestmark = pytest.mark.usefixtures("private_home")


def smoke(**changes) -> Dr2dConfig:
    return DR2D.config_for("smoke", progress=False, **changes)


def test_smoke_profile_gives_float32_trajectories_and_a_full_spec():
    dataset = DR2D(OmegaConf.structured(smoke()))  # the core hands factories omegaconf objects
    check_dataset_contract(dataset, expected_fields=("u", "v"), spatial_shape=(32, 32),
                           split_sizes={"train": 4, "val": 2, "test": 2})
    assert dataset.split("val")[1].shape == (14, 32, 32, 2)
    assert dataset.split("train").window(0, 3, 5).shape == (5, 32, 32, 2)
    spec = dataset.spec
    assert spec.fields == ("u", "v") and spec.spatial_shape == (32, 32) and spec.n_channels == 2
    assert spec.dt == pytest.approx(0.05) and spec.n_frames == 14 and spec.t_in == 10 and spec.horizon == 4
    assert spec.boundary == "neumann" and spec.domain == ((-1.0, 1.0), (-1.0, 1.0))
    assert spec.params == {"Du": 1e-3, "Dv": 5e-3, "k": 5e-3}


def test_splits_are_disjoint():
    # The initial states of all 8 trajectories differ pairwise by more than 0.1 somewhere.
    assert_splits_disjoint(split_arrays(DR2D(smoke())), frame=0, min_distance=0.1)


def test_cache_fingerprint_and_batching(private_home):
    # The key follows every physics setting, seed and split size; usage settings reuse the file;
    # other batch sizes give the same numbers.
    check_generated_dataset(DR2D, smoke())
    assert len(list((private_home / "data").glob("dr2d-*.h5"))) == 1
    assert {"du", "dv", "k", "cfl", "seed", "n_train"} <= set(DR2D.cache_key(smoke()))


def test_registration_card_and_profiles():
    kw = check_dataset_registration(register_datasets, "dr2d", factory=DR2D, config=Dr2dConfig)
    assert kw["card"]["fields"] == ["u", "v"] and kw["card"]["dims"] == 2
    paper = DR2D.config_for("paper")  # PDEBench's grid and frames
    assert (paper.resolution, paper.n_frames) == (128, 101)


def test_reads_a_published_pdebench_file(tmp_path):
    import h5py

    path = tmp_path / "2D_diff-react_NA_NA.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i in range(6):
            group = f.create_group(f"{i:04d}")
            group["data"] = rng.standard_normal((12, 16, 16, 2)).astype(np.float32)
            group["grid/x"] = np.linspace(-1 + 1 / 16, 1 - 1 / 16, 16, dtype=np.float32)
            group["grid/y"] = np.linspace(-1 + 1 / 16, 1 - 1 / 16, 16, dtype=np.float32)
            group["grid/t"] = np.linspace(0, 0.55, 12, dtype=np.float32)
    dataset = DR2D(smoke(path=str(path), n_train=4, n_val=1, n_test=1))
    assert dataset.split("train")[0].shape == (12, 16, 16, 2) and dataset.fingerprint is None
    spec = dataset.spec
    assert spec.fields == ("u", "v") and spec.boundary == "neumann" and spec.params["Du"] == 1e-3
    assert spec.dt == pytest.approx(0.05) and spec.n_frames == 12


@pytest.mark.parametrize("changes", [{"t_in": 14}, {"solver_dtype": "float16"}, {"cfl": 1.5},
                                     {"horizon": 9}, {"n_val": -1}, {"device": "nonsense"}])
def test_bad_settings_fail_with_a_usage_error(monkeypatch, changes):
    monkeypatch.setattr(DR2D, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    with pytest.raises(UsageError):
        DR2D(smoke(**changes))
