"""The Well's layout: pdeb's windows equal ``WellDataset``'s, the spec is the file's, bad files
are one-line errors, and a file from The Well's own writer trains."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from pdebench_core.config import build_dataset
from pdebench_core.data.layouts import convert, detect_layout, open_layout, open_well
from pdebench_core.data.layouts.well_fixtures import write_well_dataset, write_well_file
from pdebench_core.data.verify import verify_file
from pdebench_core.data.windows import WindowDataset
from pdebench_core.errors import DataError, UsageError

well_data = pytest.importorskip("the_well.data")

T_IN, T_OUT = 4, 2
FOLDERS = {"train": "train", "val": "valid", "test": "test"}


def _flat(names_by_order) -> list[str]:
    return [name for order in sorted(names_by_order) for name in names_by_order[order]]


def _assert_windows_equal(trajectories, well_dataset, n_varying: int, constants: bool = True) -> None:
    """Every window of pdeb equals The Well's sample of the same index, field for field; constant
    fields follow, repeated on every input frame (or are absent)."""
    windows = WindowDataset(trajectories, T_IN, T_OUT)
    assert len(windows) == len(well_dataset)
    for k in range(len(well_dataset)):
        x, y, _ = windows[k]
        sample = well_dataset[k]
        torch.testing.assert_close(x[..., :n_varying], sample["input_fields"], rtol=0, atol=0)
        torch.testing.assert_close(y[..., :n_varying], sample["output_fields"], rtol=0, atol=0)
        if not constants:
            assert x.shape[-1] == y.shape[-1] == n_varying
        elif "constant_fields" in sample:
            repeated = sample["constant_fields"].expand(T_IN, *sample["constant_fields"].shape)
            torch.testing.assert_close(x[..., n_varying:], repeated, rtol=0, atol=0)


def test_windows_equal_well_datasets_samples_in_every_split(tmp_path, fresh_home):
    root = write_well_dataset(tmp_path, files={"train": 2, "valid": 1, "test": 1}, smooth=False,
                              extra_fields=True)
    dataset = build_dataset("well", "paper", [f"path={root}"])
    reference = well_data.WellDataset(path=str(root), well_split_name="train", n_steps_input=T_IN,
                                      n_steps_output=T_OUT)
    varying, constant = _flat(reference.metadata.field_names), _flat(reference.metadata.constant_field_names)
    assert varying == ["pressure", "profile", "field_x", "field_y", "stress_xx", "stress_xy", "stress_yx",
                       "stress_yy"]
    assert dataset.spec.fields == tuple(varying + constant) == (*varying, "constant_field", "mask")
    assert [len(dataset.split(s)) for s in FOLDERS] == [4, 2, 2]
    for split, folder in FOLDERS.items():
        well = well_data.WellDataset(path=str(root), well_split_name=folder, n_steps_input=T_IN,
                                     n_steps_output=T_OUT)
        _assert_windows_equal(dataset.split(split), well, len(varying))


def test_spec_comes_from_dimensions_boundary_conditions_and_scalars(tmp_path, fresh_home):
    root = write_well_dataset(tmp_path, files={"train": 2, "valid": 1, "test": 1})
    with h5py.File(root / "data/train/dummy_1.hdf5", "r+") as f:
        f["scalars/a"][()] = 0.5  # this file's parameter differs: the spec states the range
        f["boundary_conditions/y_periodic"].attrs["bc_type"] = "WALL"
    with h5py.File(root / "data/train/dummy_0.hdf5", "r") as f:
        time = f["dimensions/time"][()]
    spec = build_dataset("well", "paper", [f"path={root}"]).spec
    assert spec.spatial_shape == (32, 32) and spec.n_frames == 10 and spec.t_in == T_IN
    assert spec.dt == pytest.approx(float(time[1] - time[0]), rel=1e-6)
    assert spec.boundary == "periodic"  # the first file states the boundary for the dataset
    assert spec.params["a"] == [0.25, 0.5] and spec.params["b"] == 0.75
    assert spec.params["scored_fields"] == ["field_x", "field_y"]
    assert "time_varying_scalar" not in spec.params
    found = open_layout(root)
    assert "dummy_1.hdf5 states the boundary 'x: periodic, y: wall', the first file 'periodic' " \
           "(the spec keeps the first)" in found.notes
    assert open_layout(root / "data/train/dummy_1.hdf5").boundary == "x: periodic, y: wall"


def test_each_end_of_an_axis_gets_the_kind_its_mask_marks(tmp_path):
    root = write_well_dataset(tmp_path, files={"train": 1, "valid": 1, "test": 1})
    path = root / "data/train/dummy_0.hdf5"
    with h5py.File(path, "r+") as f:
        n = f["dimensions/y"].shape[0]
        del f["boundary_conditions/y_periodic"]
        for name, kind, end in (("a_open", "OPEN", -1), ("b_wall", "WALL", 0)):  # names sort open first
            group = f["boundary_conditions"].create_group(name)
            group.attrs.update(bc_type=kind, associated_dims=["y"], associated_fields=[], sample_varying=False,
                               time_varying=False)
            mask = np.zeros(n, dtype=bool)
            mask[end] = True
            group.create_dataset("mask", data=mask)
            group.create_dataset("values", data=np.zeros(1, np.float32))
    assert open_layout(path).boundary == "x: periodic, y: wall/open"  # wall at y = 0, open at the top


def test_constant_fields_can_be_dropped_and_a_single_file_is_read(tmp_path, fresh_home):
    path = write_well_file(tmp_path / "flat" / "one.hdf5", smooth=False)
    found = open_well(str(path), constants="drop")
    assert found.fields == ("field_x", "field_y") and "scored_fields" not in found.params
    assert list(found.pools) == ["all"] and found.traj_shape == (10, 32, 32, 2)
    well = well_data.WellDataset(path=str(tmp_path / "flat"), n_steps_input=T_IN, n_steps_output=T_OUT)
    _assert_windows_equal(found.pools["all"], well, 2, constants=False)
    with pytest.raises(UsageError, match="constants='keep' is not one of repeat, drop"):
        open_well(str(path), constants="keep")


def test_a_field_stored_without_an_axis_is_repeated_along_it(tmp_path):
    path = write_well_file(tmp_path / "a.hdf5", smooth=False, extra_fields=True)
    before = np.asarray(open_layout(path).pools["all"][1])
    with h5py.File(path, "r+") as f:  # drop the size-1 y axis: The Well's spec allows both forms
        data, attrs = f["t0_fields/profile"][()], dict(f["t0_fields/profile"].attrs)
        del f["t0_fields/profile"]
        f["t0_fields/profile"] = data[..., 0]
        f["t0_fields/profile"].attrs.update(attrs)
    found = open_layout(path)
    np.testing.assert_array_equal(np.asarray(found.pools["all"][1]), before)
    profile = found.fields.index("profile")
    np.testing.assert_array_equal(before[..., profile], np.repeat(data[1, ..., 0][..., None], 32, axis=-1))


def test_detected_from_a_file_a_split_folder_data_folder_and_dataset_folder(tmp_path):
    root = write_well_dataset(tmp_path)
    for path in (root, root / "data", root / "data" / "train", root / "data" / "train" / "dummy_0.hdf5"):
        assert detect_layout(path) == "well", path
    assert list(open_layout(root / "data").pools) == ["train", "val", "test"]


def test_convert_keeps_splits_values_and_the_files_boundary(tmp_path, fresh_home):
    root = write_well_dataset(tmp_path, smooth=False)
    dest = convert(root, tmp_path / "canonical.h5")
    assert verify_file(dest) == []
    found = open_layout(root)
    with h5py.File(dest, "r") as f:
        spec = json.loads(f.attrs["spec"])
        np.testing.assert_array_equal(f["val"][0], found.pools["val"][0])
        assert f["train"].shape == (4, 10, 32, 32, 3)
    assert spec["boundary"] == "periodic" and spec["params"]["scored_fields"] == ["field_x", "field_y"]
    converted = build_dataset("well", "smoke", [f"path={dest}"])  # the converted file reads as the original
    original = build_dataset("well", "smoke", [f"path={root}"])
    assert converted.spec.fields == original.spec.fields
    assert converted.spec.channel_mask == original.spec.channel_mask
    np.testing.assert_array_equal(converted.split("val")[0], original.split("val")[0])


def test_the_well_dataset_refuses_other_layouts_and_a_missing_path(tmp_path, fresh_home):
    other = tmp_path / "1D_Advection.hdf5"
    with h5py.File(other, "w") as f:
        f["tensor"] = np.zeros((2, 6, 4), np.float32)  # PDEBench
    with pytest.raises(UsageError, match="holds the 'pdebench' layout, not The Well's"):
        build_dataset("well", "smoke", [f"path={other}"])
    with pytest.raises(UsageError, match=r"^required setting data.well.path not given \(a Well dataset's folder or HDF5 "
                                         r"file, .*\); set data.well.path=VALUE"):
        build_dataset("well", "smoke")


def test_missing_group_is_one_line_exit_2(tmp_path, pdeb):
    path = write_well_file(tmp_path / "broken.hdf5")
    with h5py.File(path, "r+") as f:
        del f["t1_fields"]
    with pytest.raises(DataError, match="group 't1_fields' is missing"):
        open_layout(path)
    result = pdeb("data", "info", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: not a complete Well file: group 't1_fields' is missing (a Well file has dimensions, "
        f"boundary_conditions, scalars, t0_fields, t1_fields, t2_fields); download the file again"]


def test_field_of_unexpected_rank_is_one_line_exit_2(tmp_path, fresh_home, pdeb):
    root = write_well_dataset(tmp_path)
    path = root / "data/train/dummy_1.hdf5"
    with h5py.File(path, "r+") as f:  # a vector field without its component axis
        data, attrs = f["t1_fields/field"][()], dict(f["t1_fields/field"].attrs)
        del f["t1_fields/field"]
        f["t1_fields/field"] = data[..., 0]
        f["t1_fields/field"].attrs.update(attrs)
    with pytest.raises(DataError, match="field 't1_fields/field' has rank 4"):
        build_dataset("well", "smoke", [f"path={root}"])
    result = pdeb("data", "info", str(root))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: field 't1_fields/field' has rank 4 (shape (2, 10, 32, 32)) but a t1 field with these "
        f"attributes has rank 5: (trajectory, time, x, y, component); the file does not follow The Well's layout"]
    assert "Traceback" not in result.stderr


def test_a_file_from_the_wells_writer_trains(tmp_path, pdeb):
    root = write_well_dataset(tmp_path, files={"train": 4, "valid": 1, "test": 1})  # 8/2/2: the smoke caps
    home = tmp_path / "home"
    result = pdeb("run", "--model", "fno", "--data", "well", f"data.well.path={root}", "--profile", "smoke",
                  "--device", "cpu", "--run-id", "well-smoke", "train.max_steps=60", "train.lr=3e-3", "--quiet",
                  env={"PDEB_HOME": str(home), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    losses = [json.loads(line)["loss"] for line in (home / "runs/well-smoke/metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.8 * losses[0]  # smooth waves: the model learns
    evaluation = json.loads((home / "runs/well-smoke/eval/well.json").read_text())
    assert evaluation["horizon"] == 10 - T_IN
    assert len(evaluation["per_channel"]["rmse"]) == 2  # the constant field is an input, never scored
