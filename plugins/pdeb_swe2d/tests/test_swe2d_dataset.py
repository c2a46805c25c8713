"""The ``swe2d`` dataset: shapes, splits, cache, registration, published files."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from pdeb_swe2d import SWE2D, Swe2dConfig, dam_radius, register_datasets
from pdebench_core.errors import UsageError
from pdebench_core.testing import (assert_splits_disjoint, check_dataset_contract, check_dataset_registration,
                                   check_generated_dataset, split_arrays)

pytestmark = pytest.mark.usefixtures("private_home")


def smoke(**changes) -> Swe2dConfig:
    return SWE2D.config_for("smoke", progress=False, **changes)


def test_smoke_profile_gives_float32_trajectories_and_a_full_spec():
    dataset = SWE2D(OmegaConf.structured(smoke()))  # the core hands factories omegaconf objects
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
    radii = {(s, i): dam_radius(cfg, SWE2D.seed(cfg, s, i)) for s, n in (("train", 4), ("val", 2), ("test", 2)) for i in range(n)}
    assert len(set(radii.values())) == 8 and all(0.3 <= r <= 0.7 for r in radii.values())
    # The last frames of all 8 trajectories differ pairwise by more than 1e-3 somewhere.
    assert_splits_disjoint(split_arrays(SWE2D(cfg)), frame=-1, min_distance=1e-3)


def test_cache_fingerprint_and_batching(private_home):
    # The key follows every physics setting, seed and split size; usage settings reuse the file;
    # other batch sizes give the same numbers.
    check_generated_dataset(SWE2D, smoke())
    assert len(list((private_home / "data").glob("swe2d-*.h5"))) == 1
    assert {"wall", "radius_min", "radius_max", "gravity", "seed", "n_train"} <= set(SWE2D.cache_key(smoke()))


def test_registration_card_and_profiles():
    kw = check_dataset_registration(register_datasets, "swe2d", factory=SWE2D, config=Swe2dConfig)
    assert kw["card"]["fields"] == ["h"] and kw["card"]["dims"] == 2
    paper = SWE2D.config_for("paper")  # PDEBench's grid and frames
    assert (paper.resolution, paper.n_frames) == (128, 101)


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
    dataset = SWE2D(smoke(path=str(path), n_train=4, n_val=1, n_test=1))
    assert dataset.split("train")[0].shape == (12, 16, 16, 1) and dataset.fingerprint is None
    spec = dataset.spec
    assert spec.fields == ("h",) and spec.boundary == "transmissive" and spec.params["g"] == 1.0
    assert spec.dt == pytest.approx(0.01) and spec.n_frames == 12


@pytest.mark.parametrize("changes", [{"t_in": 14}, {"solver_dtype": "float16"}, {"cfl": 0.8},
                                     {"horizon": 9}, {"n_val": -1}, {"device": "nonsense"},
                                     {"wall": "periodic"}, {"radius_min": 0.9}])
def test_bad_settings_fail_with_a_usage_error(monkeypatch, changes):
    monkeypatch.setattr(SWE2D, "generate", lambda *a, **k: pytest.fail("generated data for bad settings"))
    with pytest.raises(UsageError):
        SWE2D(smoke(**changes))
