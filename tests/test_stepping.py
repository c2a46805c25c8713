"""Pieces shared by the bundled explicit solvers: time stepping (``pdebench_core.data.stepping``) and the
checks of their settings (``ExplicitScheme``)."""

import pytest
import torch

from pdebench_core.data.stepping import checked_times, frame_times, march


def _decay(rates: torch.Tensor):
    """Forward Euler for ``u' = -rate u``, stable step ``0.5 / rate``, and a clock kept in the state."""
    def step(state, dt):
        u, clock = state
        return u * (1 - rates * dt), clock + dt

    return (lambda state: 0.5 / rates), step


def test_every_trajectory_lands_on_the_frame_times_on_its_own_clock():
    rates = torch.tensor([1.0, 7.0, 40.0], dtype=torch.float64)
    stable_dt, step = _decay(rates)
    start = (torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    seen = []
    frames = march(start, [0.0, 0.3, 1.0], stable_dt, step, lambda state, t: None, on_frame=seen.append)
    assert len(frames) == 3 and seen == [1, 2]
    assert torch.allclose(frames[1][1], torch.full((3,), 0.3, dtype=torch.float64))
    assert torch.allclose(frames[2][1], torch.ones(3, dtype=torch.float64))
    # Equal sub-steps of at most the stable step: the slow trajectory takes one step per frame.
    assert frames[1][0][0] == pytest.approx(1 - 0.3)


def test_a_trajectory_gives_the_same_numbers_alone_and_in_a_batch():
    rates = torch.tensor([1.0, 7.0, 40.0], dtype=torch.float64)
    stable_dt, step = _decay(rates)
    batch = march((torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)), frame_times(1.0, 5),
                  stable_dt, step, lambda state, t: None)
    alone_dt, alone_step = _decay(rates[1:2])
    alone = march((torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)), frame_times(1.0, 5),
                  alone_dt, alone_step, lambda state, t: None)
    assert all(torch.equal(b[0][1:2], a[0]) for b, a in zip(batch, alone))


def test_the_check_stops_at_the_first_bad_frame():
    def check(u, t):
        if t > 0.5:
            raise FloatingPointError(f"diverged before t={t:g}")

    with pytest.raises(FloatingPointError, match="t=0.75"):
        march(torch.ones(2), frame_times(1.0, 5), lambda u: torch.full((2,), 0.1), lambda u, dt: u, check)


@pytest.mark.parametrize("times", [[0.1, 0.5], [0.0, 0.5, 0.5], [[0.0, 1.0]]])
def test_times_must_start_at_zero_and_increase(times):
    with pytest.raises(ValueError, match="increasing and start at 0"):
        checked_times(times)


@pytest.mark.parametrize("t_end, n_frames", [(1.0, 1), (0.0, 5), (float("inf"), 5)])
def test_frame_times_refuse_too_few_frames_or_a_bad_end(t_end, n_frames):
    with pytest.raises(ValueError, match="n_frames >= 2 and t_end > 0"):
        frame_times(t_end, n_frames)


@pytest.mark.parametrize("changes, message", [
    ({"resolution": 3}, "data.toy.resolution must be at least 4, got 3"),
    ({"t_end": 0.0}, r"^data.toy.t_end must be positive, got 0.0$"),
    ({"cfl": 0.6}, r"^data.toy.cfl must be in \(0, 0.5\] for this scheme to stay stable, got 0.6$"),
    ({"cfl": 0.0}, r"^data.toy.cfl must be in \(0, 0.5\] for this scheme to stay stable, got 0.0$"),
])
def test_explicit_solver_settings_are_refused_in_one_line(changes, message):
    from types import SimpleNamespace

    from pdebench_core.data.generation import ExplicitScheme
    from pdebench_core.errors import UsageError

    good = {"resolution": 4, "t_end": 1.0, "cfl": 0.5}
    scheme = ExplicitScheme(max_cfl=0.5, min_resolution=4)
    scheme.check(SimpleNamespace(**good), "data.toy")
    with pytest.raises(UsageError, match=message):
        scheme.check(SimpleNamespace(**{**good, **changes}), "data.toy")


def test_a_scheme_or_smoke_profile_over_a_config_without_their_settings_is_refused_at_once():
    from dataclasses import dataclass

    from pdebench_core.data.config import GeneratedConfig
    from pdebench_core.data.generation import ExplicitScheme, GeneratedDataset, smoke_profile
    from pdebench_core.errors import UsageError

    @dataclass
    class StepConfig(GeneratedConfig):
        n_frames: int = 20
        dt: float = 0.1

    with pytest.raises(UsageError, match=r"^dataset 'toy' declares an ExplicitScheme: StepConfig needs the "
                                         r"settings resolution, t_end, cfl \(it lacks t_end, cfl\)$"):
        GeneratedDataset(name="toy", config=StepConfig, solve=print, spec=print, version=1, profiles={},
                         default_resolution=8, scheme=ExplicitScheme(max_cfl=0.5))
    with pytest.raises(UsageError, match=r"^smoke_profile\(StepConfig\): StepConfig needs the settings t_end, "
                                         r"n_frames \(it lacks t_end\)$"):
        smoke_profile(StepConfig, n_frames=5)
