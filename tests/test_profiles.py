"""Profiles written around a config's defaults (``pdebench_core.profiles``)."""

from dataclasses import dataclass

from pdebench_core.profiles import PROFILE_NAMES, profiles_around_defaults


@dataclass
class ToyConfig:
    width: int = 64
    depth: int = 4
    lr: float = 1e-3
    name: str = "toy"


def test_the_profile_at_the_defaults_resets_what_the_others_change():
    profiles = profiles_around_defaults(ToyConfig, "paper", small={"width": 32}, smoke={"width": 8, "depth": 1})
    assert list(profiles) == list(PROFILE_NAMES)  # the usual order, whatever the call's
    assert profiles["paper"] == {"width": 64, "depth": 4}
    assert profiles["smoke"] == {"width": 8, "depth": 1} and profiles["small"] == {"width": 32}


def test_a_profile_at_the_defaults_changes_nothing():
    profiles = profiles_around_defaults(ToyConfig, "small", smoke={"lr": 0.1}, paper={"name": "big", "lr": 0.1})
    assert ToyConfig(**profiles["small"]) == ToyConfig()
    assert profiles["small"] == {"lr": 1e-3, "name": "toy"}


@dataclass
class SteppedConfig:
    resolution: int = 64
    t_end: float = 5.0
    n_frames: int = 101


def test_a_smoke_profile_keeps_the_frame_spacing_over_fewer_frames():
    from pdebench_core.data.generation import SMOKE_SPLITS, smoke_profile

    profile = smoke_profile(SteppedConfig, n_frames=14, resolution=32)
    assert profile == {"n_frames": 14, "t_end": 0.65, "resolution": 32, **SMOKE_SPLITS}
    smoke, defaults = SteppedConfig(**{k: profile[k] for k in ("t_end", "n_frames")}), SteppedConfig()
    assert smoke.t_end / (smoke.n_frames - 1) == defaults.t_end / (defaults.n_frames - 1)
