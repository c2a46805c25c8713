"""Typed registration: what pdeb acts on is a checked parameter of ``register``, never the card."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import pytest

from pdebench_core import hookimpl, plugins
from pdebench_core.checkpoint import load_checkpoint
from pdebench_core.config import build_config, config_hash
from pdebench_core.data.pipeline import check_mixture_fits, plan_mixture
from pdebench_core.errors import UsageError
from pdebench_core.spec import DataSpec

SMOKE_FNO = ["model.width=6", "model.modes=3", "model.n_layers=1", "train.log_every=1"]


@contextlib.contextmanager
def plugin(obj, name):
    plugins.register_plugin(obj, name=name)
    try:
        yield plugins.registries()
    finally:
        plugins.unregister_plugin(name)


def _build(cfg, spec):
    return None


@dataclass
class _Width:
    width: int = 4


@pytest.mark.parametrize("kind, call, parameter", [
    ("models", lambda r: r("bad-dims", _build, dims=(4,)), "dims=(4,)"),
    ("models", lambda r: r("bad-dims", _build, dims="2"), "dims='2'"),
    ("models", lambda r: r("bad-dims", _build, dims=(2, 2)), "dims=(2, 2)"),
    ("models", lambda r: r("bad-task", _build, default_task=3), "default_task=3"),
    ("models", lambda r: r("bad-mixed", _build, mixed_dims=1), "mixed_dims=1"),
    ("models", lambda r: r("bad-config", _build, config={"width": 3}), "config={'width': 3}"),
    ("datasets", lambda r: r("bad-dims", _build, dims=0), "dims=0"),
    ("models", lambda r: r("bad-profile", _build, config=_Width, profiles={"smok": {}}),
     "a profile 'smok'; profiles are smoke, small, paper (did you mean 'smoke'?)"),
    ("models", lambda r: r("bad-profile", _build, config=_Width, profiles={"smoke": {"widht": 2}}),
     "profile 'smoke' sets 'widht', which is not a field of _Width (did you mean 'width'?)"),
    ("tasks", lambda r: r("bad-recipe", _build, config=_Width, profiles={"smoke": {"train": {"max_stepz": 2}}}),
     "profile 'smoke' sets 'train.max_stepz', which is not a train setting (did you mean 'max_steps'?)"),
    ("tasks", lambda r: r("no-config", _build, profiles={"smoke": {"train": {"max_stepz": 2}}}),
     "profile 'smoke' sets 'train.max_stepz', which is not a train setting"),
    ("tasks", lambda r: r("bad-section", _build, config=_Width, profiles={"smoke": {"trian": {}}}),
     "sets 'trian', which is not a field of _Width nor a section train or eval (did you mean 'train'?)"),
    ("metrics", lambda r: r("bad-direction", lambda pair: pair.error, higher_is_better="yes"),
     "higher_is_better='yes'"),
    ("tasks", lambda r: r("bad-trains", lambda ctx: {}, trains="no"), "trains='no'"),
    ("datasets", lambda r: r("flow-m0.1", _build), "registered as 'flow-m0.1'; a name may hold letters, digits, '_' "
                                                   "and '-' only (users type it in --data lists and data.<name>"),
    ("models", lambda r: r("a,b", _build), "registered as 'a,b'; a name may hold"),
])
def test_a_bad_registration_parameter_disables_the_plugin_naming_it(capsys, kind, call, parameter):
    hook = f"register_{kind}"

    def register(register):
        register(f"fine-{kind}", _build) if kind != "metrics" else None
        call(register)

    bad = type("Bad", (), {hook: staticmethod(hookimpl(specname=hook)(register))})
    with plugin(bad, "bad-registration") as regs:
        assert f"fine-{kind}" not in regs[kind[:-1]]  # nothing of the plugin is half-registered
        error = {i.name: i for i in plugins.plugin_infos()}["bad-registration"].error
    assert error.startswith(f"{hook}: ") and parameter in error, error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pdeb plugin 'bad-registration' disabled" in err and parameter in err


class Typed:
    @staticmethod
    @hookimpl
    def register_models(register):
        register("typed-model", _build, dims=2, mixed_dims=True, default_task="evaluate",
                 description="a model", dims_note="shown only")

    @staticmethod
    @hookimpl
    def register_metrics(register):
        register("typed-score", lambda pair: -pair.error.abs().mean(dim=pair.spatial), higher_is_better=True,
                 description="a score")


def test_registration_parameters_are_typed_fields_and_the_card_is_description():
    with plugin(Typed, "typed") as regs:
        model = regs["model"].get("typed-model")
        assert (model.dims, model.mixed_dims, model.default_task) == ((2,), True, "evaluate")
        assert model.card == {"description": "a model", "dims_note": "shown only"}
        summary = model.summary()
        assert summary["dims"] == [2] and summary["default_task"] == "evaluate" and summary["mixed_dims"] is True
        metric = regs["metric"].get("typed-score")
        assert metric.higher_is_better is True and metric.summary()["higher_is_better"] is True
        assert "higher_is_better" not in metric.card


class WrongShapePlugin:
    @staticmethod
    @hookimpl
    def register_metrics(register):
        register("per-sample", lambda pair: pair.mse.mean(dim=(1, 2)), description="one value per sample")


def test_a_registered_metric_of_the_wrong_shape_is_named_with_its_plugin():
    import torch

    from pdebench_core.metrics import Pair

    with plugin(WrongShapePlugin, "shape-plugin") as regs:
        metric = regs["metric"].get("per-sample").factory
        pair = Pair(torch.ones(2, 3, 4, 1), torch.zeros(2, 3, 4, 1))
        with pytest.raises(UsageError, match=r"^metric 'per-sample' \(plugin 'shape-plugin'\) gave values of "
                                             r"shape \(2,\); a metric returns \(2, 3, 1\)"):
            metric.score(pair)


def test_only_a_task_that_trains_must_split_its_batch_over_the_processes():
    """Evaluation uses no train.batch_size: 3 processes do not refuse it over 3 not dividing 4."""
    from pdebench_core.launcher import check_batch_split

    evaluate = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke")
    assert plugins.get("task", "evaluate").trains is False and plugins.get("task", "train").trains is True
    check_batch_split(evaluate, 3)
    with pytest.raises(UsageError, match=r"train.batch_size=4 must be divisible by processes x train.grad_accum"):
        check_batch_split(build_config(model="fno", data="ns2d", profile="smoke"), 3)


def test_bundled_plugins_declare_dims_as_parameters_and_no_dead_keys():
    regs = plugins.registries()
    for kind in ("model", "dataset"):
        for comp in regs[kind]:
            assert comp.dims and set(comp.dims) <= {1, 2, 3}, comp.name
            assert not {"dims", "mixed_dims", "default_task", "trainable", "published_as"} & set(comp.card), comp.name
    dpot = regs["model"].get("dpot")
    assert dpot.mixed_dims and dpot.default_task == "pretrain"


def test_default_task_comes_from_the_registration(fresh_home):
    with plugin(Typed, "typed"):
        # typed-model builds nothing, but the config is resolved before any model exists
        cfg = build_config(model="typed-model", data="ns2d", profile="smoke")
        assert cfg.run.task == "evaluate"
        assert build_config(model="typed-model", data="ns2d", task="train", profile="smoke").run.task == "train"


def _dataset(name, shape, fields=("u",)):
    return SimpleNamespace(spec=DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape)))


def test_registered_dims_and_mixed_dims_decide_what_data_a_model_takes():
    regs = plugins.registries()
    one_d = plan_mixture({"a": _dataset("a", (16,))}, t_out=1)
    with plugin(Typed, "typed") as typed:
        with pytest.raises(UsageError, match=r"model 'typed-model' supports 2D data, but 'a' is 1D"):
            check_mixture_fits(typed["model"].get("typed-model"), one_d)
    mixed = plan_mixture({"a": _dataset("a", (16,)), "b": _dataset("b", (8, 8), ("u", "v"))}, t_out=1)
    with pytest.raises(UsageError, match="cannot train on datasets of different dimensions"):
        check_mixture_fits(regs["model"].get("fno"), mixed)
    check_mixture_fits(regs["model"].get("dpot"), mixed)


def test_a_mixture_of_dimensions_gives_the_model_one_spec_per_group():
    mixed = plan_mixture({"a": _dataset("a", (16,)), "b": _dataset("b", (8, 8), ("u", "v"))}, t_out=2,
                         resolution=0)
    spec = mixed.model_spec
    assert [(g.ndim, g.spatial_shape, g.fields, g.t_out) for g in spec.groups] == [
        (1, (16,), ("u",), 2), (2, (8, 8), ("u", "v"), 2)]
    assert "groups" not in spec.params and all(not g.groups for g in spec.groups)
    assert DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    single = plan_mixture({"a": _dataset("a", (16,))}, t_out=1).model_spec
    assert single.groups == ()


def test_a_spec_saved_with_groups_as_a_parameter_still_loads():
    saved = {"name": "a", "fields": ["u"], "spatial_shape": [16], "t_out": 1,
             "params": {"groups": {"1": {"spatial_shape": [16], "fields": ["u"]},
                                   "2": {"spatial_shape": [8, 8], "fields": ["u", "v"]}}}}
    spec = DataSpec.from_dict(saved)
    assert [(g.spatial_shape, g.fields) for g in spec.groups] == [((16,), ("u",)), ((8, 8), ("u", "v"))]
    assert spec.params == {}


@dataclass
class RecorderConfig:
    """Settings of the test sink."""

    label: str = "unset"
    every: Optional[int] = None


class Recorder:
    opened: list = []

    def __init__(self, cfg, run_dir):
        Recorder.opened.append(cfg)

    def log_step(self, step, values):
        pass

    def write_result(self, row):
        pass

    def close(self):
        pass


class RecorderPlugin:
    @staticmethod
    @hookimpl
    def register_sinks(register):
        register("recorder", Recorder, config=RecorderConfig, description="keeps its settings")


def test_sink_settings_reach_the_sink(fresh_home, tmp_path):
    from pdebench_core.runner import _open_sinks

    with plugin(RecorderPlugin, "recorder-plugin"):
        base = ["run.sinks=[jsonl,recorder]"]
        cfg = build_config(model="fno", data="burgers1d", profile="smoke",
                           overrides=[*base, "sinks.recorder.label=exp-7", "sinks.recorder.every=3"])
        assert config_hash(cfg) == config_hash(build_config(model="fno", data="burgers1d", profile="smoke",
                                                            overrides=base))  # where results go changes no result
        ctx = SimpleNamespace(is_main=True, cfg=cfg, run_dir=tmp_path, sinks=[])
        Recorder.opened.clear()
        with contextlib.ExitStack() as stack:
            _open_sinks(ctx, stack)
        assert Recorder.opened == [RecorderConfig(label="exp-7", every=3)]
        with pytest.raises(UsageError, match=r"unknown setting 'sinks.recorder.lable' \(did you mean 'label'\?\)"):
            build_config(model="fno", data="burgers1d", profile="smoke", overrides=[*base, "sinks.recorder.lable=x"])
        with pytest.raises(UsageError, match=r"settings for sink 'recorder' .* not in run.sinks \(sqlite, jsonl\)"):
            build_config(model="fno", data="burgers1d", profile="smoke", overrides=["sinks.recorder.label=x"])
        with pytest.raises(UsageError, match=r"sink 'jsonl' has no settings; remove sinks.jsonl"):
            build_config(model="fno", data="burgers1d", profile="smoke", overrides=[*base, "sinks.jsonl.x=1"])


class ScorePlugin:
    @staticmethod
    @hookimpl
    def register_metrics(register):
        from pdebench_core.metrics import METRICS

        l2re = METRICS["l2re"]
        register("l2re_higher", l2re.values, finish=l2re.finish, higher_is_better=True,
                 description="l2re, ranked as if higher were better (tests the direction)")


def test_best_checkpoint_honours_higher_is_better(fresh_home):
    from pdebench_core.runner import execute

    with plugin(ScorePlugin, "score-plugin"):
        cfg = build_config(model="fno", data="ns2d", profile="smoke", run_id="best-up", device="cpu",
                           overrides=[*SMOKE_FNO, "train.max_steps=6", "train.batch_size=4", "train.eval_every=2",
                                      "train.select_metric=l2re_higher"])
        ctx = execute(cfg, quiet=True)
    best = load_checkpoint(ctx.run_dir / "checkpoints" / "best.pt")
    records = [json.loads(line) for line in (ctx.run_dir / "metrics.jsonl").read_text().splitlines()]
    values = {r["step"]: r["val_l2re_higher"] for r in records if "val_l2re_higher" in r}
    assert sorted(values) == [2, 4, 6] and len(set(values.values())) == 3
    assert best["best"]["metric"] == "l2re_higher" and best["best"]["step"] == max(values, key=values.get)


class FillsInItsSettings:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        def build(cfg):
            from pdebench_core.data.base import TrajectoryDataset
            import numpy as np

            cfg.seed = 99  # a factory filling in a setting
            traj = [np.zeros((6, 8, 1), np.float32)]
            return TrajectoryDataset(DataSpec(name="fills", fields=("u",), spatial_shape=(8,), t_in=2),
                                     {"train": traj, "val": traj, "test": traj})

        from pdebench_core.data.config import DatasetConfig

        register("fills-in", build, config=DatasetConfig, dims=1)


def test_a_factory_that_changes_its_settings_does_not_change_the_runs_config():
    from omegaconf import OmegaConf

    with plugin(FillsInItsSettings, "fills-in"):
        cfg = build_config(model="fno", data="fills-in", profile="smoke")
        plugins.build_dataset_from("fills-in", cfg.data["fills-in"])
        assert cfg.data["fills-in"].seed == 0 and OmegaConf.is_config(cfg.data["fills-in"])


class Refusing(Recorder):
    def write_result(self, row):
        raise ConnectionError("tracking server unreachable")


class RefusingPlugin:
    @staticmethod
    @hookimpl
    def register_sinks(register):
        register("refusing", Refusing, description="refuses every result row")


def test_a_sink_refusing_results_leaves_the_run_finished_and_says_so(fresh_home):
    """The results are computed and stored by the other sinks: the run is finished (and ranked),
    the command fails naming the sink, and a resume sends the rows again."""
    from pdebench_core.errors import PdebError
    from pdebench_core.results import ResultsStore
    from pdebench_core.rundir import RunDir
    from pdebench_core.runner import execute

    with plugin(RefusingPlugin, "refusing-plugin"):
        cfg = build_config(model="fno", data="ns2d", profile="smoke", run_id="undelivered", device="cpu",
                           overrides=[*SMOKE_FNO, "train.max_steps=2", "train.batch_size=4",
                                      "run.sinks=[sqlite,refusing,jsonl]"])
        with pytest.raises(PdebError, match=r"run undelivered finished, but its results did not reach sink\(s\) "
                                            r"refusing: sink 'refusing' \(plugin 'refusing-plugin'\) raised "
                                            r"ConnectionError.*'pdeb run --resume undelivered'"):
            execute(cfg, quiet=True)
    run = RunDir.of("undelivered")
    status = run.read_status()
    assert status["state"] == "finished" and "did not reach sink(s) refusing" in status["error"]
    assert [r["run_id"] for r in ResultsStore().rows()] == ["undelivered"]
    assert (run.path / "results.jsonl").read_text().count("\n") == 1  # the sink after the failing one has it too
    assert "error: run undelivered finished, but its results did not reach" in (run.path / "log.txt").read_text()


class StoppedWhileClosing(Recorder):
    def close(self):
        import signal

        from pdebench_core.errors import Stopped

        raise Stopped("SIGTERM", signal.SIGTERM)  # a scheduler's SIGTERM during a slow close


class StoppedWhileClosingPlugin:
    @staticmethod
    @hookimpl
    def register_sinks(register):
        register("slow-close", StoppedWhileClosing, description="stopped while closing")


def test_a_stop_while_the_sinks_close_leaves_the_run_interrupted_not_running(fresh_home):
    from pdebench_core.errors import Stopped
    from pdebench_core.rundir import RunDir
    from pdebench_core.runner import execute

    with plugin(StoppedWhileClosingPlugin, "slow-close-plugin"):
        cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", run_id="closing",
                           device="cpu", overrides=["run.sinks=[jsonl,slow-close]"])
        with pytest.raises(Stopped):
            execute(cfg, quiet=True)
    status = RunDir.of("closing").read_status()
    assert status["state"] == "interrupted" and status["error"] == "stopped by SIGTERM"


def test_pdeb_debug_shows_a_refusing_sinks_traceback_without_changing_the_outcome(fresh_home, monkeypatch, capsys):
    from pdebench_core.errors import PdebError
    from pdebench_core.rundir import RunDir
    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_DEBUG", "1")
    with plugin(RefusingPlugin, "refusing-plugin"):
        cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", run_id="debugged",
                           device="cpu", overrides=["run.sinks=[refusing,jsonl]"])
        with pytest.raises(PdebError, match="did not reach sink"):
            execute(cfg, quiet=True)
    run = RunDir.of("debugged")
    assert run.read_status()["state"] == "finished" and (run.path / "results.jsonl").is_file()
    assert "Traceback" in capsys.readouterr().err and "tracking server unreachable" in run.read_status()["error"]


class TwoProfilesPlugin:
    @staticmethod
    @hookimpl
    def register_models(register):
        register("two-profiles", _build, config=_Width, profiles={"smoke": {"width": 2}, "small": {}}, dims=(1, 2))


def test_a_profile_a_component_lacks_is_refused_not_replaced_by_its_defaults():
    with plugin(TwoProfilesPlugin, "two-profiles-plugin"):
        assert build_config(model="two-profiles", data="ns2d", profile="smoke").model.width == 2
        with pytest.raises(UsageError, match=r"model 'two-profiles' \(plugin 'two-profiles-plugin'\) has no 'paper' "
                                             r"profile, only smoke, small; use --profile with one of those"):
            build_config(model="two-profiles", data="ns2d", profile="paper")


@dataclass
class _StepsOnly:
    steps: int = 1


def _train_then_evaluate(ctx):
    from pdebench_core import workflow

    _, mixture, model = workflow.prepare(ctx)
    trainer = workflow.train_model(ctx, model, mixture)
    return workflow.evaluate_trained(ctx, model, mixture, trainer)


class OwnTaskPlugin:
    @staticmethod
    @hookimpl
    def register_tasks(register):
        register("own-task", _train_then_evaluate, config=_StepsOnly)


def test_a_plugin_task_without_an_evaluate_setting_composes_the_workflow_steps(fresh_home):
    """evaluate_trained evaluates unless the task has task.evaluate=false: a task config
    without that setting is not an error after all the training."""
    from pdebench_core.runner import execute

    with plugin(OwnTaskPlugin, "own-task-plugin"):
        cfg = build_config(model="fno", data="ns2d", task="own-task", profile="smoke", device="cpu",
                           overrides=[*SMOKE_FNO, "train.max_steps=2", "train.batch_size=4"])
        assert execute(cfg, quiet=True).results["ns2d"]["l2re"] > 0


@dataclass
class _RequiredSinkConfig:
    name: str
    path: str = "kept.txt"


class RequiredSinkPlugin:
    @staticmethod
    @hookimpl
    def register_sinks(register):
        register("required", Recorder, config=_RequiredSinkConfig)


def test_a_sink_config_with_a_required_field_is_built_when_the_user_gives_it(fresh_home):
    with plugin(RequiredSinkPlugin, "required-sink-plugin"):
        cfg = build_config(model="fno", data="ns2d", profile="smoke",
                           overrides=["run.sinks=[jsonl,required]", "sinks.required.name=x"])
    assert cfg.sinks.required.name == "x" and cfg.sinks.required.path == "kept.txt"  # its own default, as it is

