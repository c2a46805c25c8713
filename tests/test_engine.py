"""The training engine: accumulation, data parallelism, checkpoints, resume, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pdebench_core.checkpoint import load_checkpoint, save_checkpoint
from pdebench_core.config import build_config
from pdebench_core.errors import PdebError, UsageError
from pdebench_core.rundir import RunDir
from pdebench_core.runner import execute

SMOKE_FNO = ["model.width=6", "model.modes=3", "model.n_layers=1", "train.log_every=1"]
CPU = ["--device", "cpu"]  # these tests check CPU semantics; a GPU machine must not change them


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def _assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0 if atol == 0 else 1e-5, msg=key)


def _train(run_id, *overrides):
    given = {item.split("=", 1)[0] for item in overrides}  # a setting given here replaces the default
    defaults = [item for item in (*SMOKE_FNO, "train.max_steps=6", "train.batch_size=4")
                if item.split("=", 1)[0] not in given]
    cfg = build_config(model="fno", data="ns2d", profile="smoke", run_id=run_id, device="cpu",
                       overrides=[*defaults, *overrides])
    return execute(cfg, quiet=True)


def test_gradient_accumulation_equals_one_big_batch(fresh_home):
    one = _train("accum-1", "train.grad_accum=1")
    four = _train("accum-4", "train.grad_accum=4")
    _assert_same_weights(_weights(one.run_dir), _weights(four.run_dir), atol=1e-6)
    assert one.results["ns2d"]["l2re"] == pytest.approx(four.results["ns2d"]["l2re"], rel=1e-5)


def test_batch_not_divisible_by_accumulation_is_a_usage_error(fresh_home):
    with pytest.raises(UsageError, match=r"train.batch_size=4 must be divisible by processes x train.grad_accum"):
        _train("bad-accum", "train.grad_accum=3")


def test_two_process_ddp_matches_one_process(fresh_home, pdeb):
    args = ["run", "--model", "fno", "--data", "ns2d", "--profile", "smoke", "--quiet", *CPU, *SMOKE_FNO,
            "train.max_steps=6", "train.batch_size=4"]
    pdeb(*args, "--run-id", "single", check=True)
    pdeb(*args, "--run-id", "ddp", "--nproc-per-node", "2", check=True)
    runs = fresh_home / "runs"
    _assert_same_weights(_weights(runs / "single"), _weights(runs / "ddp"), atol=1e-6)
    from pdebench_core.results import ResultsStore

    rows = ResultsStore().rows()
    assert sorted(r["run_id"] for r in rows) == ["ddp", "single"]  # exactly one row for the DDP run
    ddp_row = next(r for r in rows if r["run_id"] == "ddp")
    single_row = next(r for r in rows if r["run_id"] == "single")
    assert ddp_row["metrics"]["l2re"] == pytest.approx(single_row["metrics"]["l2re"], rel=1e-5)


def test_killed_run_resumes_to_identical_weights(fresh_home, pdeb):
    common = ["--model", "fno", "--data", "ns2d", "--profile", "smoke", "--quiet", *CPU, *SMOKE_FNO,
              "train.max_steps=150", "train.batch_size=2", "train.checkpoint_every=3", "train.keep_checkpoints=50"]
    pdeb("run", *common, "--run-id", "straight", check=True)
    # Killed at a fixed point, however slow the machine: right after the step-12 checkpoint is
    # written (last.pt then holds step 9), as kill -9 or the OOM killer would.
    kill_after_step_12 = (
        "import os, signal, sys\n"
        "from pdebench_core import engine\n"
        "real = engine.save_checkpoint\n"
        "def save_then_die(state, path):\n"
        "    written = real(state, path)\n"
        "    if os.path.basename(str(path)) == 'step-00000012.pt':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return written\n"
        "engine.save_checkpoint = save_then_die\n"
        "from pdebench_core.cli import main\n"
        "sys.argv = ['pdeb', *sys.argv[1:]]\n"
        "main()\n"
    )
    cmd = [sys.executable, "-c", kill_after_step_12, "run", *common, "--run-id", "killed"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
                          timeout=300)
    checkpoints = fresh_home / "runs" / "killed" / "checkpoints"
    assert proc.returncode == -signal.SIGKILL
    stopped_at = load_checkpoint(checkpoints / "last.pt")["step"]
    assert 9 <= stopped_at < 150
    resumed = pdeb("run", "--resume", "killed", "--quiet", check=True)
    assert resumed.returncode == 0
    runs = fresh_home / "runs"
    _assert_same_weights(_weights(runs / "straight"), _weights(runs / "killed"))
    from pdebench_core.results import ResultsStore

    metrics = {r["run_id"]: r["metrics"] for r in ResultsStore().rows()}
    assert metrics["killed"] == metrics["straight"]


def _stopped_after_checkpoint_and_resumed(monkeypatch, step, settings):
    """Run ``stopped`` until SIGTERM arrives right after its step-``step`` checkpoint (as a
    scheduler's would), then resume it; the resumed run's context."""
    from pdebench_core import engine
    from pdebench_core.errors import Stopped

    real = engine.save_checkpoint

    def save_then_stop(state, path):
        written = real(state, path)
        if os.path.basename(str(path)) == "last.pt" and state["step"] == step:
            raise Stopped("SIGTERM", signal.SIGTERM)
        return written

    monkeypatch.setattr(engine, "save_checkpoint", save_then_stop)
    with pytest.raises(Stopped):
        _train("stopped", *settings)
    monkeypatch.setattr(engine, "save_checkpoint", real)
    given = {item.split("=", 1)[0] for item in settings}
    smoke = [item for item in (*SMOKE_FNO, "train.batch_size=4") if item.split("=", 1)[0] not in given]
    return execute(build_config(model="fno", data="ns2d", profile="smoke", run_id="stopped", device="cpu",
                                overrides=[*smoke, *settings]), resume=True, quiet=True)


def _logged(run_dir, key):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in records if key in r]


def test_a_run_stopped_after_a_checkpoint_resumes_with_that_steps_validation_and_best(fresh_home, monkeypatch):
    """A checkpoint taken where validation also falls holds that validation's result: the
    resumed run logs it once and keeps the same best.pt as a run that never stopped."""
    settings = ["train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2", "train.lr=0.05",
                "train.scheduler=constant"]
    straight = _train("straight", *settings)
    resumed = _stopped_after_checkpoint_and_resumed(monkeypatch, 4, settings)
    assert [step for step, _ in _logged(straight.run_dir, "val_l2re")] == [2, 4, 6]
    assert _logged(resumed.run_dir, "val_l2re") == _logged(straight.run_dir, "val_l2re")
    best = [load_checkpoint(run.run_dir / "checkpoints" / "best.pt")["best"] for run in (straight, resumed)]
    assert best[0] == best[1]


def test_a_logging_window_cut_by_a_checkpoint_logs_the_same_loss_after_a_resume(fresh_home, monkeypatch):
    """A checkpoint at step 4 cuts the window of steps 4-6 (logged every 3): the resumed run's
    step-6 loss is still the mean over steps 4, 5 and 6, as in a run that never stopped."""
    settings = ["train.max_steps=8", "train.log_every=3", "train.checkpoint_every=4", "train.scheduler=constant"]
    straight = _train("straight", *settings)
    resumed = _stopped_after_checkpoint_and_resumed(monkeypatch, 4, settings)
    assert [step for step, _ in _logged(straight.run_dir, "loss")] == [3, 6, 8]
    assert _logged(resumed.run_dir, "loss") == _logged(straight.run_dir, "loss")


def test_resume_errors(fresh_home, pdeb):
    missing = pdeb("run", "--resume", "no-such-run")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    _train("finished")
    conflict = pdeb("run", "--resume", "finished", "--model", "fno", "--data", "ns2d", "--profile", "smoke",
                    *CPU, "train.lr=0.5")
    assert conflict.returncode == 2 and "train.lr=0.5 differs from the run's train.lr" in conflict.stderr


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def exploding_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(UsageError, match=r"could not write .*last\.pt \(.* free\): \[Errno 28\] No space left on "
                                         r"device; the previous checkpoint is untouched") as caught:
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert caught.value.exit_code == 2

    def torch_runtime_error(obj, f, *args, **kwargs):  # how torch reports a full disk from its zip writer
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", torch_runtime_error)
    with pytest.raises(UsageError, match="could not write .*unexpected pos"):
        save_checkpoint({"step": 3, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_pickled_module_checkpoint_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(UsageError, match="not a plain state dict"):
        load_checkpoint(path)


def test_nan_loss_halts_with_a_message(fresh_home):
    with pytest.raises(PdebError, match=r"training diverged at step \d+: loss is (nan|inf)"):
        _train("diverge-halt", "train.lr=1e30", "train.scheduler=constant")
    # the failed run stays to inspect: its log and the loss curve up to the failure
    diverged = RunDir.of("diverge-halt")
    assert diverged.read_status()["state"] == "failed" and "diverged" in diverged.read_status()["error"]
    assert diverged.metrics_file.read_text().strip() and "diverged" in diverged.log_file.read_text()
    with pytest.raises(UsageError, match=r"train.lr must be a positive (finite )?number"):
        _train("bad-lr", "train.lr=nan")


def test_nan_loss_rolls_back_with_lower_learning_rate(fresh_home):
    # A huge learning rate blows the weights up after the first checkpoint; rollback halves it
    # each time and gives up after max_rollbacks with a clear message.
    with pytest.raises(PdebError, match="training diverged at step .* after 2 rollbacks") as caught:
        _train("diverge-rollback", "train.lr=1e30", "train.scheduler=constant", "train.checkpoint_every=1",
               "train.on_divergence=rollback", "train.max_rollbacks=2")
    assert "set train.on_divergence=rollback" not in str(caught.value)  # it is set already
    log = (fresh_home / "runs" / "diverge-rollback" / "log.txt").read_text()
    assert log.count("rolled back to step") == 2


def test_each_rollback_scales_the_learning_rate_once_more(tmp_path):
    """The k-th rollback runs at lr x factor^k, whether it reloads the checkpoint the earlier
    rollbacks reloaded (its rates unscaled) or one saved after them (its rates scaled already)."""
    trainer = make_trainer(tiny_dpot((2,)), tmp_path, lr=1e-3, scheduler="constant", on_divergence="rollback",
                           rollback_lr_factor=0.5, max_rollbacks=5)
    trainer.save()
    rates = []
    for saved_between in (False, False, True, False):
        if saved_between:
            trainer.save()  # a checkpoint taken after two rollbacks, at lr / 4
        trainer._handle_divergence(trainer.step + 1, float("nan"))
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3 / 2, 1e-3 / 4, 1e-3 / 8, 1e-3 / 16])


def test_best_checkpoint_is_chosen_on_validation_not_test(fresh_home):
    ctx = _train("best", "train.eval_every=2", "train.max_steps=6")
    log = (ctx.run_dir / "log.txt").read_text()
    assert log.count(": validation l2re") == 3
    best = load_checkpoint(ctx.run_dir / "checkpoints" / "best.pt")
    assert best["best"]["metric"] == "l2re" and best["best"]["step"] in (2, 4, 6)
    records = [json.loads(line) for line in (ctx.run_dir / "metrics.jsonl").read_text().splitlines()]
    values = {r["step"]: r["val_l2re"] for r in records if "val_l2re" in r}  # unrounded, unlike the log
    assert sorted(values) == [2, 4, 6] and best["best"]["step"] == min(values, key=values.get)
    with pytest.raises(UsageError, match="unknown metric 'l2'"):
        _train("bad-select", "train.select_metric=l2")


# --------------------------------------------------------------------------- the Trainer on synthetic data
# Windows of random fields, a real MixtureBatchSampler and tiny models: the engine itself, in seconds.


def synthetic_loader(dims=(2,), batch_size=4, rank=0, world_size=1, grad_accum=1, n=8, grid=8, seed=0):
    """``(loader, sampler)`` over ``n`` random windows per spatial dimension (2 frames in, 1 out,
    2 channels), batched like the real pipeline: a step never mixes dimensions."""
    from pdebench_core.data.mixture import MixtureBatchSampler

    gen = torch.Generator().manual_seed(seed)
    parts = []
    for ndim in dims:
        shape = (grid,) * ndim
        x = torch.randn(n, 2, *shape, 2, generator=gen)
        y = torch.randn(n, 1, *shape, 2, generator=gen)
        parts.append(torch.utils.data.TensorDataset(x, y, torch.ones(n, 2, dtype=torch.bool)))
    sampler = MixtureBatchSampler([n] * len(dims), [1.0] * len(dims), list(dims), batch_size, seed=seed, rank=rank,
                                  world_size=world_size, grad_accum=grad_accum)
    return torch.utils.data.DataLoader(torch.utils.data.ConcatDataset(parts), batch_sampler=sampler), sampler


def tiny_dpot(dims=(2,), depth=2):
    """A DPOT (one dimension) or a MultiDimDPOT (several) on the synthetic windows."""
    from pdeb_dpot.model import DPOT, DPOTArchitecture
    from pdeb_dpot.multidim import MultiDimDPOT

    torch.manual_seed(0)
    models = {ndim: DPOT(DPOTArchitecture(ndim=ndim, img_size=8, patch_size=4, in_channels=2, out_channels=2,
                                          in_timesteps=2, embed_dim=16, depth=depth, n_blocks=2,
                                          modes=2 if ndim < 3 else (2, 2, 2), out_layer_dim=4))
              for ndim in dims}
    return models[dims[0]] if len(dims) == 1 else MultiDimDPOT(models)


def train_section(**values):
    """A ``train`` section with the defaults of the settings, overridden by ``values``."""
    from omegaconf import OmegaConf

    from pdebench_core.settings import TrainSection

    base = {"max_steps": 4, "batch_size": 4, "log_every": 2, "lr": 1e-3, "precision": "fp32"}
    return OmegaConf.merge(OmegaConf.structured(TrainSection), {**base, **values})


def make_trainer(model, checkpoint_dir, dims=(2,), rank=0, world_size=1, input_noise=None, log=None, **train):
    """A Trainer over :func:`synthetic_loader` on the CPU."""
    from pdebench_core.engine import Trainer

    section = train_section(**train)
    loader, sampler = synthetic_loader(dims, int(section.batch_size), rank, world_size, int(section.grad_accum))
    return Trainer(model, loader, sampler, section, torch.device("cpu"), checkpoint_dir, log=log or (lambda line: None),
                   input_noise=input_noise, world_size=world_size, is_main=rank == 0, show_progress=False)


def _fno(shape):
    from pdeb_fno import PROFILES, FNOConfig, build

    from pdebench_core.spec import DataSpec

    return build(FNOConfig(**PROFILES["smoke"]), DataSpec(name="toy", fields=("u", "v"), spatial_shape=shape,
                                                         t_in=2, t_out=1))


def _layouts(model):
    return {name: (p.stride(), p.is_contiguous()) for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["dpot-2d", "dpot-3d", "fno-2d", "fno-3d"])
def test_channels_last_converts_only_2d_convolutions(name, tmp_path):
    kind, dims = name.split("-")
    ndim = int(dims[0])
    model = tiny_dpot((ndim,)) if kind == "dpot" else _fno((8,) * ndim)
    before = _layouts(model)
    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous(
                memory_format=torch.channels_last)))
    trainer = make_trainer(model, tmp_path, dims=(ndim,), channels_last=True, max_steps=2)
    trainer.fit()  # trains: no "required rank 4 tensor" from 5-D weights
    converted = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    for pname, param in model.named_parameters():
        module = pname.rsplit(".", 1)[0]
        if module in converted and pname.endswith("weight"):
            assert param.is_contiguous(memory_format=torch.channels_last), pname
            assert param.shape[-1] == 1 or not param.is_contiguous(), pname  # 1x1 kernels fit both layouts
        else:  # Conv1d/Conv3d, complex spectral weights, linear layers, biases: untouched
            assert _layouts(model)[pname] == before[pname], pname
    assert bool(converted) == (ndim == 2)
    assert all(seen)  # every 2D convolution that runs sees NHWC activations
    if kind == "fno":  # DPOT runs its convolutions as matmuls over channels-last data: none is called
        assert bool(seen) == (ndim == 2)


def test_activation_checkpointing_recomputes_each_block_and_changes_nothing(tmp_path):
    weights = {}
    for enabled in (False, True):
        model = tiny_dpot((2,), depth=2)
        calls = {i: 0 for i in range(2)}
        for i, block in enumerate(model.blocks):
            block.norm1.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
        trainer = make_trainer(model, tmp_path / str(enabled), activation_checkpointing=enabled, max_steps=3)
        trainer.fit()
        # 3 steps of one micro-batch: each block runs once, or twice (forward, then recomputed in backward).
        assert calls == {0: 3 * (1 + enabled), 1: 3 * (1 + enabled)}
        weights[enabled] = model.state_dict()
    _assert_same_weights(weights[False], weights[True])
    assert not any("checkpoint" in key for key in weights[True])  # parameter names unchanged


def test_compile_falls_back_only_when_compilation_fails(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    from pdebench_core.acceleration import CompiledOrEager

    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)

    def failing_compile(error):
        def compiled(inputs):
            raise error
        return lambda module, **kwargs: compiled

    lines = []
    compiler_error = BackendCompilerFailed(lambda *a: None, RuntimeError("no C++ compiler"), None)
    monkeypatch.setattr(torch, "compile", failing_compile(compiler_error))
    wrapper = CompiledOrEager(model, lines.append)
    torch.testing.assert_close(wrapper(x), model(x))
    assert len(lines) == 1 and "could not compile" in lines[0] and "running eagerly" in lines[0]
    monkeypatch.setattr(torch, "compile", failing_compile(RuntimeError("Expected to mark a variable ready only once")))
    with pytest.raises(RuntimeError, match="ready only once"):  # the model's own error is not hidden
        CompiledOrEager(model, lines.append)(x)
    assert len(lines) == 1


def test_the_backward_graph_is_compiled_where_a_failure_falls_back(monkeypatch):
    """torch >= 2.9 lowers a compiled graph's backward lazily, at the first backward(), outside
    the fallback; inside CompiledOrEager's call it is compiled with the forward."""
    from torch._functorch import config

    from pdebench_core.acceleration import CompiledOrEager

    if not hasattr(config, "force_non_lazy_backward_lowering"):
        pytest.skip("this torch compiles the backward with the forward anyway")
    seen = []

    def recording_compile(module, **kwargs):
        return lambda inputs: (seen.append(config.force_non_lazy_backward_lowering), module(inputs))[1]

    monkeypatch.setattr(torch, "compile", recording_compile)
    model = torch.nn.Linear(3, 2)
    CompiledOrEager(model, print)(torch.randn(4, 3))
    assert seen == [True] and not config.force_non_lazy_backward_lowering  # set only for the call


def test_compilation_time_is_left_out_of_training_time_and_throughput(tmp_path, monkeypatch):
    # A stand-in compiler whose first call of each input shape takes an hour on the engine's clock,
    # as compilation does (a clock the test moves, so a busy machine cannot blur it).
    clock = {"now": 0.0}
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + clock["now"])

    def slow_first_call(module, **kwargs):
        seen = set()

        def run(x):
            if x.shape not in seen:
                seen.add(x.shape)
                clock["now"] += 3600.0
            return module(x)
        return run

    monkeypatch.setattr(torch, "compile", slow_first_call)
    records, lines = [], []
    trainer = make_trainer(tiny_dpot((2,)), tmp_path, compile=True, max_steps=4, log_every=1, log=lines.append)
    trainer.log_step = lambda step, values: records.append(values)
    trainer.fit()
    assert trainer.compile_time >= 3600 > trainer.train_time
    # Throughput is not reported for the compiling step, and the others are not charged for it.
    assert "samples_per_s" not in records[0] and all(r["samples_per_s"] > 2 / 60 for r in records[1:])
    assert any("compilation took" in line for line in lines)


def test_loss_is_read_from_the_device_once_per_logging_interval(tmp_path, monkeypatch):
    from pdebench_core.engine import Trainer
    from pdebench_core.losses import relative_l2_loss
    from pdebench_core.objectives import next_frames_objective

    class CountedReads(torch.Tensor):
        """A loss that counts how often it (or anything computed from it) reaches Python."""
        reads = 0

        def item(self):
            CountedReads.reads += 1
            return super().item()

        def tolist(self):
            CountedReads.reads += 1
            return super().tolist()

        def __float__(self):
            CountedReads.reads += 1
            return super().__float__()

    plain = next_frames_objective(relative_l2_loss)
    reads = []
    original = Trainer._read_window
    monkeypatch.setattr(Trainer, "_read_window", lambda self: reads.append(self.step) or original(self))
    trainer = make_trainer(tiny_dpot((2,)), tmp_path, max_steps=8, log_every=4, grad_accum=2)
    trainer.objective = lambda *args: plain(*args).as_subclass(CountedReads)
    trainer.fit()
    assert reads == [4, 8]  # 16 micro-batches, 2 logging intervals
    assert 0 < CountedReads.reads <= 2 * len(reads)  # a read-back per interval, none per micro-batch
    diverging = make_trainer(tiny_dpot((2,)), tmp_path / "nan", max_steps=8, log_every=4, lr=1e30,
                             scheduler="constant")
    with pytest.raises(PdebError, match=r"training diverged at step [1-4]: loss is (nan|inf)"):
        diverging.fit()  # still caught, at the first read-back, naming the first bad step


def test_noise_generator_lives_on_the_training_device_and_differs_per_rank(tmp_path, monkeypatch):
    from pdebench_core import engine

    trainers = []
    for rank in (0, 1):
        monkeypatch.setattr(engine, "rank", lambda rank=rank: rank)
        trainers.append(make_trainer(tiny_dpot((2,)), tmp_path / str(rank)))
    assert all(t.noise_gen.device == t.device for t in trainers)
    assert not torch.equal(trainers[0].noise_gen.get_state(), trainers[1].noise_gen.get_state())


def test_a_kernel_refused_in_deterministic_mode_is_one_line_with_the_fix(monkeypatch):
    from types import SimpleNamespace

    from pdebench_core import runner

    def train(ctx):
        raise RuntimeError("upsample_bicubic2d_backward_out_cuda does not have a deterministic implementation, but "
                           "you set 'torch.use_deterministic_algorithms(True)'.\nYou can turn off determinism ...")

    monkeypatch.setattr(runner, "generate_data_first", lambda *args: None)
    task = SimpleNamespace(kind="task", name="train", plugin="builtin", factory=train)
    with pytest.raises(PdebError, match=r"^upsample_bicubic2d_backward_out_cuda does not have a deterministic "
                                        r"implementation, .*; set train.deterministic=false for this model$"):
        runner._run_task(task, SimpleNamespace(cfg=None, rank=0, world_size=1))


@pytest.mark.parametrize("how, expected", [
    ("Terminated", "stopped by SIGTERM"),  # stopped with this process's group: a stop, resumable
    ("Terminated: 15", "stopped by SIGTERM"),  # as some systems' strsignal words it
    ("Killed", "a data-loading worker process was killed (Killed), often by the out-of-memory killer; lower "
               "train.num_workers or train.prefetch_factor"),
])
def test_a_data_loading_worker_killed_by_a_signal_is_not_blamed_on_a_plugin(monkeypatch, how, expected):
    from types import SimpleNamespace

    from pdebench_core import runner
    from pdebench_core.errors import Stopped

    def train(ctx):
        raise RuntimeError(f"DataLoader worker (pid 4242) is killed by signal: {how}. ")

    monkeypatch.setattr(runner, "generate_data_first", lambda *args: None)
    task = SimpleNamespace(kind="task", name="pretrain", plugin="dpot", factory=train)
    with pytest.raises((Stopped, PdebError)) as caught:
        runner._run_task(task, SimpleNamespace(cfg=None, rank=0, world_size=2))
    assert str(caught.value) == expected
    assert isinstance(caught.value, Stopped) == how.startswith("Terminated")


def test_deterministic_setting_turns_on_deterministic_algorithms(fresh_home, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = {}
    from pdebench_core import engine

    original = engine.Trainer.fit

    def fit(self, *args, **kwargs):
        seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
        seen["cublas"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine.Trainer, "fit", fit)
    try:
        _train("deterministic", "train.deterministic=true", "train.max_steps=2")
        assert seen == {"deterministic": True, "cublas": ":4096:8"}
        _train("default", "train.max_steps=2")
        assert seen["deterministic"] is False
    finally:
        torch.use_deterministic_algorithms(False)


def test_dist_timeout_reaches_the_process_group(monkeypatch):
    import datetime

    import torch.distributed as dist

    from pdebench_core.runner import init_distributed

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert init_distributed("cpu", 42.0) == (0, 2, "cpu")
    assert calls == [{"backend": "gloo", "timeout": datetime.timedelta(seconds=42)}]
    with pytest.raises(UsageError, match="train.dist_timeout must be a positive number of seconds"):
        init_distributed("cpu", 0.0)


def test_a_resume_on_another_process_count_says_what_becomes_of_the_noise_streams(tmp_path):
    """Each process keeps its own noise stream in a checkpoint; rank 0 says which ranks start
    afresh (more processes) or whose streams are dropped (fewer)."""
    from pdebench_core.checkpoint import load_checkpoint, save_checkpoint

    trainer = make_trainer(tiny_dpot(), tmp_path / "one", max_steps=2, checkpoint_every=2)
    trainer.fit()
    state = load_checkpoint(tmp_path / "one" / "last.pt")
    written_by_two = {**state, "rng": [state["rng"][0]] * 2, "noise_rng": [state["noise_rng"][0]] * 2}
    save_checkpoint(written_by_two, tmp_path / "two.pt")
    lines = []
    make_trainer(tiny_dpot(), tmp_path / "resumed", max_steps=4, log=lines.append).load(tmp_path / "two.pt")
    assert any("holds the random state of 2 processes, this run has 1: the streams of rank 1 are dropped" in line
               for line in lines), lines
    lines.clear()
    make_trainer(tiny_dpot(), tmp_path / "same", max_steps=4, log=lines.append).load(tmp_path / "one" / "last.pt")
    assert not any("random state" in line for line in lines)


def test_a_checkpoint_of_more_gpus_resumes_on_fewer(monkeypatch):
    """Older checkpoints hold every visible GPU's random state; a resume that sees fewer GPUs
    (another CUDA_VISIBLE_DEVICES, fewer ranks) takes its own GPU's entry instead of failing."""
    from pdebench_core import engine

    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    cpu_state = torch.get_rng_state()
    eight = [torch.full((4,), i, dtype=torch.uint8) for i in range(8)]
    engine.set_rng_state({"cpu": cpu_state, "cuda": eight}, torch.device("cuda", 1))
    assert torch.equal(restored[-1][0], eight[1]) and restored[-1][1] == torch.device("cuda", 1)
    engine.set_rng_state({"cpu": cpu_state, "cuda": eight[:1]}, torch.device("cuda", 3))  # nothing of its own
    assert len(restored) == 1
    engine.set_rng_state({"cpu": cpu_state, "cuda": eight[2]}, torch.device("cuda", 0))  # this GPU's alone
    assert torch.equal(restored[-1][0], eight[2])
    engine.set_rng_state({"cpu": cpu_state, "cuda": eight}, torch.device("cpu"))  # a CPU resume: CUDA untouched
    assert len(restored) == 2
