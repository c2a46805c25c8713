"""Exactly which frames become inputs and targets: windows, strides, mixtures, stacked splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdebench_core.data.pipeline import plan_mixture, training_loader
from pdebench_core.data.windows import WindowDataset
from pdebench_core.spec import DataSpec


def arange_split(n: int, frames: int, shape=(4, 4), channels: int = 2, offset: float = 0.0) -> list[np.ndarray]:
    """Trajectory ``i`` has value ``offset + 1000 i + t`` at frame ``t`` (every point and channel)."""
    return [np.broadcast_to((offset + 1000 * i + np.arange(frames, dtype=np.float32)).reshape(frames, 1, 1, 1),
                            (frames, *shape, channels)).copy() for i in range(n)]


def frame_ids(tensor: torch.Tensor) -> list[float]:
    """The frame value of each time slice (all points of a slice are equal by construction)."""
    flat = tensor.reshape(tensor.shape[0], -1)
    assert torch.all(flat == flat[:, :1]), "a frame mixes values: frames were interpolated or shuffled"
    return flat[:, 0].tolist()


@pytest.mark.parametrize("t_in, t_out, stride", [(3, 1, 1), (3, 2, 1), (2, 3, 2), (10, 1, 1)])
def test_windows_are_consecutive_frames(t_in, t_out, stride):
    frames = 14
    windows = WindowDataset(arange_split(3, frames), t_in, t_out, stride=stride)
    per = (frames - t_in - t_out) // stride + 1
    assert len(windows) == 3 * per
    for k in range(len(windows)):
        i, j = divmod(k, per)
        x, y, mask = windows[k]
        start = 1000 * i + j * stride
        assert frame_ids(x) == [float(start + t) for t in range(t_in)]
        assert frame_ids(y) == [float(start + t_in + t) for t in range(t_out)]  # the target follows the input
        assert mask.tolist() == [True, True]


def test_stacked_split_array_counts_frames_not_trajectories():
    stacked = np.stack(arange_split(5, 12))  # (N, T, X, Y, C): one array, as the contract allows
    windows = WindowDataset(stacked, t_in=10, t_out=1)
    assert windows.starts_per_trajectory == 2 and len(windows) == 10
    x, y, _ = windows[3]  # trajectory 1, start 1
    assert frame_ids(x) == [float(1001 + t) for t in range(10)] and frame_ids(y) == [1011.0]


class _Dataset:
    def __init__(self, name, splits, channels=2, shape=(4, 4)):
        self.spec = DataSpec(name=name, fields=tuple(f"c{c}" for c in range(channels)), spatial_shape=shape, t_in=3)
        self._splits = splits

    def split(self, name):
        return self._splits[name]


@pytest.mark.parametrize("sampling", ["window", "trajectory"])
def test_mixed_loader_batches_hold_true_windows_with_padding(sampling):
    first = _Dataset("a", {"train": arange_split(4, 9, channels=2)}, channels=2)
    second = _Dataset("b", {"train": arange_split(3, 9, channels=1, offset=0.5)}, channels=1)
    mixture = plan_mixture({"a": first, "b": second}, t_out=2)
    loader, _ = training_loader(mixture, "train", batch_size=4, seed=3, sampling=sampling)
    seen = set()
    for _, (x, y, mask) in zip(range(12), loader):
        assert x.shape == (4, 3, 4, 4, 2) and y.shape == (4, 2, 4, 4, 2)
        for b in range(4):
            real = int(mask[b].sum())
            ids = frame_ids(x[b, ..., :real]) + frame_ids(y[b, ..., :real])
            assert ids == [ids[0] + t for t in range(5)]  # 3 inputs then the 2 frames after them
            if real == 1:  # dataset b: its missing channel is padding, never data
                assert torch.all(x[b, ..., 1] == 1.0) and torch.all(y[b, ..., 1] == 1.0)
                assert ids[0] % 1 == 0.5
            seen.add(ids[0])
    assert any(v % 1 == 0.5 for v in seen) and any(v % 1 == 0 for v in seen)  # both datasets are drawn


@pytest.mark.parametrize("read_only", [False, True], ids=["in-memory", "memory-mapped"])
def test_plugin_returning_stacked_arrays_trains_and_evaluates(tmp_path, monkeypatch, read_only):
    """Also arrays a plugin memory-maps read-only (np.load(..., mmap_mode="r")): torch must not
    share their memory (writing to it would fault), and no warning about it reaches the user."""
    import warnings
    from pdebench_core import hookimpl, plugins
    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    base = np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))

    shifts = iter(rng.permutation(16))  # distinct initial states: no test trajectory is trained on

    def make_split(n):
        picked = [next(shifts) for _ in range(n)]
        return np.stack([[np.roll(base, s + t)[:, None] for t in range(14)] for s in picked]).astype(np.float32)

    arrays = {"train": make_split(6), "val": make_split(2), "test": make_split(2)}  # (N, T, X, C) each
    if read_only:
        for name, array in arrays.items():
            np.save(tmp_path / f"{name}.npy", array)
            arrays[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")

    class Stacked:
        spec = DataSpec(name="stacked1d", fields=("u",), spatial_shape=(16,), t_in=10)

        def split(self, name):
            return arrays[name]

    class Plugin:
        @staticmethod
        @hookimpl
        def register_datasets(register):
            register("stacked1d", lambda cfg: Stacked(), dims=(1,))

    plugins.register_plugin(Plugin, name="stacked-plugin")
    try:
        cfg = build_config(model="fno", data="stacked1d", profile="smoke", device="cpu", run_id="stacked",
                           overrides=["train.max_steps=2", "train.batch_size=2"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = execute(cfg, quiet=True).results
    finally:
        plugins.unregister_plugin("stacked-plugin")
    assert np.isfinite(results["stacked1d"]["l2re"])
    assert not [w for w in caught if "not writable" in str(w.message)]
