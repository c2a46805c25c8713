"""Shared generation machinery (``pdebench_core.data.generation``: the driver, the cache and the
:class:`GeneratedDataset` declaration) and the plugin test checks (``pdebench_core.testing``),
including that the checks catch broken datasets."""

from __future__ import annotations

import dataclasses
import io
import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pdebench_core.data import generation
from pdebench_core.data.base import TrajectoryDataset
from pdebench_core.data.cache import cache_path, key_digest
from pdebench_core.data.canonical import H5Trajectories, read_spec
from pdebench_core.data.config import DatasetConfig
from pdebench_core.data.generation import GENERATION_ONLY, GeneratedDataset
from pdebench_core.errors import PluginError, UsageError
from pdebench_core.spec import DataSpec
from pdebench_core.testing import (assert_same_splits, assert_splits_disjoint, check_cache_key, check_dataset_contract,
                                   check_dataset_registration, generation_forbidden, split_arrays)

SIZES = {"train": 3, "val": 1, "test": 2}
TRAJECTORY = (5, 4, 6, 2)  # (T, X, Y, C)

pytestmark = pytest.mark.usefixtures("private_home")


def _spec(name: str = "toy", **changes) -> DataSpec:
    settings = dict(name=name, fields=("u", "v"), spatial_shape=TRAJECTORY[1:3], t_in=2, t_out=1, dt=0.1,
                    domain=((0.0, 1.0), (0.0, 1.0)), boundary="periodic", params={"a": 1.0}, horizon=3,
                    n_frames=TRAJECTORY[0])
    settings.update(changes)
    return DataSpec(**settings)


def _trajectory(split: str, index: int) -> np.ndarray:
    """A trajectory that depends only on its job, as a deterministic solver's would."""
    rng = np.random.default_rng(generation.trajectory_seed("toy", 0, split, index))
    return rng.standard_normal(TRAJECTORY).astype(np.float32)  # (T, X, Y, C)


def _toy_solve(calls: list):
    def solve(jobs, advance):
        calls.append(list(jobs))
        for _ in range(TRAJECTORY[0]):
            advance(len(jobs))
        return np.stack([_trajectory(split, i) for split, i in jobs]).astype(np.float64)  # (b, T, X, Y, C)
    return solve


def _expected() -> dict[str, np.ndarray]:
    return {split: np.stack([_trajectory(split, i) for i in range(n)]) for split, n in SIZES.items()}


class _LazySplit:
    """A minimal read-on-access sequence, so that the checks below test one thing at a time."""

    def __init__(self, items):
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int):
        return self._items[index]


def _dataset(splits: dict, spec: DataSpec | None = None) -> TrajectoryDataset:
    return TrajectoryDataset(spec or _spec(), {s: _LazySplit(items) for s, items in splits.items()})


# --- seeds, devices, progress, allocation ------------------------------------------------------------


def test_trajectory_seed_is_pinned_distinct_and_63_bit():
    # Pinned values: generated data and cache files of existing datasets depend on them.
    assert generation.trajectory_seed("pdeb-dr2d", 0, "train", 0) == 4366038108298727468
    assert generation.trajectory_seed("pdeb-cfd", "cfd2d", 3, "test", 7) == 1548763823686421030
    seeds = {generation.trajectory_seed("pdeb-x", 0, s, i) for s in ("train", "val", "test") for i in range(500)}
    assert len(seeds) == 1500 and all(0 <= seed < 2 ** 63 for seed in seeds)
    assert generation.trajectory_seed("pdeb-x", 1, "train", 0) != generation.trajectory_seed("pdeb-x", 0, "train", 0)
    assert generation.trajectory_seed("pdeb-y", 0, "train", 0) != generation.trajectory_seed("pdeb-x", 0, "train", 0)
    torch.Generator().manual_seed(max(seeds))  # usable as a torch seed


def test_solver_device_resolves_and_refuses_with_the_setting_name():
    assert generation.solver_device("cpu") == torch.device("cpu")
    assert generation.solver_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="data.toy.device='nonsense'"):
        generation.solver_device("nonsense", "data.toy.device")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no usable CUDA"):
            generation.solver_device("cuda:1", "data.toy.device")


def test_wants_progress_follows_the_setting_unless_forced():
    assert generation.wants_progress(True, False) is True
    assert generation.wants_progress(False, True) is False
    assert generation.wants_progress(None, True) is True
    assert generation.wants_progress(None, False) is False


def test_progress_in_a_log_is_periodic_plain_lines(monkeypatch):
    from pdebench_core import progress

    log = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", log)
    clock = iter([0.0, 0.0, 3.0, 11.0, 12.0, 25.0])
    # the progress module's own clock, not the global time.monotonic other threads may read
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    with generation.progress_bar("ns2d: 8 trajectories", 8, enabled=True) as advance:
        for _ in range(4):
            advance(2)
    lines = log.getvalue().splitlines()
    assert lines == ["ns2d: 8 trajectories: 0% (0/8), 0 s", "ns2d: 8 trajectories: 50% (4/8), 11 s",
                     "ns2d: 8 trajectories: 100% (8/8), 25 s"]


@pytest.mark.parametrize("total", [12, 1.5])
def test_progress_bar_counts_and_can_be_off(total):
    with generation.progress_bar("off", total, enabled=False) as advance:
        assert advance(3) is None
    with generation.progress_bar("toy", total, enabled=True) as advance:
        for _ in range(4):
            advance(total / 4)


def test_allocate_split_uses_memory_or_a_scratch_file(tmp_path):
    small = generation.allocate_split((2, 3, 4, 1), str(tmp_path), "train")
    assert type(small) is np.ndarray and small.dtype == np.float32 and small.shape == (2, 3, 4, 1)
    assert type(generation.allocate_split((2, 3, 4, 1), None, "val", limit=0)) is np.ndarray  # no scratch given
    large = generation.allocate_split((2, 3, 4, 1), str(tmp_path), "test", limit=95)  # 96 bytes > 95
    assert isinstance(large, np.memmap) and large.dtype == np.float32 and large.shape == (2, 3, 4, 1)
    assert os.path.exists(tmp_path / "test.npy")
    assert type(generation.allocate_split((2, 3, 4, 1), str(tmp_path), "val", limit=96)) is np.ndarray


# --- the generation driver ------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
def test_generate_splits_fills_every_job_whatever_the_batching(batch_size):
    calls: list = []
    out = generation.generate_splits(SIZES, TRAJECTORY, _toy_solve(calls), batch_size=batch_size,
                                     label="toy", work_per_trajectory=TRAJECTORY[0])
    assert list(out) == ["train", "val", "test"]
    for split, expected in _expected().items():
        assert out[split].dtype == np.float32
        np.testing.assert_array_equal(out[split], expected)
    jobs = [job for batch in calls for job in batch]
    assert jobs == [(s, i) for s, n in SIZES.items() for i in range(n)]  # each job once, in order
    assert all(len(batch) <= batch_size for batch in calls) and len(calls) == -(-6 // batch_size)


def test_generate_splits_with_progress_scratch_and_empty_splits(tmp_path):
    sizes = {"train": 2, "val": 0, "test": 1}
    out = generation.generate_splits(sizes, TRAJECTORY, _toy_solve([]), batch_size=2, label="toy",
                                     work_per_trajectory=float(TRAJECTORY[0]), show_progress=True,
                                     scratch=str(tmp_path), limit=0)
    assert isinstance(out["train"], np.memmap) and out["val"].shape == (0, *TRAJECTORY)
    np.testing.assert_array_equal(out["test"][0], _trajectory("test", 0))
    with pytest.raises(ValueError, match="batch_size"):
        generation.generate_splits(sizes, TRAJECTORY, _toy_solve([]), batch_size=0, label="toy")


def test_a_solver_returning_the_wrong_shape_is_told_the_contract():
    solve = _toy_solve([])

    def without_channel(jobs, advance):
        return solve(jobs, advance)[..., 0]

    same = generation.generate_splits({"train": 2, "val": 0, "test": 0}, TRAJECTORY,
                                      lambda jobs, advance: list(solve(jobs, advance)), batch_size=2, label="toy")
    assert same["train"].shape == (2, *TRAJECTORY)  # a list of arrays is a batch too
    with pytest.raises(PluginError, match=r"^generating toy: the solver returned shape \(2, 5, 4, 6\) for 2 "
                                         r"trajectories; expected \(2, 5, 4, 6, 2\): \(b, T, \*S, C\)"):
        generation.generate_splits({"train": 2, "val": 0, "test": 0}, TRAJECTORY, without_channel, batch_size=2,
                                   label="toy")


def test_split_sizes_reads_a_dataset_config():
    assert generation.split_sizes(DatasetConfig(n_train=5, n_val=2, n_test=3)) == {"train": 5, "val": 2, "test": 3}


def test_torch_dtype():
    assert generation.torch_dtype("float32") == torch.float32 and generation.torch_dtype("float64") == torch.float64


# --- caching and published files -----------------------------------------------------------------------


def _generate_once(counter: list):
    def generate(scratch):
        assert scratch is not None and os.path.isdir(scratch)  # a scratch folder next to the cache
        counter.append(scratch)
        return generation.generate_splits(SIZES, TRAJECTORY, _toy_solve([]), batch_size=4, label="toy",
                                          scratch=scratch)
    return generate


def test_cached_dataset_generates_once_and_reads_lazily(private_home):
    counter: list = []
    key = {"generator": "toy", "seed": 0}
    provenance = {"generator": "toy", "version": "1", "seed": 0}
    first = generation.cached_dataset("toy", key, _spec("toy-preset"), _generate_once(counter), provenance,
                                      stored_spec=_spec("toy"))
    second = generation.cached_dataset("toy", key, _spec("toy-other"), _generate_once(counter), provenance,
                                       preload=True)
    assert len(counter) == 1 and not os.path.exists(counter[0])  # the scratch folder is cleaned up
    assert first.spec.name == "toy-preset" and second.spec.name == "toy-other"
    path = Path(first.split("train").path)
    assert isinstance(first.split("train"), H5Trajectories) and path.parent == private_home / "data"
    assert first.fingerprint == second.fingerprint == key_digest(key) and len(first.fingerprint) == 64
    left = sorted(p.name for p in path.parent.iterdir() if p.name != ".checks")  # .checks: remembered scans
    assert left == [path.name]  # only the cache file remains
    stored, stored_provenance = read_spec(path)
    assert stored.name == "toy" and stored_provenance["settings"] == key
    assert_same_splits(split_arrays(first), _expected())
    assert_same_splits(split_arrays(second), _expected())
    generation.cached_dataset("toy", {**key, "seed": 1}, _spec(), _generate_once(counter), provenance)
    assert len(counter) == 2  # other settings, another file


def test_read_published_opens_a_canonical_file():
    made = generation.cached_dataset("toy", {"seed": 0}, _spec(), _generate_once([]), {"generator": "toy"})
    cfg = DatasetConfig(path=str(made.split("train").path), n_train=3, n_val=1, n_test=2, t_in=2)
    published = generation.read_published(cfg, "toy", _spec().replace(horizon=None))
    assert published.spec.fields == ("u", "v") and published.spec.spatial_shape == TRAJECTORY[1:3]
    assert_same_splits(split_arrays(published), _expected())
    assert published.fingerprint is None and TrajectoryDataset(_spec(), {}).fingerprint is None


# --- GeneratedDataset: what a generating plugin declares ---------------------------------------------------


# A dataset's settings: DatasetConfig with small splits, one physics setting and the generation settings.
ToyConfig = dataclasses.make_dataclass("ToyConfig", [
    ("n_train", int, 3), ("n_val", int, 1), ("n_test", int, 2), ("t_in", int, 2), ("amplitude", float, 1.0),
    ("n_frames", int, 5), ("solver_dtype", str, "float32"), ("batch_size", int, 4), ("device", str, "cpu"),
    ("progress", bool, False)], bases=(DatasetConfig,))


TOY_CARD = dict(description="toy", pde="u_t = 0", dims=2, fields=["u", "v"], resolution="4x6", dt=0.1,
                boundary="periodic", parameters="amplitude=1", source="made up", license="MIT", horizon=3)


def _toy_physics(cfg: ToyConfig) -> DataSpec:
    return DataSpec(name="toy", fields=("u", "v"), spatial_shape=(cfg.resolution, cfg.resolution + 2), dt=0.1,
                    domain=((0.0, 1.0), (0.0, 1.0)), params={"amplitude": cfg.amplitude}, n_frames=cfg.n_frames)


def _toy_trajectory(cfg: ToyConfig, seed: int) -> np.ndarray:
    shape = (cfg.n_frames, cfg.resolution, cfg.resolution + 2, 2)
    return (cfg.amplitude * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _toy(batches: list | None = None, **changes) -> GeneratedDataset:
    """A declared toy dataset; ``batches`` collects every :class:`SolverBatch` its solver gets."""
    def solve(cfg: ToyConfig, batch: generation.SolverBatch) -> np.ndarray:
        if batches is not None:
            batches.append(batch)
        batch.advance(len(batch) * (cfg.n_frames - 1))
        return np.stack([_toy_trajectory(cfg, seed) for seed in batch.seeds])

    settings = dict(name="toy", config=ToyConfig, solve=solve, spec=_toy_physics, version=1, default_resolution=4,
                    profiles={"smoke": {"n_train": 2}, "small": {}, "paper": {"amplitude": 2.0}})
    return GeneratedDataset(**{**settings, **changes})


def test_resolution_zero_stands_for_the_configs_own_default_grid():
    """The config's `resolution` default is the grid `resolution=0` asks for; no second number to keep in step."""
    gridded = dataclasses.make_dataclass("Gridded", [("resolution", int, 6)], bases=(ToyConfig,))
    toy = _toy(config=gridded, default_resolution=0)
    assert toy.default_resolution == 6 and toy.settings(gridded(resolution=0)).resolution == 6
    assert toy.make_spec(gridded(resolution=0)).spatial_shape == (6, 8)
    assert _toy(config=gridded).default_resolution == 4  # an explicit one still wins
    with pytest.raises(ValueError, match=r"^dataset 'toy': resolution=0 must stand for a grid; give the config a "
                                         r"'resolution' default of at least 1, or default_resolution=$"):
        _toy(default_resolution=0)  # DatasetConfig's own default is 0
    # A preset with another default grid: resolution=0 follows the variant's config, not the parent's.
    finer = dataclasses.make_dataclass("Finer", [("resolution", int, 10)], bases=(gridded,))
    assert toy.variant(name="toy-fine", config=finer).settings(finer(resolution=0)).resolution == 10
    assert _toy(config=gridded).variant(name="toy-fine", config=finer).default_resolution == 4  # declared: kept


def test_a_config_without_the_generation_settings_is_refused_when_declared():
    """A plain DatasetConfig would pass registration and fail only once a run made data."""
    plain = dataclasses.make_dataclass("Plain", [("resolution", int, 8)], bases=(DatasetConfig,))
    with pytest.raises(TypeError, match=r"^dataset 'toy': Plain lacks the generation settings batch_size, device, "
                                        r"progress, solver_dtype; derive it from "
                                        r"pdebench_core.data.config.GeneratedConfig$"):
        _toy(config=plain)


def test_profiles_are_made_from_the_smoke_and_paper_overrides():
    """A plugin writes only what its smoke and paper profiles change; `small` is its defaults."""
    stepped = dataclasses.make_dataclass("Stepped", [("t_end", float, 2.0), ("n_frames", int, 5)], bases=(ToyConfig,))
    toy = _toy(profiles={}, config=stepped, smoke={"n_frames": 3, "amplitude": 0.5}, paper={"n_train": 90})
    assert toy.profiles == {
        # the frames keep the defaults' spacing (0.5) over fewer of them, in the smoke split sizes
        "smoke": {"n_frames": 3, "t_end": 1.0, "amplitude": 0.5, **generation.SMOKE_SPLITS},
        "small": {"n_frames": 5, "t_end": 2.0, "amplitude": 1.0, "n_train": 3, "n_val": 1, "n_test": 2},
        "paper": {"n_train": 90},
    }
    assert toy.config_for("small") == stepped()
    # Without n_frames and t_end settings, the smoke overrides stand as given.
    assert _toy(profiles={}, smoke={"n_train": 1}).profiles["smoke"] == {**generation.SMOKE_SPLITS, "n_train": 1}
    # A variant makes them again from its own defaults, so a preset's `small` is its own physics.
    preset = dataclasses.make_dataclass("Preset", [("amplitude", float, 3.0)], bases=(stepped,))
    assert toy.variant(name="toy-3", config=preset).config_for("small").amplitude == 3.0
    assert toy.variant(name="toy-3", config=preset).config_for("paper").amplitude == 3.0
    with pytest.raises(ValueError, match="declare profiles= or smoke=/paper=, not both"):
        _toy(smoke={"n_train": 1})
    with pytest.raises(TypeError, match=r"^dataset 'toy-3': config must be a dataclass class, got Stepped\("):
        toy.variant(name="toy-3", config=stepped(amplitude=3.0))  # an instance, not a class
    # A variant may bring a table of its own, or overrides of its own, whatever the dataset declared.
    table = {"smoke": {"n_train": 1}, "small": {}, "paper": {"n_train": 50}}
    assert toy.variant(name="toy-table", profiles=table).profiles == table
    assert _toy().variant(name="toy-made", paper={"n_train": 70}).profiles["paper"] == {"n_train": 70}
    with pytest.raises(TypeError, match="positional"):  # an older field order fails at once, not later
        GeneratedDataset("toy", ToyConfig, print, _toy_physics, 1, table, 4)


def test_cache_key_is_every_setting_that_changes_the_numbers():
    toy = _toy()
    key = toy.cache_key(ToyConfig())
    assert key == {"generator": "pdeb_toy", "generator_version": 1, "n_train": 3, "n_val": 1, "n_test": 2,
                   "resolution": 4, "seed": 0, "amplitude": 1.0, "n_frames": 5, "solver_dtype": "float32"}
    assert check_cache_key(toy) == key
    # The same settings in any form give the same key: an int for a float, omegaconf, a mapping, resolution 0.
    assert toy.cache_key(ToyConfig(amplitude=1, resolution=4)) == key
    assert toy.cache_key(OmegaConf.structured(ToyConfig)) == key == toy.cache_key({"t_in": 3})
    assert toy.fingerprint(ToyConfig()) == key_digest(key)
    assert _toy(version=2).fingerprint(ToyConfig()) != toy.fingerprint(ToyConfig())  # a new generator version
    assert "amplitude" not in _toy(exclude=(*GENERATION_ONLY, "amplitude")).cache_key(ToyConfig())


def test_a_new_setting_enters_the_cache_key_without_touching_the_plugin():
    toy = _toy()  # declared for ToyConfig; the config grows a field, nothing else changes
    Damped = dataclasses.make_dataclass("Damped", [("damping", float, 0.0)], bases=(ToyConfig,))
    assert toy.cache_key(Damped()) == {**toy.cache_key(ToyConfig()), "damping": 0.0}
    assert toy.fingerprint(Damped(damping=0.5)) != toy.fingerprint(Damped())
    # Also when the core hands the factory an omegaconf object of the grown config.
    assert toy.cache_key(OmegaConf.structured(Damped(damping=0.5)))["damping"] == 0.5


def test_a_declared_dataset_generates_once_with_a_seed_per_trajectory(private_home):
    batches: list = []
    toy = _toy(batches)
    first = toy(OmegaConf.structured(ToyConfig))  # the core hands factories omegaconf objects
    assert [len(batch) for batch in batches] == [4, 2]  # batch_size 4 over the 6 trajectories, in order
    jobs = [job for batch in batches for job in batch.jobs]
    assert jobs == [("train", 0), ("train", 1), ("train", 2), ("val", 0), ("test", 0), ("test", 1)]
    seeds = [seed for batch in batches for seed in batch.seeds]
    assert seeds == [generation.trajectory_seed("pdeb-toy", 0, split, i) for split, i in jobs]
    assert all(b.device == torch.device("cpu") and b.dtype == torch.float32 for b in batches)
    arrays = check_dataset_contract(first, expected_fields=("u", "v"), spatial_shape=(4, 6), n_frames=5,
                                    split_sizes={"train": 3, "val": 1, "test": 2})
    np.testing.assert_array_equal(arrays["test"][1], _toy_trajectory(ToyConfig(resolution=4), seeds[-1]))
    assert (first.spec.name, first.spec.t_in, first.spec.horizon, first.spec.params) == ("toy", 2, 3, {"amplitude": 1.0})
    assert first.fingerprint == toy.fingerprint(ToyConfig())
    path = first.split("train").path
    stored, provenance = read_spec(path)
    assert provenance["settings"] == toy.cache_key(ToyConfig()) and provenance["generator"] == "pdeb_toy"
    assert provenance["generator_version"] == 1 and provenance["seed"] == 0
    with generation_forbidden(toy):  # usage settings and batching reuse the file
        again = toy(ToyConfig(t_in=3, batch_size=1, preload=True))
    assert again.split("train").path == path and (again.spec.t_in, again.spec.horizon) == (3, 2)
    assert toy(ToyConfig(amplitude=2.0)).split("train").path != path and len(batches) == 4


def test_batching_never_changes_a_declared_datasets_numbers(tmp_path):
    toy = _toy(auto_batch_size=lambda cfg, device: 5)
    expected = toy.generate(ToyConfig(batch_size=1))
    for batch_size in (2, 6, 0):  # 0: the declared automatic choice
        assert_same_splits(toy.generate(ToyConfig(batch_size=batch_size)), expected)
    on_disk = toy.generate(ToyConfig(), show_progress=True, scratch=str(tmp_path), limit=0)
    assert isinstance(on_disk["train"], np.memmap)
    assert_same_splits(on_disk, expected)


def test_a_declared_dataset_reads_path_instead_of_generating():
    made = _toy()(ToyConfig())
    published = _toy(default_horizon=2)
    with generation_forbidden(published):
        ds = published(ToyConfig(path=str(made.split("train").path)))
    assert ds.fingerprint is None  # a file's numbers are not known from settings
    assert ds.spec.name == "toy" and ds.spec.params == {"amplitude": 1.0}
    assert_same_splits(split_arrays(ds), split_arrays(made))
    # What a file that does not describe itself gets: the physics, the default horizon, not the frames.
    defaults = published.published_defaults(ToyConfig(resolution=8))
    assert (defaults.horizon, defaults.n_frames, defaults.t_in, defaults.fields) == (2, None, 2, ("u", "v"))


@pytest.mark.parametrize("changes, message", [
    ({"n_frames": 2}, "2 frames leave nothing to predict after t_in=2"), ({"horizon": 4}, r"horizon must be in 1\.\.3"),
    ({"horizon": 0}, "horizon"), ({"solver_dtype": "float16"}, "solver_dtype"), ({"n_val": -1}, "split sizes"),
    ({"batch_size": 0}, "batch_size >= 1"), ({"device": "nonsense"}, "data.toy.device='nonsense'"),
    ({"amplitude": -1.0}, "data.toy.amplitude must be positive"),
])
def test_a_declared_dataset_refuses_bad_settings_before_any_compute(changes, message):
    def check(cfg, where):
        assert cfg.resolution == 4  # the plugin sees resolved settings
        if cfg.amplitude <= 0:
            raise UsageError(f"{where}.amplitude must be positive")

    toy = _toy(check=check)
    ToyConfig(**changes)  # the dataclass itself accepts them
    with generation_forbidden(toy), pytest.raises(UsageError, match=message):
        toy(ToyConfig(**changes))


def test_profiles_presets_and_registration():
    toy = _toy(default_horizon=10)
    assert toy.config_for("paper", n_test=1) == ToyConfig(amplitude=2.0, n_test=1)
    with pytest.raises(UsageError, match="no profile 'huge'"):
        toy.config_for("huge")
    check_dataset_registration(lambda register: toy.register(register, **TOY_CARD), "toy", factory=toy,
                               config=ToyConfig)
    # What the data says of itself comes from the small profile's spec unless the card says it.
    cards = []
    brief = {k: v for k, v in TOY_CARD.items() if k not in ("dims", "fields", "dt", "boundary", "horizon")}
    toy.register(lambda *args, **card: cards.append(card), **brief, boundary="periodic on both axes")
    assert {k: cards[0][k] for k in ("dims", "fields", "dt", "boundary", "horizon")} == {
        "dims": 2, "fields": ["u", "v"], "dt": 0.1, "boundary": "periodic on both axes", "horizon": 3}
    # A table without a `small` profile registers too: the config defaults stand for it.
    _toy(profiles={"smoke": {"n_train": 1}}).register(lambda *args, **card: cards.append(card), **brief)
    assert cards[-1]["dims"] == 2 and cards[-1]["horizon"] == 3
    preset = toy.variant(name="toy-preset", default_horizon=1)
    assert toy(ToyConfig()).spec.horizon == 3  # the default horizon, capped by the frames after t_in
    built = preset(ToyConfig())
    assert built.spec.name == "toy-preset" and built.spec.horizon == 1
    assert Path(built.split("train").path) == cache_path("toy", toy.cache_key(ToyConfig()))  # presets share files


# --- pdebench_core.testing --------------------------------------------------------------------------------


def test_contract_check_passes_a_good_dataset_and_returns_its_splits():
    dataset = generation.cached_dataset("toy", {"seed": 0}, _spec(), _generate_once([]), {"generator": "toy"})
    arrays = check_dataset_contract(dataset, expected_fields=("u", "v"), spatial_shape=(4, 6), n_frames=5,
                                    split_sizes=SIZES, min_distance=0.1)
    assert_same_splits(arrays, _expected())
    # Tensors are accepted as trajectories too.
    check_dataset_contract(_dataset({s: [torch.from_numpy(t) for t in a] for s, a in _expected().items()}))


def test_contract_check_catches_overlapping_splits():
    splits = {s: list(a) for s, a in _expected().items()}
    splits["test"][1] = splits["train"][0].copy()
    with pytest.raises(AssertionError, match=r"test\[1\] is identical to train\[0\]"):
        check_dataset_contract(_dataset(splits))
    splits["test"][1] = splits["train"][0] + np.float32(1e-3)
    check_dataset_contract(_dataset(splits))  # distinct, though barely
    with pytest.raises(AssertionError, match="near-duplicate"):
        check_dataset_contract(_dataset(splits), min_distance=1e-2)
    # Only the first frames equal: distinct trajectories, but the same initial state.
    splits["test"][1] = np.concatenate([splits["train"][0][:1], splits["test"][0][1:]])
    check_dataset_contract(_dataset(splits))
    with pytest.raises(AssertionError, match="identical"):
        check_dataset_contract(_dataset(splits), disjoint_frame=0)


def test_contract_check_catches_a_wrong_dtype():
    splits = {s: list(a) for s, a in _expected().items()}
    splits["val"][0] = splits["val"][0].astype(np.float64)
    with pytest.raises(AssertionError, match=r"val\[0\]: dtype float64"):
        check_dataset_contract(_dataset(splits))
    splits["val"][0] = torch.from_numpy(_expected()["val"][0]).double()
    with pytest.raises(AssertionError, match="expected float32"):
        check_dataset_contract(_dataset(splits))


def test_contract_check_catches_a_wrong_rank_or_shape():
    without_channels = {s: [t[..., 0] for t in a] for s, a in _expected().items()}  # (T, X, Y)
    with pytest.raises(AssertionError, match="rank"):
        check_dataset_contract(_dataset(without_channels))
    with pytest.raises(AssertionError, match="spatial shape"):
        check_dataset_contract(_dataset({s: list(a) for s, a in _expected().items()}, _spec(spatial_shape=(6, 4))))
    with pytest.raises(AssertionError, match="channels"):
        check_dataset_contract(_dataset({s: list(a) for s, a in _expected().items()}, _spec(fields=("u",))))
    with pytest.raises(AssertionError, match="frames"):
        check_dataset_contract(_dataset({s: list(a) for s, a in _expected().items()}), n_frames=6)


def test_contract_check_catches_spec_splits_and_memory_problems():
    good = {s: list(a) for s, a in _expected().items()}
    with pytest.raises(AssertionError, match="spec.fields"):
        check_dataset_contract(_dataset(good), expected_fields=("v", "u"))
    with pytest.raises(AssertionError, match="has 3 trajectories, expected 4"):
        check_dataset_contract(_dataset(good), split_sizes={"train": 4})
    with pytest.raises(Exception, match="no split 'test'"):
        check_dataset_contract(_dataset({"train": good["train"], "val": good["val"]}))
    in_memory = TrajectoryDataset(_spec(), good)  # plain lists
    with pytest.raises(AssertionError, match="held in memory"):
        check_dataset_contract(in_memory)
    check_dataset_contract(in_memory, lazy=False)
    not_finite = {s: list(a) for s, a in _expected().items()}
    not_finite["train"][2] = np.full(TRAJECTORY, np.nan, dtype=np.float32)
    with pytest.raises(AssertionError, match="non-finite"):
        check_dataset_contract(_dataset(not_finite))


def test_disjoint_and_same_split_assertions():
    arrays = _expected()
    assert_splits_disjoint(arrays, min_distance=0.5)
    with pytest.raises(AssertionError, match=r"train\[1\] is identical to train\[0\]"):
        assert_splits_disjoint({"train": np.stack([arrays["train"][0]] * 2)})
    changed = {s: a.copy() for s, a in arrays.items()}
    changed["val"][0, 0, 0, 0, 0] += 1
    with pytest.raises(AssertionError, match="val: the values differ"):
        assert_same_splits(arrays, changed)
    with pytest.raises(AssertionError, match="splits differ"):
        assert_same_splits(arrays, {"train": arrays["train"]})


def test_generation_forbidden_refuses_then_restores():
    class Owner:
        @staticmethod
        def generate():
            return "generated"

    with generation_forbidden(Owner):
        with pytest.raises(AssertionError, match="ran although the cache"):
            Owner.generate()
    assert Owner.generate() == "generated"


def _hook(card_changes=None, profile_changes=None, twice=False):
    from dataclasses import dataclass

    @dataclass
    class ToyConfig(DatasetConfig):
        """Toy settings.

        Attributes:
            nu: A parameter.
        """

        nu: float = 0.1

    def build(cfg):
        return None

    card = dict(description="toy", pde="u_t = 0", dims=2, fields=["u", "v"], resolution="4x6", dt=0.1,
                boundary="periodic", parameters="nu=0.1", source="made up", license="MIT", horizon=3)
    card.update(card_changes or {})
    profiles = {"smoke": {"n_train": 2}, "small": {}, "paper": {"nu": 0.2}}
    profiles.update(profile_changes or {})

    def register_datasets(register):
        for _ in range(2 if twice else 1):
            register("toy", build, config=ToyConfig, profiles=profiles, **card)

    return register_datasets, build, ToyConfig


def test_registration_check_passes_a_full_card_and_catches_gaps():
    hook, build, config = _hook()
    entry = check_dataset_registration(hook, "toy", factory=build, config=config)
    assert entry["card"]["dims"] == 2 and entry["profiles"]["paper"] == {"nu": 0.2}
    with pytest.raises(AssertionError, match="'other' is not registered"):
        check_dataset_registration(hook, "other")
    with pytest.raises(AssertionError, match="registered factory"):
        check_dataset_registration(hook, "toy", factory=lambda cfg: None)
    for changes, message in (({"license": ""}, "'license' is missing"), ({"dims": 4}, "dims=4"),
                             ({"fields": "u"}, "list of names")):
        with pytest.raises(AssertionError, match=message):
            check_dataset_registration(_hook(card_changes=changes)[0], "toy")
    with pytest.raises(AssertionError, match="unknown keys"):
        check_dataset_registration(_hook(profile_changes={"smoke": {"viscosity": 1}})[0], "toy")
    with pytest.raises(Exception):  # omegaconf refuses a value of the wrong type
        check_dataset_registration(_hook(profile_changes={"paper": {"nu": "fast"}})[0], "toy")
    with pytest.raises(AssertionError, match="registered 2 times"):
        check_dataset_registration(_hook(twice=True)[0], "toy")
    assert check_dataset_registration(_hook(card_changes={"horizon": None})[0], "toy")["card"]["horizon"] is None
