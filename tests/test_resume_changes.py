"""--resume with other options: safe changes apply, anything else is refused naming the key."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pdebench_core.cli import app
from pdebench_core.config import build_config
from pdebench_core.runner import execute

runner = CliRunner()


@pytest.fixture
def finished_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))

    def make(run_id, *extra):
        cfg = build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id=run_id,
                           overrides=["train.max_steps=4", *extra])
        return execute(cfg, quiet=True)

    return make


@pytest.mark.parametrize("args, message", [
    (["--seed", "5"], r"run.seed=5 differs from the run's run.seed=0"),
    (["train.lr=0.5"], r"train.lr=0.5 differs from the run's train.lr="),
    (["train.max_steps=40"], r"train.max_steps=40 differs .*more steps need train.scheduler=constant"),
    (["train.max_steps=2"], r"train.max_steps=2 differs .*may change when resuming, and train.max_steps may grow "
                            r"under train.scheduler=constant"),
    (["--run-id", "other"], r"--run-id other and --resume base together"),
    (["--data", "dr2d"], r"data=\['dr2d'\] differs from the run's data=\['ns2d'\]"),
    (["--model", "ffno"], r"model.name=ffno differs from the run's model.name=fno"),
])
def test_conflicting_resume_options_are_named(finished_run, args, message):
    import re

    finished_run("base")
    result = runner.invoke(app, ["run", "--resume", "base", *args])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # the console may wrap the line
    assert re.search(message, output) and "no model given" not in output


def test_only_how_a_run_is_fed_or_watched_may_change():
    """The operational settings (also left out when the leaderboard pools seeds) may change,
    a per-dataset preload included; a setting of the data itself may not."""
    import copy

    from pdebench_core.errors import UsageError
    from pdebench_core.resume import check_changes

    saved = {"run": {"seed": 0, "sinks": ["jsonl"]}, "train": {"lr": 1e-3, "log_every": 10},
             "data": {"ns2d": {"n_train": 8, "preload": False}}, "sinks": {"csv": {"path": "a.csv"}}}
    fed_otherwise = copy.deepcopy(saved)
    fed_otherwise["run"]["sinks"], fed_otherwise["train"]["log_every"] = ["csv"], 5
    fed_otherwise["data"]["ns2d"]["preload"], fed_otherwise["sinks"]["csv"]["path"] = True, "b.csv"
    assert set(check_changes("r", saved, fed_otherwise)) == {"run.sinks", "train.log_every", "data.ns2d.preload",
                                                             "sinks.csv.path"}
    other_data = copy.deepcopy(saved)
    other_data["data"]["ns2d"]["n_train"] = 16
    with pytest.raises(UsageError, match=r"data.ns2d.n_train=16 differs .*only run.sinks, .*data.<name>.preload may"):
        check_changes("r", saved, other_data)


def test_more_steps_on_a_constant_schedule_extend_the_run(finished_run, tmp_path):
    ctx = finished_run("grow", "train.scheduler=constant", "train.checkpoint_every=2")
    result = runner.invoke(app, ["run", "--resume", "grow", "--quiet", "train.max_steps=6", "train.log_every=3"])
    assert result.exit_code == 0, result.output
    log = (ctx.run_dir / "log.txt").read_text()
    assert "resumed from step 4" in log and "trained 2 steps (from step 4 to 6)" in log
    assert "max_steps: 6" in (ctx.run_dir / "config.yaml").read_text()


def test_resume_may_choose_other_sinks(finished_run):
    """run.sinks is where results go, not what is optimised: the saved config's default sqlite
    section does not make a resume with other sinks refuse."""
    import json

    ctx = finished_run("resinked")
    result = runner.invoke(app, ["run", "--resume", "resinked", "--quiet", "run.sinks=[jsonl]"])
    assert result.exit_code == 0, result.output
    assert json.loads((ctx.run_dir / "results.jsonl").read_text().splitlines()[-1])["run_id"] == "resinked"
    refused = runner.invoke(app, ["run", "--resume", "resinked", "--quiet", "run.sinks=[jsonl]",
                                  "sinks.sqlite.path=/tmp/x.sqlite"])
    assert refused.exit_code == 2 and "not in run.sinks" in refused.output


def test_plain_resume_still_works_and_clears_what_a_killed_save_left(finished_run):
    import subprocess
    import sys

    ctx = finished_run("plain")
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = ctx.run_dir / "checkpoints" / f".step-00000004.pt.{dead}.tmp"  # a save killed with kill -9
    left.write_bytes(b"half a checkpoint")
    result = runner.invoke(app, ["run", "--resume", "plain", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not left.exists()


def test_a_config_file_given_on_resume_is_checked_like_overrides(finished_run, tmp_path):
    finished_run("filed")
    changed, safe = tmp_path / "changed.yaml", tmp_path / "safe.yaml"
    changed.write_text("train:\n  lr: 0.5\n")
    safe.write_text("train:\n  log_every: 3\n")
    refused = runner.invoke(app, ["run", "--resume", "filed", "--config", str(changed)])
    assert refused.exit_code == 2 and "train.lr=0.5 differs from the run's train.lr" in " ".join(refused.output.split())
    accepted = runner.invoke(app, ["run", "--resume", "filed", "--quiet", "--config", str(safe)])
    assert accepted.exit_code == 0, accepted.output
    from pdebench_core.resume import resumed_config

    # an override outranks the --config file's value of the same key, as for a new run
    assert resumed_config("filed", config_file=str(safe), overrides=["train.log_every=7"]).train.log_every == 7


def test_resume_reproduce_and_report_rebuild_the_same_config(finished_run):
    from omegaconf import OmegaConf

    from pdebench_core.config import build_config
    from pdebench_core.rebuild import rebuild
    from pdebench_core.report import reproduction
    from pdebench_core.resume import resumed_config

    ctx = finished_run("same")
    original = OmegaConf.to_container(ctx.cfg, resolve=True)
    repro = reproduction("same", "rerun")
    assert repro.problem is None
    rerun = build_config(config_file=repro.argv[repro.argv.index("--config") + 1], run_id="rerun")
    for cfg in (resumed_config("same"), rebuild(ctx.run_dir).cfg, rerun):
        rebuilt = OmegaConf.to_container(cfg, resolve=True)
        assert rebuilt == {**original, "run": {**original["run"], "run_id": cfg.run.run_id}}
    assert rerun.run.run_id == "rerun"


def test_a_saved_config_that_no_longer_builds_is_named_before_a_rerun(finished_run):
    ctx = finished_run("stale")
    config = ctx.run_dir / "config.yaml"
    config.write_text(config.read_text().replace("train:\n", "train:\n  renamed_setting: 1\n", 1))
    result = runner.invoke(app, ["reproduce", "stale", "--execute"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "cannot rerun 'stale': its saved config no longer builds" in output and "renamed_setting" in output


def test_a_checkpoint_of_another_run_is_refused(finished_run):
    """Resuming it would report the other run's numbers under this run's name."""
    import shutil

    mine = finished_run("mine")
    other = finished_run("other", "train.lr=0.002")
    shutil.copyfile(other.run_dir / "checkpoints" / "last.pt", mine.run_dir / "checkpoints" / "last.pt")
    status = (mine.run_dir / "status.json").read_text()
    result = runner.invoke(app, ["run", "--resume", "mine", "--quiet"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "was written by run 'other' (train.lr=0.002 there, 0.001 in this run)" in output
    assert (mine.run_dir / "status.json").read_text() == status  # still the run's own finished record


@pytest.mark.parametrize("scheduler, theirs, ours, refused", [
    ("constant", {"max_steps": 4}, {"max_steps": 6}, None),  # written before the run was extended
    ("constant", {"max_steps": 6}, {"max_steps": 4}, None),  # by an extension that failed: the run kept 4
    ("constant", {"lr": 0.002}, {"lr": 0.001}, "train.lr=0.002 there, 0.001 in this run"),
    ("onecycle", {"seed": 1}, {"seed": 0}, "train.seed=1 there, 0 in this run"),
])
def test_a_checkpoint_written_with_other_settings_is_refused(scheduler, theirs, ours, refused):
    from pdebench_core.errors import UsageError
    from pdebench_core.resume import check_checkpoint_config

    def config(train, run_id="mine"):
        return {"run": {"run_id": run_id, "seed": 0}, "train": {"scheduler": scheduler, **train}}

    if refused is None:
        check_checkpoint_config("last.pt", config(theirs), config(ours))
    else:
        with pytest.raises(UsageError, match=f"was written by another run \\({refused}\\)"):
            check_checkpoint_config("last.pt", config(theirs), config(ours))
    # A copy of another run's folder resumes when everything matches, its step count too: the
    # count of a foreign checkpoint would report that run's numbers, or fail mid-schedule.
    check_checkpoint_config("last.pt", config(theirs, "original"), config(theirs))
    if theirs != ours:
        with pytest.raises(UsageError, match="was written by run 'original' \\("):
            check_checkpoint_config("last.pt", config(theirs, "original"), config(ours))


def test_a_failed_extension_leaves_the_finished_runs_config_and_results(finished_run):
    ctx = finished_run("kept", "train.scheduler=constant", "train.checkpoint_every=2")
    config = (ctx.run_dir / "config.yaml").read_text()
    for checkpoint in (ctx.run_dir / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # every checkpoint damaged
    result = runner.invoke(app, ["run", "--resume", "kept", "--quiet", "train.max_steps=6"])
    assert result.exit_code == 2 and "no checkpoint in" in " ".join(result.output.split())
    assert (ctx.run_dir / "config.yaml").read_text() == config  # still the 4 steps that ran
    assert '"state": "finished"' in (ctx.run_dir / "status.json").read_text()


def test_steps_logged_after_the_last_checkpoint_are_not_logged_twice(finished_run):
    import json

    ctx = finished_run("twice", "train.scheduler=constant", "train.checkpoint_every=2", "train.log_every=1")
    (ctx.run_dir / "checkpoints" / "last.pt").unlink()  # as if killed between checkpoints 2 and 4
    (ctx.run_dir / "checkpoints" / "step-00000004.pt").unlink()
    result = runner.invoke(app, ["run", "--resume", "twice", "--quiet"])
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (ctx.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 4


def test_a_run_still_training_is_not_resumed_by_a_second_process(finished_run):
    import json
    import subprocess
    import sys

    ctx = finished_run("busy")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        status = json.loads((ctx.run_dir / "status.json").read_text())
        from pdebench_core.locks import process_identity

        status.update(state="running", pid=holder.pid, process=process_identity(holder.pid))
        (ctx.run_dir / "status.json").write_text(json.dumps(status))
        result = runner.invoke(app, ["run", "--resume", "busy", "--quiet"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert f"cannot resume 'busy': it is still running (process {holder.pid}" in " ".join(result.output.split())


def test_a_run_that_read_a_file_can_be_resumed_and_rerun(finished_run, tmp_path):
    from pdebench_core.data import write_canonical
    from pdebench_core.spec import DataSpec
    import numpy as np

    traj = np.random.default_rng(0).random((5, 14, 16, 16, 1)).astype("float32")
    path = write_canonical(tmp_path / "ns.h5", {"train": traj[:3], "val": traj[3:4], "test": traj[4:]},
                           DataSpec(name="ns2d", fields=("vorticity",), spatial_shape=(16, 16), t_in=10))
    finished_run("from-file", f"data.ns2d.path={path}", "train.scheduler=constant")
    result = runner.invoke(app, ["run", "--resume", "from-file", "--quiet", "train.max_steps=6"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["reproduce", "from-file"])
    assert again.exit_code == 0, again.output


def test_a_run_left_running_on_another_machine_can_be_marked_interrupted_and_resumed(finished_run):
    """From here a process on another machine cannot be checked: the user, who knows its job
    ended, marks the run interrupted, and --resume then takes it."""
    import json

    from pdebench_core.rundir import RunDir

    finished_run("elsewhere")
    run = RunDir.of("elsewhere")
    run.write_status("running", started=1.0)
    status = json.loads(run.status_file.read_text())
    status["host"] = "node-a"
    run.status_file.write_text(json.dumps(status))
    refused = runner.invoke(app, ["run", "--resume", "elsewhere", "--quiet"])
    assert refused.exit_code == 2 and "pdeb runs --mark-interrupted elsewhere" in " ".join(refused.output.split())
    marked = runner.invoke(app, ["runs", "--mark-interrupted", "elsewhere", "--json"])
    assert marked.exit_code == 0, marked.output
    status = run.read_status()
    assert status["state"] == "interrupted" and status["started"] == 1.0 and "node-a was gone" in status["error"]
    again = runner.invoke(app, ["runs", "--mark-interrupted", "elsewhere"])
    assert again.exit_code == 2 and "is interrupted, not running" in again.output
    assert runner.invoke(app, ["run", "--resume", "elsewhere", "--quiet"]).exit_code == 0
    run.write_status("running")  # this very process, alive here
    alive = runner.invoke(app, ["runs", "--mark-interrupted", "elsewhere"])
    assert alive.exit_code == 2 and "still running" in alive.output
