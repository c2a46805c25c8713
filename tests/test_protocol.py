"""The Table 1 protocol as data, pdeb's defaults against it, and ``pdeb reproduce dpot-table1``."""

from __future__ import annotations

import csv
import json
import math
import shutil
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from pdebench_core import leaderboard as lb
from pdebench_core import protocols
from pdebench_core.cli_results import register
from pdebench_core.data.windows import resize_frames

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "dpot-table1"
# A DPOT far smaller than DPOT-Ti, with every other constructor argument of the released models.
TINY = dict(img_size=128, patch_size=8, in_channels=4, out_channels=4, in_timesteps=10, out_timesteps=1,
            embed_dim=16, depth=1, n_blocks=2, mlp_ratio=1, out_layer_dim=8, n_cls=12)


def invoke(*args: str):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """Test app holding the result commands."""

    register(app)
    return CliRunner().invoke(app, list(args))


def write_checkpoint(path: Path, **changes) -> Path:
    """A random-weight DPOT saved as the released files are: ``{'model': state_dict}``, official keys."""
    from pdeb_dpot.official import build_official

    torch.manual_seed(0)
    model = build_official({**TINY, "modes": 32, **changes})
    torch.save({"model": model.state_dict()}, path)
    return path


def trajectory(column: protocols.Column, seed: int) -> np.ndarray:
    """One smooth trajectory ``(X, Y, T, C)`` (the DPOT layout's axis order) on the column's grid."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(*(np.linspace(0, 2 * np.pi, n, endpoint=False) for n in column.grid), indexing="ij")
    t = np.arange(column.n_frames)[None, None, :, None]
    c = np.arange(len(column.fields))[None, None, None, :]
    phase = rng.uniform(0, 2 * np.pi, size=(1, 1, 1, len(column.fields)))
    wave = np.sin(x[..., None, None] + 0.2 * t + phase) * np.cos(y[..., None, None] + c)
    return (1.5 + c + wave).astype(np.float32)


def write_column(root: Path, column: protocols.Column, n_test: int = 1, n_train: int = 0) -> None:
    """Small files in the column's published layout (DPOT's preprocessed files); the two sets
    with a reader of their own are written by that reader's test-file writers."""
    from pdebench_core.data.layouts import fixtures

    if column.key == "cfdbench":
        fixtures.write_cfdbench(root / Path(column.test).parent, n_train=n_train, n_test=n_test, grid=column.grid,
                                frames=column.n_frames)
        return
    if column.key == "pdearena_ns_cond":  # always writes train/ too: at least one training trajectory
        fixtures.write_ns_cond_dpot(root / Path(column.test).parent, n_train=max(n_train, 1), n_test=n_test,
                                    grid=column.grid, frames=column.n_frames)
        return
    for split, n, rel in (("test", n_test, column.test), ("train", n_train, column.train)):
        if n == 0:
            continue
        arrays = [trajectory(column, seed=zlib.crc32(f"{column.key}/{split}/{i}".encode())) for i in range(n)]
        target = root / rel
        if column.layout == "dpot-file":
            target.parent.mkdir(parents=True, exist_ok=True)
            data = np.stack(arrays)
            if len(column.fields) == 1:
                data = data[..., 0]  # the FNO files have no channel axis: (N, X, Y, T)
            with h5py.File(target, "w") as f:
                f.create_dataset("data", data=data)
        else:
            target.mkdir(parents=True, exist_ok=True)
            for i, array in enumerate(arrays):
                with h5py.File(target / f"data_{i}.hdf5", "w") as f:
                    f.create_dataset("data", data=array)


@pytest.fixture(scope="module")
def protocol() -> protocols.Protocol:
    return protocols.load_protocol(PROTOCOL)


@pytest.fixture(scope="module")
def full_root(tmp_path_factory, protocol) -> Path:
    root = tmp_path_factory.mktemp("data-root")
    for column in protocol.columns:
        write_column(root, column)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "model_tiny.pth")


def published_table() -> list[dict[str, str]]:
    path = ROOT / "registry" / "published" / "dpot_table1_l2re.csv"
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if line.strip() and not line.startswith("#")))


# --------------------------------------------------------------------------- the protocol file


def test_protocol_covers_the_twelve_columns_of_table_1(protocol):
    table = published_table()
    averaged = set(protocol.published["averages"])
    published_columns = [c for c in table[0] if c not in ("model", "part", "group", "params")]
    assert [c.key for c in protocol.columns] == [c for c in published_columns if c not in averaged]
    assert len(protocol.columns) == 12
    reg = lb.load_published()
    for column in protocol.columns:
        assert reg.datasets[column.key]["dataset"] == column.dataset, column.key  # one name for one dataset
        assert column.t_in == protocol.model["in_timesteps"] == 10
        assert column.t_in + column.horizon <= column.n_frames
        assert column.eval_test_size >= column.test_size > 0 and column.train_size > 0
        assert column.layout in ("dpot-file", "dpot-folders")
    for key, members in protocol.published["averages"].items():
        assert all(m in {c.key for c in protocol.columns} for m in members) and key in published_columns
    rows = protocol.published["zero_shot"]
    for size, row in {**rows, **protocol.published["finetuned"]}.items():
        assert any(r["model"] == row["model"] and r["part"] == str(row["part"]) for r in table), row
    assert protocol.evaluation["eval_grid"] == "strided" and protocol.grid == (128, 128)


def _default_spec(name: str, setting: dict):
    """The spec pdeb's dataset ``name`` gets under the ``paper`` profile, without generating data."""
    from pdebench_core import plugins
    from pdebench_core.config import component_config

    dataset = plugins.get("dataset", name)
    return dataset.factory.make_spec(component_config(dataset, "paper", setting or None))


def _reader_spec(tmp_path: Path, name: str, n_frames: int):
    """The spec a reader-only dataset gives a small file in its published layout with the
    protocol's frame count (written by the readers' own test-file writers)."""
    from pdebench_core.config import build_dataset
    from pdebench_core.data.layouts import fixtures

    path = tmp_path / name
    if name == "pdearena-ns":
        path = path.with_suffix(".h5")
        fixtures.write_pdearena_shard(path, {"train": 2, "valid": 1, "test": 1}, frames=n_frames)
    elif name == "pdearena-ns-cond":
        fixtures.write_pdearena_ns_cond(path, frames=n_frames)
    elif name == "cfdbench":
        fixtures.write_cfdbench(path, n_train=2, n_test=1, frames=n_frames)
    else:
        return None
    return build_dataset(name, "paper", [f"path={path}"]).spec


@pytest.mark.filterwarnings("ignore:.*trajectories.*asked")  # the tiny PDEArena file has fewer than asked
def test_pretraining_record_matches_the_pretrain_task(protocol):
    from pdeb_dpot.tasks import NOISE_SCALE_BY_SIZE, PAPER_PRETRAIN, RECIPE

    record = protocol.pretraining
    keys = {c.key for c in protocol.columns}
    for size, entry in record["sizes"].items():
        assert set(entry["data_weights"]) <= keys, size  # weights name columns
        assert entry["noise_scale"] == NOISE_SCALE_BY_SIZE[size]
    ti = record["sizes"]["ti"]
    assert PAPER_PRETRAIN == {"epochs": record["epochs"], "batch_size": ti["num_gpus"] * ti["batch_per_gpu"],
                              "resolution": record["resolution"]}
    assert RECIPE["grad_clip"] == record["grad_clip"] == protocol.finetune["grad_clip"]
    assert RECIPE["warmup_frac"] == record["warmup_epochs"] / record["epochs"]


def test_pdeb_datasets_sharing_a_name_evaluate_like_the_protocol(protocol, tmp_path):
    """Same-named pdeb datasets roll out the protocol's horizon from the same t_in and score the
    same channels, unless the protocol file states the difference (ns2d at nu=1e-3 rolled out
    40 steps, the protocol 20)."""
    from pdebench_core import plugins
    from pdebench_core.evaluation import scored_channels_of

    registered = plugins.registries()["dataset"]
    checked = []
    for column in protocol.columns:
        for name in (column.dataset, *column.also):
            if name not in registered:
                continue  # a dataset plugin that is not installed
            if registered.get(name).card.get("reader_only"):
                spec = _reader_spec(tmp_path, name, column.n_frames)
            else:
                spec = _default_spec(name, dict(column.setting))
            assert spec is not None, f"no way to read {name} here"
            n_frames = spec.n_frames or column.n_frames  # a reader's spec takes the frames from the file
            horizon = spec.horizon if spec.horizon is not None else n_frames - spec.t_in
            expected = (column.pdeb_horizon or {}).get("horizon", column.horizon)
            assert (spec.t_in, horizon) == (column.t_in, expected), name
            assert scored_channels_of(spec) == column.scored_channels, name
            checked.append(name)
    assert set(checked) == {"ns2d", "ns2d-nu1e-3", "ns2d-nu1e-4", "ns2d-nu1e-5", "cfd2d", "cfd2d-m1-eta1e-1",
                            "cfd2d-m1-eta1e-2", "cfd2d-m1e-1-eta1e-1", "cfd2d-m1e-1-eta1e-2", "dr2d", "swe2d",
                            "pdearena-ns", "pdearena-ns-cond", "cfdbench"}


def test_protocols_ship_with_the_wheel(tmp_path, monkeypatch):
    import sys
    import sysconfig
    import tomllib

    from pdebench_core import paths

    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/pdeb/registry/protocols"] == ["registry/protocols/*.yaml"]
    prefix = tmp_path / "prefix"
    shutil.copytree(ROOT / "registry" / "protocols", prefix / "share" / "pdeb" / "registry" / "protocols")
    fake_package = tmp_path / "site-packages" / "pdebench_core"
    fake_package.mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(fake_package / "paths.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sysconfig, "get_path", lambda *a, **k: str(tmp_path / "nowhere"))
    assert protocols.find_protocol(PROTOCOL) == prefix / "share" / "pdeb" / "registry" / "protocols" / \
        f"{PROTOCOL}.yaml"
    assert protocols.protocol_names() == [PROTOCOL]


# --------------------------------------------------------------------------- pdeb reproduce dpot-table1


def _json_run(*args: str) -> dict:
    result = invoke("reproduce", PROTOCOL, *args, "--device", "cpu", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_reproduce_gives_a_complete_table(full_root, checkpoint, protocol):
    out = _json_run("--checkpoint", str(checkpoint), "--data-root", str(full_root), "--published", "DPOT-Ti")
    rows = {r["column"]: r for r in out["rows"]}
    assert list(rows) == [c.key for c in protocol.columns] + ["cns_M1", "cns_M0.1"]
    assert out["absent"] == [] and out["size"] is None and out["compared_with"]["zero_shot"]["model"] == "DPOT-Ti"
    ti = {r.published_name: r.metrics["l2re"] for r in lb.published_rows()
          if r.model == "DPOT-Ti" and r.part == "1"}
    for column in protocol.columns:
        row = rows[column.key]
        assert row["n"] == 1 and row["horizon"] == column.horizon
        assert row["notes"] == f"1 test trajectories (protocol {column.eval_test_size})"  # small files
        assert math.isfinite(row["zero_shot"]) and row["zero_shot"] > 0
        assert row["published_zero_shot"] == ti[column.key]
        assert row["relative_difference_zero_shot"] == pytest.approx(row["zero_shot"] / ti[column.key] - 1)
    mean = (rows["cns_M1_eta0.1"]["zero_shot"] + rows["cns_M1_eta0.01"]["zero_shot"]) / 2
    assert rows["cns_M1"]["zero_shot"] == pytest.approx(mean) and rows["cns_M1"]["published_zero_shot"] == 0.0285
    assert any("eval.grid=strided" in line for line in out["settings"])


def reference_l2re(model: torch.nn.Module, column: protocols.Column, data: np.ndarray) -> float:
    """What the official evaluation computes for one trajectory ``(X, Y, T, C)``, written out plainly:
    resize to 128x128 (bilinear), pad to 4 channels with ones, roll out ``horizon`` frames (padding
    reset), then ||pred - true|| / ||true|| per real channel over the target-mask points and all
    steps, averaged over the scored channels."""
    frames = torch.from_numpy(np.moveaxis(data, 2, 0))  # (T, X, Y, C)
    on_grid = resize_frames(frames, (128, 128))
    padded = torch.cat([on_grid, torch.ones(*on_grid.shape[:-1], 4 - on_grid.shape[-1])], dim=-1)[None]
    window, preds = padded[:, :10], []
    with torch.no_grad():
        for _ in range(column.horizon):
            out = model(window)
            out[..., frames.shape[-1]:] = 1.0
            preds.append(out)
            window = torch.cat([window[:, 1:], out], dim=1)
    pred, true = torch.cat(preds, dim=1), padded[:, 10:10 + column.horizon]
    k = 128 // column.grid[0]
    scored = column.scored_channels or len(column.fields)
    errors = []
    for c in range(scored):
        p, t = pred[0, :, ::k, ::k, c].double(), true[0, :, ::k, ::k, c].double()
        errors.append(((p - t).norm() / (t.norm() + 1e-8)).item())
    return sum(errors) / scored


@pytest.mark.parametrize("key", ["ns2d_nu1e-5", "cfdbench", "dr2d"])
def test_zero_shot_numbers_follow_the_official_evaluation(full_root, checkpoint, protocol, key):
    from pdebench_core.protocol_runs import evaluate_column, load_model

    column = next(c for c in protocol.columns if c.key == key)
    model, size = load_model(protocol, checkpoint)
    assert size is None
    located = next(found for found in protocols.locate(protocol, full_root)[0] if found.column is column)
    ours = evaluate_column(model, protocol, located, torch.device("cpu")).zero_shot
    with h5py.File(full_root / column.test if column.layout == "dpot-file" else
                   full_root / column.test / "data_0.hdf5") as f:
        data = f["data"][0] if column.layout == "dpot-file" else f["data"][:]
    data = (data[..., None] if data.ndim == 3 else data).astype(np.float32)
    assert ours == pytest.approx(reference_l2re(model, column, data), rel=1e-4)


def test_absent_datasets_are_listed_not_fatal(tmp_path, checkpoint, protocol):
    for column in protocol.columns[:2]:
        write_column(tmp_path / "large", column)  # the official tree: data/large/...
    out = _json_run("--checkpoint", str(checkpoint), "--data-root", str(tmp_path), "--published", "DPOT-Ti")
    assert [r["column"] for r in out["rows"]] == ["ns2d_nu1e-5", "ns2d_nu1e-4"]
    assert [a["column"] for a in out["absent"]] == [c.key for c in protocol.columns[2:]]
    table = invoke("reproduce", PROTOCOL, "--checkpoint", str(checkpoint), "--data-root", str(tmp_path),
                   "--device", "cpu")
    assert table.exit_code == 0 and "absent (not evaluated): ns2d_nu1e-3" in " ".join(table.output.split())
    markdown = invoke("reproduce", PROTOCOL, "--checkpoint", str(checkpoint), "--data-root", str(tmp_path),
                      "--published", "DPOT-Ti", "--device", "cpu", "--format", "markdown").output
    assert markdown.startswith("| column | dataset | n | horizon | ours | published | rel. diff | notes |")
    assert "| ns2d_nu1e-4 | ns2d-nu1e-4 | 1 | 20 |" in markdown
    assert "dc8a1728e5f582baa5f42284fb30027dbcdcd812" in markdown  # the exact version of the table


def test_finetuning_trains_a_copy_per_dataset(tmp_path, checkpoint, protocol):
    picked = [c for c in protocol.columns if c.key in ("ns2d_nu1e-5", "swe2d")]
    for column in picked:
        write_column(tmp_path, column, n_test=1, n_train=2)
    out = _json_run("--checkpoint", str(checkpoint), "--data-root", str(tmp_path), "--published", "DPOT-Ti",
                    "--finetune-steps", "3", "--finetune-batch-size", "2")
    assert out["compared_with"]["finetuned"]["model"] == "DPOT-Ti-200" and out["finetune_steps"] == 3
    cells = {r.published_name: r.metrics["l2re"] for r in lb.published_rows() if r.model == "DPOT-Ti-200"}
    for row in out["rows"]:
        assert math.isfinite(row["finetuned"]) and row["finetuned"] != row["zero_shot"]
        assert row["published_finetuned"] == cells[row["column"]]
    zero = _json_run("--checkpoint", str(checkpoint), "--data-root", str(tmp_path), "--published", "DPOT-Ti")
    assert [r["zero_shot"] for r in zero["rows"]] == [r["zero_shot"] for r in out["rows"]]  # the original is untouched


def test_finetuning_by_epochs_and_on_the_official_finetuning_test_set(tmp_path, checkpoint, protocol):
    """--finetune-epochs N trains N passes over the training trajectories; the fine-tuned copy is
    scored on the first test_size test trajectories (finetune.py's test set), the released
    checkpoint on the first eval_test_size (evaluate.py's)."""
    import dataclasses

    from pdebench_core import protocol_runs
    from pdebench_core.protocol_report import table_rows

    column = next(c for c in protocol.columns if c.key == "ns2d_nu1e-5")
    write_column(tmp_path, column, n_test=3, n_train=4)
    smaller = dataclasses.replace(column, test_size=1, eval_test_size=3)
    narrowed = dataclasses.replace(protocol, columns=[smaller])
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(protocol_runs, "load_protocol", lambda name: narrowed)
        rep = protocol_runs.reproduce(PROTOCOL, checkpoint, tmp_path, finetune_epochs=3, finetune_batch_size=2,
                                      device="cpu", published="DPOT-Ti", log=lines.append)
    (result,) = rep.results
    assert (result.n, result.n_finetuned) == (3, 1)
    assert "ns2d_nu1e-5: 3 epochs are 6 optimizer steps" in lines  # 4 trajectories / batch 2, 3 times
    row = table_rows(rep)[0]
    assert row["n_finetuned"] == 1 and row["finetuned"] == result.finetuned


def test_finetune_steps_and_epochs_together_are_refused(tmp_path, full_root, checkpoint):
    result = invoke("reproduce", PROTOCOL, "--checkpoint", str(checkpoint), "--data-root", str(full_root),
                    "--finetune-steps", "3", "--finetune-epochs", "2", "--device", "cpu")
    assert result.exit_code == 2
    assert result.output == "error: give --finetune-steps or --finetune-epochs, not both\n"


def test_released_sizes_pick_their_published_row(tmp_path, protocol):
    from pdebench_core.protocol_runs import load_model

    path = write_checkpoint(tmp_path / "ti.pth", embed_dim=512, depth=4, n_blocks=4, mlp_ratio=1, out_layer_dim=32)
    _, size = load_model(protocol, path)
    assert size == "ti"
    assert protocols.published_row_for(protocol, "zero_shot", size) == {"model": "DPOT-Ti", "part": 1}
    assert protocols.published_row_for(protocol, "finetuned", "s") == {"model": "DPOT-S-200", "part": 3}


@pytest.mark.parametrize("args, message", [
    (["dpot-tabel1", "--checkpoint", "CKPT", "--data-root", "ROOT"],
     "unknown protocol 'dpot-tabel1' (did you mean 'dpot-table1'?)"),
    ([PROTOCOL, "--checkpoint", "CKPT", "--data-root", "EMPTY"], "holds none of the 12 datasets"),
    ([PROTOCOL, "--checkpoint", "CKPT", "--data-root", "NOWHERE"], "is not a folder"),
    ([PROTOCOL, "--checkpoint", "WRONG", "--data-root", "ROOT"],
     "does not fit the model of protocol 'dpot-table1': img_size 64 (protocol: 128), in_timesteps 5"),
    ([PROTOCOL, "--checkpoint", "NOT_DPOT", "--data-root", "ROOT"], "not a DPOT state dict"),
    ([PROTOCOL, "--data-root", "ROOT"], "needs --checkpoint FILE and --data-root DIR"),
    ([PROTOCOL, "--checkpoint", "CKPT", "--data-root", "ROOT", "--published", "DPOT-X"],
     "--published DPOT-X is not a row"),
    ([PROTOCOL, "--checkpoint", "CKPT", "--data-root", "ROOT", "--format", "htm"], "unknown format 'htm'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, full_root, checkpoint, args, message):
    (tmp_path / "empty").mkdir()
    torch.save({"model": {"weight": torch.zeros(2)}}, tmp_path / "not_dpot.pth")
    wrong = write_checkpoint(tmp_path / "wrong.pth", img_size=64, in_timesteps=5)
    places = {"CKPT": str(checkpoint), "ROOT": str(full_root), "EMPTY": str(tmp_path / "empty"),
              "NOWHERE": str(tmp_path / "nowhere"), "WRONG": str(wrong), "NOT_DPOT": str(tmp_path / "not_dpot.pth")}
    result = invoke("reproduce", *[places.get(a, a) for a in args], "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and message in result.output
    assert result.output.strip().count("\n") == 0


def test_the_pretraining_command_reads_every_training_file_as_the_official_loader(tmp_path, protocol):
    """`pdeb reproduce dpot-table1 --pretrain-command`: every column's first train_size training
    trajectories, no validation split, the size's batch, noise and weights; a config that builds."""
    import shlex

    from pdebench_core.config import build_config
    from pdebench_core.protocol_pretraining import dataset_names

    for column in protocol.columns:
        write_column(tmp_path, column, n_train=2)
    result = invoke("reproduce", "dpot-table1", "--pretrain-command", "--data-root", str(tmp_path))
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output.strip())
    names = dataset_names(protocol)
    assert len(set(names.values())) == 12 and names["cns_M1_eta0.1"] == "cfd2d-m1-eta1e-1"
    settings = dict(item.split("=", 1) for item in argv if "=" in item)
    for column in protocol.columns:
        name = names[column.key]
        assert settings[f"data.{name}.path"] == str(tmp_path / column.train)
        assert settings[f"data.{name}.n_train"] == str(column.train_size) and settings[f"data.{name}.n_val"] == "0"
        assert settings[f"data.{name}.n_test"] == str(column.eval_test_size)  # the test set of Table 1's rows
    ti = protocol.pretraining["sizes"]["ti"]
    assert settings["train.batch_size"] == str(ti["num_gpus"] * ti["batch_per_gpu"]) == "120"
    assert float(settings["task.noise_scale"]) == ti["noise_scale"] and settings["data.swe2d.weight"] == "20"
    assert "data.cfdbench.weight" not in settings  # weight 1: left to the default
    options = dict(zip(argv[2::2], argv[3::2]))
    cfg = build_config(model="dpot", data=options["--data"], task="pretrain", profile="paper",
                       overrides=[item for item in argv if "=" in item and not item.startswith("--")])
    assert cfg.train.batch_size == 120 and cfg.data["ns2d-nu1e-4"].n_train == 9800
    refused = invoke("reproduce", "dpot-table1", "--pretrain-command", "--data-root", str(tmp_path), "--size", "xl")
    assert refused.exit_code == 2 and "no pre-training of size 'xl'" in refused.output
