"""Checkpoints carry a checksum: damage is found on load, resume falls back, status stays true."""

from __future__ import annotations

import json

import pytest
import torch

from pdebench_core.checkpoint import DamagedCheckpoint, load_checkpoint, newest_intact, save_checkpoint
from pdebench_core.config import build_config
from pdebench_core.errors import UsageError
from pdebench_core.runner import execute


def _flip_tensor_bytes(path):
    """Damage the stored bytes of the largest tensor without breaking the file's structure."""
    state = torch.load(path, weights_only=True)
    weights = state["model"]
    name = max(weights, key=lambda k: weights[k].numel())
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1.0
    torch.save(state, path)  # the checksum entry stays the one of the original contents


def test_damaged_tensor_bytes_are_found_on_load(tmp_path):
    path = save_checkpoint({"model": {"w": torch.arange(6.0)}, "step": 3}, tmp_path / "c.pt")
    assert load_checkpoint(path)["step"] == 3
    _flip_tensor_bytes(path)
    with pytest.raises(DamagedCheckpoint, match="is damaged: its contents no longer match"):
        load_checkpoint(path)
    (tmp_path / "t.pt").write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(DamagedCheckpoint, match="cannot be read"):
        load_checkpoint(tmp_path / "t.pt")
    (tmp_path / "page.pt").write_text("<!DOCTYPE html><html><body>Not Found</body></html>")  # a server's answer
    with pytest.raises(DamagedCheckpoint, match="cannot be read: it is not a torch checkpoint"):
        load_checkpoint(tmp_path / "page.pt")


def _smoke(run_id, *extra):
    return build_config(model="fno", data="ns2d", profile="smoke", device="cpu", run_id=run_id,
                        overrides=["train.max_steps=8", "train.checkpoint_every=4", "train.keep_checkpoints=3",
                                   *extra])


def test_resume_falls_back_from_a_damaged_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    ctx = execute(_smoke("fallback"), quiet=True)
    folder = ctx.run_dir / "checkpoints"
    _flip_tensor_bytes(folder / "last.pt")
    messages = []
    found = newest_intact(folder, warn=messages.append)
    assert found.path.name == "step-00000008.pt" and found.state["step"] == 8  # read once, handed over
    assert messages[0].startswith("warning: passed over last.pt: checkpoint ") and "is damaged" in messages[0]
    assert messages[0].endswith("; using step-00000008.pt")
    resumed = execute(_smoke("fallback"), resume=True, quiet=True)
    assert resumed.results  # the run resumed (from step 8, already complete) and evaluated
    assert "; using step-00000008.pt" in (ctx.run_dir / "log.txt").read_text()
    for step in folder.glob("*.pt"):
        _flip_tensor_bytes(step)
    with pytest.raises(DamagedCheckpoint, match="no checkpoint in .* can be used"):
        newest_intact(folder)


@pytest.mark.parametrize("replace", ["folder", "bare weights"])
def test_a_last_checkpoint_that_holds_no_training_state_is_passed_over(tmp_path, monkeypatch, replace):
    """A folder in place of last.pt, or bare weights saved over it, is no reason to lose the run."""
    import torch

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    ctx = execute(_smoke("replaced"), quiet=True)
    last = ctx.run_dir / "checkpoints" / "last.pt"
    weights = load_checkpoint(last)["model"]
    last.unlink()
    if replace == "folder":
        last.mkdir()
    else:
        torch.save(weights, last)
    messages = []
    found = newest_intact(last.parent, warn=messages.append)
    assert found.path.name == "step-00000008.pt" and messages[0].startswith("warning: passed over last.pt: ")
    evaluated = execute(build_config(model="fno", data="ns2d", profile="smoke", device="cpu", task="evaluate",
                                     overrides=["task.checkpoint=replaced"]), quiet=True)
    assert evaluated.results  # a run id as task.checkpoint takes its newest usable checkpoint too


def test_failed_resume_keeps_a_finished_runs_status(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    ctx = execute(_smoke("done"), quiet=True)
    status_file = ctx.run_dir / "status.json"
    finished = json.loads(status_file.read_text())
    for step in (ctx.run_dir / "checkpoints").glob("*.pt"):
        _flip_tensor_bytes(step)
    with pytest.raises(UsageError, match="damaged"):
        execute(_smoke("done"), resume=True, quiet=True)
    after = json.loads(status_file.read_text())
    assert after["state"] == "finished" and after["results"] == finished["results"]


def test_a_refused_sink_leaves_no_empty_run_directory(tmp_path, monkeypatch):
    from pdebench_core import hookimpl, plugins

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))

    class Plugin:
        @staticmethod
        @hookimpl
        def register_sinks(register):
            def refuse(cfg, run_dir):
                raise UsageError("the 'refusing' sink needs a package; pip install it")

            register("refusing", refuse)

    plugins.register_plugin(Plugin, name="refusing-sink")
    try:
        with pytest.raises(UsageError, match="needs a package"):
            execute(_smoke("no-sink", "run.sinks=[sqlite,refusing]"), quiet=True)
    finally:
        plugins.unregister_plugin("refusing-sink")
    assert not (tmp_path / "home" / "runs" / "no-sink").exists()


def test_a_checkpoint_of_an_earlier_version_holding_a_torch_version_object_is_read(tmp_path):
    """Earlier pdeb versions stored ``torch.__version__`` itself (a ``TorchVersion``, a str
    subclass); ``weights_only`` loading must still accept such a checkpoint everywhere."""
    import torch

    path = tmp_path / "old.pt"
    torch.save({"model": {"w": torch.ones(2)}, "step": 3,
                "versions": {"torch": torch.torch_version.TorchVersion("2.3.0")}}, path)
    state = load_checkpoint(path)
    assert state["step"] == 3 and state["versions"]["torch"] == "2.3.0"
