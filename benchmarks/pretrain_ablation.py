"""Does DPOT pre-training help most when target data is scarce? An ablation on pdeb's own data.

The paper's claim: pre-training on related physics pays off most when the target
problem has few trajectories. This script tests it at the scale of a CPU:

1. Pre-train a small DPOT on related physics: Navier-Stokes at nu = 1e-3 and 1e-5
   (arm ``ns``), and a second arm that adds the other 2D families (``ns+2d``: dr2d,
   swe2d and cfd2d). Each arm is pre-trained with the official input noise and without it.
2. Fine-tune on a held-out setting, Navier-Stokes at nu = 1e-4, with 8, 32 and 128
   training trajectories.
3. Train the same architecture from scratch on the same target data for the same
   number of steps, with the same optimizer and schedule.

Every cell is run with several seeds (the seed drives initialisation, sampling and
noise; pre-training seed ``s`` feeds fine-tuning seed ``s``) and reported as mean ± std
of the test L2RE of an auto-regressive rollout. Every run goes through ``pdeb run``'s
own code path (``build_config`` + ``execute``) in a private ``PDEB_HOME``.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/pretrain_ablation.py [--pretrain-steps 1200]
        [--finetune-steps 300] [--seeds 0,1,2] [--sizes 8,32,128] [--arms ns,ns+2d]
        [--frames 14] [--grid 32] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

# A tiny DPOT with the 4 input channels of the widest 2D family (cfd2d), so every arm and
# the scratch baseline share one architecture and checkpoints load strictly.
MODEL = ["model.embed_dim=64", "model.depth=2", "model.n_blocks=4", "model.out_layer_dim=16",
         "model.patch_size=4", "model.modes=8", "model.in_channels=4"]
RELATED = ["ns2d-nu1e-3", "ns2d-nu1e-5"]
OTHER_2D = ["dr2d", "swe2d", "cfd2d"]
TARGET = "ns2d-nu1e-4"
ARMS = {"ns": RELATED, "ns+2d": RELATED + OTHER_2D}


def data_overrides(names: list[str], grid: int, frames: int, n_train: int) -> list[str]:
    """Settings that put every dataset on one grid with ``frames`` frames per trajectory."""
    out = []
    for name in names:
        settings = {"resolution": grid, "n_train": n_train, "n_val": 4, "n_test": 16}
        if name.startswith("ns2d"):
            settings.update({"solver_resolution": grid, "T": frames})
        out += [f"data.{name}.{key}={value}" for key, value in settings.items()]
    return out


def run(data: str, task: str, overrides: list[str], run_id: str, seed: int) -> tuple[dict, float]:
    """One ``pdeb run`` in this process; returns its results and wall time."""
    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    cfg = build_config(model="dpot", data=data, task=task, profile="smoke", run_id=run_id, seed=seed,
                       device="cpu", overrides=[*MODEL, "train.batch_size=8", "train.log_every=100",
                                                "eval.batch_size=16", *overrides])
    start = time.perf_counter()
    ctx = execute(cfg, quiet=True)
    return ctx.results, time.perf_counter() - start


def finetune_recipe(steps: int, lr: float) -> list[str]:
    """The official fine-tuning optimizer and schedule, stated explicitly so that the
    pre-trained and the scratch arms train identically."""
    return [f"train.max_steps={steps}", f"train.lr={lr}", "train.optimizer=adam", "train.betas=[0.9,0.9]",
            "train.weight_decay=1e-6", "train.scheduler=onecycle", "train.div_factor=10000",
            "train.final_div_factor=10000", "train.cycle_momentum=true", "train.warmup_frac=0.2",
            "train.sampling=trajectory"]


def mean_std(values: list[float]) -> str:
    """``mean ± std`` (sample std over seeds)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def pretrain_all(args, home: Path, seeds: list[int]) -> tuple[dict, list[str]]:
    """Pre-train every arm, with and without noise, once per seed; returns checkpoint paths."""
    checkpoints: dict[tuple[str, bool, int], Path] = {}
    lines = []
    for arm in args.arms:
        names = ARMS[arm]
        for noisy in (True, False):
            scores = []
            for seed in seeds:
                run_id = f"pre-{arm.replace('+', '-')}-{'noise' if noisy else 'clean'}-s{seed}"
                overrides = [*data_overrides(names, args.grid, args.frames, args.pretrain_trajectories),
                             f"train.max_steps={args.pretrain_steps}", f"train.lr={args.pretrain_lr}"]
                if not noisy:
                    overrides.append("task.noise_scale=0")
                results, took = run(",".join(names), "pretrain", overrides, run_id, seed)
                scores.append(sum(r["l2re"] for r in results.values()) / len(results))
                checkpoints[(arm, noisy, seed)] = home / "runs" / run_id / "checkpoints" / "last.pt"
                print(f"pre-trained {run_id} in {took:.0f}s: mixture-mean L2RE {scores[-1]:.4f}", flush=True)
            lines.append(f"| pre-training `{arm}` {'with' if noisy else 'without'} noise | "
                         f"{', '.join(names)} | {mean_std(scores)} |")
    return checkpoints, lines


def finetune_all(args, checkpoints: dict, seeds: list[int]) -> list[str]:
    """Fine-tune every checkpoint and train from scratch for every target size."""
    arms = [("scratch", None, None)] + [(arm, arm, noisy) for arm in args.arms for noisy in (True, False)]
    header = "| target trajectories | " + " | ".join(_label(a, n) for _, a, n in arms) + " |"
    lines = [header, "|" + "---|" * (len(arms) + 1)]
    for size in args.sizes:
        target = data_overrides([TARGET], args.grid, args.frames, size)
        cells = []
        for label, arm, noisy in arms:
            scores = []
            for seed in seeds:
                run_id = f"ft-{label.replace('+', '-')}-{'noise' if noisy else 'clean'}-n{size}-s{seed}"
                overrides = [*target, *finetune_recipe(args.finetune_steps, args.finetune_lr)]
                if arm is None:
                    results, took = run(TARGET, "train", overrides, run_id, seed)
                else:
                    overrides.append(f"model.init={checkpoints[(arm, noisy, seed)]}")
                    results, took = run(TARGET, "finetune", overrides, run_id, seed)
                scores.append(results[TARGET]["l2re"])
                print(f"{run_id} in {took:.0f}s: L2RE {scores[-1]:.4f}", flush=True)
            cells.append(mean_std(scores))
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return lines


def _label(arm: str | None, noisy: bool | None) -> str:
    if arm is None:
        return "from scratch"
    return f"pre-trained `{arm}`, {'noise' if noisy else 'no noise'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-steps", type=int, default=1200)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--pretrain-lr", type=float, default=3e-3)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--pretrain-trajectories", type=int, default=128, help="per pre-training dataset")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sizes", default="8,32,128", help="target training trajectories")
    parser.add_argument("--arms", default="ns,ns+2d", help=f"pre-training arms among {', '.join(ARMS)}")
    parser.add_argument("--frames", type=int, default=14, help="frames per Navier-Stokes trajectory")
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown tables here")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose among {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("PDEB_HOME", tempfile.mkdtemp(prefix="pdeb-ablation-"))
    started = time.perf_counter()
    checkpoints, pre_lines = pretrain_all(args, Path(os.environ["PDEB_HOME"]), seeds)
    ft_lines = finetune_all(args, checkpoints, seeds)
    text = "\n".join([
        f"Pre-training: {args.pretrain_steps} steps, {args.pretrain_trajectories} trajectories per dataset, "
        f"{args.grid}x{args.grid} grid; fine-tuning and scratch: {args.finetune_steps} steps on {TARGET}; "
        f"seeds {args.seeds}; test L2RE, mean ± std over seeds.", "",
        "| pre-training | datasets | test L2RE on the pre-training mixture |", "|---|---|---|", *pre_lines, "",
        *ft_lines, "", f"total wall time {time.perf_counter() - started:.0f}s",
    ])
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
