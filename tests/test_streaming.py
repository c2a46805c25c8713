"""Data and weights read from URLs: ranged reads with a block cache, whole-file fallbacks, clear
errors. Everything runs against a local HTTP server on 127.0.0.1 that counts what it sends."""

from __future__ import annotations

import importlib.util
import re
import socket
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pdebench_core.cli import app
from pdebench_core.data import integrity, remote
from pdebench_core.data.canonical import write_canonical
from pdebench_core.data.layouts import open_layout
from pdebench_core.data.layouts.fixtures import write_cfdbench, write_pdearena_shard
from pdebench_core.errors import DataError, UsageError
from pdebench_core.spec import DataSpec

SHAPE = (32, 12, 32, 32, 1)  # (N, T, X, Y, C) per split: 1.5 MiB, 48 KiB a trajectory
BLOCK = 64 * 1024
runner = CliRunner()


@pytest.fixture
def served(served_folder):
    return served_folder


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(remote, "BLOCK_BYTES", BLOCK)


def _ns2d_file(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    splits = {s: rng.standard_normal(SHAPE).astype(np.float32) for s in ("train", "val", "test")}
    write_canonical(path, splits, DataSpec(name="ns2d", fields=("vorticity",), spatial_shape=SHAPE[2:4], t_in=10,
                                           dt=1.0, n_frames=SHAPE[1]))
    return path


def _pdebench_file(path: Path, seed: int = 0) -> Path:
    """PDEBench's single-file layout, ``tensor`` ``(N, T, X, Y)``: its splits read the file itself."""
    with h5py.File(path, "w") as f:
        f["tensor"] = np.random.default_rng(seed).standard_normal(SHAPE[:-1]).astype(np.float32)
    return path


@pytest.fixture
def closed_port():
    """A port of 127.0.0.1 that refuses connections for the whole test: bound, never listening,
    so no other process can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_url_forms():
    assert remote.as_url("https://host/a/b.h5") == "https://host/a/b.h5"
    assert remote.as_url(Path("https://host/a/b.h5")) == "https://host/a/b.h5"  # pathlib folds '//'
    assert remote.as_url("hf://datasets/org/set/f.hdf5") == "hf://datasets/org/set/f.hdf5"
    for local in ("/data/f.h5", "data/f.h5", "C:/data/f.h5", "file:///data/f.h5", "nosuchproto://x/f.h5", "~/f.h5"):
        assert remote.as_url(local) is None, local


def test_a_window_reads_only_the_blocks_it_touches(served, small_blocks, private_home):
    local = _ns2d_file(served.root / "ns.h5")
    url = f"{served.url}/ns.h5"
    found = open_layout(url)
    assert found.path == url and found.layout == "canonical" and found.traj_shape == SHAPE[1:]
    window = found.pools["train"].window(5, 3, 4)
    with h5py.File(local, "r") as f:
        np.testing.assert_array_equal(window, f["train"][5, 3:7])
    size = local.stat().st_size
    assert served.bytes_sent < size / 8, (served.bytes_sent, size)
    ranged = [r for r in served.requests if r[0] == "GET"]
    assert ranged and all(r[2] for r in ranged)  # every GET asked for a range

    served.reset()  # the blocks are on disk: a new reader of the same window fetches no block again
    again = open_layout(url).pools["train"].window(5, 3, 4)
    np.testing.assert_array_equal(again, window)
    assert served.bytes_sent == 0 and {r[0] for r in served.requests} == {"HEAD"}, served.requests


def _write_mat73(path: Path) -> None:
    """MATLAB 7.3: HDF5 after a 512-byte header, axes reversed (as MATLAB writes ``u`` (N, X, Y, T))."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f["u"] = np.random.default_rng(2).standard_normal((3, 4, 4, 6)).T
        f["u"].attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .")


def _write_mat5(path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    scipy_io.savemat(path, {"u": np.random.default_rng(3).standard_normal((3, 4, 4, 6))})


def _write_multi(path: Path) -> None:
    with h5py.File(path, "w") as f:
        for i in range(3):
            f[f"{i:04d}/data"] = np.random.default_rng(i).standard_normal((6, 4, 4, 2)).astype(np.float32)


def _write_dpot(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["data"] = np.random.default_rng(4).standard_normal((3, 4, 4, 6, 2)).astype(np.float32)


def _write_cfdbench_train(path: Path) -> None:
    """DPOT's CFDBench train file alone (pairing it with its test file needs local files)."""
    write_cfdbench(path.parent, n_train=3, n_test=2)
    (path.parent / "ns2d_cdb_test.hdf5").unlink()


WRITERS = {
    "canonical": ("ns.h5", _ns2d_file),
    "pdebench": ("tensor.hdf5", _pdebench_file),
    "pdebench-multi": ("multi.h5", _write_multi),
    "fno-mat": ("ns_v73.mat", _write_mat73),
    "fno-mat-v5": ("ns_v5.mat", _write_mat5),
    "dpot": ("dpot.hdf5", _write_dpot),
    "pdearena": ("shard.h5", lambda p: write_pdearena_shard(p, {"train": 2, "valid": 1, "test": 1})),
    "cfdbench": ("ns2d_cdb_train.hdf5", lambda p: _write_cfdbench_train(p)),
}


@pytest.mark.parametrize("layout", list(WRITERS))
def test_every_single_file_layout_reads_the_same_over_a_url(served, private_home, layout):
    name, write = WRITERS[layout]
    write(served.root / name)
    local, remote_found = open_layout(served.root / name), open_layout(f"{served.url}/{name}")
    assert remote_found.layout == local.layout == layout.replace("-v5", "")
    assert remote_found.path.startswith("http://") or layout == "fno-mat-v5"  # v5: read from a whole copy
    assert {k: len(v) for k, v in remote_found.pools.items()} == {k: len(v) for k, v in local.pools.items()}
    for pool, trajectories in local.pools.items():
        np.testing.assert_array_equal(remote_found.pools[pool][len(trajectories) - 1], trajectories[-1])


def test_smoke_training_run_on_a_url(served, small_blocks, private_home):
    local = _ns2d_file(served.root / "ns.h5")
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", f"data.ns2d.path={served.url}/ns.h5",
                                 "--profile", "smoke", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "ns2d" in result.output and "finished" in result.output
    assert 0 < served.bytes_sent < local.stat().st_size / 2  # the smoke splits, not the whole file


def test_dataloader_workers_read_a_url_too(served, private_home):
    """Forked workers must not wait on the parent's fsspec I/O thread (they used to hang forever)."""
    import os
    import signal
    import subprocess
    import sys

    _ns2d_file(served.root / "ns.h5")
    process = subprocess.Popen(  # a session of its own: a hung run's workers can be stopped with it
        [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data", "ns2d",
         f"data.ns2d.path={served.url}/ns.h5", "--profile", "smoke", "--device", "cpu", "--quiet",
         "train.num_workers=2", "train.max_steps=3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("a run with train.num_workers=2 on a URL did not finish")
    assert process.returncode == 0, stderr


def test_server_ignoring_ranges_falls_back_to_one_full_download(served, small_blocks, private_home, capfd):
    local = _ns2d_file(served.root / "ns.h5")
    served.behaviour["ns.h5"] = "no-range"
    url = f"{served.url}/ns.h5"
    window = open_layout(url).pools["val"].window(2, 0, 3)
    with h5py.File(local, "r") as f:
        np.testing.assert_array_equal(window, f["val"][2, 0:3])
    err = capfd.readouterr().err
    assert "does not answer ranged reads; downloading the whole file" in err
    assert re.search(r"downloading ns\.h5: 100%", err), err
    served.reset()
    open_layout(url).pools["test"].window(0, 0, 2)  # the copy is reused
    assert all(method == "HEAD" for method, _, _ in served.requests), served.requests
    assert "downloading" not in capfd.readouterr().err


def test_a_file_changed_on_the_server_is_read_and_scanned_again(served, small_blocks, private_home, monkeypatch):
    _pdebench_file(served.root / "ns.h5", seed=0)
    url = f"{served.url}/ns.h5"
    identity = integrity.file_identity(url)
    assert identity["url"] == url and identity["size"] == (served.root / "ns.h5").stat().st_size
    assert identity["etag"] and identity["last_modified"]
    scans = []
    original = integrity.first_non_finite
    monkeypatch.setattr(integrity, "first_non_finite", lambda t: scans.append(1) or original(t))

    class Dataset:
        def split(self, name):
            return open_layout(url).pools[name]

    integrity.check_finite("ns2d", Dataset(), splits=("all",))
    integrity.check_finite("ns2d", Dataset(), splits=("all",))
    assert len(scans) == 1  # remembered by the server's version of the file
    time.sleep(0.01)
    _pdebench_file(served.root / "ns.h5", seed=1)  # new ETag and Last-Modified
    assert integrity.file_identity(url) != identity
    integrity.check_finite("ns2d", Dataset(), splits=("all",))
    assert len(scans) == 2
    with h5py.File(served.root / "ns.h5", "r") as f:  # the new version, not stale cached blocks
        np.testing.assert_array_equal(Dataset().split("all").window(1, 0, 2)[..., 0], f["tensor"][1, 0:2])


def test_unreachable_host_is_one_line_and_quick(private_home, closed_port):
    url = f"http://127.0.0.1:{closed_port}/ns.h5"
    started = time.monotonic()
    result = runner.invoke(app, ["run", "--model", "fno", "--data", "ns2d", f"data.ns2d.path={url}",
                                 "--profile", "smoke", "--device", "cpu"])
    assert time.monotonic() - started < 30
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and f"cannot reach {url}" in lines[0], result.output
    assert "Traceback" not in result.output


def test_missing_file_and_missing_protocol_package(served, private_home):
    with pytest.raises(DataError, match=r"ns\.h5: the server answered HTTP 404"):
        open_layout(f"{served.url}/ns.h5")
    if importlib.util.find_spec("huggingface_hub") is None:  # the hf:// protocol's package
        with pytest.raises(UsageError, match=r"cannot read hf:// URLs: .*huggingface_hub"):
            open_layout("hf://datasets/org/set/train.hdf5")


def test_dropped_connections_are_retried_a_bounded_number_of_times(served, small_blocks, private_home):
    _ns2d_file(served.root / "ns.h5")
    url = f"{served.url}/ns.h5"
    reader = remote.RangedFile(remote.stat(url))
    served.behaviour["ns.h5"] = "drop"
    served.reset()
    with pytest.raises(DataError, match=rf"after {remote.ATTEMPTS} tries"):
        reader.read(100)
    assert len([r for r in served.requests if r[0] == "GET"]) == remote.ATTEMPTS
    served.behaviour.clear()
    assert reader.read(8) == (served.root / "ns.h5").read_bytes()[:8]
    reader.close()


def test_weights_from_a_url_are_downloaded_once(served, private_home):
    from pdebench_core.weights import load_weights

    source = torch.nn.Linear(3, 2)
    torch.save({"model": source.state_dict()}, served.root / "w.pt")
    target = torch.nn.Linear(3, 2)
    load_weights(target, f"{served.url}/w.pt")
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)
    served.reset()
    load_weights(torch.nn.Linear(3, 2), f"{served.url}/w.pt")
    methods = [method for method, _, _ in served.requests]
    assert methods and set(methods) == {"HEAD"}  # only asked whether the cached copy is still current


def test_dpot_init_reads_a_url(served, private_home, closed_port):
    from pdeb_dpot.checkpoint import read_state_dict

    state = {"model": {"module.pos_embed": torch.arange(6.0).reshape(1, 2, 3)}}
    torch.save(state, served.root / "dpot.pth")
    loaded = read_state_dict(f"{served.url}/dpot.pth")
    assert list(loaded) == ["pos_embed"] and torch.equal(loaded["pos_embed"], state["model"]["module.pos_embed"])
    with pytest.raises(UsageError, match="cannot reach"):
        read_state_dict(f"http://127.0.0.1:{closed_port}/dpot.pth")


def test_data_hash_of_a_url_follows_the_servers_version(served, private_home):
    from pdebench_core.data.identity import file_content_hash

    _ns2d_file(served.root / "a.h5")
    _ns2d_file(served.root / "b.h5")
    first = file_content_hash(f"{served.url}/a.h5")
    assert first.startswith("url-") and first == file_content_hash(f"{served.url}/a.h5")
    assert first != file_content_hash(f"{served.url}/b.h5")  # another file, another hash
    time.sleep(1.1)  # Last-Modified has a resolution of one second
    path = served.root / "a.h5"
    path.write_bytes(path.read_bytes())  # a new version on the server
    assert file_content_hash(f"{served.url}/a.h5") != first


def test_a_server_without_validators_is_said_once_naming_the_cache_to_delete(served, private_home, capfd):
    from pdebench_core.data import remote

    _ns2d_file(served.root / "plain.h5")
    served.behaviour["plain.h5"] = "no-validators"
    info = remote.stat(f"{served.url}/plain.h5")
    remote.stat(f"{served.url}/plain.h5")
    err = capfd.readouterr().err
    assert (info.version, info.modified) == (None, None)
    assert err.count("warning:") == 1 and "states no ETag or Last-Modified" in err
    assert f"delete {info.folder} to read it again" in " ".join(err.split())


def test_verify_reads_a_url(served, private_home):
    from pdebench_core.data.verify import verify_file

    _ns2d_file(served.root / "ns.h5")
    assert [p for p in verify_file(f"{served.url}/ns.h5") if p.severity == "error"] == []


def test_data_commands_read_a_url_and_stats_caches_it_by_the_servers_version(served, private_home):
    """`pdeb data info`, `verify` and `stats` take a file's URL as they take a local path."""
    import json

    _ns2d_file(served.root / "ns.h5")
    url = f"{served.url}/ns.h5"
    info = runner.invoke(app, ["data", "info", url, "--json"])
    assert info.exit_code == 0 and json.loads(info.output)["splits"] == {"train": 32, "val": 32, "test": 32}
    verify = runner.invoke(app, ["data", "verify", url])
    assert verify.exit_code == 0 and f"ok {url}: no problems found" in " ".join(verify.output.split())
    first = runner.invoke(app, ["data", "stats", url, "--json"])
    again = runner.invoke(app, ["data", "stats", url, "--json"])
    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    computed, cached = json.loads(first.output), json.loads(again.output)
    assert (computed["source"], cached["source"]) == ("computed", "cache")
    assert cached["channels"] == computed["channels"]
    with h5py.File(served.root / "ns.h5", "r") as f:
        train = f["train"][:].astype(np.float64)
    assert computed["channels"]["vorticity"]["mean"] == pytest.approx(train.mean(), rel=1e-9)
    assert computed["channels"]["vorticity"]["std"] == pytest.approx(train.std(), rel=1e-9)


@pytest.mark.parametrize("label, parts", [
    ("data/a.h5:/train", ("data/a.h5", "train")),
    ("data/a.h5", ("data/a.h5", None)),
    ("http://127.0.0.1:8000/a.h5:/test", ("http://127.0.0.1:8000/a.h5", "test")),
    ("https://host/a.h5", ("https://host/a.h5", None)),
    ("C:/a.h5", ("C:/a.h5", None)),
    ("data/a.h5:/group/train", ("data/a.h5", "group/train")),
])
def test_a_readers_label_splits_into_file_and_dataset(label, parts):
    from pdebench_core.data.layouts.common import split_label

    assert split_label(label) == parts


def test_a_file_url_is_the_local_path_and_an_unknown_protocol_is_one_line(tmp_path, private_home):
    _ns2d_file(tmp_path / "local.h5")
    info = runner.invoke(app, ["data", "info", (tmp_path / "local.h5").as_uri(), "--json"])
    assert info.exit_code == 0, info.output
    unknown = runner.invoke(app, ["data", "info", "nosuch://host/a.h5"])
    assert unknown.exit_code == 2 and "no fsspec backend reads 'nosuch://' URLs" in unknown.output
    from pdebench_core.config import build_config

    uri = (tmp_path / "local.h5").as_uri()
    cfg = build_config(model="fno", data="ns2d", profile="smoke", overrides=[f"data.ns2d.path={uri}"])
    assert cfg.data.ns2d.path == str(tmp_path / "local.h5")


def test_a_truncated_answer_is_named_not_taken_for_an_http_400():
    """aiohttp reports a short body as '400, message:' and the reason on the next line."""
    from aiohttp.http_exceptions import ContentLengthError

    from pdebench_core.data.remote import _reason

    wrapped = OSError("fsspec's own wrapper")
    wrapped.__cause__ = ContentLengthError("Not enough data to satisfy content length header.")
    assert _reason(wrapped) == "Not enough data to satisfy content length header."
