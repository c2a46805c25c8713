"""The listing commands (``pdeb datasets``, ``tasks``, ``metrics``, ``sinks``) and the error
handling scripts share with commands (``run_script``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pdebench_core.cli import app
from pdebench_core.cli_common import run_script
from pdebench_core.errors import UsageError


@pytest.mark.parametrize("command, member, column", [
    ("datasets", "ns2d", "fields"), ("tasks", "train", "description"), ("metrics", "l2re", "reduction"),
    ("metrics", "l2re", "better"), ("sinks", "jsonl", "description"),
])
def test_each_listing_prints_its_kind_as_json_and_as_a_table(command, member, column):
    as_json = CliRunner().invoke(app, [command, "--json"])
    assert as_json.exit_code == 0, as_json.output
    names = [item["name"] for item in json.loads(as_json.output)]
    assert member in names
    table = CliRunner().invoke(app, [command])
    assert table.exit_code == 0 and member in table.output and column in table.output


@pytest.mark.parametrize("command", ["datasets", "models", "plugins", "metrics"])
def test_a_narrow_terminal_never_cuts_a_name(command, monkeypatch):
    """Names are what users type (--data cfd2d-m1e-1-eta1e-1): each stands whole on one line."""
    monkeypatch.setenv("COLUMNS", "60")
    names = [item["name"] for item in json.loads(CliRunner().invoke(app, [command, "--json"]).output)]
    table = CliRunner().invoke(app, [command])
    assert table.exit_code == 0 and "…" not in table.output
    lines = table.output.splitlines()
    assert all(any(f" {name} " in line for line in lines) for name in names)


def test_listing_help_keeps_its_one_line_summary():
    result = CliRunner().invoke(app, ["sinks", "--help"])
    assert result.exit_code == 0 and "List registered result sinks." in result.output


def test_run_script_turns_a_usage_error_into_one_line_and_exit_code_2(capsys):
    def main() -> None:
        raise UsageError("unknown dataset 'nope'")

    with pytest.raises(SystemExit) as exited:
        run_script(main)
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: unknown dataset 'nope'\n"


def test_run_script_lets_a_normal_main_finish():
    calls = []
    run_script(lambda: calls.append(1))
    assert calls == [1]


def test_models_counts_parameters_on_a_dataset_read_from_a_file(tmp_path, monkeypatch):
    """A dataset that needs a path takes its settings after --data, as pdeb run does."""
    import h5py
    import numpy as np

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    path = tmp_path / "burgers.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.random.default_rng(0).standard_normal((12, 21, 32)).astype(np.float32)
    result = CliRunner().invoke(app, ["models", "--data", "burgers1d", f"data.burgers1d.path={path}", "--profile",
                                      "smoke", "--json"])
    assert result.exit_code == 0, result.output
    counts = {item["name"]: item["parameters"] for item in json.loads(result.output)}
    assert counts["fno"] > 0 and counts["persistence"] == 0
    alone = CliRunner().invoke(app, ["models", "data.burgers1d.path=x"])
    assert alone.exit_code == 2 and "add --data NAME" in alone.output
    for stray in (f"data.burgers.path={path}", "model.width=999"):  # never ignored: pdeb run would refuse them
        refused = CliRunner().invoke(app, ["models", "--data", "burgers1d", f"data.burgers1d.path={path}", stray])
        assert refused.exit_code == 2 and "is not one of dataset 'burgers1d'" in refused.output, refused.output
    mixed = CliRunner().invoke(app, ["models", "--data", "burgers1d", f"data.burgers1d.path={path}", "n_train=4"])
    assert mixed.exit_code == 2 and "the settings mix data.burgers1d.<key>=value and <key>=value" in mixed.output


def test_listings_show_each_components_settings_and_defaults():
    """What task.<key> (or model.<key>) a user can set, without reading the source."""
    tasks = {t["name"]: t for t in json.loads(CliRunner().invoke(app, ["tasks", "--json"]).output)}
    assert tasks["train"]["settings"] == {"evaluate": True, "allow_test_overlap": False, "t_ar": 1,
                                          "pushforward": False}
    models = {m["name"]: m for m in json.loads(CliRunner().invoke(app, ["models", "--json"]).output)}
    assert models["fno"]["settings"]["width"] == 20
    assert models["ffno"]["settings"]["width"] == 32  # under the small profile, which a run gets by default
    assert models["persistence"]["settings"] == {} and models["persistence"]["required_settings"] == []  # nothing to set



@pytest.mark.parametrize("args", [("leaderboard", "--source", "pdebench"), ("models", "--json"), ("--help",)])
def test_a_reader_that_stops_early_ends_the_command_quietly(args, tmp_path):
    """``pdeb leaderboard | head``: the closed pipe ends the command as SIGPIPE ends a Unix tool
    (exit 141), with nothing on stderr, not rich's exit 1 or a traceback."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command starts, however fast it writes
    try:
        process = subprocess.Popen([sys.executable, "-m", "pdebench_core.cli", *args], stdout=write_end,
                                   stderr=subprocess.PIPE, env={**os.environ, "PDEB_HOME": str(tmp_path)})
    finally:
        os.close(write_end)
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert stderr == ""


def test_a_run_outlives_a_reader_that_stops_early(tmp_path):
    """``pdeb run ... 2>&1 | head -1``: the run goes on to the end, logging to its log only."""
    import os
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data",
                                "burgers1d", "--profile", "smoke", "--run-id", "piped", "train.max_steps=3"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PDEB_HOME": str(tmp_path)})
    process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=300) == 0
    status = json.loads((tmp_path / "runs" / "piped" / "status.json").read_text())
    assert status["state"] == "finished"
    assert "run piped finished" in (tmp_path / "runs" / "piped" / "log.txt").read_text()


def test_a_run_with_its_output_streams_closed_finishes(tmp_path):
    """``pdeb run ... >&- 2>&-`` (a daemon, a closed terminal): Python has no stdout or stderr at all;
    the run still finishes, with exit 0, and its results printed nowhere."""
    import os
    import shlex
    import subprocess
    import sys

    command = " ".join(shlex.quote(part) for part in [
        sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data", "burgers1d", "--profile",
        "smoke", "--run-id", "closed", "train.max_steps=2"])
    result = subprocess.run(["bash", "-c", f"{command} >&- 2>&-"], env={**os.environ, "PDEB_HOME": str(tmp_path)},
                            timeout=300)
    assert result.returncode == 0
    assert json.loads((tmp_path / "runs" / "closed" / "status.json").read_text())["state"] == "finished"
