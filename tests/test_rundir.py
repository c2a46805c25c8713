"""The run directory: atomic status, damaged entries, interrupted runs, exclusive ids, resume lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pdebench_core.cli import app
from pdebench_core.errors import UsageError
from pdebench_core.rundir import RunDir, list_runs

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


#: The sections every saved run config has, and no more.
MINIMAL_CONFIG = "run: {task: train}\nmodel: {name: fno}\ndata: {ns2d: {}}\ntrain: {}\neval: {}\n"


def test_runs_lists_damaged_entries_instead_of_crashing(home):
    good = RunDir.create("good-run")
    good.write_status("finished")
    good.config_file.write_text(MINIMAL_CONFIG)
    garbled = RunDir.create("garbled-config")
    garbled.write_status("finished")
    garbled.config_file.write_text("run: [unclosed")
    unconfigured = RunDir.create("no-config")
    unconfigured.write_status("finished")  # its config.yaml was deleted: it cannot be resumed or reported
    broken = RunDir.create("broken-run")
    broken.status_file.write_text('{"state": "finis')  # cut off mid-write by an older version
    odd = RunDir.create("odd-run")
    odd.status_file.write_text("[1, 2]")
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    states = {item["run_id"]: item["state"] for item in json.loads(result.stdout)}
    assert states == {"good-run": "finished", "broken-run": "damaged", "odd-run": "damaged", "no-config": "damaged",
                      "garbled-config": "damaged"}
    table = runner.invoke(app, ["runs"], terminal_width=60)
    assert table.exit_code == 0 and "broken-run" in table.output and "Traceback" not in table.output


def test_status_is_written_atomically_with_pid_and_host(home, monkeypatch):
    run = RunDir.create("atomic")
    run.write_status("finished", results={"ns2d": {"l2re": 0.1}})

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(UsageError, match=r"could not write .*status\.json \(.* free\): \[Errno 28\]"):
        run.write_status("failed", error="late")
    status = json.loads(run.status_file.read_text())  # the previous status is intact
    assert status["state"] == "finished" and status["pid"] == os.getpid() and status["host"] == socket.gethostname()
    assert [p.name for p in run.path.iterdir()] == ["status.json"]


def test_dead_running_process_shows_as_interrupted(home):
    run = RunDir.create("killed")
    run.config_file.write_text(MINIMAL_CONFIG)
    run.write_status("running")
    assert run.state() == "running"  # this process is alive
    status = json.loads(run.status_file.read_text())
    status["pid"] = _dead_pid()
    run.status_file.write_text(json.dumps(status))
    assert run.state() == "interrupted"
    assert {i["run_id"]: i["state"] for i in list_runs()} == {"killed": "interrupted"}


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_a_reused_process_id_does_not_keep_a_dead_run_running(home):
    """After a reboot (or once the id is reused) another live process may hold the recorded pid:
    the recorded process identity tells them apart, so the run can be resumed."""
    run = RunDir.create("rebooted")
    run.write_status("running")
    status = json.loads(run.status_file.read_text())
    assert status["process"] and run.state() == "running"
    status["process"] = "another-boot:12345"  # this pid, but not this process
    run.status_file.write_text(json.dumps(status))
    assert run.state() == "interrupted"


def test_run_ids_are_created_exclusively(home):
    RunDir.create("taken")
    with pytest.raises(UsageError, match="run 'taken' already exists"):
        RunDir.create("taken")


def test_second_concurrent_resume_is_refused_and_stale_lock_taken_over(home):
    run = RunDir.create("locked")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (run.path / "resume.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(UsageError, match=f"already being resumed by process {holder.pid}"):
            with run.resume_lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    with run.resume_lock():  # the holder died: its lock is stale
        assert json.loads((run.path / "resume.lock").read_text())["pid"] == os.getpid()
    assert not (run.path / "resume.lock").exists()


def test_ctrl_c_marks_the_run_interrupted_not_failed(home, monkeypatch):
    from pdebench_core import runner
    from pdebench_core.config import build_config

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "generate_data_first", interrupt)
    cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu",
                       run_id="stopped")
    with pytest.raises(KeyboardInterrupt):
        runner.execute(cfg, quiet=True)
    status = RunDir.of("stopped").read_status()
    assert status["state"] == "interrupted" and status["error"] == "interrupted by the user"


TERMINATE_NOW = "    os.kill(os.getpid(), signal.SIGTERM)\n"
# The signal lands in a weakref callback, where Python prints and drops the exceptions raised.
TERMINATE_IN_A_CALLBACK = ("    thing = Thing()\n"
                           "    ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGTERM))\n"
                           "    del thing\n")


@pytest.mark.parametrize("terminate", [TERMINATE_NOW, TERMINATE_IN_A_CALLBACK], ids=["now", "in-a-callback"])
def test_sigterm_marks_the_run_interrupted_and_exits_like_a_killed_command(home, terminate):
    """A scheduler's SIGTERM (SLURM's time limit, kill) is recorded like Ctrl-C, not left "running"."""
    code = (
        "import os, signal, time, weakref\n"
        "from pdebench_core import runner\n"
        "from pdebench_core.cli import app\n"
        "class Thing: pass\n"
        "def terminated(*args, **kwargs):\n"
        f"{terminate}"
        "    end = time.time() + 30\n"
        "    while time.time() < end: pass\n"
        "runner.generate_data_first = terminated\n"
        "app(['run', '--model', 'persistence', '--data', 'ns2d', '--task', 'evaluate', '--profile', 'smoke',\n"
        "     '--device', 'cpu', '--run-id', 'terminated'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PDEB_HOME": str(home)})
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (143, "stopped by SIGTERM"), proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    status = RunDir.of("terminated").read_status()
    assert status["state"] == "interrupted" and status["error"] == "stopped by SIGTERM"


def test_a_run_gives_back_the_termination_handlers_it_installs(home):
    import signal

    from pdebench_core import runner
    from pdebench_core.config import build_config

    before = signal.getsignal(signal.SIGTERM)
    cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu",
                       run_id="handlers")
    runner.execute(cfg, quiet=True)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_file_where_the_runs_folder_belongs_is_named(home):
    home.mkdir(parents=True)
    (home / "runs").write_text("not a folder")
    with pytest.raises(UsageError, match="runs is not a folder; runs are kept under"):
        RunDir.create("first")


def test_an_empty_resume_lock_left_by_a_full_disk_is_taken_over(home):
    run = RunDir.create("half-locked")
    run.resume_lock_file.write_text("")
    old = run.resume_lock_file.stat().st_mtime - 60
    os.utime(run.resume_lock_file, (old, old))
    with run.resume_lock():
        assert json.loads(run.resume_lock_file.read_text())["pid"] == os.getpid()


def test_a_run_directory_that_cannot_be_written_is_refused_before_any_step(home, monkeypatch):
    import errno
    import tempfile

    from pdebench_core.config import build_config
    from pdebench_core.errors import DataError
    from pdebench_core.runner import execute

    def cfg(steps):
        return build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id="read-only",
                            overrides=[f"train.max_steps={steps}", "train.checkpoint_every=2", "train.scheduler=constant",
                                       "model.width=4", "model.modes=2"])

    execute(cfg(2), quiet=True)
    run = RunDir.of("read-only")
    records = run.metrics_file.read_text()
    real = tempfile.mkstemp

    def refuse_checkpoints(prefix="", dir=None, **kwargs):
        if dir is not None and str(dir).endswith("checkpoints"):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse_checkpoints)
    with pytest.raises(DataError, match=r"could not write .*checkpoints: .*Permission denied.*fix its permissions"):
        execute(cfg(40), resume=True, quiet=True)
    assert run.metrics_file.read_text() == records  # refused before any step of the resumed run
