"""Is the data loader ever the bottleneck, and does streaming a large file stay in bounded memory?

Part 1, throughput (on generated data of ``--profile``, default ``small``):

- ``loader``: windows per second that ``training_loader`` (the engine's loader:
  ``MixtureBatchSampler`` over ``WindowDataset`` over lazy HDF5 reads) delivers alone,
  for every ``--workers`` count, after the first batch (worker start-up is shown apart).
- ``step``: windows per second one training step of ``--model`` consumes (forward, DPOT's
  relative L2 loss, backward, Adam) on one fixed batch, so no loading.
- ``ratio`` = loader / step: above 1 the loader outruns training.
- ``fed``: windows per second of training steps fed by the loader, the number a run
  sees; ``overhead`` = 1 - fed / step. ``step`` and ``fed`` iterations alternate and
  both are batch size over the median time, so a burst of load from other processes
  hits both alike. On a CPU the loader's workers and the step share the cores, so
  ``fed`` is the honest figure.

Part 2, memory (``--size-gb``, default 2): a synthetic canonical file (the layout and
attributes of ``write_canonical``: ``/train``, ``/val``, ``/test`` float32
``(N, T, X, Y, C)``, one trajectory per chunk, ``pdeb_format``, ``format_version``,
``spec``, ``provenance``) is written one trajectory at a time with h5py, then streamed
once as ``(x, y, mask)`` windows through a shuffled DataLoader (``open_canonical`` +
``WindowDataset``, non-overlapping windows so every frame is read once). Writing and
streaming each run in a fresh process. Peak resident memory is the process's high-water
mark (``VmHWM`` on Linux, else ``resource.getrusage``), plus ``ru_maxrss`` of its finished
DataLoader workers; both count h5py's buffers, unlike ``tracemalloc``. The file has just
been written, so it is read mostly from the page cache (which is not resident memory of
the process). The file is deleted afterwards.

Part 3, feeding DPOT-Ti on a GPU (``--dpot-feed``, runs alone): the engine's loader over a
DPOT-like mixture (a 128x128 4-field dataset read as is, and a 64x64 1-field one that is
resized to 128x128 and padded to 4 channels, like FNO's NS data in DPOT's pre-training; 21
frames per trajectory, windows of 10 + 1) with batches of 20, the per-GPU batch of the
official Ti recipe, for every ``--workers`` count, reading lazily and preloaded into memory.
The loader's windows/s is set against the windows/s a GPU consumes at a DPOT-Ti step time
derived (and printed) in this order:

- ``--gpu-step-ms``: a measured step time (``benchmarks/gpu_check.py`` prints one);
- ``--budget-gpu-hours H``: a total pre-training budget. The official Ti recipe
  (``configs/pretrain_tiny.yaml`` of thu-ml/DPOT) draws sum(n_k w_k) = 132,400 windows per
  epoch over its 12 datasets (``ntrain_list`` times ``data_weights``), for 1000 epochs, on
  6 GPUs with 20 windows each per step: 1.10M steps. A budget of H GPU-hours is H / 6
  hours of wall time, so one step takes H * 3600 / 6 / 1.10M seconds;
- otherwise FLOPs: DPOT-Ti's training FLOPs per window at 128x128 (counted as
  ``benchmarks/gpu_check.py`` counts them, FFTs included) times 20, over ``--mfu`` (0.4) of
  ``--peak-tflops`` (989, the dense bf16 peak of an H100 SXM or H200).

Torch threads: ``--threads`` (default 1) for the training step and the main process;
DataLoader workers run one thread each (torch's default in workers). ``PDEB_HOME`` is
respected; when unset, data is generated in a temporary folder that is removed at the end.

Usage::

    python benchmarks/loader.py                        # ns2d + FNO, workers 0 and 2, 2 GB file
    python benchmarks/loader.py --model dpot --datasets ns2d,swe2d --size-gb 0
    python benchmarks/loader.py --skip-throughput --size-gb 0.5,2,8 --dir /scratch
    python benchmarks/loader.py --dpot-feed --workers 0,1,2      # part 3 alone
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run from a source checkout without installing: the repository root and its bundled plugins.
_ROOT = Path(__file__).resolve().parents[1]
for _path in (_ROOT, _ROOT / "plugins"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

MIB = 1 << 20
# Shape of one synthetic trajectory: a PDEBench 2D CFD grid (128x128, 4 fields), 5.8 MB. 22 frames
# hold exactly two non-overlapping windows of 10 + 1 frames, so streaming reads every byte once.
SYNTHETIC_TRAJECTORY = (22, 128, 128, 4)


# ----------------------------------------------------------------------------- memory helpers


def _proc_status_mib(key: str) -> float | None:
    """A ``/proc/self/status`` memory line (``VmRSS``, ``VmHWM``) in MiB; ``None`` off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """Peak resident set size of this process, in MiB.

    ``VmHWM`` where available: it belongs to the address space, so it starts afresh at
    ``exec``. ``ru_maxrss`` survives ``exec`` on Linux and would report the peak of the
    (large) parent a subprocess was forked from.
    """
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def children_peak_rss_mib() -> float:
    """Largest peak RSS among finished child processes (here: DataLoader workers), in MiB.

    Forked workers start with the parent's pages mapped, so this counts pages they share
    with the parent as well.
    """
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    """Resident set size now, in MiB (falls back to the peak off Linux)."""
    rss = _proc_status_mib("VmRSS")
    return rss if rss is not None else peak_rss_mib()


# ----------------------------------------------------------------------------- part 1: throughput


def build_mixture(names: list[str], profile: str):
    """Build the datasets (generating and caching them if needed) and plan one mixture."""
    from pdebench_core.config import build_dataset
    from pdebench_core.data.pipeline import plan_mixture

    datasets = {}
    for name in names:
        start = time.perf_counter()
        datasets[name] = build_dataset(name, profile)
        spec = datasets[name].spec
        print(f"  {name}: {len(datasets[name].split('train'))} train trajectories of "
              f"{spec.n_frames} x {'x'.join(map(str, spec.spatial_shape))} x {spec.n_channels} "
              f"(ready in {time.perf_counter() - start:.1f} s)", flush=True)
    return plan_mixture(datasets, t_out=1)


def loader_rate(mixture, batch_size: int, workers: int, batches: int, device=None) -> tuple[float, float]:
    """``(startup seconds, windows per second)`` of ``training_loader`` alone (``device``: the
    ``train.data_on_device`` path, windows gathered from tensors on that device)."""
    import torch

    from pdebench_core.data.pipeline import training_loader

    start = time.perf_counter()
    loader, _ = training_loader(mixture, "train", batch_size, seed=0, num_workers=workers, device=device)
    iterator = iter(loader)
    next(iterator)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    del batch
    rate = batches * batch_size / (time.perf_counter() - start)
    del iterator, loader  # stops the workers
    return startup, rate


def make_step(model_name: str, profile: str, mixture):
    """A training step closure ``step(x, y, mask)`` of the model at ``profile`` size."""
    import torch

    from pdebench_core import plugins
    from pdebench_core.config import component_config
    from pdebench_core.losses import relative_l2_loss

    comp = plugins.get("model", model_name)
    model = comp.factory(component_config(comp, profile), mixture.model_spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    n_params = sum(p.numel() for p in model.parameters())

    def step(x, y, mask):
        optimizer.zero_grad(set_to_none=True)
        pred = model(x)  # (B, t_out, *S, C)
        loss = relative_l2_loss(pred, y, mask)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step, n_params


def paired_rates(step, batch, mixture, batch_size: int, workers: int, steps: int) -> tuple[float, float]:
    """``(step, fed)`` windows per second, measured in alternation so both see the same machine load.

    Each round times one training step on a fixed batch (no loading) and one iteration
    fed by ``training_loader`` (waiting for the next batch, then the step). Rates are the
    batch size over the median time, which keeps bursts of load from other processes on
    a shared machine out of the figures. Start-up and two rounds are left untimed.
    """
    from pdebench_core.data.pipeline import training_loader

    loader, _ = training_loader(mixture, "train", batch_size, seed=1, num_workers=workers)
    iterator = iter(loader)
    x, y, mask = batch
    alone, fed = [], []
    for round_ in range(steps + 2):
        start = time.perf_counter()
        step(x, y, mask)
        middle = time.perf_counter()
        step(*next(iterator))
        end = time.perf_counter()
        if round_ >= 2:
            alone.append(middle - start)
            fed.append(end - middle)
    del iterator, loader
    return batch_size / statistics.median(alone), batch_size / statistics.median(fed)


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 1: loader against training-step throughput; prints a table and returns its rows."""
    import torch

    from pdebench_core.data.pipeline import training_loader

    from pdebench_core import plugins

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    for name in names:  # fail on a misspelt name before generating anything
        plugins.get("dataset", name)
    plugins.get("model", args.model)
    print(f"\n== throughput: {', '.join(names)} ({args.profile}), model {args.model} ({args.profile}), "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()} ==", flush=True)
    mixture = build_mixture(names, args.profile)
    step, n_params = make_step(args.model, args.profile, mixture)
    loader, _ = training_loader(mixture, "train", args.batch_size, seed=0, num_workers=0)
    batch = next(iter(loader))
    print(f"  model {args.model}: {n_params / 1e6:.2f} M parameters; batch x {tuple(batch[0].shape)}", flush=True)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        startup, produce = loader_rate(mixture, args.batch_size, workers, args.batches)
        consume, fed = paired_rates(step, batch, mixture, args.batch_size, workers, args.steps)
        rows.append({"workers": workers, "startup_s": startup, "loader": produce, "step": consume,
                     "ratio": produce / consume, "fed": fed, "overhead": 1.0 - fed / consume})
    print("\n| workers | start-up s | loader windows/s | step windows/s | ratio loader/step | fed windows/s "
          "| overhead |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['startup_s']:.2f} | {r['loader']:.0f} | {r['step']:.1f} | {r['ratio']:.3g}x "
              f"| {r['fed']:.1f} | {r['overhead']:+.0%} |")
    slowest = min(r["ratio"] for r in rows)
    verdict = "never the bottleneck" if slowest > 1 else "THE BOTTLENECK"
    print(f"\nloader is {verdict}: it delivers at least {slowest:.3g}x what the {args.model} step consumes "
          "(overhead: share of the step rate lost when the loader feeds it; noise on a shared machine "
          "is several percent)", flush=True)
    return rows


# ----------------------------------------------------------------------------- part 2: memory


def write_synthetic(path: str, size_gb: float) -> dict[str, Any]:
    """Write a canonical file of about ``size_gb`` GB one trajectory at a time (runs in a subprocess)."""
    import h5py
    import numpy as np

    from pdebench_core.data.canonical import FORMAT_NAME, FORMAT_VERSION
    from pdebench_core.spec import DataSpec

    baseline = current_rss_mib()
    frames, nx, ny, channels = SYNTHETIC_TRAJECTORY
    per_trajectory = 4 * frames * nx * ny * channels
    n_train = max(1, math.ceil(size_gb * 1e9 / per_trajectory))
    sizes = {"train": n_train, "val": 1, "test": 1}
    spec = DataSpec(name="synthetic", fields=("a", "b", "c", "d"), spatial_shape=(nx, ny), t_in=10, t_out=1,
                    dt=0.05, domain=((0.0, 1.0), (0.0, 1.0)), horizon=frames - 10, n_frames=frames)
    rng = np.random.default_rng(0)
    # One random block, shifted per trajectory: cheap to make, and no two trajectories are equal.
    block = rng.standard_normal((frames, nx, ny, channels), dtype=np.float32)
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.attrs["pdeb_format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["spec"] = json.dumps(spec.to_dict())
        f.attrs["provenance"] = json.dumps({"generator": "benchmarks/loader.py", "seed": 0, "synthetic": True})
        for split, n in sizes.items():
            dataset = f.create_dataset(split, shape=(n, *SYNTHETIC_TRAJECTORY), dtype="float32",
                                       chunks=(1, *SYNTHETIC_TRAJECTORY))
            for i in range(n):
                dataset[i] = block + np.float32(1e-3 * i)  # (T, X, Y, C)
    seconds = time.perf_counter() - start
    return {"bytes": os.path.getsize(path), "n_train": n_train, "seconds": seconds,
            "baseline_mib": baseline, "peak_mib": peak_rss_mib()}


def stream(path: str, workers: int, batch_size: int) -> dict[str, Any]:
    """Read every window of the train split once through a DataLoader (runs in a subprocess)."""
    import torch

    from pdebench_core.data.canonical import open_canonical
    from pdebench_core.data.windows import WindowDataset

    torch.set_num_threads(1)
    baseline = current_rss_mib()
    spec, splits = open_canonical(path)
    t_in, t_out = spec.t_in, 1
    # Non-overlapping windows: every frame of the file is read once.
    windows = WindowDataset(splits["train"], t_in, t_out, stride=t_in + t_out)
    loader = torch.utils.data.DataLoader(windows, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    samples, n_windows, bytes_read, checksum = [], 0, 0, 0.0
    start = time.perf_counter()
    for k, (x, y, _mask) in enumerate(loader):  # x (B, t_in, X, Y, C), y (B, t_out, X, Y, C)
        n_windows += x.shape[0]
        bytes_read += x.numel() * 4 + y.numel() * 4
        checksum += float(y[:, 0, 0, 0, 0].sum())
        if k % 5 == 0:
            samples.append(current_rss_mib())
    seconds = time.perf_counter() - start
    del loader
    return {"windows": n_windows, "bytes_read": bytes_read, "seconds": seconds, "baseline_mib": baseline,
            "rss_samples_mib": samples, "peak_mib": peak_rss_mib(),
            "worker_peak_mib": children_peak_rss_mib() if workers else 0.0,
            "checksum": checksum}


def _subprocess(mode: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, f"--{mode}", json.dumps(payload)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 2: for every ``--size-gb``, write a synthetic canonical file, stream it, report peak RSS.

    Each file is removed right after its measurements.
    """
    folder = Path(args.dir or tempfile.gettempdir())
    results = []
    rows = []
    for size_gb in [float(v) for v in args.size_gb.split(",") if float(v) > 0]:
        need = size_gb * 1e9 * 1.05 + 1e8
        free = shutil.disk_usage(folder).free
        if free < need:
            raise SystemExit(f"{folder} has {free / 1e9:.1f} GB free, the test file needs {need / 1e9:.1f} GB; "
                             "pass --dir on a larger disk or lower --size-gb")
        path = folder / f"pdeb-loader-bench-{os.getpid()}.h5"
        print(f"\n== memory: streaming a {size_gb:g} GB canonical file ({path}) ==", flush=True)
        try:
            wrote = _subprocess("write", {"path": str(path), "size_gb": size_gb}, timeout=1800)
            size = wrote["bytes"]
            print(f"  written: {size / 1e9:.2f} GB, {wrote['n_train']} train trajectories of "
                  f"{SYNTHETIC_TRAJECTORY}, in {wrote['seconds']:.1f} s ({size / 1e9 / wrote['seconds']:.2f} GB/s); "
                  f"writer peak RSS {wrote['peak_mib']:.0f} MiB (after imports {wrote['baseline_mib']:.0f} MiB)",
                  flush=True)
            for workers in [int(w) for w in args.stream_workers.split(",")]:
                got = _subprocess("stream", {"path": str(path), "workers": workers, "batch_size": args.batch_size},
                                  timeout=1800)
                rows.append({**got, "workers": workers, "file_bytes": size})
            results.append({"file_bytes": size, "write": wrote, "stream": rows[-len(args.stream_workers.split(",")):]})
        finally:
            if path.exists():
                path.unlink()
    print(f"\nbatch {args.batch_size} windows of 10+1 frames, shuffled; every byte of the file read once; "
          "RSS of the streaming process (worker peak: largest DataLoader worker, shared pages included)")
    print("\n| file GB | workers | windows | s | GB/s | RSS after imports MiB | peak RSS MiB | growth MiB "
          "| RSS while streaming MiB | worker peak MiB |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        samples = r["rss_samples_mib"] or [r["peak_mib"]]
        print(f"| {r['file_bytes'] / 1e9:.2f} | {r['workers']} | {r['windows']} | {r['seconds']:.1f} | "
              f"{r['bytes_read'] / 1e9 / r['seconds']:.2f} | {r['baseline_mib']:.0f} | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] - r['baseline_mib']:.0f} | {min(samples):.0f}-{max(samples):.0f} | "
              f"{r['worker_peak_mib']:.0f} |")
    if rows:
        worst = max(rows, key=lambda r: max(r["peak_mib"], r["worker_peak_mib"]))
        peak = max(worst["peak_mib"], worst["worker_peak_mib"])
        print(f"\nlargest peak RSS of any process: {peak:.0f} MiB, {peak * MIB / worst['file_bytes']:.1%} of its "
              f"{worst['file_bytes'] / 1e9:.2f} GB file", flush=True)
    return results


# ----------------------------------------------------------------------------- part 3: feeding DPOT-Ti

# The official DPOT-Ti pre-training recipe (thu-ml/DPOT configs/pretrain_tiny.yaml).
OFFICIAL_TI_TRAJECTORIES = (1000, 9800, 1000, 9000, 9000, 9000, 9000, 900, 900, 6500, 3100, 9000)
OFFICIAL_TI_WEIGHTS = (8, 2, 8, 1, 1, 1, 1, 20, 20, 1, 3, 1)
OFFICIAL_TI_EPOCHS, OFFICIAL_TI_GPUS, OFFICIAL_TI_BATCH = 1000, 6, 20


def official_ti_steps() -> dict[str, float]:
    """Windows per epoch and optimizer steps of the official DPOT-Ti pre-training."""
    per_epoch = sum(n * w for n, w in zip(OFFICIAL_TI_TRAJECTORIES, OFFICIAL_TI_WEIGHTS))
    steps = OFFICIAL_TI_EPOCHS * per_epoch / (OFFICIAL_TI_GPUS * OFFICIAL_TI_BATCH)
    return {"windows_per_epoch": per_epoch, "steps": steps}


def gpu_step_seconds(args: argparse.Namespace) -> tuple[float, str]:
    """The DPOT-Ti step time on a GPU to feed, and how it was derived."""
    if args.gpu_step_ms > 0:
        return args.gpu_step_ms / 1e3, f"given: {args.gpu_step_ms:g} ms per step"
    recipe = official_ti_steps()
    if args.budget_gpu_hours > 0:
        seconds = args.budget_gpu_hours * 3600 / OFFICIAL_TI_GPUS / recipe["steps"]
        return seconds, (f"budget {args.budget_gpu_hours:g} GPU-hours / {OFFICIAL_TI_GPUS} GPUs over "
                         f"{recipe['steps']:.3g} steps ({OFFICIAL_TI_EPOCHS} epochs of "
                         f"{recipe['windows_per_epoch']:,} windows, {OFFICIAL_TI_GPUS} x {OFFICIAL_TI_BATCH} "
                         f"per step)")
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from gpu_check import dpot_flops_per_sample

    flops = dpot_flops_per_sample("ti")["flops"]
    seconds = OFFICIAL_TI_BATCH * flops / (args.mfu * args.peak_tflops * 1e12)
    return seconds, (f"FLOPs: {flops / 1e9:.2f} GFLOP per window x {OFFICIAL_TI_BATCH} at {args.mfu:.0%} of "
                     f"{args.peak_tflops:g} TFLOP/s")


def dpot_like_mixture(folder: Path, preload: bool, n_train: int = 16):
    """A mixture shaped like DPOT's pre-training data: 128x128x4 read as is, 64x64x1 resized and padded."""
    import numpy as np

    from pdebench_core.data import TrajectoryDataset
    from pdebench_core.data.canonical import open_canonical, write_canonical
    from pdebench_core.data.pipeline import plan_mixture
    from pdebench_core.spec import DataSpec

    rng = np.random.default_rng(0)
    datasets = {}
    for name, grid, fields in (("cns128", 128, ("rho", "p", "vx", "vy")), ("ns64", 64, ("w",))):
        path = folder / f"{name}.h5"
        if not path.exists():
            shape = (21, grid, grid, len(fields))
            splits = {s: rng.standard_normal((n, *shape), dtype=np.float32)
                      for s, n in (("train", n_train), ("val", 1), ("test", 1))}
            spec = DataSpec(name=name, fields=fields, spatial_shape=(grid, grid), t_in=10, t_out=1, n_frames=21)
            write_canonical(path, splits, spec, {"generator": "benchmarks/loader.py"})
        spec, splits = open_canonical(path, preload=preload)
        datasets[name] = TrajectoryDataset(spec, splits)
    return plan_mixture(datasets, t_out=1, resolution=128)


def device_rows(mixture, batches: int, needed: float) -> list[dict[str, Any]]:
    """The ``train.data_on_device`` path: on the CPU here, and on the GPU when there is one."""
    import torch

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        startup, rate = loader_rate(mixture, OFFICIAL_TI_BATCH, 0, batches, device=device)
        rows.append({"reading": f"on device ({device.type})", "workers": 0, "startup_s": startup,
                     "windows_per_s": rate, "fastest_step_ms": 1e3 * OFFICIAL_TI_BATCH / rate,
                     "keeps_up": rate >= needed})
    return rows


def dpot_feed(args: argparse.Namespace) -> dict[str, Any]:
    """Part 3: windows/s of the engine's loader on DPOT-shaped data against a DPOT-Ti step on a GPU."""
    step_s, how = gpu_step_seconds(args)
    needed = OFFICIAL_TI_BATCH / step_s
    print(f"\n== DPOT-Ti feed: batch {OFFICIAL_TI_BATCH} windows of 10+1 frames at 128x128x4 ==\n"
          f"GPU step time {1e3 * step_s:.2f} ms ({how}): the GPU consumes {needed:,.0f} windows/s", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="pdeb-dpot-feed-"))
    rows = []
    try:
        for preload in (False, True):
            mixture = dpot_like_mixture(folder, preload)
            for workers in [int(w) for w in args.workers.split(",")]:
                startup, rate = loader_rate(mixture, OFFICIAL_TI_BATCH, workers, args.batches)
                rows.append({"reading": "preloaded" if preload else "lazy HDF5", "workers": workers,
                             "startup_s": startup, "windows_per_s": rate,
                             "fastest_step_ms": 1e3 * OFFICIAL_TI_BATCH / rate, "keeps_up": rate >= needed})
        rows += device_rows(dpot_like_mixture(folder, False), args.batches, needed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n| reading | workers | start-up s | windows/s | fastest step it feeds, ms | keeps up |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['reading']} | {r['workers']} | {r['startup_s']:.2f} "
              f"| {r['windows_per_s']:.0f} | {r['fastest_step_ms']:.1f} | {'yes' if r['keeps_up'] else 'no'} |")
    best = max(rows, key=lambda r: r["windows_per_s"])
    print(f"\nbest: {best['windows_per_s']:.0f} windows/s ({best['reading']}, "
          f"{best['workers']} workers) = {best['windows_per_s'] / needed:.2g}x what the GPU consumes", flush=True)
    return {"gpu_step_s": step_s, "derivation": how, "needed_windows_per_s": needed, "rows": rows}


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ns2d", help="comma-separated datasets of the mixture")
    parser.add_argument("--model", default="fno", help="model whose training step is the consumer (fno, dpot, ...)")
    parser.add_argument("--profile", default="small", help="profile of the data and the model")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per batch (the small profile's)")
    parser.add_argument("--workers", default="0,2", help="DataLoader worker counts to compare")
    parser.add_argument("--batches", type=int, default=100, help="batches timed for the loader alone")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds of (fixed-batch step, fed step)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training step")
    parser.add_argument("--size-gb", default="2",
                        help="size of the streamed file in GB, comma-separated to compare; 0 skips part 2")
    parser.add_argument("--stream-workers", default="0,2", help="DataLoader workers while streaming the file")
    parser.add_argument("--dir", default="", help="folder for the streamed file (default: the temp folder)")
    parser.add_argument("--skip-throughput", action="store_true", help="only run part 2")
    parser.add_argument("--dpot-feed", action="store_true", help="only run part 3 (feeding DPOT-Ti on a GPU)")
    parser.add_argument("--gpu-step-ms", type=float, default=0.0, help="part 3: a measured DPOT-Ti step time")
    parser.add_argument("--budget-gpu-hours", type=float, default=0.0,
                        help="part 3: total GPU-hours of the official DPOT-Ti pre-training")
    parser.add_argument("--mfu", type=float, default=0.4, help="part 3: MFU of the FLOP-derived step time")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="part 3: dense bf16 peak of the GPU for the FLOP-derived step time")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--write", default="", help=argparse.SUPPRESS)
    parser.add_argument("--stream", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.mfu <= 1 or args.peak_tflops <= 0 or min(args.gpu_step_ms, args.budget_gpu_hours) < 0:
        parser.error("--mfu must lie in (0, 1], --peak-tflops be positive, --gpu-step-ms and --budget-gpu-hours "
                     "not negative")
    if args.write:
        payload = json.loads(args.write)
        print(json.dumps(write_synthetic(payload["path"], float(payload["size_gb"]))))
        return
    if args.stream:
        payload = json.loads(args.stream)
        print(json.dumps(stream(payload["path"], payload["workers"], payload["batch_size"])))
        return

    started = time.perf_counter()
    print(f"{os.cpu_count()} CPU cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    figures: dict[str, Any] = {}
    if args.dpot_feed:
        figures["dpot_feed"] = dpot_feed(args)
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        return
    temporary = None
    if not args.skip_throughput:
        if not os.environ.get("PDEB_HOME"):
            temporary = tempfile.mkdtemp(prefix="pdeb-loader-bench-")
            os.environ["PDEB_HOME"] = temporary
        try:
            figures["throughput"] = throughput(args)
        finally:
            if temporary:
                shutil.rmtree(temporary, ignore_errors=True)
    if any(float(v) > 0 for v in args.size_gb.split(",")):
        figures["memory"] = memory(args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    from pdebench_core.cli_common import run_script

    run_script(main)
