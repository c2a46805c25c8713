"""verify_file: metadata, structure and value checks on canonical files; the CLI command."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pdebench_core.cli_data import data_app
from pdebench_core.data.canonical import write_canonical
from pdebench_core.data.verify import Problem, verify_file
from pdebench_core.spec import DataSpec

SPEC = DataSpec(name="toy", fields=("u", "v"), spatial_shape=(6, 5), t_in=3, dt=0.1, n_frames=8)
runner = CliRunner()


def healthy(seed=0):
    rng = np.random.default_rng(seed)
    return {"train": rng.standard_normal((5, 8, 6, 5, 2)).astype(np.float32),
            "val": rng.standard_normal((2, 8, 6, 5, 2)).astype(np.float32),
            "test": rng.standard_normal((2, 8, 6, 5, 2)).astype(np.float32)}


def write(tmp_path, splits=None, spec=SPEC, name="data.h5"):
    return write_canonical(tmp_path / name, healthy() if splits is None else splits, spec, {"generator": "test"})


def only(problems, severity="error"):
    return [p for p in problems if p.severity == severity]


def test_healthy_file_has_no_problems(tmp_path):
    assert verify_file(write(tmp_path)) == []


def test_values_changed_after_writing_fail_the_stored_checksum(tmp_path):
    """Bytes damaged on disk can still be finite, varied numbers: only the checksum tells."""
    path = write(tmp_path)
    with h5py.File(path, "r+") as f:
        f["val"][1, 4, 2, 3, 0] = 123.0
    problems = only(verify_file(path))
    assert [(p.split, p.trajectory) for p in problems] == [("val", None)]
    assert "no longer match the checksum stored when the file was written" in problems[0].message
    result = runner.invoke(data_app, ["verify", str(path), "--strict"])
    assert result.exit_code != 0 and "checksum" in result.output
    assert verify_file(path, scan=False) == []  # structure only: the values are not read


def test_nan_and_inf_are_located(tmp_path):
    splits = healthy()
    splits["train"][2, 3, 1, 1, 0] = np.nan
    splits["train"][2, 4, 0, 0, 1] = np.inf
    splits["test"][1, 7, 5, 4, 1] = -np.inf
    problems = only(verify_file(write(tmp_path, splits)))
    assert len(problems) == 2
    first, second = problems
    assert (first.split, first.trajectory, first.frames) == ("train", 2, (3, 4))
    assert "2 NaN/Inf" in first.message and "frames 3-4" in first.message
    assert (second.split, second.trajectory, second.frames) == ("test", 1, (7,))
    assert str(first).startswith("error: train[2]:")


def test_constant_frames_are_reported(tmp_path):
    splits = healthy()
    splits["val"][1, 5:] = 0.0  # unwritten tail of a trajectory
    problems = only(verify_file(write(tmp_path, splits)))
    assert len(problems) == 1
    p = problems[0]
    assert (p.split, p.trajectory, p.frames) == ("val", 1, (5, 6, 7))
    assert "constant frames 5-7" in p.message and "every value 0" in p.message


def test_bad_dtype_and_chunking(tmp_path):
    path = tmp_path / "f64.h5"
    write(tmp_path, name="f64.h5")
    with h5py.File(path, "r+") as f:
        data = f["train"][...].astype(np.float64)
        del f["train"]
        f.create_dataset("train", data=data)  # float64, contiguous
    problems = verify_file(path)
    errors = only(problems)
    assert len(errors) == 1 and errors[0].split == "train" and "dtype float64, expected float32" in errors[0].message
    assert any("one trajectory per chunk" in p.message for p in only(problems, "warning"))


def test_missing_and_malformed_metadata(tmp_path):
    path = write(tmp_path)
    with h5py.File(path, "r+") as f:
        del f.attrs["pdeb_format"]
        f.attrs["spec"] = "{not json"
        del f.attrs["provenance"]
    problems = verify_file(path)
    messages = " | ".join(p.message for p in only(problems))
    assert "pdeb_format" in messages and "not valid JSON" in messages
    assert any("provenance" in p.message for p in only(problems, "warning"))
    with h5py.File(path, "r+") as f:
        f.attrs["pdeb_format"] = "canonical"
        f.attrs["spec"] = json.dumps({"name": "toy", "fields": ["u"]})
        f.attrs["format_version"] = 7
    messages = " | ".join(p.message for p in only(verify_file(path)))
    assert "spec lacks spatial_shape" in messages and "format_version 7" in messages


@pytest.mark.parametrize("stored, problem", [
    ("[1]", "attribute 'spec' is not a JSON object"),
    (json.dumps({"name": "x", "spatial_shape": [6, 5], "dt": 0.1}), "spec lacks fields"),
    (json.dumps({"name": "x", "fields": 5, "spatial_shape": [6, 5]}), "spec is malformed"),
    (json.dumps({**SPEC.to_dict(), "dt": -1}), "spec dt is -1; it must be a positive number"),
    (json.dumps({**SPEC.to_dict(), "fields": ["u"]}), "spec names 1 fields but the data has 2 channels"),
    ({"format_version": 2}, "format_version 2 is not supported (this pdeb reads 1); it was written by a newer pdeb"),
])
def test_every_reader_of_a_damaged_spec_says_what_verify_says(tmp_path, monkeypatch, pdeb_together, stored,
                                                              problem):
    """info, stats, convert and a run read the spec (and format version) as verify does: one
    line, exit 2."""
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    path = write(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs.update(stored if isinstance(stored, dict) else {"spec": stored})
    assert problem in " | ".join(p.message for p in only(verify_file(path)))
    commands = [["data", "info", str(path)], ["data", "stats", str(path)],
                ["data", "convert", str(path), str(tmp_path / "copy.h5")],
                ["run", "--model", "persistence", "--task", "evaluate", "--profile", "smoke", "--data", "burgers1d",
                 f"data.burgers1d.path={path}", "--quiet"]]
    for command, result in zip(commands, pdeb_together(commands, env={"PDEB_HOME": str(tmp_path / "home")})):
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert result.stderr.strip().startswith("error: ") and problem in result.stderr.strip().splitlines()[-1]


def test_spec_must_match_the_arrays(tmp_path):
    wrong = SPEC.replace(spatial_shape=(5, 6), fields=("u",), n_frames=9)
    messages = [p.message for p in only(verify_file(write(tmp_path, spec=wrong)))]
    assert any("spatial_shape" in m for m in messages)
    assert any("names 1 fields but the data has 2 channels" in m for m in messages)
    assert any("n_frames 9" in m for m in messages)


def test_splits_must_agree_in_grid(tmp_path):
    splits = healthy()
    splits["test"] = np.ones((2, 8, 6, 4, 2), np.float32) * np.arange(4)[:, None]
    problems = only(verify_file(write(tmp_path, splits)))
    assert any("splits differ in grid" in p.message for p in problems)


def test_overlapping_splits_are_errors(tmp_path):
    splits = healthy()
    splits["test"][0] = splits["train"][3]
    problems = only(verify_file(write(tmp_path, splits)))
    assert len(problems) == 1
    assert (problems[0].split, problems[0].trajectory) == ("test", 0)
    assert "identical to train[3]" in problems[0].message


def test_not_hdf5_and_structure_only(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"hello")
    problems = verify_file(junk)
    assert len(problems) == 1 and problems[0].severity == "error" and "junk.h5" in problems[0].message
    splits = healthy()
    splits["train"][0, 0, 0, 0, 0] = np.nan
    path = write(tmp_path, splits)
    assert verify_file(path, scan=False) == []  # values are not read
    assert len(verify_file(path)) == 1


def test_many_bad_trajectories_are_summarised(tmp_path):
    splits = {"train": np.zeros((14, 3, 4, 4, 1), np.float32)}
    splits["train"] += np.arange(14, dtype=np.float32)[:, None, None, None, None]
    splits["train"][:, 1, 0, 0, 0] = np.nan
    spec = DataSpec(name="t", fields=("u",), spatial_shape=(4, 4), t_in=1)
    problems = verify_file(write(tmp_path, splits, spec))
    nonfinite = [p for p in problems if "NaN/Inf" in p.message]
    assert len(nonfinite) == 11 and "and 4 more trajectories" in nonfinite[-1].message


def test_problem_to_dict():
    p = Problem("warning", "odd", "train", 3, (1, 2))
    assert p.to_dict() == {"severity": "warning", "where": "train[3]", "split": "train", "trajectory": 3,
                           "frames": [1, 2], "message": "odd"}


def test_cli_verify_exit_codes(tmp_path):
    good = write(tmp_path, name="good.h5")
    result = runner.invoke(data_app, ["verify", str(good)])
    assert result.exit_code == 0 and "no problems" in result.stdout
    splits = healthy()
    splits["val"][0, 2] = np.nan
    bad = write(tmp_path, splits, name="bad.h5")
    result = runner.invoke(data_app, ["verify", str(bad)])
    assert result.exit_code == 1 and "val[0]" in result.stdout and "1 error(s)" in result.stdout
    result = runner.invoke(data_app, ["verify", str(bad), "--json"])
    assert json.loads(result.stdout)[0]["where"] == "val[0]"
    with h5py.File(good, "r+") as f:
        del f.attrs["provenance"]
    assert runner.invoke(data_app, ["verify", str(good)]).exit_code == 0
    assert runner.invoke(data_app, ["verify", str(good), "--strict"]).exit_code == 1


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_cli_verify_quick_skips_values(tmp_path, value):
    splits = healthy()
    splits["train"][1, 1] = value
    path = write(tmp_path, splits)
    assert runner.invoke(data_app, ["verify", str(path), "--quick"]).exit_code == 0
    assert runner.invoke(data_app, ["verify", str(path)]).exit_code == 1


def test_huge_declared_but_unwritten_split_is_reported_without_scanning(tmp_path):
    import json

    import h5py

    from pdebench_core.data.verify import verify_file
    from pdebench_core.spec import DataSpec

    path = tmp_path / "declared.h5"
    with h5py.File(path, "w") as f:
        f.attrs["pdeb_format"], f.attrs["format_version"] = "canonical", 1
        f.attrs["spec"] = json.dumps(DataSpec(name="x", fields=("u",), spatial_shape=(4096, 4096), t_in=10).to_dict())
        f.attrs["provenance"] = "{}"
        f.create_dataset("train", shape=(100000, 100, 4096, 4096, 1), dtype="f4", chunks=(1, 1, 256, 256, 1))
    problems = verify_file(path)  # returns at once: the 610 TiB are never read
    assert any("declares 610.4 TiB but stores 0 B: most of it was never written" in str(p) for p in problems)


def test_a_file_of_another_layout_is_named_not_listed_as_broken(tmp_path):
    """A PDEBench file is not a damaged canonical one: one line saying what it is and what to run."""
    from pdebench_core.errors import DataError

    path = tmp_path / "burgers.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((4, 6, 16), dtype=np.float32)
        f["t-coordinate"] = np.arange(7, dtype=np.float32)
    with pytest.raises(DataError, match=r"burgers.hdf5 is a pdebench file, not a canonical pdeb one; .*pdeb data "
                                        r"convert .* OUT.h5"):
        verify_file(path)
