"""The documentation stays true to the code."""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest

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


def _python_block_after(doc: str, heading: str) -> str:
    text = (ROOT / "docs" / doc).read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_worked_task_of_writing_plugins_runs_as_documented(tmp_path, monkeypatch):
    import types

    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.results import ResultsStore
    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    module = types.ModuleType("doc_task")
    monkeypatch.setitem(sys.modules, "doc_task", module)  # dataclasses look their module up there
    exec(compile(_python_block_after("writing-plugins.md", "### A task"), "doc_task", "exec"), module.__dict__)
    plugins.register_plugin(module, name="doc-task")
    try:
        cfg = build_config(model="fno", data="ns2d", task="noisy-train", profile="smoke", device="cpu",
                           overrides=["task.noise=0.01", "train.max_steps=2", "model.width=4", "model.modes=2"])
        assert execute(cfg, quiet=True).results["ns2d"]["l2re"] > 0
    finally:
        plugins.unregister_plugin("doc-task")
    row = ResultsStore().rows()[0]
    assert row["task"] == "noisy-train" and row["extra"]["noise"] == 0.01


def test_the_csv_sink_of_the_hook_reference_runs_as_documented(tmp_path, monkeypatch):
    """The example subclasses pdebench_core.Sink and writes only write_result: a run reaches it."""
    import csv
    import types

    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    module = types.ModuleType("doc_sink")
    monkeypatch.setitem(sys.modules, "doc_sink", module)
    code = textwrap.dedent(_python_block_after("plugin-hooks.md", "## register_sinks"))  # the block is indented
    exec(compile(code, "doc_sink", "exec"), module.__dict__)
    plugins.register_plugin(module, name="doc-sink")
    try:
        cfg = build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke", device="cpu",
                           overrides=["run.sinks=[csv]"])
        outcome = execute(cfg, quiet=True)
    finally:
        plugins.unregister_plugin("doc-sink")
    with open(tmp_path / "runs" / outcome.run_id / "results.csv", newline="") as f:
        header, row = list(csv.reader(f))
    assert header[:3] == ["run_id", "model", "dataset"] and row[:3] == [outcome.run_id, "persistence", "ns2d"]
    assert float(row[header.index("l2re")]) == pytest.approx(outcome.results["ns2d"]["l2re"])


def test_the_dataset_over_your_own_files_runs_as_documented(tmp_path, monkeypatch):
    import types

    import numpy as np
    import pytest

    from pdebench_core import plugins
    from pdebench_core.config import build_config
    from pdebench_core.errors import UsageError
    from pdebench_core.runner import execute

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    folder = tmp_path / "my-data"
    folder.mkdir()
    names = [f"run{k:02d}.npy" for k in range(7)]
    for k, name in enumerate(names):
        np.save(folder / name, np.random.default_rng(k).random((12, 8, 1), dtype=np.float32))
    for split, chosen in (("train", names[:4]), ("val", names[4:5]), ("test", names[5:])):
        (folder / f"{split}.txt").write_text("\n".join(chosen))
    module = types.ModuleType("doc_folder")
    monkeypatch.setitem(sys.modules, "doc_folder", module)
    block = _python_block_after("writing-plugins.md", "### A dataset over your own files")
    exec(compile(block, "doc_folder", "exec"), module.__dict__)
    plugins.register_plugin(module, name="doc-folder")
    try:
        assert plugins.get("dataset", "myfolder").required() == ["path"]
        with pytest.raises(UsageError, match="required setting data.myfolder.path not given"):
            build_config(model="fno", data="myfolder", profile="smoke")
        cfg = build_config(model="fno", data="myfolder", profile="smoke", device="cpu",
                           overrides=[f"data.myfolder.path={folder}", "train.max_steps=2", "model.width=4",
                                      "model.modes=2"])
        assert execute(cfg, quiet=True).results["myfolder"]["l2re"] > 0
    finally:
        plugins.unregister_plugin("doc-folder")
