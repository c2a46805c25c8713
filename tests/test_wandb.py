"""The ``wandb`` sink: what a run sends, read back from wandb's offline run file."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

SMOKE = ["--profile", "smoke", "--device", "cpu", "--quiet"]
WANDB_BLOCK = 32768  # the offline file is a log of 32 KiB blocks of checksummed record chunks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path):
    """Every protobuf ``Record`` of a ``run-<id>.wandb`` file, in order.

    The file starts with ``:W&B`` and a 3-byte version; then each chunk has a 7-byte header
    (CRC-32, little-endian length, type) and a record spans chunks FIRST..MIDDLE..LAST when it
    does not fit in what is left of a block. A block tail shorter than a header is padding.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    position, pieces = 7, []
    while position + 7 <= len(data):
        left = WANDB_BLOCK - position % WANDB_BLOCK
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:  # zero padding up to the end of the block
            position += left
            continue
        pieces.append(data[position + 7:position + 7 + length])
        position += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record


def _items(updates) -> dict:
    return {(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in updates}


def test_wandb_sink_sends_config_step_metrics_rows_and_figures(fresh_home, pdeb):
    pytest.importorskip("wandb")
    result = pdeb("run", "--model", "fno", "--data", "ns2d", "--run-id", "wb", *SMOKE, "train.max_steps=4",
                  "train.log_every=2", "run.sinks=[sqlite,jsonl,wandb]", env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    run_dir = fresh_home / "runs" / "wb"
    [offline] = list((run_dir / "wandb").glob("offline-run-*"))
    [run_file] = list(offline.glob("run-*.wandb"))
    records = list(wandb_records(run_file))

    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = _items(run.config.update)
    assert run.run_id == "wb" and run.project == "pdeb"
    assert config["model"]["name"] == "fno" and config["train"]["max_steps"] == 4 and config["run"]["profile"] == "smoke"

    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    history = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    sent = {h["_step"]: h["loss"] for h in history if "loss" in h}
    assert sent == {s["step"]: pytest.approx(s["loss"]) for s in steps} and len(sent) == 2

    [row] = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    assert summary["eval/ns2d/l2re"] == pytest.approx(row["metrics"]["l2re"])

    # media are summarised by their file: "<key>/path" under the run's files
    image = offline / "files" / summary["eval/ns2d/error_per_step/path"]
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and summary["eval/ns2d/error_per_step/width"] > 100
    table = json.loads((offline / "files" / summary["results/path"]).read_text())
    by_column = dict(zip(table["columns"], table["data"][0]))
    assert by_column["run_id"] == "wb" and by_column["l2re"] == pytest.approx(row["metrics"]["l2re"])


def test_wandb_sink_without_the_package_says_what_to_install(fresh_home, monkeypatch):
    from pdebench_core.cli import app

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    result = CliRunner().invoke(app, ["run", "--model", "persistence", "--data", "ns2d", "--task", "evaluate",
                                      *SMOKE, "run.sinks=[sqlite,wandb]"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: the wandb sink needs the wandb package; pip install 'pdeb[wandb]' "
                     "(or leave wandb out of run.sinks)"]


def test_a_wandb_mode_wandb_does_not_know_is_named(fresh_home, monkeypatch):
    pytest.importorskip("wandb")
    from pdebench_core.cli import app

    monkeypatch.setenv("WANDB_MODE", "ofline")
    result = CliRunner().invoke(app, ["run", "--model", "persistence", "--data", "ns2d", "--task", "evaluate",
                                      *SMOKE, "run.sinks=[jsonl,wandb]"])
    assert result.exit_code == 2
    assert "WANDB_MODE=ofline is not a mode wandb knows; use one of online, offline" in " ".join(result.output.split())


def test_a_lost_wandb_service_does_not_add_its_exit_traceback(monkeypatch):
    """wandb's exit hook fails once its service is gone; after a sink call failed, that report
    (and only that one) is left out, so the one-line error stays the last word."""
    import sys
    import types

    from pdebench_core.builtin.sinks import WandbSink

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.object))
    sink = WandbSink.__new__(WandbSink)

    class LostRun:
        def log(self, *args, **kwargs):
            raise ConnectionResetError("Connection lost")

    sink.run, sink.sent_through = LostRun(), None
    with pytest.raises(ConnectionResetError):
        sink.log_step(3, {"loss": 1.0})

    def teardown_atexit():
        """Stands for wandb's own exit hook."""

    teardown_atexit.__module__ = "wandb.sdk.lib.service.service_connection"
    other = types.SimpleNamespace(__module__="somewhere.else")
    for obj in (teardown_atexit, other):
        sys.unraisablehook(types.SimpleNamespace(object=obj, exc_value=ConnectionResetError(), exc_type=None,
                                                 exc_traceback=None, err_msg=None))
    assert seen == [other]


def _offline_history(offline: Path) -> tuple[list[int], dict, int | None]:
    """Steps of the training history, the summary and the exit code of one offline folder."""
    [run_file] = list(offline.glob("run-*.wandb"))
    steps, summary, exit_code = [], {}, None
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = _items(record.history.item)
            if "loss" in items:
                steps.append(items["_step"])
        elif kind == "summary":
            summary.update(_items(record.summary.update))
        elif kind == "exit":
            exit_code = record.exit.exit_code
    return steps, summary, exit_code


def test_a_resumed_offline_run_appends_without_sending_steps_again(fresh_home, pdeb):
    """Offline, the resumed part is a second folder that 'wandb sync --append' adds to the
    first: it must not repeat the steps the first holds (steps 3 and 4 are trained again after
    resuming from step 2; 3 is not sent again, 4 merges into the step already there)."""
    pytest.importorskip("wandb")
    from pdebench_core.rundir import RunDir

    common = ["--model", "fno", "--data", "ns2d", "--run-id", "wbr", *SMOKE, "train.max_steps=4", "train.log_every=1",
              "train.checkpoint_every=2", "train.keep_checkpoints=10", "train.scheduler=constant",
              "run.sinks=[sqlite,jsonl,wandb]"]
    assert pdeb("run", *common, env={"WANDB_MODE": "offline"}).returncode == 0
    run = RunDir.of("wbr")
    (run.checkpoints / "last.pt").write_bytes((run.checkpoints / "step-00000002.pt").read_bytes())
    run.write_status("interrupted", started=1.0, error="stopped by SIGTERM")  # as a stop after step 2 leaves it
    resumed = pdeb("run", "--resume", "wbr", "--quiet", env={"WANDB_MODE": "offline"})
    assert resumed.returncode == 0, resumed.stderr
    first, second = sorted((run.path / "wandb").glob("offline-run-*"))
    assert _offline_history(first)[0] == [1, 2, 3, 4]
    steps, summary, exit_code = _offline_history(second)
    assert steps == [4] and summary["pdeb/state"] == "running" and exit_code == 0


def test_a_failed_run_ends_its_wandb_run_as_failed(fresh_home, pdeb):
    pytest.importorskip("wandb")
    result = pdeb("run", "--model", "fno", "--data", "ns2d", "--run-id", "wbf", *SMOKE, "train.max_steps=4",
                  "train.lr=1e30", "run.sinks=[sqlite,jsonl,wandb]", env={"WANDB_MODE": "offline"})
    assert result.returncode == 1 and "diverged" in result.stderr
    [offline] = list((fresh_home / "runs" / "wbf" / "wandb").glob("offline-run-*"))
    _, summary, exit_code = _offline_history(offline)
    assert exit_code == 1 and summary["pdeb/state"] == "failed" and "diverged" in summary["pdeb/error"]
