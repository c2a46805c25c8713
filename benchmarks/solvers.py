"""How fast the bundled dataset generators solve trajectories.

For every dataset the plugin's own ``generate`` function is called directly: no cache,
no HDF5 writing, so every number is solver time. Each measurement runs in a fresh
subprocess with ``torch.set_num_threads(N)`` and ``OMP_NUM_THREADS=N`` (``--threads``),
so thread settings and memory never leak from one measurement into the next.

Per dataset and device:

- ``--profile`` (default ``small``): one trajectory alone, then ``--batch`` trajectories
  solved together in one batch (skipped when the single-trajectory time says the batch
  would take longer than ``--max-seconds``). The solvers are batched torch code, so the
  batch figure is what generating a whole split achieves.
- ``paper`` (unless ``--no-paper``): one trajectory at the published settings. A short
  probe run over the first part of the simulated time gives an estimate; the full
  trajectory is solved only when that estimate is under ``--paper-timeout`` seconds,
  otherwise the table shows the estimate (marked ``est.``). Adaptive time steps are
  shortest while the initial transients last, so estimates from the probe lean high.

CUDA is measured too when ``torch.cuda.is_available()`` (``--devices``); CUDA runs
start with an untimed warm-up so that context creation and FFT plans are not counted.

Usage::

    python benchmarks/solvers.py                              # every dataset, 1 thread
    python benchmarks/solvers.py --datasets ns2d,dr2d --threads 1,2 --no-paper
    python benchmarks/solvers.py --datasets burgers1d --profile smoke --batch 32
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

# Run from a source checkout without installing: the repository root and its bundled plugins.
_ROOT = Path(__file__).resolve().parents[1]
for _path in (_ROOT, _ROOT / "plugins"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

DEFAULT_DATASETS = ("burgers1d", "ns2d", "dr2d", "swe2d", "cfd2d", "cfd3d")
# Fraction of the simulated time the paper probe integrates (long 3D runs get a shorter probe).
PROBE_FRACTION = {"cfd3d": 0.002}
DEFAULT_PROBE_FRACTION = 0.05


def generator_of(name: str) -> Callable[[Any], dict]:
    """The plugin function that solves every trajectory of a dataset config.

    Args:
        name: Registered dataset name (``ns2d`` and its presets, ``cfd2d``, ``cfd3d``,
            ``dr2d``, ``swe2d``, ``burgers1d``).

    Returns:
        ``generate(cfg) -> {"train": array, "val": array, "test": array}`` without a
        progress bar.
    """
    if name.startswith("ns2d"):
        from pdeb_ns2d import generate

        return lambda cfg: generate(cfg, show_progress=False)
    if name in ("cfd2d", "cfd3d"):
        from pdeb_cfd.dataset import generate

        ndim = int(name[3])
        return lambda cfg: generate(cfg, name, ndim, show_progress=False)
    try:
        module = importlib.import_module(f"pdeb_{name}")
    except ImportError:
        raise SystemExit(f"no generator known for dataset '{name}'; known: {', '.join(DEFAULT_DATASETS)}") from None
    return lambda cfg: module.generate(cfg, show_progress=False)


def probe_settings(name: str, cfg: Any) -> tuple[dict[str, Any], float]:
    """Overrides of a short probe run and the factor that scales its time to the full run.

    ``ns2d`` stores one frame per unit time and the protocol's ``cn-euler`` scheme takes
    fixed steps, so the probe integrates one time unit with steps ten times longer (the
    cost per step does not depend on its length). The other generators store
    ``n_frames`` frames on ``[0, t_end]``; the probe integrates the first fraction of
    ``t_end``.
    """
    if name.startswith("ns2d"):
        if cfg.scheme == "cn-euler":
            return {"T": 1, "delta_t": 10 * float(cfg.delta_t)}, 10.0 * int(cfg.T)
        return {"T": 1}, float(int(cfg.T))
    fraction = PROBE_FRACTION.get(name, DEFAULT_PROBE_FRACTION)
    return {"n_frames": 2, "t_end": float(cfg.t_end) * fraction}, 1.0 / fraction


def describe(name: str, cfg: Any) -> tuple[str, int]:
    """``("64x64", frames)`` of a config, for the table."""
    res = int(cfg.resolution)
    ndim = {"cfd3d": 3, "burgers1d": 1}.get(name, 2)
    frames = int(cfg.T) if hasattr(cfg, "T") else int(cfg.n_frames)
    grid = "x".join([str(res)] * ndim)
    solver_res = int(getattr(cfg, "solver_resolution", res) or res)
    if solver_res != res:  # ns2d solves on a finer grid and keeps every k-th point
        grid += f" (solved at {solver_res}^{ndim})"
    return grid, frames


def dataset_config(name: str, profile: str, overrides: dict[str, Any]):
    """The dataset's validated config for ``profile`` with ``overrides`` applied."""
    from pdebench_core import plugins
    from pdebench_core.config import component_config

    return component_config(plugins.get("dataset", name), profile, overrides)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Solve ``job["n"]`` trajectories once and time it (runs inside the subprocess)."""
    import numpy as np
    import torch

    torch.set_num_threads(int(job["threads"]))
    n = int(job["n"])
    base = {"n_train": n, "n_val": 0, "n_test": 0, "batch_size": n, "progress": False, "device": job["device"]}
    cfg = dataset_config(job["name"], job["profile"], {**base, **job.get("overrides", {})})
    generate = generator_of(job["name"])
    if job["device"].startswith("cuda"):
        warm, _ = probe_settings(job["name"], cfg)
        generate(dataset_config(job["name"], job["profile"], {**base, "n_train": 1, "batch_size": 1, **warm}))
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(cfg)  # returns numpy arrays, so the device work has finished
    seconds = time.perf_counter() - start
    train = out["train"]
    finite = bool(np.isfinite(train).all())
    return {"seconds": seconds, "shape": list(train.shape), "threads": torch.get_num_threads(), "finite": finite}


def run_job(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter; ``{"error": ...}`` on failure or timeout."""
    threads = str(job["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement the options ask for, printed as it completes."""
    import torch

    devices = [d for d in args.devices.split(",") if d]
    if "auto" in devices:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        for device in devices:
            for threads in [int(t) for t in args.threads.split(",")]:
                job = {"name": name, "profile": args.profile, "device": device, "threads": threads}
                batch = args.cuda_batch if device.startswith("cuda") else args.batch
                rows.append(_row(job, 1, run_job({**job, "n": 1}, args.max_seconds * 4 + 60)))
                single = rows[-1].get("seconds")
                if batch > 1 and single is not None and single * batch <= args.max_seconds:
                    rows.append(_row(job, batch, run_job({**job, "n": batch}, args.max_seconds * 4 + 60)))
                if not args.no_paper:
                    rows.append(_paper_row(name, device, threads, args.paper_timeout))
    return rows


def _row(job: dict[str, Any], n: int, result: dict[str, Any], note: str = "") -> dict[str, Any]:
    cfg = dataset_config(job["name"], job["profile"], job.get("overrides", {}))
    grid, frames = describe(job["name"], cfg)
    row = {"dataset": job["name"], "device": job["device"], "threads": job["threads"], "profile": job["profile"],
           "grid": grid, "frames": frames, "n": n, **result, "note": note}
    if "seconds" in result:
        row["traj_per_s"] = n / result["seconds"]
        if not result.get("finite", True):
            row["note"] = (note + " non-finite values!").strip()
    _print_row(row)
    return row


def _paper_row(name: str, device: str, threads: int, timeout: float) -> dict[str, Any]:
    job = {"name": name, "profile": "paper", "device": device, "threads": threads}
    cfg = dataset_config(name, "paper", {})
    overrides, factor = probe_settings(name, cfg)
    probe = run_job({**job, "n": 1, "overrides": overrides}, timeout * 4 + 60)
    if "seconds" not in probe:
        return _row(job, 1, probe, "probe failed")
    estimate = probe["seconds"] * factor
    if estimate <= timeout:
        full = run_job({**job, "n": 1}, timeout * 3 + 60)
        if "seconds" in full:
            return _row(job, 1, full, f"probe est. {estimate:.3g} s")
    return _row(job, 1, {"seconds": estimate, "threads": probe["threads"], "finite": probe["finite"]},
                f"est. from {1 / factor:.2%} of the run ({probe['seconds']:.2f} s)")


COLUMNS = ("dataset", "device", "threads", "profile", "grid", "frames", "n", "seconds", "traj_per_s", "note")
_header_printed = False


def _print_row(row: dict[str, Any]) -> None:
    global _header_printed
    if not _header_printed:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        _header_printed = True
    cells = []
    for key in COLUMNS:
        value = row.get(key, "")
        if key == "seconds":
            value = f"{value:.3g}" if value != "" else row.get("error", "")
        elif key == "traj_per_s" and value != "":
            value = f"{value:.3g}"
        cells.append(str(value))
    print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS), help="comma-separated dataset names")
    parser.add_argument("--profile", default="small", help="profile of the main measurement (smoke, small, paper)")
    parser.add_argument("--threads", default="1", help="torch threads, comma-separated to compare (e.g. 1,2)")
    parser.add_argument("--devices", default="auto", help="auto (cpu, plus cuda when available), cpu, cuda")
    parser.add_argument("--batch", type=int, default=8, help="trajectories solved together on the CPU")
    parser.add_argument("--cuda-batch", type=int, default=64, help="trajectories solved together on CUDA")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="skip the batched run when it would take longer than this")
    parser.add_argument("--paper-timeout", type=float, default=60.0,
                        help="solve one full paper trajectory only if the probe estimates less than this")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-size trajectory")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import platform

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"each measurement: fresh process, torch.set_num_threads and OMP_NUM_THREADS = {args.threads}\n")
    started = time.perf_counter()
    rows = measure(args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; 'n' trajectories solved together in one batch; "
          "traj_per_s = n / seconds")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    from pdebench_core.errors import UsageError

    try:
        main()
    except UsageError as exc:  # unknown dataset or model, bad setting: one line, not a traceback
        raise SystemExit(f"error: {exc}") from None
