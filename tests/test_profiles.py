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
