"""Normalisation statistics: streamed over the train split only, equal to numpy, cached with the
data, and read from The Well's ``stats.yaml`` where present."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from pdebench_core.data.base import TrajectoryDataset
from pdebench_core.data.canonical import write_canonical
from pdebench_core.data.stats import RunningMoments, channel_stats
from pdebench_core.errors import DataError
from pdebench_core.spec import DataSpec

SPEC = DataSpec(name="toy", fields=("u", "v"), spatial_shape=(16, 12))


def _offset_splits(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Train values far from zero with a small spread (naive sums of squares lose them);
    val and test from other distributions, so a statistic that reads them shows."""
    train = np.empty((5, 9, 16, 12, 2), np.float32)
    train[..., 0] = 1e6 + 1e-2 * rng.standard_normal(train.shape[:-1])
    train[..., 1] = -3.0 + 2.0 * rng.standard_normal(train.shape[:-1])
    others = {s: (50.0 + 10.0 * rng.standard_normal((2, 9, 16, 12, 2))).astype(np.float32) for s in ("val", "test")}
    return {"train": train, **others}


def _numpy_stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = train.astype(np.float64).reshape(-1, train.shape[-1])
    return values.mean(axis=0), values.std(axis=0), np.sqrt((values ** 2).mean(axis=0))


def test_streamed_stats_equal_numpy_on_a_file_larger_than_one_chunk(tmp_path, fresh_home):
    splits = _offset_splits(np.random.default_rng(0))
    path = write_canonical(tmp_path / "toy.h5", splits, SPEC)
    chunk = 4 * 16 * 12 * 2 * 2  # two frames: every trajectory takes five reads
    assert os.path.getsize(path) > 10 * chunk
    stats = channel_stats(path, chunk_bytes=chunk)
    mean, std, rms = _numpy_stats(splits["train"])
    assert stats.source == "computed" and stats.blocks == 5 * 5 and stats.count == 5 * 9 * 16 * 12
    assert stats.fields == ("u", "v")
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, std, rtol=1e-9)  # 1e-2 spread on 1e6: needs the stable update
    np.testing.assert_allclose(stats.rms, rms, rtol=1e-12)


def test_moments_merged_from_uneven_blocks_equal_one_pass():
    rng = np.random.default_rng(1)
    values = 7.0 + rng.standard_normal((1000, 3)) * np.array([1e-3, 1.0, 1e3])
    moments = RunningMoments(3)
    for start, stop in ((0, 1), (1, 4), (4, 500), (500, 501), (501, 1000)):
        moments.add(values[start:stop])
    np.testing.assert_allclose(moments.mean, values.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(np.sqrt(moments.variance), values.std(axis=0), rtol=1e-10)


def test_remembered_until_the_file_changes(tmp_path, fresh_home):
    rng = np.random.default_rng(2)
    splits = _offset_splits(rng)
    path = write_canonical(tmp_path / "toy.h5", splits, SPEC)
    first = channel_stats(path)
    again = channel_stats(path)
    assert again.source == "cache" and again.mean == first.mean and again.std == first.std
    splits["train"] = splits["train"] * 2
    write_canonical(path, splits, SPEC)
    changed = channel_stats(path)
    assert changed.source == "computed"
    np.testing.assert_allclose(changed.mean, _numpy_stats(splits["train"])[0], rtol=1e-12)


@pytest.mark.parametrize("damage", [{"mean": [1, 2], "std": [1], "rms": [1], "count": 5},
                                    {"mean": None, "std": None, "rms": None, "count": 5},
                                    {"mean": [float("nan")] * 2, "std": [1, 1], "rms": [1, 1], "count": 5}])
def test_a_damaged_statistics_record_is_computed_again(tmp_path, fresh_home, damage):
    import json

    rng = np.random.default_rng(2)
    splits = _offset_splits(rng)
    path = write_canonical(tmp_path / "toy.h5", splits, SPEC)
    first = channel_stats(path)
    records = list((fresh_home / "data" / ".checks").glob("stats-*.json"))
    assert records
    for record in records:
        record.write_text(json.dumps(damage))
    again = channel_stats(path)
    assert again.source == "computed" and again.mean == first.mean


def test_a_file_without_splits_contributes_its_train_share_and_datasets_work_in_memory(tmp_path, fresh_home):
    rng = np.random.default_rng(3)
    trajectories = [rng.standard_normal((6, 8, 1)).astype(np.float32) + i for i in range(10)]
    dataset = TrajectoryDataset(DataSpec(name="mem", fields=("u",), spatial_shape=(8,)),
                                {"train": trajectories[:8], "val": trajectories[8:9], "test": trajectories[9:]})
    stats = channel_stats(dataset, chunk_bytes=4 * 8 * 2)
    np.testing.assert_allclose(stats.mean, _numpy_stats(np.stack(trajectories[:8]))[0], rtol=1e-12)
    assert stats.source == "computed"
    with h5py.File(tmp_path / "plain.hdf5", "w") as f:  # PDEBench file: no splits, train = first 80 %
        f["tensor"] = np.stack(trajectories)[..., 0]
    from_file = channel_stats(tmp_path / "plain.hdf5")
    np.testing.assert_allclose(from_file.mean, stats.mean, rtol=1e-12)


def test_non_finite_values_are_refused_naming_the_trajectory(tmp_path, fresh_home):
    splits = _offset_splits(np.random.default_rng(4))
    splits["train"][3, 2, 0, 0, 1] = np.nan
    path = write_canonical(tmp_path / "toy.h5", splits, SPEC)
    with pytest.raises(DataError, match="train trajectory 3 .* holds NaN or Inf"):
        channel_stats(path)


# ----------------------------------------------------------------------------- The Well's stats.yaml

def _well_stats(fields: dict[str, np.ndarray]) -> dict[str, dict[str, object]]:
    """A stats.yaml as The Well writes it: per field, a number, a vector or a matrix."""
    return {key: {name: np.asarray(value + offset).tolist() for name, value in fields.items()}
            for key, offset in (("mean", 0.0), ("std", 10.0), ("rms", 20.0), ("mean_delta", 30.0),
                                ("std_delta", 40.0), ("rms_delta", 50.0))}


def test_wells_stats_yaml_is_read_per_channel_and_compute_reads_the_train_files(tmp_path, fresh_home):
    pytest.importorskip("the_well")
    from pdebench_core.data.layouts import open_layout
    from pdebench_core.data.layouts.well_fixtures import write_well_dataset

    per_field = {"pressure": np.array(1.0), "profile": np.array(2.0), "field": np.array([3.0, 4.0]),
                 "stress": np.array([[5.0, 6.0], [7.0, 8.0]]), "constant_field": np.array(9.0),
                 "mask": np.array(10.0)}
    root = write_well_dataset(tmp_path, stats=_well_stats(per_field), smooth=False, extra_fields=True)
    stats = channel_stats(root)
    assert stats.source == "stats.yaml" and stats.where == str(root / "stats.yaml")
    assert stats.fields[:4] == ("pressure", "profile", "field_x", "field_y")
    assert stats.mean == tuple(float(v) for v in range(1, 11))
    assert stats.std == tuple(float(v) + 10 for v in range(1, 11))
    assert stats.rms == tuple(float(v) + 20 for v in range(1, 11))
    computed = channel_stats(root, compute=True)
    train = np.stack(list(open_layout(root).pools["train"]))
    assert computed.source == "computed"
    np.testing.assert_allclose(computed.mean, _numpy_stats(train)[0], rtol=1e-12)
    np.testing.assert_allclose(computed.std, _numpy_stats(train)[1], rtol=1e-9)


def test_a_stats_yaml_lacking_a_field_is_not_used(tmp_path, fresh_home):
    pytest.importorskip("the_well")
    from pdebench_core.data.layouts.well_fixtures import write_well_dataset

    root = write_well_dataset(tmp_path, stats=_well_stats({"field": np.array([3.0, 4.0])}))
    stats = channel_stats(root)
    assert stats.source == "computed" and stats.fields == ("field_x", "field_y", "constant_field")


def test_an_unreadable_stats_yaml_is_not_used(tmp_path, fresh_home):
    """A damaged stats.yaml does not stop a normalised run: the statistics come from the data."""
    pytest.importorskip("the_well")
    from pdebench_core.data.layouts.well_fixtures import write_well_dataset

    root = write_well_dataset(tmp_path, stats=_well_stats({"field": np.array([3.0, 4.0])}))
    (root / "stats.yaml").write_text("mean: [unclosed\n")
    assert channel_stats(root).source == "computed"


def test_cli_prints_json_and_refuses_an_unknown_name(tmp_path, fresh_home, pdeb):
    splits = _offset_splits(np.random.default_rng(5))
    path = write_canonical(tmp_path / "toy.h5", splits, SPEC)
    result = pdeb("data", "stats", str(path), "--json", env={"PDEB_HOME": str(fresh_home)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    mean, std, rms = _numpy_stats(splits["train"])
    assert list(out["channels"]) == ["u", "v"] and out["source"] == "computed"
    np.testing.assert_allclose([out["channels"][c]["std"] for c in ("u", "v")], std, rtol=1e-9)
    unknown = pdeb("data", "stats", "no-such-data", env={"PDEB_HOME": str(fresh_home)})
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: 'no-such-data' is neither a file or folder nor a registered dataset; pass a data path or a name "
        "from 'pdeb datasets'"]
