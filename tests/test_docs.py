"""The documentation stays true to the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pdebench_core import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def test_every_hook_has_a_section_headed_by_its_signature():
    text = (ROOT / "docs" / "plugin-hooks.md").read_text()
    headings = set(re.findall(r"^## (\w+\(.*\))$", text, flags=re.M))
    specs = {name: fn for name, fn in vars(hookspecs).items()
             if callable(fn) and hasattr(fn, "pdeb_spec")}
    assert specs, "no hook specifications found"
    for name, fn in specs.items():
        params = ", ".join(inspect.signature(fn).parameters)
        assert f"{name}({params})" in headings, f"docs/plugin-hooks.md lacks '## {name}({params})'"
    assert len(headings) == len(specs), "docs/plugin-hooks.md documents a hook that does not exist"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    commands = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert "pdeb run --model dpot --data ns2d" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1].strip() in (ROOT / ".ci" / "run").read_text()
