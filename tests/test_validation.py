"""Config values that make no sense are refused before any compute, in one line (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pdebench_core.cli import app
from pdebench_core.config import build_config
from pdebench_core.errors import UsageError

runner = CliRunner()


@pytest.mark.parametrize("overrides, message", [
    (["train.max_steps=0"], r"train.max_steps=0 is out of range; use a value of at least 1"),
    (["train.max_steps=-5"], r"train.max_steps=-5 is out of range"),
    (["train.max_steps=1000000000000000000000000000000"], r"train.max_steps"),
    (["train.batch_size=0"], r"train.batch_size=0 is out of range"),
    (["train.grad_accum=0"], r"train.grad_accum=0 is out of range"),
    (["train.t_out=100000000000000000000000"], r"train.t_out"),
    (["eval.batch_size=0"], r"eval.batch_size=0 is out of range"),
    (["eval.horizon=-1"], r"eval.horizon=-1 is out of range"),
    (["train.lr=-1"], r"train.lr must be a positive finite number"),
    (["train.max_steps=${train.lr}"], r"cannot resolve an interpolation|train.max_steps"),
    (["train.max_steps=${train.nothing}"], r"cannot resolve an interpolation"),
    (["train.max_steps=${oc.env:PDEB_SURELY_UNSET_VARIABLE}"], r"cannot resolve an interpolation"),
    (["train.max_steps=${train.max_steps}"], r"cannot resolve an interpolation"),
])
def test_bad_values_are_refused_before_compute(overrides, message):
    with pytest.raises(UsageError, match=message):
        build_config(model="fno", data="ns2d", profile="smoke", overrides=overrides)


def test_valid_interpolation_is_resolved_up_front():
    cfg = build_config(model="fno", data="ns2d", profile="smoke", overrides=["eval.horizon=${train.t_out}"])
    assert cfg.eval.horizon == 1


@pytest.mark.parametrize("seed", [-1, 2**63, 2**70])
def test_seed_outside_torch_range_is_refused(seed):
    with pytest.raises(UsageError, match="run.seed"):
        build_config(model="fno", data="ns2d", profile="smoke", seed=seed)


@pytest.mark.parametrize("text, message", [
    ("1: 2\n", "key 1 is not a name"),
    ("model: [1, 2]\n", "section 'model' must be a mapping"),
    ("train:\n  3: 4\n", "key 3 in section 'train' is not a setting name"),
    ("train:\n  lr: 1\n  lr: 2\n", "found duplicate key lr (line 3, column 3)"),
    ("train: {lr: 1\n", "line 2"),
])
def test_malformed_config_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--data", ",ns2d"], "has an empty name"),
    (["--data", "ns2d,,cfd2d"], "has an empty name"),
    (["--data", "ns2d", "--run-id", ""], "--run-id is empty"),
    (["--data", "ns2d", "--run-id", "a" * 129], "not a valid directory name"),
    (["--data", "ns2d", "--run-id", "bad id!"], "not a valid directory name"),
    (["--data", "ns2d", "--run-id=-x"], "not starting with '.' or '-'"),  # later `pdeb report -x` reads an option
    (["--data", "ns2d", "run.sinks=sqlite"], "'run.sinks': needs a list, e.g. run.sinks=[sqlite,jsonl]"),
    (["--data", "ns2d", "train.lr=[1,2]"], "'train.lr': needs a single value, not a list"),
    (["--data", "ns2d", "run.profile=paper"], "--profile smoke and run.profile=paper contradict each other"),
    (["--data", "ns2d", "model.name=unet"], "--model fno and model.name=unet contradict each other"),
    (["--data", "ns2d", "eval.metrics=[]"], "eval.metrics is empty; name at least one metric"),
    (["--data", "ns2d", "train.lr=1", "train.lr=2"], "setting 'train.lr' is given twice (1 and 2); give it once"),
    (["--data", "ns2d", "--seed", "4", "run.seed=3"], "--seed 4 and run.seed=3 contradict each other"),
    (["--data", "ns2d", "--run-id", "a", "run.run_id=b"], "--run-id a and run.run_id=b contradict each other"),
    (["--data", "ns2d", "--horizon", "2", "eval.horizon=3"], "--horizon 2 and eval.horizon=3 contradict"),
    (["--data", "ns2d", "--task", ""], "--task is empty; give a value or leave the option out"),
    (["--data", "ns2d", "--config", ""], "--config is empty"),
    (["--data", "ns2d", "--resume", ""], "--resume is empty"),
    (["--data", "ns2d", "train.lr="], "needs a value ('train.lr=' gives none)"),
    (["--data", "ns2d,dr2d", "data.dr2d.t_in=4"],
     "datasets disagree on t_in (ns2d 10, dr2d 4); set data.<name>.t_in to one value"),
    (["--data", "ns2d", "run.sinks=[]"], "run.sinks is empty, so no result would be kept"),
    (["--data", "ns2d", "--nproc-per-node", "2", "train.batch_size=3"],
     "train.batch_size=3 must be divisible by processes x train.grad_accum = 2 x 1"),  # before launching
])
def test_cli_values_that_make_no_sense(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["run", "--model", "fno", "--profile", "smoke", "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())


def test_required_component_setting_is_settable_and_reported_when_absent():
    from dataclasses import dataclass, field

    import torch

    from pdebench_core import hookimpl, plugins

    @dataclass
    class NeedsWidth:
        width: int  # no default: the user must choose
        kernel: int = field(metadata={"help": "an odd number of grid points"})  # none either, and it says what
        depth: int = 2

    class Plugin:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("needs-width", lambda cfg, spec: torch.nn.Identity(), config=NeedsWidth, dims=(2,))

    plugins.register_plugin(Plugin, name="needs-width-plugin")
    try:
        cfg = build_config(model="needs-width", data="ns2d", profile="smoke",
                           overrides=["model.width=8", "model.kernel=3"])
        assert cfg.model.width == 8 and cfg.model.depth == 2
        with pytest.raises(UsageError, match=r"required setting model.width not given; set model.width=VALUE"):
            build_config(model="needs-width", data="ns2d", profile="smoke", overrides=["model.kernel=3"])
        with pytest.raises(UsageError, match=r"^required settings model.kernel, model.width not given \(an odd "
                                             r"number of grid points\); set model.kernel=VALUE"):
            build_config(model="needs-width", data="ns2d", profile="smoke")
    finally:
        plugins.unregister_plugin("needs-width-plugin")


@pytest.mark.parametrize("overrides, message", [
    (["data.ns2d.resolution=100000", "data.ns2d.solver_resolution=100000"],
     r"generating ns2d \(trajectories of shape \(14, 100000, 100000, 1\)\) needs about .* of memory"),
    (["model.width=100000"], r"model 'fno' \(.* parameters, with gradients and optimizer state\) needs about"),
])
def test_what_cannot_fit_in_memory_is_refused_before_allocating(overrides, message, tmp_path, monkeypatch):
    import re

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--device", "cpu",
                                 *overrides])
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output) and "Traceback" not in result.output


def test_memory_estimate_of_a_model_allocates_nothing():
    import torch

    from pdebench_core.memory import parameter_count_without_allocating

    count = parameter_count_without_allocating(lambda: torch.nn.Linear(100_000, 100_000))
    assert count == 100_000 * 100_000 + 100_000


def test_a_gpu_holds_its_share_of_a_sharded_models_training_state(monkeypatch):
    """Under FSDP each GPU keeps 1/N of weights, gradients and Adam's moments (after building the
    whole model once, in float32); under DDP each keeps all of them."""
    import torch

    from pdebench_core.memory import check_model_fits

    count = 100_000 * 1_000 + 1_000  # a Linear(100_000, 1_000): 1.6 GB to train unsharded
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (count * 5, count * 5))  # 5 bytes each

    def build():
        return torch.nn.Linear(100_000, 1_000)

    gpu = torch.device("cuda")
    with pytest.raises(UsageError, match=r"model 'big' has 100,001,000 parameters and needs about 1.5 GiB to train, "
                                         r"the GPU has 476.8 MiB free"):
        check_model_fits(build, "big", gpu)
    with pytest.raises(UsageError, match=r"needs about 762.9 MiB to train \(its training state sharded over 2 GPUs\)"):
        check_model_fits(build, "big", gpu, shards=2)  # 8 bytes per parameter: more than 5
    check_model_fits(build, "big", gpu, shards=4)  # 4 bytes each, the whole float32 model while it is built
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (count * 3, count * 3))
    with pytest.raises(UsageError, match=r"needs about 381.5 MiB to train \(its training state sharded over 8 GPUs"):
        check_model_fits(build, "big", gpu, shards=8)


@pytest.mark.parametrize("overrides, message", [
    (["data.ns2d.format=dpot"], r"data.ns2d.format=dpot has no file to read; set data.ns2d.path=FILE"),
    (["data.ns2d.device=-7"], r"data.ns2d.device=-7 is not a device"),
    (["data.ns2d.device=gpu"], r"data.ns2d.device=gpu is not a device"),
    (["data.ns2d.t_in=0"], r"data.ns2d.t_in=0 is out of range; use at least 1"),
    (["data.ns2d.horizon=0"], r"data.ns2d.horizon=0 is out of range; use at least 1"),
    (["data.ns2d.n_train=-1"], r"data.ns2d.n_train=-1 is out of range; use at least 0"),
])
def test_dataset_settings_that_would_be_ignored_are_refused(overrides, message):
    with pytest.raises(UsageError, match=message):
        build_config(model="fno", data="ns2d", profile="smoke", overrides=overrides)
    build_config(model="fno", data="ns2d", profile="smoke", overrides=["data.ns2d.device=cuda:1"])


@pytest.mark.parametrize("overrides, message", [
    (["eval.grid=nativ"], r"unknown eval.grid 'nativ' \(did you mean 'native'\?\); use model, native, strided"),
    (["eval.precision=fp16"], r"unknown eval.precision 'fp16'"),
    (["train.strategy=zero"], r"unknown train.strategy 'zero'"),
    (["eval.split=bogus"], r"unknown eval.split 'bogus'; use test, val, train"),
    (["run.device=tpu"], r"unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
])
def test_word_settings_are_checked_before_compute(overrides, message):
    with pytest.raises(UsageError, match=message):
        build_config(model="fno", data="ns2d", profile="smoke", overrides=overrides)


def _burgers_file(tmp_path, nu=0.01):
    import numpy as np

    from pdebench_core.data import write_canonical
    from pdebench_core.spec import DataSpec

    path = tmp_path / "burgers.h5"
    splits = {s: np.zeros((3, 12, 16, 1), np.float32) for s in ("train", "val", "test")}
    write_canonical(path, splits, DataSpec(name="burgers1d", fields=("u",), spatial_shape=(16,), t_in=10,
                                           params={"nu": nu}))
    return path


@pytest.mark.parametrize("setting, message", [
    ("data.burgers1d.nu=0.1", r"data.burgers1d.nu=0.1 \(the file states 0.01\): these settings describe generated "
                              r"data, but data.burgers1d.path reads a file; drop them"),
    ("data.burgers1d.resolution=64", r"data.burgers1d.resolution=64 \(the file states 16\)"),
    ("data.burgers1d.seed=3", r"data.burgers1d.seed=3: these settings describe generated data"),
])
def test_generator_settings_with_a_file_are_refused(tmp_path, setting, message):
    path = _burgers_file(tmp_path)
    with pytest.raises(UsageError, match=message):
        build_config(model="fno", data="burgers1d", profile="smoke", overrides=[f"data.burgers1d.path={path}", setting])


def test_a_files_own_parameters_are_used_and_the_run_is_told(tmp_path, monkeypatch):
    """A preset or default that the file contradicts (pdeb's own cache of other settings) is not an
    error, as the file is the data; the run's log says which value holds."""
    from pdebench_core.config import build_dataset

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    dataset = build_dataset("burgers1d", "smoke", [f"path={_burgers_file(tmp_path, nu=0.5)}"])
    assert dataset.spec.params["nu"] == 0.5
    assert "the file states nu=0.5; that is used, not the dataset's setting nu=0.01" in dataset.notes


def test_settings_the_file_agrees_with_and_split_sizes_are_allowed(tmp_path):
    path = _burgers_file(tmp_path)
    cfg = build_config(model="fno", data="burgers1d", profile="smoke",
                       overrides=[f"data.burgers1d.path={path}", "data.burgers1d.nu=0.01",
                                  "data.burgers1d.resolution=16", "data.burgers1d.n_train=2"])
    assert cfg.data.burgers1d.n_train == 2


@pytest.mark.parametrize("metric, message", [(",", "--metric names nothing"), ("l2re,rmse", "--pivot shows one metric"),
                                             (" , ", "--metric names nothing")])
def test_pivot_with_no_or_several_metrics_is_one_line(metric, message, tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["leaderboard", "--metric", metric, "--pivot"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("nproc, message", [("0", "must be at least 1"), ("-1", "must be at least 1"),
                                            ("64", "more than twice the")])
def test_process_count_is_bounded(nproc, message, tmp_path, monkeypatch):
    import os

    if nproc == "64" and 2 * (os.cpu_count() or 1) >= 64:
        pytest.skip("this machine has 32 or more cores")
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--device", "cpu",
                                 "--nproc-per-node", nproc])
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize("args", [
    ["data", "generate", "ns2d", "--profile", "smok"],
    ["data", "stats", "ns2d", "--profile", "smok"],
    ["models", "--data", "ns2d", "--profile", "smok"],
])
def test_every_command_refuses_an_unknown_profile_before_any_work(args, tmp_path, monkeypatch):
    """A typo in --profile would otherwise give the base defaults (and generate data for them)."""
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "unknown profile 'smok' (did you mean 'smoke'?)" in result.output
    assert not (tmp_path / "home" / "data").exists() or not any((tmp_path / "home" / "data").glob("*.h5"))


COMMAND_LINE_MISTAKES = [
    (["runs", "extra"], "error: Got unexpected extra argument(s) (extra); see 'pdeb runs --help'"),
    (["run", "--bogus"], "error: No such option: --bogus; see 'pdeb run --help'"),
    (["report"], "error: Missing argument 'run_id'; see 'pdeb report --help'"),
    (["nosuchcmd"], "error: No such command 'nosuchcmd'; see 'pdeb --help'"),
    (["run", "-m"], "error: Option '-m' requires an argument; see 'pdeb run --help'"),
    (["data", "convert", "--format"], "error: Option '--format' requires an argument; see 'pdeb data convert --help'"),
]


@pytest.mark.parametrize("args, message", COMMAND_LINE_MISTAKES)
def test_command_line_mistakes_are_one_line_too(pdeb, args, message):
    result = pdeb(*args)
    assert (result.returncode, result.stderr.strip()) == (2, message)


def test_command_line_mistakes_are_one_line_without_click_installed():
    """typer >= 0.26 carries its own copy of click and installs none: a plain install has no
    click package, and pdeb must not need one to report a mistake."""
    pytest.importorskip("typer._click", reason="this typer still uses the click package")
    script = ("import sys; sys.modules['click'] = None; from pdebench_core.cli import main; "
              "sys.argv = ['pdeb', *sys.argv[1:]]; main()")
    for args, message in COMMAND_LINE_MISTAKES:
        result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr.strip()) == (2, message)


@pytest.mark.parametrize("args, message", [
    (["data.ns2d.n_train=0"], "data.ns2d.n_train=0 leaves no trajectory to train on; give at least 1"),
    (["data.ns2d.n_test=0"], "data.ns2d.n_test=0 leaves nothing to evaluate on (eval.split=test); give at least 1, "
                             "or task.evaluate=false"),
    (["--task", "evaluate", "eval.split=val", "data.ns2d.n_val=0"], "data.ns2d.n_val=0 leaves nothing to evaluate"),
])
def test_an_empty_split_the_task_needs_is_refused_before_data_is_made(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()).startswith(f"error: {message}")
    assert not list(tmp_path.glob("data/*.h5")) and not list(tmp_path.glob("runs/*"))


def test_a_dataset_without_trajectories_to_score_is_named_and_left_out(tmp_path):
    from types import SimpleNamespace

    from pdebench_core.errors import DataError
    from pdebench_core.workflow import scored_outputs

    lines = []
    ctx = SimpleNamespace(log=lines.append)
    kept = scored_outputs(ctx, {"ns2d": {"n_samples": 3}, "cfd3d": {"n_samples": 0}}, "test")
    assert list(kept) == ["ns2d"]
    assert lines == ["warning: dataset cfd3d has no trajectory in its 'test' split; it is not scored"]
    with pytest.raises(DataError, match="no dataset of this run has a trajectory in its 'test' split"):
        scored_outputs(ctx, {"cfd3d": {"n_samples": 0}}, "test")


def test_a_data_path_that_does_not_exist_is_refused_with_the_config(tmp_path):
    """Even for a dataset plugin that reads the path itself, where no loader would notice."""
    missing = tmp_path / "no-such-folder"
    with pytest.raises(UsageError, match=rf"data.ns2d.path={missing}: no such file or folder; give an existing "):
        build_config(model="fno", data="ns2d", profile="smoke", overrides=[f"data.ns2d.path={missing}"])


def test_a_horizon_longer_than_the_trajectories_is_capped_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    result = runner.invoke(app, ["run", "--model", "persistence", "--task", "evaluate", "--data", "ns2d", "--profile",
                                 "smoke", "--run-id", "long", "--quiet", "eval.horizon=50"])
    assert result.exit_code == 0, result.output
    log = (tmp_path / "runs" / "long" / "log.txt").read_text()
    assert "warning: dataset ns2d: horizon 50 asked, but its test trajectories hold 4 frames after t_in; " \
           "rolled out 4" in log


def test_paths_and_settings_commands_cannot_use_are_one_line_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    cases = [
        (["data", "info", "/" + "a" * 5000], "File name too long; give a shorter path"),
        (["data", "generate", "burgers1d", "--profile", "smoke", "n_frames=1"],
         "data.burgers1d.n_frames=1 is out of range; use at least 2"),
        (["run", "--model", "fno", "--data", "burgers1d", "--profile", "smoke", "--task", "evaluate",
          "task.checkpoint=" + "/" + "b" * 5000], "checkpoint '/bbb"),
        (["data", "download", "pdebench-1d-burgers", "--dest", str(tmp_path / "a-file")], "is a file; give a folder"),
        (["data", "info", "ns2d"], "'ns2d' is a registered dataset, not a file or folder; 'pdeb data generate ns2d' "
                                   "prints its cache file"),
        (["data", "verify", "ns2d"], "'pdeb data stats ns2d' takes the name itself"),
        (["data", "stats", ""], "the name is empty; give a registered dataset, a data file"),
    ]
    (tmp_path / "a-file").write_text("x")
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        last = result.output.strip().splitlines()[-1]  # a run logs its start before the task reads the checkpoint
        assert "Traceback" not in result.output and last.startswith("error: ") and message in last
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "a-file"))
    for args in (["runs"], ["data", "generate", "burgers1d", "--profile", "smoke"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "is a file, not a folder; point PDEB_HOME at a folder" in result.output
