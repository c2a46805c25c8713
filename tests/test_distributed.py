"""Several processes on the CPU (gloo): DDP and FSDP train like one process, skip syncs while
accumulating, checkpoint shard by shard, wait for data generation and name a stopped peer.

The worker tests start their processes by running this file as a script (``python
test_distributed.py WORKER ...``, one process per rank); each worker builds the engine's own
``Trainer`` on synthetic windows (see ``test_engine``). The ``pdeb run`` tests go through
torchrun with real smoke data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the synthetic-data helpers live in test_engine
    sys.path.insert(0, str(HERE))

from pdebench_core.checkpoint import export_full_checkpoint, load_checkpoint, read_checkpoint  # noqa: E402
from pdebench_core.distributed import end_worker, leave_process_group  # noqa: E402
from test_engine import make_trainer, tiny_dpot  # noqa: E402

MIXED = ["--model", "dpot", "--data", "ns2d,cfd3d", "--task", "train", "--profile", "smoke", "--device", "cpu",
         "--quiet", "train.max_steps=6", "train.batch_size=4", "train.log_every=2", "model.depth=1"]


# --------------------------------------------------------------------------- workers


#: Variable naming the file through which rank 0 tells the other ranks its store's port.
PORT_FILE = "PDEB_TEST_STORE_PORT_FILE"
_PORT_FILES: list[tempfile.TemporaryDirectory] = []  # made by the test process alone, removed when it ends


def spawn(worker: str, *args, world_size: int = 2, timeout_s: float = 60.0, wait: bool = True):
    """Run ``worker(rank, world_size, *args)`` of this file in ``world_size`` processes joined by
    gloo; with ``wait``, check that every one succeeds."""
    # Rank 0's store takes a free port itself and writes it here for the others: a port chosen
    # beforehand could be taken by another process before rank 0 binds it.
    if not _PORT_FILES:
        _PORT_FILES.append(tempfile.TemporaryDirectory(prefix="pdeb-test-store-"))
    port_file = Path(tempfile.mkdtemp(dir=_PORT_FILES[0].name)) / "port"
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", PORT_FILE: str(port_file), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size), "OMP_NUM_THREADS": "1"}
        # Output goes to files: a full pipe would block one rank while the test waits on another.
        output = tempfile.TemporaryFile(mode="w+")
        procs.append(subprocess.Popen([sys.executable, __file__, worker, str(timeout_s), *map(str, args)], env=env,
                                      stdout=output, stderr=subprocess.STDOUT, text=True))
        procs[-1].output = output
    if wait:
        for rank, proc in enumerate(procs):
            proc.wait(timeout=300)
            proc.output.seek(0)
            assert proc.returncode == 0, f"rank {rank} failed:\n{proc.output.read()[-3000:]}"
    return procs


def _worker_main(worker: str, timeout_s: str, *args: str) -> None:
    import datetime

    torch.set_num_threads(1)
    # The rendezvous gets a store with its own generous timeout: on a busy machine one process
    # may start seconds after the other, and a short collective timeout (the tests' subject)
    # would otherwise also bound the wait for it to join.
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    port_file = Path(os.environ[PORT_FILE])
    if rank == 0:
        store = dist.TCPStore(os.environ["MASTER_ADDR"], 0, world_size, is_master=True,
                              timeout=datetime.timedelta(seconds=120), wait_for_workers=False)
        port_file.with_suffix(".tmp").write_text(str(store.port))
        port_file.with_suffix(".tmp").replace(port_file)
    else:
        deadline = time.time() + 120
        while not port_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(port_file.read_text()), world_size, is_master=False,
                              timeout=datetime.timedelta(seconds=120))
    os.environ["MASTER_PORT"] = str(store.port)  # as torchrun sets it: pdeb's roll-call reaches the store there
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=float(timeout_s)))
    globals()[worker](dist.get_rank(), dist.get_world_size(), *args)
    leave_process_group()
    end_worker(0)


def _full_weights(trainer) -> dict:
    """Full float32 weights on every rank (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not trainer.sharded:
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    return get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True))


def _noise():
    from pdeb_dpot.tasks import make_input_noise

    return make_input_noise(1e-2, "norm")


# --------------------------------------------------------------------------- mixed dimensions via pdeb run


@pytest.fixture(scope="module")
def mixed_home(tmp_path_factory, pdeb_home):
    """A pdeb home shared by the mixed-dimension runs (the one-process references are reused);
    generated data comes from the session's cache."""
    home = tmp_path_factory.mktemp("mixed-home")
    (pdeb_home / "data").mkdir(exist_ok=True)
    (home / "data").symlink_to(pdeb_home / "data", target_is_directory=True)
    return home


def _reference(pdeb, home: Path, compiled: bool) -> dict:
    run_id = f"one-process-{'compiled' if compiled else 'eager'}"
    last = home / "runs" / run_id / "checkpoints" / "last.pt"
    if not last.exists():
        pdeb("run", *MIXED, f"train.compile={str(compiled).lower()}", "--run-id", run_id,
             env={"PDEB_HOME": str(home)}, check=True)
    return load_checkpoint(last)["model"]


@pytest.mark.parametrize("strategy,compiled", [
    ("ddp", False), ("fsdp", False),
    pytest.param("ddp", True, marks=pytest.mark.slow), pytest.param("fsdp", True, marks=pytest.mark.slow),
])
def test_two_processes_train_2d_and_3d_like_one(pdeb, mixed_home, strategy, compiled):
    # Each step trains one dimension: the other's embedding and head get no gradient, and the
    # blocks are shared by both. Two processes (and two micro-batches each) with the same global
    # batch end where one process does.
    reference = _reference(pdeb, mixed_home, compiled)
    run_id = f"{strategy}-{'compiled' if compiled else 'eager'}"
    pdeb("run", *MIXED, f"train.compile={str(compiled).lower()}", f"train.strategy={strategy}", "train.grad_accum=2",
         "--nproc-per-node", "2", "--run-id", run_id, env={"PDEB_HOME": str(mixed_home)}, check=True)
    weights = load_checkpoint(mixed_home / "runs" / run_id / "checkpoints" / "last.pt")["model"]
    assert weights.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(weights[key], reference[key], atol=1e-5, rtol=1e-5, msg=key)
    log = (mixed_home / "runs" / run_id / "log.txt").read_text()
    assert "could not compile" not in log
    # the run records the command that launched it, so that a rerun launches the same processes
    from pdebench_core.report.provenance import launch_options

    command = (mixed_home / "runs" / run_id / "command.txt").read_text()
    assert launch_options(command) == ["--nproc-per-node", "2"], command


# --------------------------------------------------------------------------- gradient syncs


def _count_syncs(rank: int, world_size: int, out: str) -> None:
    # Compiled (with a stand-in compiler, for speed): the sync switch must reach DDP through it.
    torch.compile = lambda module, **kwargs: module
    for strategy in ("ddp", "fsdp"):
        # FSDP also trains in bf16 here: the mixed-precision policy must not change where syncs happen.
        trainer = make_trainer(tiny_dpot((2, 3)), Path(out) / strategy, dims=(2, 3), rank=rank, world_size=world_size,
                               strategy=strategy, grad_accum=4, batch_size=8, max_steps=4, log_every=4, compile=True,
                               precision="bf16" if strategy == "fsdp" else "fp32", scheduler="constant")
        syncs, engine_reductions = _record_syncs(trainer)
        # Gradients travel only on the last of every 4 micro-batches, and the loss once per log interval.
        assert syncs and {m % 4 for m in syncs} == {0} and sorted(set(syncs)) == [4, 8, 12, 16], (strategy, syncs)
        assert engine_reductions == [4, 4], (strategy, engine_reductions)
    _assert_bf16_compute_and_float32_master(trainer)


def _record_syncs(trainer) -> tuple[list[int], list[int]]:
    """Train; return the micro-batch counts at which gradients were reduced, and the steps at
    which the engine reduced anything itself."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    syncs, engine_reductions, inside_hook = [], [], []
    all_reduce, reduce_scatter = dist.all_reduce, dist.reduce_scatter_single
    if not trainer.sharded:
        ddp = next(m for m in [trainer.forward_model, *trainer.forward_model.modules()]
                   if isinstance(m, DistributedDataParallel))

        def counting_hook(state, bucket):
            syncs.append(trainer.micro_batches)
            inside_hook.append(True)
            try:
                return allreduce_hook(None, bucket)
            finally:
                inside_hook.pop()

        ddp.register_comm_hook(None, counting_hook)

    def counting_reduce_scatter(*args, **kwargs):
        syncs.append(trainer.micro_batches)
        return reduce_scatter(*args, **kwargs)

    def counting_all_reduce(*args, **kwargs):
        if not inside_hook:  # the engine's own reductions, not the gradient hook's
            engine_reductions.append(trainer.step)
        return all_reduce(*args, **kwargs)

    dist.all_reduce, dist.reduce_scatter_single = counting_all_reduce, counting_reduce_scatter
    try:
        trainer.fit()
    finally:
        dist.all_reduce, dist.reduce_scatter_single = all_reduce, reduce_scatter
    return syncs, engine_reductions


def _assert_bf16_compute_and_float32_master(trainer) -> None:
    block = trainer.model.by_dim["2"].blocks[0]
    computed = []
    hook = block.register_forward_pre_hook(lambda m, args: computed.append(m.norm1.weight.dtype))
    trainer.train.max_steps += 1
    trainer.fit()
    hook.remove()
    assert computed and set(computed) == {torch.bfloat16}  # gathered and computed in bf16 ...
    master = block.norm1.weight
    assert master.dtype == torch.float32  # ... while the optimizer updates float32 shards
    assert trainer.optimizer.state[master]["exp_avg"].dtype == torch.float32


def test_accumulation_syncs_gradients_once_per_step(tmp_path):
    # DDP, then FSDP in bf16 (whose blocks compute with bf16 parameters while the optimizer keeps float32).
    spawn("_count_syncs", tmp_path)


# --------------------------------------------------------------------------- sharded checkpoints


def _fit_and_keep(trainer, folder: Path, resume_from: str, resumed_step: int) -> None:
    """Resume ``trainer`` (at ``resumed_step``) when ``resume_from`` is given, train it, and keep
    the full final weights in ``folder/final.pt``."""
    if resume_from:
        trainer.load(Path(resume_from))
        assert trainer.step == resumed_step
    trainer.fit()
    weights = _full_weights(trainer)  # a collective under FSDP: every rank takes part
    if trainer.is_main:
        torch.save(weights, folder / "final.pt")


def _train_sharded(rank: int, world_size: int, out: str, resume_from: str = "") -> None:
    folder = Path(out)
    trainer = make_trainer(tiny_dpot((2,)), folder / "checkpoints", rank=rank, world_size=world_size,
                           input_noise=_noise(), strategy="fsdp", grad_accum=2, max_steps=6, checkpoint_every=3,
                           keep_checkpoints=5, activation_checkpointing=True)
    _fit_and_keep(trainer, folder, resume_from, 3)


def _train_sharded_mixed(rank: int, world_size: int, out: str, resume_from: str = "") -> None:
    folder = Path(out)
    trainer = make_trainer(tiny_dpot((2, 3)), folder / "checkpoints", dims=(2, 3), rank=rank, world_size=world_size,
                           strategy="fsdp", max_steps=4, checkpoint_every=1, keep_checkpoints=5,
                           scheduler="constant")
    _fit_and_keep(trainer, folder, resume_from, 1)


def _continue_one_process_run(rank: int, world_size: int, out: str, strategy: str, dims: str,
                              resume_from: str = "") -> None:
    folder, grids = Path(out), tuple(int(d) for d in dims.split(","))
    trainer = make_trainer(tiny_dpot(grids), folder / "checkpoints", dims=grids, rank=rank, world_size=world_size,
                           strategy=strategy, max_steps=6 if resume_from else 3, checkpoint_every=3,
                           scheduler="constant", batch_size=4)
    _fit_and_keep(trainer, folder, resume_from, 3)


@pytest.mark.parametrize("dims", ["2", "2,3"], ids=["2d", "mixed-2d-3d"])
def test_a_one_process_checkpoint_continues_sharded_on_two(tmp_path, dims):
    """A run started on one process (its optimizer state numbered, not named) continues under
    FSDP on two processes with that state, as it does under DDP; a mixed-dimension model,
    whose blocks every dimension shares, too."""
    spawn("_continue_one_process_run", tmp_path / "one", "fsdp", dims, world_size=1)
    start = tmp_path / "one" / "checkpoints" / "last.pt"
    spawn("_continue_one_process_run", tmp_path / "fsdp", "fsdp", dims, start)
    spawn("_continue_one_process_run", tmp_path / "ddp", "ddp", dims, start)
    sharded, replicated = torch.load(tmp_path / "fsdp" / "final.pt"), torch.load(tmp_path / "ddp" / "final.pt")
    for key, value in replicated.items():
        torch.testing.assert_close(sharded[key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_fsdp_resumes_a_mixed_run_exactly_from_before_every_dimension_trained(tmp_path):
    """Step 1 of a 2D+3D run trains one dimension: the other's embedding and head have no
    optimizer state in that checkpoint, and must get none back (not a zero step's state)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    spawn("_train_sharded_mixed", straight)
    spawn("_train_sharded_mixed", resumed, straight / "checkpoints" / "step-00000001" / "trainer.pt")
    final = torch.load(straight / "final.pt")
    for key, value in torch.load(resumed / "final.pt").items():
        assert torch.equal(value, final[key]), key


def test_fsdp_checkpoints_are_sharded_resume_exactly_and_export_one_file(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    spawn("_train_sharded", straight)
    checkpoints = straight / "checkpoints"
    manifest = read_checkpoint(checkpoints / "last.pt")
    assert manifest["sharded"] == "step-00000006" and "model" not in manifest
    for step in ("step-00000003", "step-00000006"):  # one directory per checkpoint, one shard file per rank
        assert len(list((checkpoints / step / "model").glob("*.distcp"))) == 2
    first, second = manifest["noise_rng"]  # every rank's own noise stream
    assert not torch.equal(first, second)

    # Resume two processes from step 3: each rank gets its own noise state back.
    spawn("_train_sharded", resumed, checkpoints / "step-00000003" / "trainer.pt")
    final = torch.load(straight / "final.pt")
    for key, value in torch.load(resumed / "final.pt").items():
        assert torch.equal(value, final[key]), key

    # One file for release, read back into a model in this one process.
    exported = export_full_checkpoint(checkpoints / "last.pt", tmp_path / "release.pt")
    state = load_checkpoint(exported)
    assert "optimizer" not in state and "sharded" not in state and state["step"] == 6
    model = tiny_dpot((2,))
    model.load_state_dict(state["model"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, final[key]), key
    # Commands that take a checkpoint (evaluate, finetune, report) read the sharded one directly.
    from pdebench_core.weights import load_weights

    direct = tiny_dpot((2,))
    load_weights(direct, str(checkpoints / "last.pt"))
    for key, value in direct.state_dict().items():
        assert torch.equal(value, final[key]), key


def test_a_killed_rank_is_named_even_when_another_rank_failed_first(monkeypatch, capsys):
    """When rank 1 is killed, rank 0 fails too (its peer is gone), maybe first: the command names
    the killed rank and exits 128 + the signal, not with rank 0's lost-peer code."""
    import signal as signals

    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from pdebench_core import launcher

    def launch(args):
        raise ChildFailedError("pdeb", {0: ProcessFailure(0, 101, 2, "<N/A>"),
                                        1: ProcessFailure(1, 102, -int(signals.SIGKILL), "<N/A>")})

    monkeypatch.setattr(torch.distributed.run, "run", launch)
    failures = []
    code = launcher.torchrun(["--nproc-per-node", "2", "-m", "pdebench_core.cli", "run"], failures.append)
    assert code == 128 + int(signals.SIGKILL) and failures == ["process of rank 1 was killed by SIGKILL"]
    assert capsys.readouterr().err.strip() == "error: process of rank 1 was killed by SIGKILL"


def test_torchruns_own_sigkill_of_a_rank_that_ignored_its_sigterm_is_not_taken_for_the_cause(monkeypatch, capsys):
    """Rank 1 froze (SIGSTOP); rank 0 gave up on it with its own error; torchrun's SIGTERM could not
    stop rank 1, so 30 s later torchrun killed it. The cause is rank 0's error, told by rank 0."""
    import signal as signals

    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from pdebench_core import launcher

    def launch(args):
        gave_up, frozen = ProcessFailure(0, 101, 1, "<N/A>"), ProcessFailure(1, 102, -int(signals.SIGKILL), "<N/A>")
        frozen.timestamp = gave_up.timestamp + 30
        raise ChildFailedError("pdeb", {0: gave_up, 1: frozen})

    monkeypatch.setattr(torch.distributed.run, "run", launch)
    failures = []
    code = launcher.torchrun(["--nproc-per-node", "2", "-m", "pdebench_core.cli", "run"], failures.append)
    assert code == 1 and failures == ["process of rank 0 failed with exit code 1 (its error is in the command's output)"]
    assert "killed by" not in capsys.readouterr().err


def test_torchruns_own_sigterm_to_the_other_ranks_is_not_taken_for_the_cause(monkeypatch, capsys):
    """Rank 0 failed with a usage error; torchrun then stopped rank 1 with SIGTERM: exit 2."""
    import signal as signals

    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from pdebench_core import launcher

    def launch(args):
        raise ChildFailedError("pdeb", {1: ProcessFailure(1, 102, -int(signals.SIGTERM), "<N/A>"),
                                        0: ProcessFailure(0, 101, 2, "<N/A>")})

    monkeypatch.setattr(torch.distributed.run, "run", launch)
    failures = []
    code = launcher.torchrun(["--nproc-per-node", "2", "-m", "pdebench_core.cli", "run"], failures.append)
    assert code == 2 and failures == ["process of rank 0 failed with exit code 2 (its error is in the command's output)"]
    assert capsys.readouterr().err == ""  # rank 0 printed its own error; no 'killed by SIGTERM' line


def _torchrun_after_notes(monkeypatch, folder, notes, exit_codes):
    """torch's launcher, its workers having left ``notes`` (name -> text, in that order, 1 ms
    apart) and ended with ``exit_codes`` (rank -> status); the exit code and failures said."""
    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from pdebench_core import launcher

    start = time.time_ns()
    for k, (name, text) in enumerate(notes.items()):
        (folder / name).write_text(text)
        os.utime(folder / name, ns=(start + k * 10**6, start + k * 10**6))
    monkeypatch.setenv(launcher.WORKER_ERRORS, str(folder))

    def launch(args):
        raise ChildFailedError("pdeb", {r: ProcessFailure(r, 100 + r, c, "<N/A>") for r, c in exit_codes.items()})

    monkeypatch.setattr(torch.distributed.run, "run", launch)
    failures = []
    code = launcher.torchrun(["--nproc-per-node", "2", "-m", "pdebench_core.cli", "run"], failures.append)
    return code, failures


def test_a_worker_stopped_alone_is_named_rather_than_the_ranks_that_followed(monkeypatch, capsys, tmp_path):
    """SIGTERM to rank 1 alone: it leaves a note first; rank 0's lost-peer error comes after.
    The command names rank 1's stop and exits 143; rank 0's later error is a consequence."""
    from pdebench_core import launcher

    code, failures = _torchrun_after_notes(monkeypatch, tmp_path, {"stopped-1": "SIGTERM", "0": "rank 1 stopped"},
                                           {0: 1, 1: 143})
    assert code == 128 + int(signal.SIGTERM) and failures == ["process of rank 1 was stopped by SIGTERM"]
    assert capsys.readouterr().err.strip() == "error: process of rank 1 was stopped by SIGTERM"
    first = (tmp_path / "stopped-1").stat().st_mtime_ns
    os.utime(tmp_path / "0", ns=(first - 10**6, first - 10**6))  # rank 0's error first: it is the cause
    assert launcher.first_stopped_worker(tmp_path) is None


def test_notes_left_in_quick_succession_keep_their_order(monkeypatch, tmp_path):
    """A lost peer's error can follow a stop within the kernel's file-time tick (a few
    milliseconds on kernels without fine-grained file times): each note keeps the time its
    worker took, to the nanosecond, so the stop is still found first."""
    from pdebench_core import launcher

    monkeypatch.setenv(launcher.WORKER_ERRORS, str(tmp_path))
    moments = iter([1_700_000_000_000_000_001, 1_700_000_000_000_000_002])  # 1 ns apart
    monkeypatch.setattr(launcher.time, "time_ns", lambda: next(moments))
    assert launcher._leave_note("stopped-1", "SIGTERM") and launcher._leave_note("0", "rank 1 stopped")
    assert [(tmp_path / n).stat().st_mtime_ns % 1000 for n in ("stopped-1", "0")] == [1, 2]
    assert launcher.first_stopped_worker(tmp_path) == (1, "SIGTERM")


@pytest.mark.parametrize("note", ["", "bad value for 'train.lr'"], ids=["no-line", "its-line"])
def test_a_worker_that_failed_first_is_named_not_the_ranks_torchrun_then_stopped(monkeypatch, capsys, tmp_path, note):
    """Rank 1 fails (with or without a line of its own, e.g. under PDEB_DEBUG); torchrun then
    stops rank 0, which notes its SIGTERM. The cause is rank 1's failure, not a stop."""
    code, failures = _torchrun_after_notes(monkeypatch, tmp_path, {"1": note, "stopped-0": "SIGTERM"},
                                           {0: 143, 1: 2})
    assert code == 2 and failures == ["process of rank 1 failed with exit code 2 (its error is in the command's output)"]
    assert "stopped by" not in capsys.readouterr().err


@pytest.mark.parametrize("recorded, code, failures, expected", [
    # rank 1 failed; torchrun stopped rank 0, which recorded the signal: the launcher names rank 1
    ({"state": "interrupted", "error": "stopped by SIGTERM"}, 2, ["process of rank 1 failed with exit code 2"],
     ("failed", "process of rank 1 failed with exit code 2")),
    # rank 0 was killed before it could write anything
    ({"state": "running"}, 137, ["process of rank 0 was killed by SIGKILL"],
     ("failed", "process of rank 0 was killed by SIGKILL")),
    # the launcher itself was stopped, and the workers died with it
    ({"state": "running"}, 143, [], ("interrupted", "stopped by SIGTERM")),
    # rank 0 recorded its own error: kept
    ({"state": "failed", "error": "training diverged at step 3"}, 1, ["process of rank 0 failed with exit code 1"],
     ("failed", "training diverged at step 3")),
])
def test_the_launcher_keeps_the_status_of_a_failed_multi_process_run_true(tmp_path, monkeypatch, recorded, code,
                                                                          failures, expected):
    from pdebench_core import launcher
    from pdebench_core.rundir import RunDir

    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    run = RunDir.create("launched")
    fields = {k: v for k, v in recorded.items() if k != "state"}
    run.write_status(recorded["state"], started=1.0, **fields)
    launcher.record_launch_outcome("launched", code, failures)
    status = run.read_status()
    assert (status["state"], status["error"]) == expected and status["started"] == 1.0


def test_a_second_machine_keeps_the_interrupted_the_first_recorded(tmp_path, monkeypatch):
    """Node 0 stopped by SIGTERM: node 1's processes lose their peers and fail, which must not
    turn the truthful 'interrupted' into 'failed'."""
    from pdebench_core import launcher
    from pdebench_core.rundir import RunDir

    monkeypatch.setenv("PDEB_HOME", str(tmp_path))
    run = RunDir.create("two-nodes")
    run.write_status("interrupted", error="stopped by SIGTERM")
    launcher.record_launch_outcome("two-nodes", 1, ["process of rank 1 failed with exit code 1"], node_rank=1)
    assert run.read_status()["state"] == "interrupted"
    launcher.record_launch_outcome("two-nodes", 1, ["process of rank 1 failed with exit code 1"], node_rank=0)
    assert run.read_status()["state"] == "failed"  # on one machine the launcher knows the failing rank


def test_a_peer_lost_during_a_sharded_save_is_not_called_a_disk_failure(tmp_path, monkeypatch):
    from pdebench_core.checkpoint import save_sharded
    from pdebench_core.errors import DataError

    def lost(*args, **kwargs):
        raise dist.DistBackendError("Connection closed by peer [127.0.0.1]:4000")

    monkeypatch.setattr(dist, "barrier", lost)
    with pytest.raises(dist.DistBackendError):
        save_sharded(tmp_path, "step-00000001", torch.nn.Linear(2, 2), None, {}, is_main=True)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dist, "barrier", full)
    with pytest.raises(DataError, match="could not write .*step-00000002"):
        save_sharded(tmp_path, "step-00000002", torch.nn.Linear(2, 2), None, {}, is_main=True)


def test_a_finished_worker_leaves_with_its_output_and_status():
    # end_worker skips interpreter shutdown (which races gloo's threads); buffered output
    # written just before must still arrive, and the status must be the one given.
    code = ("import sys; from pdebench_core.distributed import end_worker; "
            "sys.stdout.write('final metrics'); sys.stderr.write('a warning'); end_worker(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "final metrics", "a warning")


@pytest.mark.parametrize("error, status, stderr", [
    ("SystemExit(None)", 0, ""),  # as Python treats them
    ("SystemExit('a message')", 1, "a message\n"),
    ("KeyboardInterrupt()", 130, "interrupted\n"),
    ("__import__('pdebench_core.errors').errors.UsageError('bad setting')", 2, "error: bad setting\n"),
])
def test_a_failed_worker_reports_its_error_and_leaves_with_its_code(error, status, stderr):
    code = f"from pdebench_core.launcher import end_failed_worker; end_failed_worker({error})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (status, stderr)


def test_a_worker_under_pdebs_launcher_hands_its_error_line_over(tmp_path):
    code = ("from pdebench_core.launcher import end_failed_worker; "
            "end_failed_worker(__import__('pdebench_core.errors').errors.UsageError('bad setting'))")
    env = {**os.environ, "PDEB_WORKER_ERRORS": str(tmp_path), "RANK": "3"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert (proc.returncode, proc.stderr) == (2, "")
    assert (tmp_path / "3").read_text() == "bad setting"


def test_the_launcher_prints_an_error_all_processes_raised_once(tmp_path, capsys):
    from pdebench_core.launcher import print_worker_errors

    for rank in (0, 1):
        (tmp_path / str(rank)).write_text("training diverged at step 2: loss is nan")
    print_worker_errors(tmp_path)
    assert capsys.readouterr().err == "error: training diverged at step 2: loss is nan\n"
    (tmp_path / "1").write_text("lost the connection to rank 0")
    (tmp_path / "2").write_text("lost the connection to rank 0")
    print_worker_errors(tmp_path)
    assert capsys.readouterr().err == ("error: rank 0: training diverged at step 2: loss is nan\n"
                                       "error: ranks 1, 2: lost the connection to rank 0\n")


# --------------------------------------------------------------------------- waiting and stopping


class _SlowDataset:
    """A dataset component whose preparation takes longer than the collective timeout."""

    def __init__(self, rank: int, fail: bool) -> None:
        self.rank, self.fail = rank, fail

    def factory(self, section) -> None:
        from pdebench_core.errors import DataError

        if self.rank == 0:
            time.sleep(5.0)
            if self.fail:
                raise DataError("no space left for the cache")


def _generate_first(rank: int, world_size: int, out: str) -> None:
    from omegaconf import OmegaConf

    from pdebench_core import runner
    from pdebench_core.errors import PdebError

    cfg = OmegaConf.create({"data": {"slow": {}}})
    runner.plugins.get = lambda kind, name: _SlowDataset(rank, fail=False)
    runner.generate_data_first(cfg, rank, world_size)  # 5 s on rank 0, with a 2 s collective timeout
    dist.barrier()  # the ordinary group is still fine afterwards
    runner.plugins.get = lambda kind, name: _SlowDataset(rank, fail=True)
    try:
        runner.generate_data_first(cfg, rank, world_size)
    except PdebError as exc:
        Path(out, f"rank{rank}.txt").write_text(f"{exc.exit_code} {exc}")


def test_other_ranks_wait_for_data_generation_beyond_the_collective_timeout(tmp_path):
    spawn("_generate_first", tmp_path, timeout_s=2.0)  # not so short that a loaded machine stalls past it
    texts = {Path(tmp_path, f"rank{r}.txt").read_text() for r in (0, 1)}
    # every rank stops, with the exit code of bad data (2), as one process would
    assert texts == {"2 dataset preparation failed on rank 0: no space left for the cache"}


def _stop_rank_one(rank: int, world_size: int, out: str) -> None:
    from pdebench_core.distributed import is_peer_failure, stopped_peer_message

    dist.barrier()
    if rank == 1:
        os.kill(os.getpid(), signal.SIGSTOP)  # hangs like a stuck process: alive, silent
        return
    try:
        dist.all_reduce(torch.ones(3))
    except RuntimeError as exc:
        assert is_peer_failure(exc)
        Path(out, "message.txt").write_text(stopped_peer_message(rank, world_size, 2.0))
        os._exit(0)  # leave without tearing down a group whose peer is frozen


def test_a_stopped_peer_is_named_instead_of_hanging(tmp_path):
    rank0, rank1 = spawn("_stop_rank_one", tmp_path, timeout_s=2.0, wait=False)
    try:
        rank0.wait(timeout=60)
        rank0.output.seek(0)
        assert rank0.returncode == 0, rank0.output.read()
    finally:
        rank1.kill()
        rank1.wait()
    message = (tmp_path / "message.txt").read_text()
    assert message.startswith("rank 1 stopped taking part") and "train.dist_timeout=2 s" in message
    assert "\n" not in message


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in _descendants(c)]


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_usage_error_inside_a_multi_process_run_is_one_line_and_exit_code_2(fresh_home):
    import subprocess

    command = [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data", "ns2d", "--profile",
               "smoke", "--device", "cpu", "--quiet", "--nproc-per-node", "2", "train.max_steps=2",
               "model.width=0"]  # refused when the model is built, inside every worker
    scratch = fresh_home / "tmp"
    scratch.mkdir(parents=True)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and set(errors) == {"error: model.width must be a positive integer for fno, got 0"}
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    leftovers = [p.name for p in scratch.iterdir() if p.name.startswith(("torchelastic_", "pdeb-"))]
    assert not leftovers  # neither the workers' error lines nor the launcher's log folders stay behind


def _training_run(home: Path, run_id: str, *settings: str):
    """A two-process ``pdeb run`` that trains until stopped, once it has logged two steps."""
    import subprocess

    command = [sys.executable, "-m", "pdebench_core.cli", "run", "--model", "fno", "--data", "ns2d", "--profile",
               "smoke", "--device", "cpu", "--quiet", "--run-id", run_id, "--nproc-per-node", "2",
               "train.max_steps=100000", "train.log_every=1", "model.width=6", "model.modes=3", *settings]
    scratch = home / "tmp" / run_id  # the launch folder a killed launcher leaves stays in the test's own folder
    scratch.mkdir(parents=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "TMPDIR": str(scratch)})
    metrics = home / "runs" / run_id / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    return proc


@pytest.mark.slow
def test_pdeb_run_names_a_stopped_process(fresh_home):
    proc = _training_run(fresh_home, "stopped", "train.dist_timeout=5")
    deadline = time.time() + 120
    rank1 = next(pid for pid in _descendants(proc.pid)
                 if b"LOCAL_RANK=1\x00" in Path(f"/proc/{pid}/environ").read_bytes())
    os.kill(rank1, signal.SIGSTOP)
    run_dir = fresh_home / "runs" / "stopped"
    try:  # rank 0 gives up after train.dist_timeout; the run directory is marked failed or removed
        while time.time() < deadline and run_dir.exists() and '"failed"' not in _read(run_dir / "status.json"):
            time.sleep(0.2)
    finally:
        os.kill(rank1, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "error: rank 1 stopped taking part" in stderr and "train.dist_timeout=5 s" in stderr


def test_a_signal_to_pdeb_stops_a_multi_process_run_with_128_plus_the_signal(fresh_home):
    proc = _training_run(fresh_home, "stopped-by-term")
    proc.send_signal(signal.SIGTERM)  # as a scheduler stops a job: to the launcher alone
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr


def test_a_signal_to_one_worker_alone_is_one_line_and_leaves_the_run_resumable(fresh_home):
    proc = _training_run(fresh_home, "one-stopped")
    rank1 = next(pid for pid in _descendants(proc.pid)
                 if b"LOCAL_RANK=1\x00" in Path(f"/proc/{pid}/environ").read_bytes())
    os.kill(rank1, signal.SIGTERM)  # `kill PID` of one worker, not of pdeb
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [
        "error: process of rank 1 was stopped by SIGTERM"], stderr
    status = json.loads(_read(fresh_home / "runs" / "one-stopped" / "status.json"))
    assert status["state"] == "interrupted" and status["error"] == "process of rank 1 was stopped by SIGTERM"


def test_workers_stop_when_the_launcher_is_killed_outright(fresh_home):
    proc = _training_run(fresh_home, "launcher-killed")
    workers = [pid for pid in _descendants(proc.pid) if b"LOCAL_RANK=" in Path(f"/proc/{pid}/environ").read_bytes()]
    assert len(workers) == 2
    proc.kill()  # SIGKILL: the launcher can tell nobody
    proc.communicate(timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in workers), "workers outlived it"
    status = json.loads(_read(fresh_home / "runs" / "launcher-killed" / "status.json"))
    assert status["state"] == "interrupted" and status["error"] == "stopped by SIGTERM"


@pytest.mark.parametrize("kernel", [True, False], ids=["prctl", "watching-thread"])
def test_a_worker_whose_launcher_is_gone_already_stops(kernel):
    """The launcher may die before a worker has asked to follow it; without prctl (not Linux)
    a thread watches for it."""
    code = ("import os, signal, time; from pdebench_core import launcher; "
            f"launcher._parent_death_signal = lambda number: {kernel}; "
            "launcher.stop_with_the_launcher(); time.sleep(30)")
    env = {**os.environ, "LOCAL_RANK": "0", "PDEB_LAUNCHER_PID": str(os.getpid() + 10**6)}  # not its parent
    started = time.time()
    result = subprocess.run([sys.executable, "-c", code], env=env, timeout=60)
    assert result.returncode == -signal.SIGTERM and time.time() - started < 20


def test_a_launch_folder_left_by_a_killed_launcher_goes_at_the_next_launch(tmp_path, monkeypatch):
    from pdebench_core import launcher

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead, live = tmp_path / f"pdeb-launch-{2**22 + 7}-ab12", tmp_path / f"pdeb-launch-{os.getpid()}-cd34"
    for folder in (dead, live):
        (folder / "launcher").mkdir(parents=True)
        (folder / "stopped-0").write_text("SIGTERM")
    launcher.remove_left_by_dead_launchers()
    assert not dead.exists() and live.exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


if __name__ == "__main__":
    _worker_main(*sys.argv[1:])


FLOAT32_UNITS = """
import os, sys, torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)  # no port to take
import pdeb_dpot
from pdebench_core.config import build_config
from pdebench_core.distributed import shard_model
from pdebench_core.spec import DataSpec
cfg = build_config(model="dpot", data="ns2d", profile="smoke", overrides=["model.embed_dim=16", "model.depth=1",
                   "model.n_blocks=2", "model.out_layer_dim=4", "model.modes=4"])
model = pdeb_dpot.build(cfg.model, DataSpec(name="ns2d", fields=("w",), spatial_shape=(16, 16), t_in=10, t_out=1))
shard_model(model, bf16=True)
seen = {}
model.time_agg_layer.register_forward_pre_hook(lambda m, a: seen.update(gamma=m.gamma.dtype))
model.blocks[0].filter.register_forward_pre_hook(lambda m, a: seen.update(spectral=m.w1.dtype))
model.blocks[0].register_forward_pre_hook(
    lambda m, a: seen.update(block=next(p for n, p in m.named_parameters() if "filter" not in n).dtype))
with torch.autocast("cpu", dtype=torch.bfloat16):
    out = model(torch.randn(2, 10, 16, 16, 1))
out.float().sum().backward()
assert model.time_agg_layer.gamma.grad is not None
from torch.distributed.fsdp import FSDPModule
assert all(isinstance(block, FSDPModule) for block in model.blocks)  # each block still a unit of its own
print(" ".join(f"{k}={str(v).split('.')[-1]}" for k, v in sorted(seen.items())))
dist.destroy_process_group()
"""


def test_fsdp_in_bf16_gathers_dpots_frequencies_and_spectral_weights_in_float32(tmp_path):
    """gamma reaches 2^10 (cos of a bf16-rounded argument is noise) and the spectral weights are
    meant to stay IEEE float32: under FSDP's bf16 policy they form float32 units of their own,
    while the rest of a block is gathered in bf16."""
    script = tmp_path / "units.py"
    script.write_text(FLOAT32_UNITS)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PDEB_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "block=bfloat16 gamma=float32 spectral=float32"


def test_the_roll_call_of_a_run_whose_store_is_gone_is_quiet_and_quick(monkeypatch, capfd):
    """The node hosting the rendezvous was killed: nothing answers at the store's address. The
    roll call gives up at once (the caller then says 'another process'), without torch's C++
    log of a client that failed to connect above pdeb's one line."""
    import socket

    from pdebench_core.distributed import missing_ranks

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    start = time.monotonic()
    assert missing_ranks(1, 2, wait_s=20.0) is None
    assert time.monotonic() - start < 5.0
    assert capfd.readouterr().err == ""
