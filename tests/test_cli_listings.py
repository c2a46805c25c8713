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
