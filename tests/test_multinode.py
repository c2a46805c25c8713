"""Two "machines" of one process each, joined by torchrun's c10d rendezvous on 127.0.0.1,
train to the weights of one process with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from pdebench_core.checkpoint import load_checkpoint
from pdebench_core.cli import app

SMOKE = ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--device", "cpu", "--quiet",
         "train.batch_size=4", "train.max_steps=6"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_train_like_one_process(tmp_path):
    env = {**os.environ, "PDEB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pdebench_core.cli", *SMOKE]
    subprocess.run([*command, "--run-id", "one"], env=env, check=True, capture_output=True, timeout=300)
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen([*command, "--run-id", "two-nodes", "--nnodes", "2", "--node-rank", str(rank),
                               "--rdzv-endpoint", endpoint], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    runs = tmp_path / "home" / "runs"
    reference = load_checkpoint(runs / "one" / "checkpoints" / "last.pt")["model"]
    weights = load_checkpoint(runs / "two-nodes" / "checkpoints" / "last.pt")["model"]
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], atol=1e-5, rtol=1e-5, msg=key)
    assert ", 2 processes" in (runs / "two-nodes" / "log.txt").read_text()


@pytest.mark.parametrize("args, message", [
    (["--nnodes", "2"], "needs --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--rdzv-endpoint", "nohost"], "needs --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank 2 must lie in 0..1"),
    (["--nnodes", "0"], "--nnodes 0 must be at least 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "h:99999"], "port 99999 is not a TCP port; use one in 1..65535"),
])
def test_bad_node_options_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("PDEB_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, [*SMOKE, *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_a_node_whose_peers_never_join_says_so_in_one_line(capsys, tmp_path, monkeypatch):
    import tempfile

    from pdebench_core.launcher import torchrun

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = torchrun(["--nnodes=2", "--node-rank=0", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
                      "--rdzv-id=lonely", "--rdzv-conf=join_timeout=2", "--nproc-per-node=1",
                      "-m", "pdebench_core.cli", "models"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: the processes of this run did not all join") and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())  # torch's log folder went with the launch


def test_a_node_that_loses_the_rendezvous_says_which_and_how_to_resume(capsys, monkeypatch):
    """The node hosting the rendezvous stops mid-run: the others say so (not "did not all join")."""
    import torch.distributed.run as torch_run
    from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError

    from pdebench_core.launcher import torchrun

    def store_gone(args):
        raise RendezvousConnectionError("The connection to the C10d store has failed.")

    monkeypatch.setattr(torch_run, "run", store_gone)
    code = torchrun(["--nnodes=2", "--node-rank=1", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29500",
                     "--nproc-per-node=1", "-m", "pdebench_core.cli", "run"], run_id="two-nodes")
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("error: lost (or never reached) the run's rendezvous at node0:29500")
    assert "with '--resume two-nodes' in place of '--run-id two-nodes' once the run has begun" in err


def test_launched_runs_keep_torchs_cpp_warnings_out_of_the_way(monkeypatch):
    """Stack frames of C++ warnings would bury the one-line report of a lost peer."""
    from pdebench_core import cli

    monkeypatch.delenv("TORCH_CPP_LOG_LEVEL", raising=False)
    monkeypatch.setattr(sys, "argv", ["pdeb", "run", "--model", "fno", "--nproc-per-node", "2"])
    cli._quiet_torch_cpp_warnings_of_launched_runs()
    assert os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"
    monkeypatch.setenv("TORCH_CPP_LOG_LEVEL", "INFO")  # a level the user chose stays
    cli._quiet_torch_cpp_warnings_of_launched_runs()
    assert os.environ["TORCH_CPP_LOG_LEVEL"] == "INFO"
    monkeypatch.delenv("TORCH_CPP_LOG_LEVEL")
    monkeypatch.setattr(sys, "argv", ["pdeb", "run", "--model", "fno"])  # one process: nothing to quiet
    cli._quiet_torch_cpp_warnings_of_launched_runs()
    assert "TORCH_CPP_LOG_LEVEL" not in os.environ
