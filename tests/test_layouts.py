"""Published-layout readers: values and axis order, detection, splits, spec, convert, CLI."""

from __future__ import annotations

import json
import pickle
import sys
import tracemalloc
import types
import warnings

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pdebench_core.cli_data import data_app
from pdebench_core.data.canonical import open_canonical, write_canonical
from pdebench_core.data.config import DatasetConfig
from pdebench_core.data.layouts import (
    SplitWarning, buoyancy_of, convert, describe_path, detect_layout, is_cfdbench, load_path, ns_variant,
    open_layout, plan_splits,
)
from pdebench_core.data.layouts import fixtures
from pdebench_core.data.verify import verify_file
from pdebench_core.errors import DataError, UsageError
from pdebench_core.spec import DataSpec

# A dataset that reads data of any grid and fields (it states neither).
DEFAULTS = DataSpec(name="toy", fields=(), spatial_shape=(), dt=0.5, boundary="periodic", params={"nu": 0.01})


def coded(shape, offset=0.0):
    """An array whose every value is distinct and encodes its position."""
    return (np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + offset).astype(np.float32)


def config(path, **kw):
    kw.setdefault("n_train", 4)
    kw.setdefault("n_val", 1)
    kw.setdefault("n_test", 1)
    kw.setdefault("t_in", 2)
    return DatasetConfig(path=str(path), **kw)


# ----------------------------------------------------------------------------- PDEBench single file

def test_pdebench_tensor_1d(tmp_path):
    tensor = coded((6, 5, 8))  # (N, T, X)
    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = tensor
        f["x-coordinate"] = np.linspace(1 / 16, 1 - 1 / 16, 8)
        f["t-coordinate"] = np.linspace(0, 0.25 * 5, 6)  # T + 1 values, as PDEBench stores them
    assert detect_layout(path) == "pdebench"
    ds = load_path(config(path), "burgers", DataSpec(name="burgers", fields=("u",), spatial_shape=(8,)))
    assert ds.spec.fields == ("u",)
    assert ds.spec.spatial_shape == (8,) and ds.spec.n_frames == 5
    assert ds.spec.dt == pytest.approx(0.25)
    assert ds.spec.domain[0] == pytest.approx((0.0, 1.0))
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    assert (len(train), len(val), len(test)) == (4, 1, 1)
    assert train[0].dtype == np.float32 and train[0].shape == (5, 8, 1)
    np.testing.assert_array_equal(train[3][..., 0], tensor[3])
    np.testing.assert_array_equal(val[0][..., 0], tensor[4])
    np.testing.assert_array_equal(test[0][..., 0], tensor[5])
    np.testing.assert_array_equal(train.window(2, 1, 3)[..., 0], tensor[2, 1:4])
    info = describe_path(path)
    assert info["splits"] == {"all": 6} and info["dt"] == pytest.approx(0.25)
    assert any("T + 1" in n or "end time" in n for n in info["notes"])


def test_pdebench_tensor_2d_keeps_x_then_y(tmp_path):
    tensor = coded((3, 4, 5, 7))  # (N, T, X, Y) with X != Y
    path = tmp_path / "darcy_like.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = tensor
    seq = open_layout(path).pools["all"]
    assert seq.shape == (4, 5, 7, 1)
    np.testing.assert_array_equal(seq[1][..., 0], tensor[1])


def test_pdebench_cfd_channel_order(tmp_path):
    shape = (4, 3, 6, 5)  # (N, T, X, Y)
    values = {k: coded(shape, offset=1000 * i) for i, k in enumerate(["density", "pressure", "Vx", "Vy"])}
    path = tmp_path / "2D_CFD_Rand_M0.1_Eta0.1_Zeta0.1_periodic_128_Train.hdf5"
    with h5py.File(path, "w") as f:
        for key in ["Vy", "pressure", "Vx", "density"]:  # storage order must not matter
            f[key] = values[key]
        f["x-coordinate"] = np.arange(6) * 0.1
        f["y-coordinate"] = np.arange(5) * 0.2
        f["t-coordinate"] = np.arange(4) * 0.05
    found = open_layout(path)
    assert found.layout == "pdebench" and found.fields == ("density", "pressure", "Vx", "Vy")
    traj = found.pools["all"][2]
    assert traj.shape == (3, 6, 5, 4)
    for c, key in enumerate(["density", "pressure", "Vx", "Vy"]):
        np.testing.assert_array_equal(traj[..., c], values[key][2])
    assert found.dt == pytest.approx(0.05)


def test_pdebench_cfd_3d_includes_vz(tmp_path):
    shape = (2, 3, 4, 5, 6)
    path = tmp_path / "3d.hdf5"
    with h5py.File(path, "w") as f:
        for i, key in enumerate(["density", "pressure", "Vx", "Vy", "Vz"]):
            f[key] = coded(shape, 100000 * i)
    traj = open_layout(path).pools["all"][1]
    assert traj.shape == (3, 4, 5, 6, 5)
    np.testing.assert_array_equal(traj[..., 4], coded(shape, 400000)[1])


# ----------------------------------------------------------------------------- PDEBench multi-group

def write_multi(path, n=5, shape=(6, 4, 3, 2), dt=0.01):
    samples = []
    with h5py.File(path, "w") as f:
        for i in range(n):
            g = f.create_group(f"{i:04d}")
            data = coded(shape, 10000 * i)
            samples.append(data)
            g["data"] = data
            g["grid/x"] = np.linspace(-1, 1, shape[1])
            if len(shape) == 4:
                g["grid/y"] = np.linspace(-1, 1, shape[2])
            g["grid/t"] = np.arange(shape[0]) * dt
    return samples


def test_pdebench_multi_group(tmp_path):
    path = tmp_path / "2D_diff-react_NA_NA.h5"
    samples = write_multi(path)
    assert detect_layout(path) == "pdebench-multi"
    ds = load_path(config(path, n_train=3, n_val=1, n_test=1), "dr2d",
                   DataSpec(name="dr2d", fields=("u", "v"), spatial_shape=(4, 3)))
    assert ds.spec.fields == ("u", "v") and ds.spec.dt == pytest.approx(0.01)
    np.testing.assert_array_equal(ds.split("train")[2], samples[2])
    np.testing.assert_array_equal(ds.split("test")[0], samples[4])


def test_pdebench_multi_group_1d(tmp_path):
    path = tmp_path / "1D_diff-sorp_NA_NA.h5"
    samples = write_multi(path, n=3, shape=(7, 9, 1))
    seq = open_layout(path).pools["all"]
    assert seq.shape == (7, 9, 1)
    np.testing.assert_array_equal(seq[1], samples[1])


# ----------------------------------------------------------------------------- FNO .mat

def write_mat73(path, variables, chunks=None):
    """Write ``variables`` as MATLAB -v7.3 would: HDF5 after a 512-byte header, axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            stored = np.asarray(value).T  # MATLAB is column-major: h5py sees the transpose
            f.create_dataset(name, data=stored, chunks=chunks if name == "u" else None)
            f[name].attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


@pytest.mark.parametrize("chunks", [None, (6, 5, 4, 2)])
def test_fno_mat_v73_axis_order(tmp_path, chunks):
    u = coded((5, 4, 5, 6)).astype(np.float64)  # MATLAB (N, X, Y, T), X != Y
    t = (np.arange(1, 7) * 1e-1).reshape(1, 6)
    path = tmp_path / "ns_V1e-3_N5_T6.mat"
    write_mat73(path, {"u": u, "a": u[..., 0], "t": t}, chunks=chunks)
    with h5py.File(path, "r") as f:
        assert f["u"].shape == (6, 5, 4, 5)  # (T, Y, X, N) as h5py sees it
    assert detect_layout(path) == "fno-mat"
    found = open_layout(path)
    seq = found.pools["all"]
    assert seq.shape == (6, 4, 5, 1)
    for n in range(5):  # crosses cache blocks when chunked two trajectories wide
        traj = seq[n]
        for (ti, i, j) in [(0, 0, 0), (5, 3, 4), (2, 1, 3)]:
            assert traj[ti, i, j, 0] == u[n, i, j, ti]
        np.testing.assert_array_equal(traj[..., 0], np.moveaxis(u[n], -1, 0))
    assert found.dt == pytest.approx(0.1)
    np.testing.assert_array_equal(seq.window(3, 2, 2)[..., 0], np.moveaxis(u[3], -1, 0)[2:4])


def test_spec_defaults_may_be_a_dict(tmp_path):
    u = coded((5, 4, 5, 6)).astype(np.float64)
    path = tmp_path / "ns.mat"
    write_mat73(path, {"u": u, "t": np.arange(1, 7).reshape(1, 6) * 2.0})
    defaults = {"name": "ns2d", "fields": ("vorticity",), "t_in": 2, "dt": 1.0, "horizon": None,
                "domain": ((0.0, 1.0), (0.0, 1.0)), "boundary": "periodic", "params": {"nu": 1e-3}}
    ds = load_path(config(path, n_train=3, n_val=1, n_test=1), "ns2d", defaults)
    assert ds.spec.fields == ("vorticity",) and ds.spec.spatial_shape == (4, 5) and ds.spec.dt == 2.0
    assert ds.spec.domain == ((0.0, 1.0), (0.0, 1.0)) and ds.spec.params == {"nu": 1e-3}
    np.testing.assert_array_equal(ds.split("test")[0][..., 0], np.moveaxis(u[4], -1, 0))


def test_fno_mat_v5_same_order(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    u = coded((3, 4, 5, 6))
    path = tmp_path / "ns_v5.mat"
    scipy_io.savemat(path, {"u": u, "a": u[..., 0], "t": np.arange(1, 7).reshape(1, 6)})
    assert detect_layout(path) == "fno-mat"
    seq = open_layout(path).pools["all"]
    assert seq.shape == (6, 4, 5, 1)
    np.testing.assert_array_equal(seq[2][..., 0], np.moveaxis(u[2], -1, 0))


def test_fno_mat_v5_without_scipy_is_clear(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    path = tmp_path / "old.mat"
    scipy_io.savemat(path, {"u": coded((2, 3, 3, 4))})
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(DataError, match="needs scipy"):
        open_layout(path)


# ----------------------------------------------------------------------------- DPOT

def test_dpot_single_file_time_after_space(tmp_path):
    data = coded((5, 4, 3, 6, 2))  # (N, X, Y, T, C)
    path = tmp_path / "ns2d_pdb.hdf5"
    with h5py.File(path, "w") as f:
        f["data"] = data
    assert detect_layout(path) == "dpot"
    seq = open_layout(path).pools["all"]
    assert seq.shape == (6, 4, 3, 2)
    np.testing.assert_array_equal(seq[3], np.moveaxis(data[3], 2, 0))
    np.testing.assert_array_equal(seq.window(3, 1, 2), np.moveaxis(data[3], 2, 0)[1:3])


def test_dpot_train_test_pair(tmp_path):
    train, test = coded((6, 4, 4, 5)), coded((2, 4, 4, 5), 1e5)  # (N, X, Y, T): one field
    for name, data in [("ns2d_1e-5_train.hdf5", train), ("ns2d_1e-5_test.hdf5", test)]:
        with h5py.File(tmp_path / name, "w") as f:
            f["data"] = data
    for entry in ["ns2d_1e-5_train.hdf5", "ns2d_1e-5_test.hdf5"]:
        ds = load_path(config(tmp_path / entry, n_train=5, n_val=1, n_test=2), "ns",
                       DataSpec(name="ns", fields=("w",), spatial_shape=(4, 4)))
        assert [len(ds.split(s)) for s in ("train", "val", "test")] == [5, 1, 2]
        np.testing.assert_array_equal(ds.split("val")[0][..., 0], np.moveaxis(train[5], -1, 0))
        np.testing.assert_array_equal(ds.split("test")[1][..., 0], np.moveaxis(test[1], -1, 0))


def test_dpot_folders_numeric_order(tmp_path):
    trajs = {}
    for split, n in [("train", 12), ("test", 3)]:
        (tmp_path / "pdb" / split).mkdir(parents=True)
        for i in range(n):
            data = coded((4, 3, 5, 2), 1000 * i + (0 if split == "train" else 1e6))  # (X, Y, T, C)
            trajs[split, i] = data
            with h5py.File(tmp_path / "pdb" / split / f"data_{i}.hdf5", "w") as f:
                f["data"] = data
    for path in [tmp_path / "pdb", tmp_path / "pdb" / "train"]:
        assert detect_layout(path) == "dpot"
        found = open_layout(path)
        assert {k: len(v) for k, v in found.pools.items()} == {"train": 12, "test": 3}
        np.testing.assert_array_equal(found.pools["train"][10], np.moveaxis(trajs["train", 10], 2, 0))
        np.testing.assert_array_equal(found.pools["test"][2], np.moveaxis(trajs["test", 2], 2, 0))


# ----------------------------------------------------------------------------- PDEArena

def write_pdearena(path, groups, shape=(6, 8, 8), offset=0.0):
    arrays = {}
    with h5py.File(path, "w") as f:
        for group, n in groups.items():
            g = f.create_group(group)
            for c, key in enumerate(["u", "vx", "vy"]):
                arrays[group, key] = coded((n,) + shape, offset + 1e5 * c).astype(np.float64)
                g[key] = arrays[group, key]
            g["t"] = np.tile(np.arange(shape[0]) * 1.5, (n, 1))
            g["dt"] = np.full(n, 1.5)
            g["buo_y"] = np.full(n, 0.5)
    return arrays


def test_pdearena_own_splits(tmp_path):
    path = tmp_path / "NavierStokes2D_train_1.h5"
    arrays = write_pdearena(path, {"train": 4, "valid": 2, "test": 3})
    assert detect_layout(path) == "pdearena"
    with pytest.warns(SplitWarning, match="split 'train' has only 4 trajectories"):
        ds = load_path(config(path, n_train=10, n_val=2, n_test=3), "pdearena_ns",
                       DataSpec(name="pdearena_ns", fields=(), spatial_shape=(8, 8)))
    assert ds.spec.fields == ("u", "vx", "vy") and ds.spec.dt == pytest.approx(1.5)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [4, 2, 3]
    traj = ds.split("val")[1]
    assert traj.shape == (6, 8, 8, 3)
    for c, key in enumerate(["u", "vx", "vy"]):
        np.testing.assert_array_equal(traj[..., c], arrays["valid", key][1])


def test_pdearena_folder_of_shards(tmp_path):
    folder = tmp_path / "ns"
    folder.mkdir()
    first = write_pdearena(folder / "a_train.h5", {"train": 3})
    second = write_pdearena(folder / "b_train.h5", {"train": 2}, offset=5e5)
    write_pdearena(folder / "c_test.h5", {"test": 2})
    assert detect_layout(folder) == "pdearena"
    found = open_layout(folder)
    assert {k: len(v) for k, v in found.pools.items()} == {"train": 5, "test": 2}
    np.testing.assert_array_equal(found.pools["train"][2][..., 1], first["train", "vx"][2])
    np.testing.assert_array_equal(found.pools["train"][4][..., 0], second["train", "u"][1])


# ----------------------------------------------------------------------------- CFDBench as DPOT stores it

def test_cfdbench_pair_axis_order_channels_and_splits(tmp_path):
    written = fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=6, n_test=3, grid=(6, 5), frames=20)
    train_file = tmp_path / "cfdbench" / "ns2d_cdb_train.hdf5"
    with h5py.File(train_file, "r") as f:
        raw = f["data"][:]
    assert raw.shape == (6, 6, 5, 20, 3) and raw.dtype == np.float64  # (N, X, Y, T, C) as DPOT writes it
    for path in (train_file, tmp_path / "cfdbench" / "ns2d_cdb_test.hdf5", tmp_path / "cfdbench"):
        assert detect_layout(path) == "cfdbench" and is_cfdbench(path)
    found = open_layout(train_file)
    assert found.layout == "cfdbench" and found.fields == ("u", "v", "mask") and found.dt == pytest.approx(0.1)
    traj = found.pools["train"][4]
    assert traj.shape == (20, 6, 5, 3) and traj.dtype == np.float32
    for (t, x, y, c) in [(0, 0, 0, 0), (19, 5, 4, 1), (7, 2, 3, 2), (3, 5, 0, 0)]:
        assert traj[t, x, y, c] == np.float32(raw[4, x, y, t, c])
    np.testing.assert_array_equal(traj[..., 2], np.broadcast_to(fixtures.fluid_mask((6, 5)), (20, 6, 5)))
    ds = load_path(config(tmp_path / "cfdbench", n_train=4, n_val=1, n_test=3), "cfdbench",
                   DataSpec(name="cfdbench", fields=("x", "y", "z"), spatial_shape=(64, 64)))
    assert ds.spec.fields == ("u", "v", "mask") and ds.spec.n_frames == 20 and ds.spec.dt == pytest.approx(0.1)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [4, 1, 3]
    np.testing.assert_array_equal(ds.split("val")[0], written["train"][4].astype(np.float32))
    np.testing.assert_array_equal(ds.split("test")[2], written["test"][2].astype(np.float32))
    np.testing.assert_array_equal(ds.split("train").window(3, 10, 10), written["train"][3, 10:].astype(np.float32))


def test_cfdbench_detection_needs_the_name_and_three_channels(tmp_path):
    with h5py.File(tmp_path / "other_train.hdf5", "w") as f:
        f["data"] = coded((2, 4, 4, 6, 3))
    with h5py.File(tmp_path / "ns2d_cdb_train.hdf5", "w") as f:
        f["data"] = coded((2, 4, 4, 6, 4))
    assert detect_layout(tmp_path / "other_train.hdf5") == "dpot"
    assert detect_layout(tmp_path / "ns2d_cdb_train.hdf5") == "dpot"
    assert not is_cfdbench(tmp_path / "ns2d_cdb_train.hdf5") and not is_cfdbench(tmp_path)
    with pytest.raises(DataError) as err:
        open_layout(tmp_path / "ns2d_cdb_train.hdf5", format="cfdbench")
    assert "(N, X, Y, T, 3)" in str(err.value) and "\n" not in str(err.value)
    assert open_layout(tmp_path / "other_train.hdf5", format="cfdbench").fields == ("u", "v", "mask")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no CFDBench file"):
        open_layout(empty, format="cfdbench")


# ----------------------------------------------------------------------------- PDEArena NS-cond

def test_pdearena_cond_shards_keep_buoyancy_per_trajectory(tmp_path):
    written = fixtures.write_pdearena_ns_cond(tmp_path / "cond", grid=(6, 5))
    assert detect_layout(tmp_path / "cond") == "pdearena" and ns_variant(tmp_path / "cond") == "ns-cond"
    found = open_layout(tmp_path / "cond")
    assert {k: len(v) for k, v in found.pools.items()} == {"train": 6, "val": 2, "test": 2}
    assert found.dt == pytest.approx(1.5) and found.traj_shape == (56, 6, 5, 3) and found.dtype == "float64"
    assert found.params == {"buoyancy": [0.25, 0.47]}
    for split, pool in found.pools.items():
        assert buoyancy_of(pool) == pytest.approx(written.buoyancy[split])
        np.testing.assert_array_equal(pool[len(pool) - 1], written.splits[split][-1].astype(np.float32))
    second_train = written.paths[2]  # name order: test, train 0.25, train 0.41, valid
    with h5py.File(second_train, "r") as f:
        assert f["train/buo_y"][0] == 0.41
        np.testing.assert_array_equal(found.pools["train"][4][..., 2], f["train/vy"][1].astype(np.float32))
    assert buoyancy_of(found.pools["train"].subset([0, 5])) == pytest.approx([0.25, 0.41])


def test_pdearena_variants_are_told_apart(tmp_path):
    write_pdearena(tmp_path / "plain.h5", {"train": 2, "test": 1})  # buoyancy 0.5 throughout
    assert ns_variant(tmp_path / "plain.h5") == "ns"
    assert open_layout(tmp_path / "plain.h5").params == {"buoyancy": 0.5}
    fixtures.write_pdearena_shard(tmp_path / "one.h5", {"train": 2}, frames=6, buoyancy=0.3)
    assert ns_variant(tmp_path / "one.h5") == "ns-cond"
    fixtures.write_ns_cond_dpot(tmp_path / "ns2d_cond_pda", frames=12)
    assert ns_variant(tmp_path / "ns2d_cond_pda") == "ns-cond"  # DPOT's folder name
    fixtures.write_ns_cond_dpot(tmp_path / "renamed", frames=56)
    assert ns_variant(tmp_path / "renamed/train") == "ns-cond"  # 56 frames
    fixtures.write_ns_cond_dpot(tmp_path / "short", frames=14)
    assert ns_variant(tmp_path / "short") == "ns"
    assert ns_variant(tmp_path / "missing") is None
    with h5py.File(tmp_path / "t.hdf5", "w") as f:
        f["tensor"] = coded((2, 3, 4))
    assert ns_variant(tmp_path / "t.hdf5") is None


def test_ns_cond_as_dpot_preprocessed_it(tmp_path):
    written = fixtures.write_ns_cond_dpot(tmp_path / "ns2d_cond_pda", n_train=3, n_test=2, grid=(6, 5))
    with h5py.File(tmp_path / "ns2d_cond_pda/test/data_1.hdf5", "r") as f:
        raw = f["data"][:]
    assert raw.shape == (6, 5, 56, 3)  # (X, Y, T, C) per file
    found = open_layout(tmp_path / "ns2d_cond_pda")
    assert found.layout == "dpot" and {k: len(v) for k, v in found.pools.items()} == {"train": 3, "test": 2}
    traj = found.pools["test"][1]
    assert traj[40, 5, 2, 1] == np.float32(raw[5, 2, 40, 1])
    np.testing.assert_array_equal(traj, written["test"][1].astype(np.float32))


# ----------------------------------------------------------------------------- canonical, detection, errors

def test_canonical_keeps_stored_spec(tmp_path):
    spec = DataSpec(name="stored", fields=("w",), spatial_shape=(4, 4), dt=0.125, boundary="neumann",
                    params={"re": 100})
    splits = {s: coded((n, 6, 4, 4, 1), 1e4 * i) for i, (s, n) in enumerate([("train", 3), ("val", 1), ("test", 2)])}
    path = write_canonical(tmp_path / "c.h5", splits, spec)
    assert detect_layout(path) == "canonical"
    ds = load_path(config(path, n_train=3, n_val=1, n_test=2, t_in=3, horizon=2), "renamed", DEFAULTS)
    assert ds.spec.name == "renamed" and ds.spec.boundary == "neumann" and ds.spec.dt == 0.125
    assert ds.spec.params["re"] == 100 and ds.spec.t_in == 3 and ds.spec.horizon == 2
    np.testing.assert_array_equal(ds.split("test")[1], splits["test"][1])


def test_unknown_layout_and_bad_files(tmp_path):
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(DataError, match=r"odd\.h5.*no layout pdeb reads matches it.*foo"):
        detect_layout(odd)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DataError) as err:
        detect_layout(junk)
    assert "junk.hdf5" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="no such file"):
        detect_layout(tmp_path / "missing.h5")
    with pytest.raises(UsageError, match="did you mean 'pdebench'"):
        open_layout(odd, format="pdebnch")
    with pytest.raises(DataError, match="tensor"):
        open_layout(odd, format="pdebench")  # an explicit format that does not fit


def test_truncated_file_fails_on_read_with_one_line(tmp_path):
    path = tmp_path / "cut.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = coded((4, 8, 256))
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DataError) as err:
        seq = open_layout(path).pools["all"]
        for i in range(len(seq)):
            seq[i]
    assert "cut.hdf5" in str(err.value) and "\n" not in str(err.value)


def test_format_override_beats_detection(tmp_path):
    path = tmp_path / "both.h5"
    with h5py.File(path, "w") as f:
        f["data"] = coded((2, 3, 3, 4, 1))
        f.create_group("0000")["data"] = coded((4, 3, 3, 1))
    assert detect_layout(path) == "dpot"
    assert open_layout(path, format="pdebench-multi").layout == "pdebench-multi"


# ----------------------------------------------------------------------------- splits and spec

def test_plan_splits_in_order_and_disjoint():
    plan, messages = plan_splits({"all": 20}, {"train": 10, "val": 3, "test": 5})
    assert messages == []
    assert {s: (p, list(r)) for s, (p, r) in plan.items()} == {
        "train": ("all", list(range(10))), "val": ("all", [10, 11, 12]), "test": ("all", list(range(13, 18)))}


def test_plan_splits_falls_back_to_80_10_10():
    plan, messages = plan_splits({"all": 20}, {"train": 64, "val": 8, "test": 8})
    assert [len(plan[s][1]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert len(messages) == 1 and "80/10/10" in messages[0]
    ranges = [set(plan[s][1]) for s in ("train", "val", "test")]
    assert not (ranges[0] & ranges[1] or ranges[0] & ranges[2] or ranges[1] & ranges[2])
    plan, _ = plan_splits({"all": 3}, {"train": 5, "val": 5, "test": 5})
    assert [len(plan[s][1]) for s in ("train", "val", "test")] == [1, 1, 1]
    with pytest.raises(DataError, match="too few"):
        plan_splits({"all": 2}, {"train": 5, "val": 5, "test": 5})
    plan, _ = plan_splits({"all": 10}, {"train": 20, "val": 0, "test": 5})
    assert [len(plan[s][1]) for s in ("train", "val", "test")] == [9, 0, 1]


@pytest.mark.parametrize("wanted, expected", [
    ({"train": 5, "val": None, "test": None}, [5, 1, 1]),  # the open splits take their 10 %
    ({"train": None, "val": None, "test": 3}, [8, 1, 3]),  # train takes what the others leave
    ({"train": None, "val": 0, "test": 0}, [12, 0, 0]),
    ({"train": None, "val": None, "test": None}, [10, 1, 1]),
])
def test_plan_splits_honours_the_counts_given_and_fills_in_the_others(wanted, expected):
    """``pdeb data convert --n-train 5`` gets 5 train trajectories, with no warning."""
    plan, messages = plan_splits({"all": 12}, wanted)
    assert [len(plan[s][1]) for s in ("train", "val", "test")] == expected and messages == []


def test_plan_splits_own_splits_and_carved_val():
    plan, messages = plan_splits({"train": 10, "val": 2, "test": 4}, {"train": 5, "val": 5, "test": 3})
    assert {s: (p, len(r)) for s, (p, r) in plan.items()} == {"train": ("train", 5), "val": ("val", 2),
                                                              "test": ("test", 3)}
    assert len(messages) == 1 and "val" in messages[0]
    plan, _ = plan_splits({"train": 10, "test": 4}, {"train": 7, "val": 2, "test": 4})
    assert plan["val"] == ("train", range(7, 9)) and plan["test"] == ("test", range(4))
    plan, messages = plan_splits({"train": 10, "test": 4}, {"train": 10, "val": 2, "test": 4})
    assert plan["train"] == ("train", range(9)) and plan["val"] == ("train", range(9, 10))
    assert len(messages) == 1 and "using 9/1" in messages[0]


def test_load_path_warns_and_documents_fallback(tmp_path):
    path = tmp_path / "small.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = coded((10, 5, 8))
    with pytest.warns(SplitWarning, match="80/10/10"):
        ds = load_path(config(path, n_train=64, n_val=8, n_test=8), "toy", DEFAULTS)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [8, 1, 1]


def test_time_steps_from_float32_coordinates_lose_their_storage_noise():
    from pdebench_core.data.layouts.common import uniform_step

    assert uniform_step((np.arange(21) * 0.05).astype(np.float32), "t", []) == 0.05
    assert uniform_step((np.arange(11) * 0.1).astype(np.float32), "t", []) == 0.1
    assert uniform_step(np.arange(11) * 0.01, "t", []) == 0.01


def test_a_file_too_small_for_the_splits_names_itself_and_the_fix(tmp_path):
    path = tmp_path / "one.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = coded((1, 5, 8))
    with pytest.raises(DataError, match=rf"{path}: 'all' holds 1 trajectory, too few for the splits train, val, "
                                        rf"test; point data.toy.path at a file or folder with more trajectories"):
        load_path(config(path), "toy", DEFAULTS)


def test_spec_combines_file_and_defaults(tmp_path):
    path = tmp_path / "two.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = coded((6, 5, 8))
    ds = load_path(config(path), "toy", DEFAULTS)
    # The file has one unnamed channel and the defaults name none: it is u.
    assert ds.spec.fields == ("u",) and ds.spec.dt == 0.5 and ds.spec.params == {"nu": 0.01}
    assert ds.spec.name == "toy" and ds.spec.boundary == "periodic"
    with pytest.raises(DataError, match="t_in=5 leaves none"):
        load_path(config(path, t_in=5), "toy", DEFAULTS)
    with pytest.warns(SplitWarning, match="horizon"):
        ds = load_path(config(path, t_in=2, horizon=10), "toy", DEFAULTS)
    assert ds.spec.horizon == 3
    with pytest.raises(UsageError, match="path is not set"):
        load_path(DatasetConfig(), "toy", DEFAULTS)


def test_a_file_of_another_dimension_or_channel_count_than_the_dataset_is_refused(tmp_path):
    path = tmp_path / "one.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = coded((6, 5, 8, 8))  # 2D, one channel
    two_fields_1d = DEFAULTS.replace(fields=("a", "b"), spatial_shape=(8,))
    with pytest.raises(DataError, match=r"holds 2D trajectories \(grid 8x8\); dataset 'toy' is 1D"):
        load_path(config(path), "toy", two_fields_1d)
    with pytest.raises(DataError, match=r"holds 1 channels; dataset 'toy' has 2 \(a, b\)"):
        load_path(config(path), "toy", two_fields_1d.replace(spatial_shape=(8, 8)))


def test_layout_fields_name_unnamed_channels_in_the_layouts_own_order(tmp_path):
    path = tmp_path / "dpot.hdf5"
    with h5py.File(path, "w") as f:
        f["data"] = coded((3, 8, 8, 12, 4))  # DPOT: (N, X, Y, T, C), channels unnamed
    own = DEFAULTS.replace(fields=("density", "pressure", "Vx", "Vy"), spatial_shape=(8, 8))
    order = {"dpot": ("Vx", "Vy", "density", "pressure")}
    ds = load_path(config(path, n_train=1, n_val=1, n_test=1), "cfd", own, layout_fields=order)
    assert ds.spec.fields == ("Vx", "Vy", "density", "pressure")  # named as stored, not reordered
    assert load_path(config(path, n_train=1, n_val=1, n_test=1), "cfd", own).spec.fields == own.fields


def test_lazy_sequences_pickle_and_preload(tmp_path):
    path = tmp_path / "p.h5"
    samples = write_multi(path, n=4)
    ds = load_path(config(path, n_train=2, n_val=1, n_test=1), "toy", DEFAULTS)
    train = ds.split("train")
    train[0]  # opens a handle, which must not travel with the pickle
    copy = pickle.loads(pickle.dumps(train))
    np.testing.assert_array_equal(copy[1], samples[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pre = load_path(config(path, n_train=2, n_val=1, n_test=1, preload=True), "toy", DEFAULTS)
    path.unlink()  # preloaded data no longer needs the file
    np.testing.assert_array_equal(pre.split("test")[0], samples[3])


def test_omegaconf_config_is_accepted(tmp_path):
    from omegaconf import OmegaConf

    path = tmp_path / "o.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = coded((6, 5, 8))
    cfg = OmegaConf.structured(config(path))
    ds = load_path(cfg, "toy", DEFAULTS)
    assert len(ds.split("train")) == 4


# ----------------------------------------------------------------------------- convert

def test_convert_round_trip_unsplit(tmp_path):
    shape = (10, 4, 6, 5)
    values = {k: coded(shape, 1e4 * i) for i, k in enumerate(["density", "pressure", "Vx", "Vy"])}
    src = tmp_path / "cfd.hdf5"
    with h5py.File(src, "w") as f:
        for k, v in values.items():
            f[k] = v
        f["t-coordinate"] = np.arange(5) * 0.05
    dest = convert(src, tmp_path / "out" / "cfd.h5", name="cfd2d")
    spec, splits = open_canonical(dest)
    assert spec.name == "cfd2d" and spec.fields == ("density", "pressure", "Vx", "Vy")
    assert spec.dt == pytest.approx(0.05)
    assert {k: len(v) for k, v in splits.items()} == {"train": 8, "val": 1, "test": 1}
    np.testing.assert_array_equal(splits["val"][0], np.stack([values[k][8] for k in values], axis=-1))
    np.testing.assert_array_equal(splits["train"][5][..., 2], values["Vx"][5])
    with h5py.File(dest, "r") as f:
        assert f["train"].chunks == (1, 4, 6, 5, 4) and f["train"].dtype == np.float32
        provenance = json.loads(f.attrs["provenance"])
    assert provenance["layout"] == "pdebench"
    assert provenance["source_splits"]["test"] == {"pool": "all", "start": 9, "stop": 10}
    assert verify_file(dest) == []
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_convert_mat_streams_frame_planes(tmp_path):
    u = coded((7, 4, 5, 6)).astype(np.float64)
    src = tmp_path / "ns.mat"
    write_mat73(src, {"u": u, "t": np.arange(1, 7).reshape(1, 6)})
    dest = convert(src, tmp_path / "ns.h5", counts={"train": 4, "val": 1, "test": 2})
    _, splits = open_canonical(dest)
    np.testing.assert_array_equal(splits["test"][1][..., 0], np.moveaxis(u[6], -1, 0))
    np.testing.assert_array_equal(splits["train"][2][..., 0], np.moveaxis(u[2], -1, 0))
    assert verify_file(dest) == []


def test_convert_keeps_own_splits_and_refuses_self(tmp_path):
    src = tmp_path / "arena.h5"
    write_pdearena(src, {"train": 3, "valid": 1, "test": 2})
    dest = convert(src, tmp_path / "arena_canonical.h5")
    _, splits = open_canonical(dest)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "val": 1, "test": 2}
    with pytest.raises(DataError, match="overwrite its own source"):
        convert(dest, dest)


def test_convert_failure_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "t.hdf5"
    with h5py.File(src, "w") as f:
        f["tensor"] = coded((10, 4, 8))
    from pdebench_core.data.layouts import conversion as convert_module

    def explode(*args, **kwargs):
        raise DataError("disk went away")

    monkeypatch.setattr(convert_module.CanonicalWriter, "write", explode)
    with pytest.raises(DataError, match="disk went away"):
        convert(src, tmp_path / "never.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.hdf5"]


# ----------------------------------------------------------------------------- memory

def test_reading_every_trajectory_keeps_memory_flat(tmp_path):
    n, shape = 48, (16, 128, 128)  # four fields -> 48 x 4 MiB per field = 192 MiB file
    path = tmp_path / "big.hdf5"
    with h5py.File(path, "w") as f:
        for i, key in enumerate(["density", "pressure", "Vx", "Vy"]):
            ds = f.create_dataset(key, shape=(n,) + shape, dtype="float32")
            for j in range(n):
                ds[j] = np.full(shape, i + j, dtype=np.float32)
    file_bytes = path.stat().st_size
    assert file_bytes > 180 * 2**20
    seq = open_layout(path).pools["all"]
    tracemalloc.start()
    try:
        total = 0.0
        for j in range(len(seq)):
            total += float(seq[j][0, 0, 0, 3])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == sum(3 + j for j in range(n))
    one_trajectory = int(np.prod(shape)) * 4 * 4
    assert peak < 3 * one_trajectory < file_bytes / 10
    tracemalloc.start()
    try:
        dest = convert(path, tmp_path / "big_canonical.h5")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * one_trajectory
    assert open_canonical(dest)[1]["test"][1][5, 7, 9, 2] == 2 + 45  # 40/4/4 split: test[1] is #45


# ----------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_info_json_and_text(tmp_path):
    path = tmp_path / "2D_rdb_NA_NA.h5"
    write_multi(path, n=3, shape=(5, 4, 4, 1))
    result = runner.invoke(data_app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layout"] == "pdebench-multi" and info["splits"] == {"all": 3}
    assert info["trajectory_shape"] == [5, 4, 4, 1]
    result = runner.invoke(data_app, ["info", str(path)])
    assert result.exit_code == 0 and "pdebench-multi" in result.stdout
    burgers = tmp_path / "burgers.hdf5"
    with h5py.File(burgers, "w") as f:
        f["tensor"] = coded((3, 5, 8))
        f.attrs["Nu"] = 0.5  # what the file states of its physics is shown without --json too
    assert "parameters: nu=0.5" in runner.invoke(data_app, ["info", str(burgers)]).stdout


def test_cli_errors_are_one_line_exit_2(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\0" * 100)
    result = runner.invoke(data_app, ["info", str(junk)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:") and "junk.h5" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(data_app, ["info", str(junk), "--format", "nope"])
    assert result.exit_code == 2 and "unknown data format" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--n-train", "-1"], "-1 train trajectories (--n-train): a split holds at least 1"),
    (["--n-train", "0"], "0 train trajectories (--n-train): a split holds at least 1 (a model trains on it)"),
    (["--n-val", "-5"], "-5 val trajectories (--n-val): a split holds at least 0"),
])
def test_convert_refuses_split_sizes_that_make_no_sense(tmp_path, args, message):
    fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=5, n_test=2)
    dest = tmp_path / "out.h5"
    result = runner.invoke(data_app, ["convert", str(tmp_path / "cfdbench"), str(dest), *args])
    assert result.exit_code == 2 and message in result.output and not dest.exists()


def test_a_convert_ended_by_sigterm_leaves_no_half_written_file(tmp_path, monkeypatch):
    """SIGTERM (a scheduler, ``kill``) unwinds a conversion like Ctrl-C: exit 143, no temporary file."""
    import os
    import signal

    from pdebench_core.data.layouts import conversion

    fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=5, n_test=2)
    real = conversion._copy_trajectory_major

    def terminated_half_way(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the handler pdeb installed for the command
        return real(*args, **kwargs)

    monkeypatch.setattr(conversion, "_copy_trajectory_major", terminated_half_way)
    dest = tmp_path / "out" / "converted.h5"
    dest.parent.mkdir()
    result = runner.invoke(data_app, ["convert", str(tmp_path / "cfdbench"), str(dest)])
    assert result.exit_code == 143 and "stopped by SIGTERM" in result.output
    assert list(dest.parent.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the command's handler is gone again


def test_a_disk_filling_up_during_a_convert_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """HDF5's ENOSPC report (an OSError with no file name, many lines) becomes one line naming the file."""
    import errno

    import h5py

    fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=5, n_test=2)
    dest = tmp_path / "out" / "converted.h5"
    dest.parent.mkdir()
    dest.write_text("the previous file")

    def disk_full(self, key, value):
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: time = now\n, filename = "
                      "'x', errno = 28, error message = 'No space left on device', buf = 0x1)")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", disk_full)
    result = runner.invoke(data_app, ["convert", str(tmp_path / "cfdbench"), str(dest), "--force"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: could not write {dest}"), result.output
    assert "No space left on device" in lines[0] and "previous file there is untouched" in lines[0]
    assert [p.name for p in dest.parent.iterdir()] == ["converted.h5"]
    assert dest.read_text() == "the previous file"


def test_convert_refuses_a_file_larger_than_the_free_space(tmp_path, monkeypatch):
    from pdebench_core import diskspace

    fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=5, n_test=2)
    monkeypatch.setattr(diskspace, "free_bytes", lambda folder: diskspace.SPACE_MARGIN)
    dest = tmp_path / "new" / "converted.h5"
    result = runner.invoke(data_app, ["convert", str(tmp_path / "cfdbench"), str(dest)])
    assert result.exit_code == 2 and "not enough free space" in result.output and "converting cfdbench" in result.output
    assert not dest.exists()


def test_convert_says_when_it_cannot_give_the_split_sizes_asked_for(tmp_path):
    fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=5, n_test=2)
    dest = tmp_path / "out.h5"
    result = runner.invoke(data_app, ["convert", str(tmp_path / "cfdbench"), str(dest), "--n-train", "100"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "warning: " in output and "asked for 100/all train/val trajectories" in output
    with h5py.File(dest, "r") as f:
        assert len(f["train"]) == 4  # the file's train split, shared 80/10/10 with the val split it lacks


def test_cli_info_convert_and_verify_new_layouts(tmp_path):
    fixtures.write_cfdbench(tmp_path / "cfdbench", n_train=5, n_test=2)
    fixtures.write_pdearena_ns_cond(tmp_path / "cond")
    result = runner.invoke(data_app, ["info", str(tmp_path / "cfdbench" / "ns2d_cdb_test.hdf5"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layout"] == "cfdbench" and info["fields"] == ["u", "v", "mask"]
    assert info["splits"] == {"train": 5, "test": 2} and info["trajectory_shape"] == [20, 8, 8, 3]
    result = runner.invoke(data_app, ["info", str(tmp_path / "cond"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layout"] == "pdearena" and info["params"] == {"buoyancy": [0.25, 0.47]} and info["dt"] == 1.5
    for src, name in [(tmp_path / "cfdbench", "cfdbench"), (tmp_path / "cond", "pdearena-ns-cond")]:
        dest = tmp_path / f"{name}.h5"
        result = runner.invoke(data_app, ["convert", str(src), str(dest), "--name", name])
        assert result.exit_code == 0, result.output
        result = runner.invoke(data_app, ["verify", str(dest), "--strict"])
        assert result.exit_code == 0, result.output
        spec, splits = open_canonical(dest)
        assert spec.name == name and sum(len(v) for v in splits.values()) in (7, 10)
    spec, splits = open_canonical(tmp_path / "pdearena-ns-cond.h5")
    assert spec.params["buoyancy"] == [0.25, 0.47] and spec.dt == 1.5 and spec.fields == ("u", "vx", "vy")
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 2, "test": 2}


def test_cli_convert(tmp_path):
    src = tmp_path / "t.hdf5"
    with h5py.File(src, "w") as f:
        f["tensor"] = coded((12, 4, 8))
    dest = tmp_path / "t_canonical.h5"
    result = runner.invoke(data_app, ["convert", str(src), str(dest), "--n-train", "6", "--n-val", "2",
                                      "--n-test", "3"])
    assert result.exit_code == 0, result.output
    _, splits = open_canonical(dest)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 2, "test": 3}


def test_cli_convert_never_overwrites_unasked_nor_writes_over_a_non_file(tmp_path):
    src = tmp_path / "t.hdf5"
    with h5py.File(src, "w") as f:
        f["tensor"] = coded((12, 4, 8))
    precious = tmp_path / "notes.txt"
    precious.write_text("precious")
    result = runner.invoke(data_app, ["convert", str(src), str(precious)])
    assert result.exit_code == 2 and precious.read_text() == "precious"
    assert f"{precious} already exists; pass --force to replace it" in result.output
    assert runner.invoke(data_app, ["convert", str(src), str(precious), "--force"]).exit_code == 0
    assert open_canonical(precious)[0].n_frames == 4
    folder = tmp_path / "folder"
    folder.mkdir()
    result = runner.invoke(data_app, ["convert", str(src), str(folder), "--force"])
    assert result.exit_code == 2 and "exists and is not a regular file" in result.output and folder.is_dir()


def test_cli_generate_uses_build_dataset(tmp_path, monkeypatch):
    path = tmp_path / "gen.h5"
    spec = DataSpec(name="toy", fields=("u",), spatial_shape=(8,))
    write_canonical(path, {s: coded((2, 4, 8, 1)) for s in ("train", "val", "test")}, spec)
    calls = []

    def build_dataset(name, profile, overrides):
        calls.append((name, profile, overrides))
        return load_path(config(path, n_train=2, n_val=2, n_test=2), name, spec)

    monkeypatch.setitem(sys.modules, "pdebench_core.config", types.SimpleNamespace(build_dataset=build_dataset))
    result = runner.invoke(data_app, ["generate", "toy", "--profile", "smoke", "resolution=8", "seed=1"])
    assert result.exit_code == 0, result.output
    assert calls == [("toy", "smoke", ["resolution=8", "seed=1"])]
    assert "gen.h5" in result.stdout and "(4, 8, 1)" in result.stdout
    result = runner.invoke(data_app, ["generate", "toy", "resolution"])
    assert result.exit_code == 2 and "key=value" in result.stderr


def test_complex_valued_data_is_refused_not_cut_to_its_real_part(tmp_path):
    """float32 would silently keep the real part; pdeb says so and how to store such data."""
    path = tmp_path / "complex.hdf5"
    values = (np.ones((4, 6, 16)) + 1j * np.ones((4, 6, 16))).astype(np.complex64)
    with h5py.File(path, "w") as f:
        f["tensor"] = values
        f["t-coordinate"] = np.arange(7, dtype=np.float32)
    found = open_layout(path)  # metadata only: pdeb data info still describes it
    assert found.dtype == "complex64"
    with pytest.raises(DataError, match=r"complex.hdf5 stores complex values \(complex64\); pdeb reads real data: "
                                        r"store the real and imaginary parts as two channels"):
        found.pools["all"][0]


def test_a_finite_value_beyond_float32_is_refused_not_stored_as_inf(tmp_path, pdeb):
    """A float64 file holding 1e39: converting or scoring it would turn it into Inf (and then
    call the file's data non-finite); every reader names the value in one line instead."""
    from pdebench_core.data import FileTrajectories

    path = tmp_path / "wide.hdf5"
    values = np.random.default_rng(0).random((4, 6, 16))
    values[3, 2, 5] = -1e39
    with h5py.File(path, "w") as f:
        f["tensor"] = values
        f["t-coordinate"] = np.arange(7, dtype=np.float64)
    found = open_layout(path)
    assert np.array_equal(found.pools["all"][2], values[2].astype(np.float32)[..., None])  # the others read as they are
    with pytest.raises(DataError, match=r"^trajectory 3 of .*wide.hdf5.* holds 1e\+39, beyond the float32 range"):
        found.pools["all"][3]
    np.save(tmp_path / "one.npy", values[3][..., None])
    with pytest.raises(DataError, match=r"one.npy holds 1e\+39, beyond the float32 range"):
        FileTrajectories([tmp_path / "one.npy"])[0]
    result = pdeb("data", "convert", str(path), str(tmp_path / "wide.h5"), env={"PDEB_HOME": str(tmp_path / "home")})
    assert result.returncode == 2 and result.stdout == ""  # nothing, not even an empty line, on standard output
    assert result.stderr.count("\n") == 1 and "beyond the float32 range" in result.stderr
    assert not (tmp_path / "wide.h5").exists()
    u = coded((7, 4, 5, 6)).astype(np.float64)  # a MATLAB file converts frame plane by frame plane
    u[5, 1, 2, 3] = 1e39
    write_mat73(tmp_path / "wide.mat", {"u": u, "t": np.arange(1, 7).reshape(1, 6)})
    with pytest.raises(DataError, match=r"frames 0:\d+ of .*wide.mat holds 1e\+39, beyond the float32 range"):
        convert(tmp_path / "wide.mat", tmp_path / "wide_mat.h5", counts={"train": 4, "val": 1, "test": 2})
    assert not (tmp_path / "wide_mat.h5").exists()


def test_a_wrong_format_names_the_layout_the_file_has(tmp_path):
    """Not "download the file again" for a PDEBench file opened as a Well file."""
    path = tmp_path / "burgers.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((4, 6, 16), dtype=np.float32)
    for wrong in ("well", "canonical"):
        with pytest.raises(DataError, match=r"; auto-detection reads it as a pdebench file: give format auto or "
                                            r"pdebench$") as refused:
            open_layout(path, wrong)
        assert "download" not in str(refused.value)


def test_convert_under_a_registered_name_keeps_that_datasets_field_names_and_boundary(tmp_path):
    """Not c0/c1 and a periodic placeholder, which a later run on the file would then believe."""
    src = tmp_path / "dr.h5"
    axis = np.linspace(-1 + 1 / 16, 1 - 1 / 16, 16)
    with h5py.File(src, "w") as f:  # PDEBench's diffusion-reaction layout: one group per seed
        for seed in range(6):
            f[f"{seed:04d}/data"] = coded((8, 16, 16, 2), offset=seed)
            for name, values in (("x", axis), ("y", axis), ("t", np.linspace(0, 1, 8))):
                f[f"{seed:04d}/grid/{name}"] = values.astype(np.float32)
    dest = tmp_path / "dr2d.h5"
    result = CliRunner().invoke(data_app, ["convert", str(src), str(dest), "--name", "dr2d"])
    assert result.exit_code == 0, result.output
    spec = open_canonical(dest)[0]
    assert spec.fields == ("u", "v") and spec.boundary == "neumann" and spec.name == "dr2d"
    assert spec.params == {}  # dr2d's own coefficients are its settings, not facts about this file
    refused = CliRunner().invoke(data_app, ["convert", str(src), str(tmp_path / "ns.h5"), "--name", "burgers1d"])
    assert refused.exit_code == 2 and "dataset 'burgers1d' is 1D: give --name a dataset of this data" in \
        " ".join(refused.output.split())
