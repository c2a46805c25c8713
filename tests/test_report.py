"""The run report: spectra, figures, the HTML page for a smoke run, and it in a real browser."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from pdebench_core import report
from pdebench_core.cli_results import register
from pdebench_core.config import build_config
from pdebench_core.runner import execute

SMOKE_RUN = "fno-smoke-results"  # the run conftest.py's smoke_run_home makes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """Test app holding the result commands."""

    register(app)
    return CliRunner().invoke(app, list(args))


def embedded_pngs(page: str) -> list[np.ndarray]:
    """Decode every base64 PNG of a page into an image array."""
    from matplotlib.image import imread

    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        raw = base64.b64decode(data)
        assert raw.startswith(PNG_SIGNATURE)
        images.append(imread(io.BytesIO(raw), format="png"))
    return images


# --------------------------------------------------------------------------- spectra and figures


@pytest.mark.parametrize("shape, mode", [((64,), (5,)), ((32, 32), (3, 4)), ((16, 16, 16), (2, 0, 1))])
def test_radial_spectrum_peaks_at_the_mode_and_keeps_the_energy(shape, mode):
    grids = np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij")
    field = np.cos(2 * np.pi * sum(m * g for m, g in zip(mode, grids)))
    k, power = report.radial_spectrum(field)
    expected = round(float(np.sqrt(sum(m * m for m in mode))))
    assert k[0] == 0 and k[-1] == min(shape) // 2
    assert int(np.argmax(power)) == expected
    # shell means times shell sizes give back the mean square (Parseval), all energy in one shell
    freqs = np.meshgrid(*[np.fft.fftfreq(n) * n for n in shape], indexing="ij")
    shells = np.rint(np.sqrt(sum(f ** 2 for f in freqs))).astype(int)
    counts = np.bincount(shells.ravel(), minlength=len(k))[:len(k)]
    assert float((power * counts).sum()) == pytest.approx(float(np.mean(field ** 2)), rel=1e-9)
    assert power[expected] * counts[expected] == pytest.approx(0.5, rel=1e-9)


def test_snapshot_steps_span_the_rollout():
    assert report.snapshot_steps(1) == [0]
    assert report.snapshot_steps(3) == [0, 1, 2]
    assert report.snapshot_steps(40) == [0, 13, 26, 39]


@pytest.mark.parametrize("spatial, axes", [((32,), 8), ((16, 12), 12), ((10, 8, 6), 12)])
def test_field_and_spectrum_figures_for_1d_2d_3d(spatial, axes):
    rng = np.random.default_rng(0)
    true = rng.standard_normal((2, 5, *spatial, 2)).astype(np.float32)
    sample = report.Rollout("toy", ["u", "v"], true + 0.1, true, t_in=10)
    fig = report.field_figure(sample, 1)
    images = [a for a in fig.axes if a.get_images()]
    assert len(fig.axes) >= axes and (len(images) == (0 if len(spatial) == 1 else 12))
    if len(spatial) == 3:  # the middle z slice is drawn
        assert images[0].get_images()[0].get_array().shape == spatial[:2][::-1]
    pngs = embedded_pngs(f'<img src="{report.png_data_uri(fig)}">')
    assert pngs[0].shape[0] > 100 and pngs[0].shape[1] > 100
    spectrum = report.spectrum_figure(sample)
    assert len(spectrum.axes) == 2 and all(len(a.get_lines()) == 4 for a in spectrum.axes)


def test_report_page_escapes_what_it_shows(tmp_path):
    hostile = "<script>alert(1)</script>"
    info = report.RunInfo(run_id="r", run_dir=tmp_path, config={"model": {"name": hostile}, "run": {}},
                          config_text=f"model: {hostile}\n", command=f"pdeb run --model '{hostile}'",
                          status={"state": "failed", "error": hostile},
                          evals={"d": {"summary": {"l2re": 0.5}, "fields": [hostile], "per_channel": {"l2re": [0.5]},
                                       "per_step": {"l2re": [0.4, 0.6]}, "one_step": {"l2re": 0.3}}})
    page = report.render_report(info, {}, [hostile])
    assert "<script" not in page and html.escape(hostile) in page
    assert len(embedded_pngs(page)) == 1  # the error-per-step curve


# --------------------------------------------------------------------------- a smoke run's report


def smoke_report(home: Path, tmp_path: Path) -> Path:
    """The smoke run's report written through the CLI."""
    out = tmp_path / "report.html"
    result = invoke("report", SMOKE_RUN, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)  # progress lines go to stderr first
    return out


def test_report_does_not_replace_an_existing_file_without_force(smoke_home, tmp_path):
    config = smoke_home / "runs" / SMOKE_RUN / "config.yaml"
    before = config.read_text()
    refused = invoke("report", SMOKE_RUN, "--no-rollout", "--out", str(config))
    assert refused.exit_code == 2 and "exists and is no .html/.htm file; pass --force" in refused.output
    assert config.read_text() == before
    smoke_report(smoke_home, tmp_path)
    smoke_report(smoke_home, tmp_path)  # its own earlier report is replaced


def test_report_of_a_smoke_run(smoke_home, tmp_path):
    page = smoke_report(smoke_home, tmp_path).read_text()
    evaluation = json.loads((smoke_home / "runs" / SMOKE_RUN / "eval" / "ns2d.json").read_text())
    assert "ns2d: generated, hash " in page and "grid 32x32" in page  # where the numbers come from
    for name, value in evaluation["summary"].items():
        assert f">{value:.4g}<" in page, name
    assert f">{evaluation['one_step']['l2re']:.4g}<" in page and "<td>vorticity</td>" in page
    assert "Per channel" in page and "Error per rollout step" in page and "Energy spectra" in page
    assert "weights: checkpoints/last.pt" in page and "no rollout figures" not in page
    assert f"--config {smoke_home / 'runs' / SMOKE_RUN / 'config.yaml'}" in page
    images = embedded_pngs(page)
    assert len(images) == 3  # error curve, fields (one channel), spectra
    assert all(img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0 for img in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def test_report_without_a_checkpoint(smoke_home):
    execute(build_config(model="persistence", data="ns2d", task="evaluate", profile="smoke",
                         run_id="persistence-eval", device="cpu"), quiet=True)
    path = report.build_report("persistence-eval")
    assert path == smoke_home / "runs" / "persistence-eval" / "report.html"
    page = path.read_text()
    assert "no checkpoint: the model has no trained weights" in page
    assert len(embedded_pngs(page)) == 3


def test_report_survives_a_model_that_cannot_be_rebuilt(smoke_home):
    broken = smoke_home / "runs" / "broken-checkpoint"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, broken)
    for checkpoint in (broken / "checkpoints").glob("*.pt"):  # every one: none is left to fall back to
        checkpoint.write_bytes(b"not a checkpoint")
    page = report.build_report("broken-checkpoint", out=broken / "r.html").read_text()
    assert "no rollout figures: no checkpoint in" in page and "broken-checkpoint/checkpoints" in page
    assert len(embedded_pngs(page)) == 1 and "Per channel" in page  # metrics and the error curve remain
    metrics_only = report.build_report(SMOKE_RUN, out=broken / "m.html", rollout=False).read_text()
    assert len(embedded_pngs(metrics_only)) == 1 and "weights:" not in metrics_only


def test_report_says_when_the_data_changed_since_the_run(tmp_path, monkeypatch):
    import h5py

    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    path = tmp_path / "burgers.hdf5"

    def write(scale: float) -> None:
        values = np.random.default_rng(0).standard_normal((8, 8, 16)).astype(np.float32)
        with h5py.File(path, "w") as f:
            f["tensor"] = scale * values
            f["x-coordinate"] = (np.arange(16) + 0.5) / 16
            f["t-coordinate"] = np.arange(9) * 0.1

    write(1.0)
    execute(build_config(model="fno", data="burgers1d", profile="smoke", run_id="on-file", overrides=[
        f"data.burgers1d.path={path}", "data.burgers1d.t_in=2", "train.max_steps=2"]), quiet=True)
    unchanged = report.build_report("on-file", out=tmp_path / "same.html").read_text()
    assert "the data changed since the run" not in unchanged
    write(3.0)  # the file changed under its path
    notes = []
    changed = report.build_report("on-file", out=tmp_path / "changed.html", warn=notes.append).read_text()
    assert any("burgers1d: the data changed since the run" in n for n in notes)
    assert "the data changed since the run" in changed


def test_report_without_last_pt_rolls_out_the_newest_step_checkpoint(smoke_home):
    run = smoke_home / "runs" / "no-last"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    (run / "checkpoints" / "last.pt").unlink()
    step = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    page = report.build_report("no-last", out=run / "r.html").read_text()
    assert f"weights: checkpoints/{step.name}" in page and "untrained" not in page


def test_report_of_a_trained_run_whose_checkpoints_are_gone_draws_no_untrained_model(smoke_home, capsys):
    run = smoke_home / "runs" / "no-checkpoints"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    shutil.rmtree(run / "checkpoints")
    page = report.build_report("no-checkpoints", out=run / "r.html").read_text()
    assert "no rollout figures: run &#x27;no-checkpoints&#x27; trained, but no intact checkpoint" in page
    assert len(embedded_pngs(page)) == 1 and "untrained" not in page  # only the stored error curve
    assert "(2/1)" not in capsys.readouterr().err  # the progress count holds


@pytest.mark.parametrize("damage", [b"run: [unclosed", b"\xff\xfe\x00binary", b"- a list\n", b"run: 5\n"])
def test_a_damaged_config_is_one_line_for_report_reproduce_and_resume(smoke_home, damage):
    """Without a checkpoint to restore it from; with one, see the next test."""
    run = smoke_home / "runs" / "damaged-config"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    shutil.rmtree(run / "checkpoints")
    (run / "config.yaml").write_bytes(damage)
    from pdebench_core.cli import app

    for args in (["report", "damaged-config"], ["reproduce", "damaged-config"],
                 ["run", "--resume", "damaged-config"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "run 'damaged-config': config.yaml" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("cut", ["unparseable", "truncated"])
def test_a_damaged_config_is_restored_from_the_config_its_checkpoints_store(smoke_home, cut):
    """Also a file cut short that still parses: its missing sections are not filled with defaults."""
    from pdebench_core.cli import app

    run = smoke_home / "runs" / "restored-config"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    original = (run / "config.yaml").read_text()
    damage = b"run: [unclosed" if cut == "unparseable" else original[:original.index("\ntrain:")].encode()
    (run / "config.yaml").write_bytes(damage)
    result = CliRunner().invoke(app, ["reproduce", "restored-config"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    reason = "cannot be read" if cut == "unparseable" else "is damaged (not a mapping with the sections"
    assert f"warning: run 'restored-config': config.yaml {reason}" in output
    assert "restored it from the config stored in last.pt (the damaged file is kept as config.yaml.damaged)" in output
    assert (run / "config.yaml.damaged").read_bytes() == damage
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text()) == yaml.safe_load(original)


def test_a_damaged_evaluation_file_is_named_not_silently_dropped(smoke_home, tmp_path):
    run = smoke_home / "runs" / "damaged-eval"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    evaluation = next((run / "eval").glob("*.json"))
    evaluation.write_text('{"metrics": {"l2')
    result = invoke("report", "damaged-eval", "--out", str(tmp_path / "r.html"), "--no-rollout")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert f"warning: {evaluation} is damaged or empty" in output and "'pdeb run --resume damaged-eval'" in output


def test_report_of_an_unknown_run_is_a_usage_error(smoke_home):
    result = invoke("report", "fno-smoke-resuls")
    assert result.exit_code == 2 and f"did you mean '{SMOKE_RUN}'" in result.output
    assert result.output.strip().count("\n") == 0


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var images = document.images, sized = 0;
  for (var i = 0; i < images.length; i++) {
    var box = images[i].getBoundingClientRect();
    if (images[i].complete && images[i].naturalWidth > 0 && box.width > 0 && box.height > 0) sized++;
  }
  var marker = document.createElement('div');
  marker.id = 'pdeb-probe';
  marker.textContent = 'images=' + images.length + ' sized=' + sized + ' rows=' +
    document.querySelectorAll('tbody tr').length + ' errors=' + window.__errors.length;
  document.body.appendChild(marker);
});
</script>"""


def test_report_renders_in_chromium(smoke_home, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    page = tmp_path / "probed.html"
    page.write_text(smoke_report(smoke_home, tmp_path).read_text().replace("<head>", "<head>" + PROBE, 1))
    result = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = re.search(r'id="pdeb-probe">images=(\d+) sized=(\d+) rows=(\d+) errors=(\d+)<', result.stdout)
    assert probe, result.stdout[-2000:]
    images, sized, rows, errors = map(int, probe.groups())
    assert images == sized == 3 and errors == 0
    assert rows >= 12  # overview, metric and per-channel tables


def test_rebuild_uses_the_runs_own_steps_and_weights(smoke_home):
    """The report's rollouts come from rebuild(): the run's datasets, mixture and trained weights,
    without writing anything to the run."""
    from pdebench_core.checkpoint import load_checkpoint
    from pdebench_core.rebuild import rebuild

    run_dir = smoke_home / "runs" / SMOKE_RUN
    log_before = (run_dir / "log.txt").read_text()
    rebuilt = rebuild(run_dir)
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    for key, value in rebuilt.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert list(rebuilt.datasets) == ["ns2d"] and rebuilt.notes == ["weights: checkpoints/last.pt"]
    assert (run_dir / "log.txt").read_text() == log_before


def test_a_report_that_cannot_be_written_keeps_the_previous_one(smoke_home, monkeypatch):
    import errno
    import pathlib

    run = smoke_home / "runs" / SMOKE_RUN
    good = report.build_report(SMOKE_RUN, rollout=False)
    before = good.read_text()
    real = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        real(self, "<html>half a pa", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    result = invoke("report", SMOKE_RUN, "--no-rollout")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"could not write {run / 'report.html'}" in result.output and "No space left on device" in result.output
    assert good.read_text() == before and not list(run.glob(".report.html.*"))


def test_a_metrics_only_report_shows_no_progress(smoke_home):
    result = invoke("report", SMOKE_RUN, "--no-rollout")
    assert result.exit_code == 0, result.output
    assert f"report {SMOKE_RUN}:" not in result.output and "%" not in result.output


@pytest.mark.parametrize("device, message", [("tpu", "unknown device 'tpu'"),
                                             ("cuda", "no CUDA device is available")])
def test_a_device_the_machine_lacks_is_a_usage_error(smoke_home, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("report", SMOKE_RUN, "--device", device)
    assert result.exit_code == 2 and message in result.output and result.output.strip().count("\n") == 0


def test_a_damaged_eval_file_is_noted_not_fatal(smoke_home):
    run = smoke_home / "runs" / "damaged-eval"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    (run / "eval" / "ns2d.json").write_text(json.dumps({"summary": "not a mapping", "per_step": 3}))
    page = report.build_report("damaged-eval", out=run / "r.html", rollout=False).read_text()
    assert "eval/ns2d.json does not hold what pdeb writes" in page


@pytest.mark.parametrize("args, message", [
    (["--run-id", SMOKE_RUN], f"--run-id {SMOKE_RUN} exists already; the rerun needs a new id"),
    (["--run-id", "../x"], "is not a valid directory name"),
    (["--format", "csv"], "--format csv applies to a protocol"),
])
def test_reproduce_refuses_a_rerun_that_could_not_start(smoke_home, args, message):
    from pdebench_core.cli import app

    result = CliRunner().invoke(app, ["reproduce", SMOKE_RUN, *args])
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_a_run_without_the_jsonl_sink_is_still_known_to_have_trained(smoke_home):
    """Whether a run trained is read from its log too: without step records (no jsonl sink) a
    report of it, its checkpoints gone, still draws no untrained model."""
    run = smoke_home / "runs" / "no-jsonl"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    shutil.rmtree(run / "checkpoints")
    (run / "metrics.jsonl").unlink()
    page = report.build_report("no-jsonl", out=run / "r.html").read_text()
    assert "trained, but no intact checkpoint" in page and "untrained" not in page


def test_a_run_on_several_machines_is_rerun_by_hand_on_each(smoke_home):
    from pdebench_core.cli import app

    run = smoke_home / "runs" / "two-nodes"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    (run / "command.txt").write_text("pdeb run --model fno --data ns2d --nnodes 2 --node-rank 0 "
                                     "--rdzv-endpoint head:29500 --nproc-per-node 2\n")
    shown = CliRunner().invoke(app, ["reproduce", "two-nodes"])
    assert shown.exit_code == 0 and "--nnodes 2 --node-rank 0 --rdzv-endpoint head:29500" in shown.output
    assert "start this command on every one, each with its own --node-rank" in shown.output
    refused = CliRunner().invoke(app, ["reproduce", "two-nodes", "--execute"])
    assert refused.exit_code == 2 and "--execute cannot start them" in " ".join(refused.output.split())


@pytest.mark.parametrize("world, per_node, expected", [
    ("1", "1", []),
    ("2", "2", ["--nproc-per-node", "2"]),
    ("4", "2", ["--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "1"]),
])
def test_a_run_started_by_hand_under_torchrun_records_its_process_layout(monkeypatch, world, per_node, expected):
    """``torchrun -m pdebench_core.cli run ...`` has no pdeb launcher to hand over its command;
    the worker writes the layout torchrun gave it as pdeb's own options, so a rerun keeps it."""
    from pdebench_core.report.provenance import launch_options
    from pdebench_core.runs import LAUNCHER_COMMAND, command_line

    monkeypatch.delenv(LAUNCHER_COMMAND, raising=False)
    monkeypatch.setattr("sys.argv", ["/site/pdebench_core/cli.py", "run", "--model", "fno", "--data", "ns2d"])
    monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", per_node)
    monkeypatch.setenv("GROUP_RANK", "1")
    command = command_line()
    assert command.startswith("pdeb run --model fno --data ns2d")
    assert launch_options(command) == expected


def test_the_report_command_says_on_the_console_what_the_page_lacks(smoke_home):
    from pdebench_core.cli import app

    broken = smoke_home / "runs" / "said-broken"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, broken)
    for checkpoint in (broken / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(app, ["report", "said-broken"])
    assert result.exit_code == 0, result.output
    assert "note: no rollout figures: no checkpoint in" in " ".join(result.output.split())


def test_a_missing_config_is_restored_too_and_pdeb_runs_says_how(smoke_home):
    from pdebench_core.cli import app

    run = smoke_home / "runs" / "lost-config"
    shutil.copytree(smoke_home / "runs" / SMOKE_RUN, run)
    (run / "config.yaml").unlink()
    listed = {r["run_id"]: r for r in json.loads(CliRunner().invoke(app, ["runs", "--json"]).stdout)}
    assert listed["lost-config"]["state"] == "damaged"
    assert listed["lost-config"]["error"] == ("has no config.yaml; a checkpoint holds its config: 'pdeb reproduce "
                                              "lost-config' restores it")
    for args in (["report", "lost-config"], ["reproduce", "lost-config"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert (run / "config.yaml").is_file() and not (run / "config.yaml.damaged").exists()

