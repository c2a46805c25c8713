"""``pdeb sweep``: the product of models, datasets and seeds, skipping what is already finished."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdebench_core.errors import UsageError
from pdebench_core.sweep import combinations, split_values
from pdebench_core.cli import app

SMOKE = ["--profile", "smoke", "--device", "cpu", "train.max_steps=2"]


def sweep(*args: str, env: dict | None = None):
    """``pdeb sweep ... --json`` in this process; ``(result, parsed JSON or None)``."""
    from pdebench_core.cli import app

    result = CliRunner().invoke(app, ["sweep", *args, "--json"], env=env)
    try:
        payload = json.loads(result.stdout[result.stdout.index("{"):])
    except ValueError:
        payload = None
    return result, payload


def store_rows(run_ids) -> list[dict]:
    from pdebench_core.results import ResultsStore

    wanted = set(run_ids)
    return [r for r in ResultsStore().rows() if r["run_id"] in wanted]


def run_dirs(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "runs").iterdir()) if (home / "runs").is_dir() else []


def test_values_split_outside_brackets_and_quotes():
    assert split_values("1e-3,1e-4", "train.lr") == ["1e-3", "1e-4"]
    assert split_values("[l2re,nrmse],[rmse]", "eval.metrics") == ["[l2re,nrmse]", "[rmse]"]
    assert split_values("'a,b',c", "x") == ["'a,b'", "c"]
    for text, problem in (("a,,b", "empty value"), ("[a,b", "unclosed"), ("a,a", "twice")):
        with pytest.raises(UsageError, match=problem):
            split_values(text, "x")


def test_points_are_the_product_and_dataset_settings_go_only_where_they_apply():
    points = combinations("fno,unet", "ns2d,swe2d+dr2d", "0,1", ["data.ns2d.n_train=4", "train.lr=1e-3,1e-4"])
    assert len(points) == 2 * 2 * 2 * 2
    first = points[0]
    assert (first.model, first.data, first.seed) == ("fno", "ns2d", 0)
    assert first.overrides == ("data.ns2d.n_train=4", "train.lr=1e-3") and first.swept == (("train.lr", "1e-3"),)
    mixture = [p for p in points if p.data == "swe2d,dr2d"]
    assert mixture and all(not any(o.startswith("data.ns2d") for o in p.overrides) for p in mixture)
    swept_for_one = combinations("fno", "ns2d,swe2d", None, ["data.ns2d.n_train=4,8"])
    assert [(p.data, p.overrides) for p in swept_for_one] == [
        ("ns2d", ("data.ns2d.n_train=4",)), ("ns2d", ("data.ns2d.n_train=8",)), ("swe2d", ())]
    with pytest.raises(UsageError, match="not in --data"):
        combinations("fno", "ns2d", None, ["data.cfd2d.n_train=4"])


def test_two_models_two_seeds_give_four_rows_and_a_rerun_starts_nothing(fresh_home):
    args = ["--model", "fno,unet", "--data", "ns2d", "--seed", "0,1", *SMOKE]
    result, outcome = sweep(*args)
    assert result.exit_code == 0, result.output
    assert outcome["started"] == 4
    entries = outcome["combinations"]
    assert [(e["model"], e["seed"], e["state"]) for e in entries] == [
        ("fno", 0, "finished"), ("fno", 1, "finished"), ("unet", 0, "finished"), ("unet", 1, "finished")]
    rows = store_rows(e["run_id"] for e in entries)
    assert sorted((r["model"], r["seed"], r["dataset"]) for r in rows) == [
        ("fno", 0, "ns2d"), ("fno", 1, "ns2d"), ("unet", 0, "ns2d"), ("unet", 1, "ns2d")]

    from pdebench_core.sweep import sweep_rows

    assert sorted(r["run_id"] for r in sweep_rows(outcome["sweep_id"])) == sorted(r["run_id"] for r in rows)
    before = run_dirs(fresh_home)
    again, second = sweep(*args)
    assert again.exit_code == 0, again.output
    assert second["sweep_id"] == outcome["sweep_id"] and second["started"] == 0
    assert [e["run_id"] for e in second["combinations"]] == [e["run_id"] for e in entries]
    assert run_dirs(fresh_home) == before and len(store_rows(before)) == 4
    board = CliRunner().invoke(app, ["leaderboard", "--sweep", outcome["sweep_id"], "--source", "local",
                                     "--per-run", "--format", "json"])
    assert board.exit_code == 0, board.output
    assert sorted(r["run_id"] for r in json.loads(board.stdout)) == sorted(r["run_id"] for r in rows)


def test_a_wider_sweep_reuses_finished_runs_of_another(fresh_home):
    _, first = sweep("--model", "fno", "--data", "ns2d", "--seed", "0", *SMOKE)
    result, wider = sweep("--model", "fno", "--data", "ns2d", "--seed", "0,1", *SMOKE)
    assert result.exit_code == 0, result.output
    assert wider["sweep_id"] != first["sweep_id"] and wider["started"] == 1
    reused = wider["combinations"][0]
    assert reused["run_id"] == first["combinations"][0]["run_id"] and reused["reused"]


def test_the_default_seed_named_or_not_is_the_same_sweep(fresh_home):
    _, first = sweep("--model", "fno", "--data", "ns2d", *SMOKE)
    result, again = sweep("--model", "fno", "--data", "ns2d", "--seed", "0", *SMOKE)
    assert result.exit_code == 0, result.output
    assert again["sweep_id"] == first["sweep_id"] and again["started"] == 0


def test_finished_run_on_other_data_is_run_again(fresh_home, monkeypatch):
    args = ["--model", "fno", "--data", "ns2d", "--seed", "0", *SMOKE]
    _, first = sweep(*args)
    monkeypatch.setattr("pdebench_core.sweep.state.current_data_hash", lambda cfg: "0" * 16)  # the data changed
    result, again = sweep(*args)
    assert result.exit_code == 0, result.output
    assert again["started"] == 1
    assert again["combinations"][0]["run_id"] == first["combinations"][0]["run_id"] + "-r2"


def test_an_unknown_device_and_a_folder_for_config_are_refused_before_any_job(fresh_home, tmp_path):
    result, _ = sweep("--model", "fno", "--data", "ns2d", "--profile", "smoke", "--device", "tpu")
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.output and not run_dirs(fresh_home)
    result, _ = sweep("--model", "fno", "--data", "ns2d", "--config", str(tmp_path))
    assert result.exit_code == 2 and "is not a file; pass a YAML file to --config" in result.output


def test_unknown_model_is_refused_before_any_job(fresh_home):
    result, _ = sweep("--model", "fno,fnoo", "--data", "ns2d", *SMOKE)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: sweep point 'fnoo ns2d' is refused, nothing was started: unknown model 'fnoo' (did you mean "
        "'fno'?); run 'pdeb models' to list them"]
    assert not (fresh_home / "runs").exists() and not (fresh_home / "sweeps").exists()


def test_a_named_sweep_keeps_its_runs_and_one_driver_at_a_time(fresh_home):
    import socket

    result, _ = sweep("--model", "fno", "--data", "ns2d", "--sweep-id", "mine", *SMOKE)
    assert result.exit_code == 0, result.output
    other, _ = sweep("--model", "unet", "--data", "ns2d", "--sweep-id", "mine", *SMOKE)
    assert other.exit_code == 2 and "sweep 'mine' already exists with other runs" in other.output
    lock = fresh_home / "sweeps" / "mine" / "driver.lock"
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # a live process holds it
    busy, _ = sweep("--model", "fno", "--data", "ns2d", "--sweep-id", "mine", *SMOKE)
    assert busy.exit_code == 2 and f"is being run by process {os.getppid()}" in busy.output


@pytest.mark.parametrize("launcher", ["submitit-slurm", "submitit-local"])
def test_submitit_launcher_without_submitit_says_what_to_install(fresh_home, monkeypatch, launcher):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    result, _ = sweep("--model", "fno", "--data", "ns2d", "--launcher", launcher, *SMOKE)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: --launcher {launcher} needs the submitit package; pip install 'pdeb[slurm]' (or use --launcher local)"]
    assert not (fresh_home / "sweeps").exists()


def test_submitit_local_refuses_more_gpus_than_the_machine_has(fresh_home, monkeypatch):
    pytest.importorskip("submitit")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result, _ = sweep("--model", "fno", "--data", "ns2d", "--launcher", "submitit-local", "--gpus", "1", *SMOKE)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --gpus 1 asks for more GPUs than the 0 this machine has; --launcher submitit-local runs the jobs "
        "here: lower --gpus, or use --launcher submitit-slurm"]


def test_failed_job_is_reported_with_its_log_and_retried_on_request(fresh_home, monkeypatch):
    from pdebench_core import runner

    real_execute = runner.execute

    def crash_seed_one(cfg, **kwargs):
        if int(cfg.run.seed) == 1:
            raise RuntimeError("simulated crash on the node")
        return real_execute(cfg, **kwargs)

    monkeypatch.setattr(runner, "execute", crash_seed_one)
    args = ["--model", "fno", "--data", "ns2d", "--seed", "0,1", *SMOKE]
    result, outcome = sweep(*args)
    assert result.exit_code == 1
    failed = outcome["combinations"][1]
    assert failed["state"] == "failed" and failed["error"] == "RuntimeError: simulated crash on the node"
    assert "simulated crash on the node" in Path(failed["log"]).read_text()  # the traceback is in the log
    assert f"log: {failed['log']}" in result.output

    untouched, second = sweep(*args)
    assert untouched.exit_code == 1 and second["started"] == 0 and "--retry-failed" in untouched.output

    monkeypatch.setattr(runner, "execute", real_execute)
    retried, third = sweep(*args, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert third["started"] == 1
    assert third["combinations"][1]["state"] == "finished"
    assert third["combinations"][1]["run_id"] == failed["run_id"] + "-r2"


def test_interrupted_sweep_continues_and_resumes_the_interrupted_run(fresh_home, monkeypatch):
    from pdebench_core import workflow

    real_evaluate = workflow.evaluate_all

    def stop_once(*a, **k):  # Ctrl-C after training, before evaluation
        monkeypatch.setattr(workflow, "evaluate_all", real_evaluate)
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "evaluate_all", stop_once)
    args = ["--model", "fno", "--data", "ns2d", "--seed", "0,1", *SMOKE]
    result, _ = sweep(*args)
    assert result.exit_code == 130
    result, outcome = sweep(*args)
    assert result.exit_code == 0, result.output
    assert outcome["started"] == 2 and [e["state"] for e in outcome["combinations"]] == ["finished", "finished"]
    first = outcome["combinations"][0]
    assert not first["run_id"].endswith("-r2")
    assert "resumed from step 2" in (fresh_home / "runs" / first["run_id"] / "log.txt").read_text()


def test_a_job_submitit_ends_and_requeues_resumes_its_run(fresh_home, monkeypatch):
    """SLURM's USR2 (time limit, preemption): submitit asks the job for its checkpoint, requeues it
    and exits the process. The run is recorded interrupted, and the requeued job (also one SLURM
    restarts by itself, whose run was left 'running' on another node) resumes it."""
    pytest.importorskip("submitit")
    import dataclasses

    from pdebench_core import paths, workflow
    from pdebench_core.rundir import RunDir
    from pdebench_core.sweep.jobs import JobSpec, RequeueableJob
    from pdebench_core.sweep.store import SweepDir

    real_evaluate = workflow.evaluate_all

    def exit_once(*a, **k):  # what submitit does after requeueing: sys.exit(-1), mid-run
        monkeypatch.setattr(workflow, "evaluate_all", real_evaluate)
        raise SystemExit(-1)

    monkeypatch.setattr(workflow, "evaluate_all", exit_once)
    result, _ = sweep("--model", "fno", "--data", "ns2d", "--sweep-id", "rq", *SMOKE)
    assert result.exit_code != 0
    run = RunDir.of("rq-000")
    assert run.read_status()["state"] == "interrupted"
    assert json.loads((SweepDir("rq").path / "jobs" / "000.json").read_text())["state"] == "interrupted"
    job_spec = JobSpec(0, 1, "rq-000", False, SweepDir("rq").load_plan().points[0].label())
    requeued = RequeueableJob().checkpoint(str(paths.home()), "rq", job_spec)
    assert requeued.args[2] == job_spec  # the same attempt: it resumes the run if it exists, else starts it
    # SLURM restarted the job itself (no checkpoint asked): the status still says running, on another node
    run.write_status("running", host="node17")
    record = RequeueableJob()(str(paths.home()), "rq", dataclasses.replace(job_spec, resume=False))
    assert record["state"] == "finished", record
    assert "resumed from step 2" in (run.path / "log.txt").read_text()


def test_submitit_local_runs_each_job_in_its_own_process(fresh_home):
    pytest.importorskip("submitit")
    result, outcome = sweep("--model", "fno", "--data", "ns2d", "--seed", "0,1", "--launcher", "submitit-local",
                            "--max-parallel", "2", "--time", "10", *SMOKE)
    assert result.exit_code == 0, result.output
    entries = outcome["combinations"]
    assert [e["state"] for e in entries] == ["finished", "finished"]
    submitted = json.loads((fresh_home / "sweeps" / outcome["sweep_id"] / "submitted.json").read_text())
    pids = {int(submitted[str(e["index"])]["job_id"]) for e in entries}
    assert len(pids) == 2 and os.getpid() not in pids
    assert len(store_rows(e["run_id"] for e in entries)) == 2
    from pdebench_core.sweep.store import SweepDir

    recorded = (fresh_home / "runs" / entries[0]["run_id"] / "command.txt").read_text().strip()
    assert recorded == SweepDir(outcome["sweep_id"]).load_plan().command and "_submit" not in recorded
    again, second = sweep("--model", "fno", "--data", "ns2d", "--seed", "0,1", *SMOKE)  # local launcher: same runs
    assert second["started"] == 0


FAKE_SBATCH = """#!/bin/sh
n=$(ls "$FAKE_SLURM" | grep -c '^sbatch-')
cp "$1" "$FAKE_SLURM/sbatch-$n.sh"
echo "Submitted batch job $((4242 + n))"
"""
FAKE_SACCT = """#!/bin/sh
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = "-j" ]; then for i in 0 1 2 3; do echo "$2_$i|$(cat "$FAKE_SLURM/state")|node1"; done; shift; fi
  shift
done
"""


def _fake_slurm(tmp_path: Path) -> dict:
    """``srun``, ``sbatch`` (keeps each submission file, answers a job id) and ``sacct`` (answers the
    state written in ``state``) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", "#!/bin/sh\nexit 1\n"), ("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    (tmp_path / "state").write_text("PENDING\n")
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM": str(tmp_path)}


def test_slurm_launcher_submits_one_job_array_and_tracks_it(fresh_home, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    fake = tmp_path / "slurm"
    fake.mkdir()
    for key, value in _fake_slurm(fake).items():
        monkeypatch.setenv(key, value)
    args = ["--model", "fno", "--data", "ns2d", "--seed", "0,1", "--launcher", "submitit-slurm", "--partition", "gpu",
            "--gpus", "1", "--time", "90", "--mem", "16", "--max-parallel", "1", "--slurm-arg", "account=proj1",
            "--no-wait", *SMOKE]
    result, outcome = sweep(*args)
    assert result.exit_code == 0, result.output
    script = (fake / "sbatch-0.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=90", "#SBATCH --mem=16GB",
                 "#SBATCH --array=0-1%1", "#SBATCH --account=proj1"):
        assert line in script
    assert [e["state"] for e in outcome["combinations"]] == ["queued", "queued"]

    pending, second = sweep(*args)  # still queued on the cluster: nothing is submitted twice
    assert second["started"] == 0 and "2 still running elsewhere" in pending.output
    assert not (fake / "sbatch-1.sh").exists()

    (fake / "state").write_text("FAILED\n")  # the jobs died on their node without a result
    failed, third = sweep(*args)
    assert failed.exit_code == 1 and third is not None, (failed.output, failed.exception)
    assert third["started"] == 0
    assert [e["state"] for e in third["combinations"]] == ["failed", "failed"]
    assert third["combinations"][0]["log"].endswith("4242_0_0_log.err")
    (fake / "state").write_text("PENDING\n")
    retried, fourth = sweep(*args, "--retry-failed")
    assert fourth["started"] == 2 and (fake / "sbatch-1.sh").exists()
    assert fourth["combinations"][0]["run_id"].endswith("-r2")


def test_a_damaged_plan_is_named_and_the_same_command_recovers_once_it_is_moved_aside(fresh_home):
    args = ["--model", "persistence", "--data", "ns2d", "--task", "evaluate", "--sweep-id", "planned", *SMOKE]
    result, _ = sweep(*args)
    assert result.exit_code == 0, result.output
    plan = fresh_home / "sweeps" / "planned" / "plan.json"
    plan.write_text("{")  # cut off
    result, _ = sweep(*args)
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "the plan of sweep 'planned'" in output and "is damaged; move it aside" in output
    plan.rename(plan.with_name("plan.json.damaged"))
    result, outcome = sweep(*args)
    assert result.exit_code == 0, result.output
    assert outcome["started"] == 0 and [e["state"] for e in outcome["combinations"]] == ["finished"]


def test_a_file_where_the_sweeps_folder_belongs_is_one_line(fresh_home):
    (fresh_home / "sweeps").parent.mkdir(parents=True, exist_ok=True)
    (fresh_home / "sweeps").write_text("not a folder")
    result, _ = sweep("--model", "persistence", "--data", "ns2d", "--task", "evaluate", *SMOKE)
    assert result.exit_code == 2 and "is not a folder" in result.output and "Traceback" not in result.output


def test_the_leaderboard_of_a_sweep_without_a_finished_run_says_so(fresh_home):
    args = ["--model", "fno", "--data", "ns2d", "--sweep-id", "all-failed", *SMOKE, "train.lr=1e30",
            "train.scheduler=constant"]
    result, _ = sweep(*args)
    assert result.exit_code == 1, result.output  # the one point diverged
    from pdebench_core.cli import app

    board = CliRunner().invoke(app, ["leaderboard", "--sweep", "all-failed"])
    assert board.exit_code == 2 and "sweep 'all-failed' has no finished run yet" in " ".join(board.output.split())


def test_a_run_with_other_sinks_counts_as_the_same_experiment(fresh_home):
    """Where results go does not change them: a finished 'pdeb run' with an extra sink is the
    sweep's combination, and it is pooled with it on the leaderboard."""
    from pdebench_core.cli import app
    from pdebench_core.config import build_config, config_hash

    base = build_config(model="fno", data="ns2d", profile="smoke", device="cpu", overrides=["train.max_steps=2"])
    other = build_config(model="fno", data="ns2d", profile="smoke", device="cpu",
                         overrides=["train.max_steps=2", "run.sinks=[jsonl,sqlite,tensorboard]"])
    assert config_hash(base) == config_hash(other)
    run = CliRunner().invoke(app, ["run", "--model", "fno", "--data", "ns2d", *SMOKE, "run.sinks=[sqlite]",
                                   "--run-id", "sqlite-only", "--quiet"])
    assert run.exit_code == 0, run.output
    result, outcome = sweep("--model", "fno", "--data", "ns2d", *SMOKE)
    assert result.exit_code == 0, result.output
    assert outcome["started"] == 0 and outcome["combinations"][0]["run_id"] == "sqlite-only"


@pytest.mark.parametrize("stop, code, line", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "stopped by SIGTERM")])
def test_a_stop_sent_to_the_submitit_local_driver_alone_stops_its_jobs(fresh_home, stop, code, line):
    """`kill -INT DRIVER` (not a terminal's Ctrl-C, which reaches the jobs too): the job must not
    train on, orphaned; it records its run as interrupted, for the next sweep to resume."""
    pytest.importorskip("submitit")
    import signal
    import subprocess
    import time

    from pdebench_core.locks import process_alive
    from pdebench_core.sweep.store import SweepDir

    driver = subprocess.Popen(
        [sys.executable, "-m", "pdebench_core.cli", "sweep", "--model", "fno", "--data", "ns2d", "--launcher",
         "submitit-local", "--profile", "smoke", "--device", "cpu", "train.max_steps=100000", "train.checkpoint_every=5"],
        env={**os.environ, "PDEB_HOME": str(fresh_home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, record = time.time() + 120, {}
        while time.time() < deadline and not list(fresh_home.glob("runs/*/checkpoints/last.pt")):
            time.sleep(0.5)
        [sweep_dir] = list((fresh_home / "sweeps").iterdir())
        record = SweepDir(sweep_dir.name).read_job(0)
        assert record["state"] == "running" and process_alive(record["pid"])
        driver.send_signal(getattr(signal, stop))
        _, err = driver.communicate(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
        alive = record.get("pid") and process_alive(record["pid"], record.get("process"))
        if alive:  # the job this test failed to stop: not left behind
            os.kill(record["pid"], signal.SIGKILL)
    assert not alive
    assert driver.returncode == code and err.strip().splitlines()[-1] == line, err
    assert SweepDir(sweep_dir.name).read_job(0)["state"] == "interrupted"


def test_a_combination_another_process_is_training_is_not_started_twice(fresh_home):
    """Two sweeps that share a combination, or a sweep beside a 'pdeb run' of it: the run in
    progress has no result yet, but its live status says it is being trained."""
    import shutil
    import socket
    import subprocess

    from pdebench_core.locks import process_identity
    from pdebench_core.rundir import RunDir

    args = ["--model", "fno", "--data", "ns2d", "--seed", "0", *SMOKE]
    result, first = sweep(*args)
    assert result.exit_code == 0, result.output
    done = RunDir.of(first["combinations"][0]["run_id"])
    other = RunDir(done.path.parent / "trained-elsewhere")  # the same config, held by a live process
    shutil.copytree(done.path, other.path)
    (fresh_home / "results.sqlite").unlink()  # no result of it yet
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        status = json.loads((other.path / "status.json").read_text())
        status.update(state="running", pid=holder.pid, process=process_identity(holder.pid), host=socket.gethostname())
        (other.path / "status.json").write_text(json.dumps(status))
        shutil.rmtree(done.path)
        result, second = sweep("--model", "fno", "--data", "ns2d", "--seed", "0,1", *SMOKE)  # another sweep
        assert second["sweep_id"] != first["sweep_id"]
        entry = second["combinations"][0]
        assert second["started"] == 1 and entry["note"] == "running elsewhere as trained-elsewhere", entry
        assert (entry["state"], entry["run_id"]) == ("running", "trained-elsewhere")  # the table names it too
    finally:
        holder.kill()
