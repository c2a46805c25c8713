"""A run's data hash identifies the trajectories it saw: file bytes or generator settings, and the split plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from pdebench_core.data import identity
from pdebench_core.workflow import data_hash


def write_pdebench_1d(path: Path, sign: float = 1.0, n: int = 6, frames: int = 6, points: int = 16,
                      uneven_time: bool = False) -> Path:
    """A PDEBench single-file 1D layout: ``tensor`` (N, T, X) with its coordinates."""
    values = np.random.default_rng(0).standard_normal((n, frames, points)).astype(np.float32)
    times = np.arange(frames + 1) * 0.1
    with h5py.File(path, "w") as f:
        f["tensor"] = sign * values
        f["x-coordinate"] = (np.arange(points) + 0.5) / points
        f["t-coordinate"] = times ** 1.5 if uneven_time else times
    return path


def read(path: Path, n_train: int = 4):
    from pdebench_core.data.layouts import load_path

    cfg = SimpleNamespace(path=str(path), format="pdebench", n_train=n_train, n_val=1, n_test=1, t_in=2,
                          horizon=None, preload=False)
    return load_path(cfg, "burgers1d", {"fields": ("u",)})


def file_hash(path: Path, n_train: int = 4) -> str:
    return data_hash({"burgers1d": read(path, n_train)}, {"burgers1d": str(path)})


def test_files_that_differ_only_in_sign_get_different_hashes(fresh_home, tmp_path):
    plus = write_pdebench_1d(tmp_path / "plus.hdf5")
    minus = write_pdebench_1d(tmp_path / "minus.hdf5", sign=-1.0)
    assert read(plus).spec.to_dict() == {**read(minus).spec.to_dict()}  # the old spec-only hash was blind to this
    assert file_hash(plus) != file_hash(minus)


def test_same_bytes_elsewhere_share_the_hash_another_split_does_not(fresh_home, tmp_path):
    original = write_pdebench_1d(tmp_path / "a.hdf5")
    (tmp_path / "moved").mkdir()
    copy = Path(shutil.copy(original, tmp_path / "moved" / "b.hdf5"))
    assert file_hash(original) == file_hash(copy) == file_hash(original)
    assert file_hash(original, n_train=3) != file_hash(original)  # another split plan


def test_content_hash_is_read_once_and_again_after_a_change(fresh_home, tmp_path, monkeypatch):
    path = write_pdebench_1d(tmp_path / "a.hdf5")
    first = identity.file_content_hash(path)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: (opened.append(a[0]), real_open(*a, **k))[1])
    assert identity.file_content_hash(path) == first and str(path) not in map(str, opened)  # remembered
    monkeypatch.undo()
    write_pdebench_1d(path, sign=-1.0)  # new bytes, new size or mtime
    assert identity.file_content_hash(path) != first


def test_generated_data_with_another_seed_gets_another_hash(fresh_home):
    from pdebench_core.config import build_dataset

    def hashed(seed: int) -> str:
        return data_hash({"burgers1d": build_dataset("burgers1d", "smoke", [f"seed={seed}"])})

    zero = hashed(0)
    assert hashed(1) != zero
    assert hashed(0) == zero  # read back from the cache: the same trajectories


def test_a_dataset_fingerprint_stands_for_its_content():
    """Generated data that exposes a fingerprint is identified by it (and its split plan)."""
    arrays = {s: [np.zeros((3, 4, 1), np.float32)] * n for s, n in (("train", 2), ("val", 1), ("test", 1))}
    spec = SimpleNamespace(fields=("u",), spatial_shape=(4,), n_frames=3, to_dict=dict)
    dataset = SimpleNamespace(spec=spec, split=lambda name: arrays[name], fingerprint="f" * 16)
    other = SimpleNamespace(spec=spec, split=lambda name: arrays[name], fingerprint="e" * 16)
    assert identity.dataset_identity(dataset).basis == "fingerprint"
    assert identity.dataset_identity(dataset).hash != identity.dataset_identity(other).hash
    assert identity.dataset_identity(dataset).source == "generated" and identity.dataset_identity(dataset).n_train == 2


def test_in_memory_data_is_hashed_by_its_values():
    spec = SimpleNamespace(fields=("u",), spatial_shape=(4,), n_frames=3, to_dict=dict)

    def dataset(value: float):
        arrays = {s: [np.full((3, 4, 1), value, np.float32)] for s in ("train", "val", "test")}
        return SimpleNamespace(spec=spec, split=lambda name: arrays[name])

    assert identity.dataset_identity(dataset(1.0)).basis == "arrays"
    assert identity.dataset_identity(dataset(1.0)).hash == identity.dataset_identity(dataset(1.0)).hash
    assert identity.dataset_identity(dataset(1.0)).hash != identity.dataset_identity(dataset(-1.0)).hash


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_run_rows_record_provenance_and_reader_notes(fresh_home, tmp_path):
    """A run on a file records the file's name, hash, train trajectories, t_in, horizon and grid;
    the reader's notes (a split that did not fit) reach the run log."""
    from pdebench_core.config import build_config
    from pdebench_core.results import ResultsStore
    from pdebench_core.runner import execute

    path = write_pdebench_1d(tmp_path / "burgers.hdf5", n=6, frames=12, uneven_time=True)
    with h5py.File(path, "r+") as f:
        f.attrs["Nu"] = 0.5  # PDEBench's own attribute: it wins over data.burgers1d.nu, with a note
    for run_id, seed in (("file-a", 0), ("file-b", 1)):
        execute(build_config(model="persistence", data="burgers1d", task="evaluate", profile="smoke", run_id=run_id,
                             device="cpu", seed=seed,
                             overrides=[f"data.burgers1d.path={path}", "data.burgers1d.n_train=40"]), quiet=True)
    rows = {r["run_id"]: r for r in ResultsStore().rows()}
    first, second = rows["file-a"], rows["file-b"]
    assert first["data_source"] == "burgers.hdf5" and first["grid"] == "16" and first["n_train"] < 40
    assert first["t_in"] >= 1 and first["horizon"] == json.loads(
        (fresh_home / "runs" / "file-a" / "eval" / "burgers1d.json").read_text())["horizon"]
    assert first["data_hash"] == second["data_hash"] and first["dataset_hash"] == second["dataset_hash"]
    log = (fresh_home / "runs" / "file-a" / "log.txt").read_text()
    assert "dataset burgers1d: note:" in log and "80/10/10" in log  # a split that did not fit
    assert "t-coordinate is not uniformly spaced" in log  # what the reader noted about the file
    assert "the file states nu=0.5; that is used, not the dataset's setting nu=0.01" in log  # and the spec


def _file_dataset(folder: Path, names: dict[str, list[str]]):
    from pdebench_core.data import FileTrajectories, TrajectoryDataset
    from pdebench_core.spec import DataSpec

    spec = DataSpec(name="lab", fields=("u", "v"), spatial_shape=(4, 4), n_frames=6, t_in=2)
    return TrajectoryDataset(spec, {split: FileTrajectories([folder / n for n in listed])
                                    for split, listed in names.items()})


def test_a_plugin_reading_one_file_per_trajectory_is_identified_by_those_files(tmp_path):
    """Not labelled 'generated': the source is the folder, the hash the files' bytes by name, so
    moving the folder keeps it and changing or reassigning a file changes it."""
    folder = tmp_path / "lab-data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(folder / f"t{i}.npy", rng.standard_normal((6, 4, 4, 2)).astype(np.float32))
    names = {"train": ["t0.npy", "t1.npy"], "val": ["t2.npy"], "test": ["t3.npy"]}
    first = identity.dataset_identity(_file_dataset(folder, names))
    assert (first.source, first.basis, first.note, first.n_train) == ("lab-data", "files", None, 2)
    moved = tmp_path / "elsewhere" / "lab-data"
    shutil.move(str(folder), str(moved))
    assert identity.dataset_identity(_file_dataset(moved, names)).hash == first.hash
    swapped = {"train": ["t0.npy", "t3.npy"], "val": ["t2.npy"], "test": ["t1.npy"]}
    assert identity.dataset_identity(_file_dataset(moved, swapped)).hash != first.hash
    np.save(moved / "t3.npy", rng.standard_normal((6, 4, 4, 2)).astype(np.float32))
    assert identity.dataset_identity(_file_dataset(moved, names)).hash != first.hash


def test_file_trajectories_keep_the_dataset_contract(tmp_path):
    from pdebench_core.data import FileTrajectories
    from pdebench_core.errors import DataError
    from pdebench_core.testing import check_dataset_contract

    for i in range(4):
        np.save(tmp_path / f"t{i}.npy", np.full((6, 4, 4, 2), float(i), dtype=np.float64))
    dataset = _file_dataset(tmp_path, {"train": ["t0.npy", "t1.npy"], "val": ["t2.npy"], "test": ["t3.npy"]})
    arrays = check_dataset_contract(dataset, spatial_shape=(4, 4), split_sizes={"train": 2, "val": 1, "test": 1})
    assert arrays["train"].dtype == np.float32 and dataset.split("train").window(1, 2, 3).shape == (3, 4, 4, 2)
    opened = []
    counting = FileTrajectories([tmp_path / f"t{i}.npy" for i in range(3)],
                                read=lambda path: opened.append(path.name) or np.load(path))
    counting[2], counting.window(1, 0, 2)
    assert opened == ["t2.npy", "t0.npy", "t1.npy"]  # the first file's shape is read once, not per access
    with pytest.raises(DataError, match=r"trajectory file .*missing\.npy does not exist"):
        _file_dataset(tmp_path, {"train": ["missing.npy"], "val": [], "test": []})


def test_a_plugins_own_canonical_file_is_labelled_by_its_folder_not_generated(tmp_path, fresh_home):
    """Only files in pdeb's own data cache are 'generated'; a plugin reading a canonical file of
    its own (H5Trajectories, as the docs showed before FileTrajectories) names its folder."""
    from pdebench_core.data import TrajectoryDataset, open_canonical, write_canonical
    from pdebench_core.spec import DataSpec

    spec = DataSpec(name="lab", fields=("u",), spatial_shape=(8,), n_frames=6, t_in=2)
    rng = np.random.default_rng(3)
    splits = {s: rng.standard_normal((2, 6, 8, 1)).astype(np.float32) for s in ("train", "val", "test")}
    own = write_canonical(tmp_path / "lab-files" / "lab.h5", splits, spec)
    cached = write_canonical(fresh_home / "data" / "lab-0123.h5", splits, spec)
    for path, label in ((own, "lab-files"), (cached, "generated")):
        dataset = TrajectoryDataset(spec, open_canonical(path)[1])
        found = identity.dataset_identity(dataset)
        assert (found.basis, found.source) == ("cache file", label)


def test_a_split_keeps_its_hash_when_only_the_other_splits_change(fresh_home, tmp_path):
    """The leaderboard ranks on the scored split's own hash: more train trajectories leave the
    test split's hash alone; other test trajectories change it."""
    from pdebench_core.config import build_dataset

    def splits(*settings: str) -> dict:
        return identity.dataset_identity(build_dataset("burgers1d", "smoke", list(settings))).split_hashes

    base, more_train, more_test = splits(), splits("n_train=6"), splits("n_test=3")
    assert more_train["test"] == base["test"] and more_train["val"] == base["val"]
    assert more_train["train"] != base["train"] and more_test["test"] != base["test"]
    assert splits("seed=1")["test"] != base["test"]
    # a file read in consecutive splits: the test split is the same trajectory after 3+2 or 4+1 others,
    # another one after 3+1
    from pdebench_core.data.layouts import load_path

    path = write_pdebench_1d(tmp_path / "a.hdf5")

    def file_splits(n_train: int, n_val: int) -> dict:
        cfg = SimpleNamespace(path=str(path), format="pdebench", n_train=n_train, n_val=n_val, n_test=1, t_in=2,
                              horizon=None, preload=False)
        return identity.dataset_identity(load_path(cfg, "burgers1d", {"fields": ("u",)}), str(path)).split_hashes

    assert file_splits(3, 2)["test"] == file_splits(4, 1)["test"] != file_splits(3, 1)["test"]
    assert file_splits(3, 2)["train"] != file_splits(4, 1)["train"]


def test_in_memory_splits_are_hashed_by_their_own_values():
    spec = SimpleNamespace(fields=("u",), spatial_shape=(4,), n_frames=3, to_dict=dict)

    def dataset(train_value: float):
        arrays = {"train": [np.full((3, 4, 1), train_value, np.float32)], "val": [np.ones((3, 4, 1), np.float32)],
                  "test": [np.zeros((3, 4, 1), np.float32)]}
        return SimpleNamespace(spec=spec, split=lambda name: arrays[name])

    one, two = identity.dataset_identity(dataset(1.0)), identity.dataset_identity(dataset(2.0))
    assert one.hash != two.hash and one.split_hashes["test"] == two.split_hashes["test"]
    assert one.split_hashes["train"] != two.split_hashes["train"]


def test_the_test_file_paired_with_a_given_train_file_is_part_of_the_data(fresh_home, tmp_path):
    """DPOT's <name>_train.hdf5 given, its <name>_test.hdf5 read for the test split: a changed test
    file changes the test split's hash and the dataset's, though the given file is the same."""
    from pdebench_core.data.layouts import load_path
    from pdebench_core.spec import DataSpec

    rng = np.random.default_rng(5)
    train = tmp_path / "ns_train.hdf5"
    with h5py.File(train, "w") as f:
        f["data"] = rng.standard_normal((6, 4, 4, 5)).astype(np.float32)

    def identity_with_test(scale: float):
        with h5py.File(tmp_path / "ns_test.hdf5", "w") as f:
            f["data"] = scale * np.ones((2, 4, 4, 5), np.float32)
        cfg = SimpleNamespace(path=str(train), format="dpot", n_train=5, n_val=1, n_test=2, t_in=2, horizon=None,
                              preload=False)
        dataset = load_path(cfg, "ns", DataSpec(name="ns", fields=("w",), spatial_shape=(4, 4)))
        return identity.dataset_identity(dataset, str(train))

    before, after = identity_with_test(1.0), identity_with_test(2.0)
    assert before.split_hashes["test"] != after.split_hashes["test"] and before.hash != after.hash
