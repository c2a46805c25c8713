"""Does DPOT pre-training help most when target data is scarce? An ablation on pdeb's own data.

The paper's claim: pre-training on related physics pays off most when the target
problem has few trajectories. This script tests it at the scale of a CPU:

1. Pre-train a small DPOT on related physics: Navier-Stokes at nu = 1e-3 and 1e-5
   (arm ``ns``), and a second arm that adds the other 2D families (``ns+2d``: dr2d,
   swe2d and cfd2d). Each arm is pre-trained with the official input noise and without it.
2. Fine-tune on a held-out setting, Navier-Stokes at nu = 1e-4, with 8, 32 and 128
   training trajectories.
3. Train the same architecture from scratch on the same target data for the same
   number of steps, with the same optimizer, schedule and loss (and, with
   ``--matched-scratch``, also for as many steps as pre-training and fine-tuning together).

Each pre-trained model is also scored on the target before fine-tuning (zero-shot).

Every cell is run with several seeds (the seed drives initialisation, sampling and
noise; the generated data is the same for every seed; pre-training seed ``s`` feeds
fine-tuning seed ``s``) and reported as mean ± std of the test L2RE of an
auto-regressive rollout. A pre-trained cell beats scratch "by more than the seed spread"
when its mean is lower by more than the sum of the two standard deviations. Every run
goes through ``pdeb run``'s own code path (``build_config`` + ``execute``) in a private
``PDEB_HOME`` (a new temporary folder unless ``PDEB_HOME`` is set).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/pretrain_ablation.py [--pretrain-steps 1200]
        [--finetune-steps 300] [--seeds 0,1,2] [--sizes 8,32,128] [--arms ns,ns+2d]
        [--frames 20] [--grid 32] [--noise-scale X] [--matched-scratch] [--set KEY=VALUE ...]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# A tiny DPOT with the 4 input channels of the widest 2D family (cfd2d), so every arm and
# the scratch baseline share one architecture and checkpoints load strictly.
MODEL = ["model.embed_dim=64", "model.depth=2", "model.n_blocks=4", "model.out_layer_dim=16",
         "model.patch_size=4", "model.modes=8", "model.in_channels=4"]
RELATED = ["ns2d-nu1e-3", "ns2d-nu1e-5"]
OTHER_2D = ["dr2d", "swe2d", "cfd2d"]
TARGET = "ns2d-nu1e-4"
ARMS = {"ns": RELATED, "ns+2d": RELATED + OTHER_2D}
SCRATCH = "from scratch"


def matched_label(args: argparse.Namespace) -> str:
    """Column name of the scratch baseline trained as many steps as pre-training and fine-tuning together."""
    return f"from scratch, {args.pretrain_steps + args.finetune_steps} steps"


def data_overrides(names: list[str], grid: int, frames: int, n_train: int) -> list[str]:
    """Settings that put every dataset on one grid with ``frames`` frames per Navier-Stokes trajectory.

    Navier-Stokes test rollouts cover every frame after the 10 input frames; the other 2D
    families keep their ``smoke`` profile's frames (14 for dr2d and swe2d, 12 for cfd2d).
    """
    out = []
    for name in names:
        settings = {"resolution": grid, "n_train": n_train, "n_val": 4, "n_test": 16}
        if name.startswith("ns2d"):
            settings.update({"solver_resolution": grid, "T": frames, "horizon": frames - 10})
        out += [f"data.{name}.{key}={value}" for key, value in settings.items()]
    return out


def run(data: str, task: str, overrides: list[str], run_id: str, seed: int, extra: list[str]) -> tuple[dict, float]:
    """One ``pdeb run`` in this process; returns its results and wall time.

    ``extra`` (the ``--set`` options) comes after the fixed architecture and before the
    run's own settings, so it can change the model but not a run's steps or noise.
    """
    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    cfg = build_config(model="dpot", data=data, task=task, profile="smoke", run_id=run_id, seed=seed,
                       device="cpu", overrides=[*MODEL, "train.batch_size=8", "train.log_every=100",
                                                "eval.batch_size=16", *extra, *overrides])
    start = time.perf_counter()
    ctx = execute(cfg, quiet=True)
    return ctx.results, time.perf_counter() - start


def finetune_recipe(steps: int, lr: float) -> list[str]:
    """The official fine-tuning optimizer, schedule and loss, stated explicitly so that the
    pre-trained arms (task ``finetune``) and the scratch arm (task ``train``, whose own
    defaults differ) train identically."""
    return [f"train.max_steps={steps}", f"train.lr={lr}", "train.optimizer=adam", "train.betas=[0.9,0.9]",
            "train.weight_decay=1e-6", "train.scheduler=onecycle", "train.div_factor=10000",
            "train.final_div_factor=10000", "train.cycle_momentum=true", "train.warmup_frac=0.2",
            "train.sampling=trajectory", "train.loss=rel_l2", "train.loss_on_padding=true"]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: list[float]) -> str:
    """``mean ± std`` of the values."""
    mean, spread = mean_std(values)
    return f"{mean:.4f} ± {spread:.4f}"


def pretrain_label(arm: str, noisy: bool) -> str:
    """Column name of a pre-trained arm."""
    return f"pre-trained `{arm}`, {'noise' if noisy else 'no noise'}"


def pretrain_overrides(args: argparse.Namespace, arm: str, noisy: bool) -> list[str]:
    """Data, steps and noise of one pre-training run.

    swe2d is a one-parameter family (the dam radius) and on a coarse grid many radii give
    the same first frame, so at 128 trajectories some of its test trajectories repeat
    training ones (8 of 16 on the 32x32 grid with seed 0). pdeb refuses that by default;
    the arm that includes swe2d allows it, which affects only swe2d's own score in the
    pre-training table, never the target (ns2d-nu1e-4 is not pre-trained on).
    """
    names = ARMS[arm]
    overrides = [*data_overrides(names, args.grid, args.frames, args.pretrain_trajectories),
                 f"train.max_steps={args.pretrain_steps}", f"train.lr={args.pretrain_lr}"]
    if "swe2d" in names:
        overrides.append("task.allow_test_overlap=true")
    if not noisy:
        overrides.append("task.noise_scale=0")
    elif args.noise_scale is not None:
        overrides.append(f"task.noise_scale={args.noise_scale}")
    return overrides


def zero_shot(args: argparse.Namespace, checkpoint: Path, run_id: str, seed: int) -> float:
    """Test L2RE on the target of a pre-trained model before any fine-tuning."""
    target = data_overrides([TARGET], args.grid, args.frames, args.sizes[0])
    results, _ = run(TARGET, "evaluate", [*target, f"task.checkpoint={checkpoint}"], run_id, seed, args.set)
    return results[TARGET]["l2re"]


def pretrain_all(args: argparse.Namespace, home: Path, seeds: list[int]) -> tuple[dict, list[str]]:
    """Pre-train every arm, with and without noise, once per seed.

    Returns:
        The checkpoint of every (arm, noisy, seed), and the rows of a table of the test
        L2RE on each pre-training dataset (mean ± std over seeds).
    """
    checkpoints: dict[tuple[str, bool, int], Path] = {}
    columns = list(dict.fromkeys(name for arm in args.arms for name in ARMS[arm]))
    lines = ["| pre-training | " + " | ".join(columns) + f" | {TARGET} (zero-shot) |",
             "|" + "---|" * (len(columns) + 2)]
    for arm in args.arms:
        for noisy in (True, False):
            scores: dict[str, list[float]] = {}
            for seed in seeds:
                run_id = f"pre-{arm.replace('+', '-')}-{'noise' if noisy else 'clean'}-s{seed}"
                results, took = run(",".join(ARMS[arm]), "pretrain", pretrain_overrides(args, arm, noisy),
                                    run_id, seed, args.set)
                for name, row in results.items():
                    scores.setdefault(name, []).append(row["l2re"])
                checkpoints[(arm, noisy, seed)] = home / "runs" / run_id / "checkpoints" / "last.pt"
                scores.setdefault(TARGET, []).append(zero_shot(args, checkpoints[(arm, noisy, seed)],
                                                               f"zero-shot-{run_id[4:]}", seed))
                print(f"pre-trained {run_id} in {took:.0f}s: L2RE "
                      + ", ".join(f"{name} {row['l2re']:.4f}" for name, row in results.items())
                      + f"; zero-shot on {TARGET} {scores[TARGET][-1]:.4f}", flush=True)
            cells = [fmt(scores[name]) if name in scores else "-" for name in [*columns, TARGET]]
            lines.append(f"| `{arm}` {'with' if noisy else 'without'} noise | " + " | ".join(cells) + " |")
    return checkpoints, lines


def finetune_all(args: argparse.Namespace, checkpoints: dict, seeds: list[int]) -> dict[tuple[str, int], list[float]]:
    """Fine-tune every checkpoint and train from scratch for every target size.

    Returns:
        The test L2RE of every seed, keyed by (column label, target trajectories).
    """
    scores: dict[tuple[str, int], list[float]] = {}
    arms = [(None, None)] + [(arm, noisy) for arm in args.arms for noisy in (True, False)]
    arms += [("matched", None)] if args.matched_scratch else []
    for size in args.sizes:
        target = data_overrides([TARGET], args.grid, args.frames, size)
        for arm, noisy in arms:
            label = {None: SCRATCH, "matched": matched_label(args)}.get(arm) or pretrain_label(arm, noisy)
            steps = args.pretrain_steps + args.finetune_steps if arm == "matched" else args.finetune_steps
            for seed in seeds:
                if noisy is None:
                    tag = arm or "scratch"
                else:
                    tag = f"{arm.replace('+', '-')}-{'noise' if noisy else 'clean'}"
                run_id = f"ft-{tag}-n{size}-s{seed}"
                overrides = [*target, *finetune_recipe(steps, args.finetune_lr)]
                if noisy is None:  # either scratch baseline
                    results, took = run(TARGET, "train", overrides, run_id, seed, args.set)
                else:
                    overrides.append(f"model.init={checkpoints[(arm, noisy, seed)]}")
                    results, took = run(TARGET, "finetune", overrides, run_id, seed, args.set)
                scores.setdefault((label, size), []).append(results[TARGET]["l2re"])
                print(f"{run_id} in {took:.0f}s: L2RE {results[TARGET]['l2re']:.4f}", flush=True)
    return scores


def results_table(scores: dict, sizes: list[int], labels: list[str]) -> list[str]:
    """Test L2RE on the target, mean ± std over seeds: one row per target size."""
    lines = ["| target trajectories | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for size in sizes:
        lines.append(f"| {size} | " + " | ".join(fmt(scores[(label, size)]) for label in labels) + " |")
    return lines


def gap_table(scores: dict, sizes: list[int], pairs: list[tuple[str, str]]) -> list[str]:
    """How far each column is below its baseline (positive = better), against the summed seed spread.

    Args:
        scores: Test L2RE per (column label, target size) and seed.
        sizes: Target sizes, one block of rows each.
        pairs: (column, baseline) label pairs to compare.
    """
    lines = ["| target trajectories | column | baseline | gap (baseline - column) | relative gap | "
             "seed spread (sum of stds) | gap > spread |", "|---|---|---|---|---|---|---|"]
    for size in sizes:
        for label, baseline in pairs:
            base_mean, base_std = mean_std(scores[(baseline, size)])
            mean, spread = mean_std(scores[(label, size)])
            gap = base_mean - mean
            verdict = "yes" if gap > base_std + spread else "no"
            if min(len(scores[(baseline, size)]), len(scores[(label, size)])) < 2:
                verdict = "n/a (one seed)"  # no spread to compare with
            lines.append(f"| {size} | {label} | {baseline} | {gap:+.4f} | {gap / base_mean:+.1%} | "
                         f"{base_std + spread:.4f} | {verdict} |")
    return lines


def comparisons(args: argparse.Namespace, scores: dict, pretrained: list[str]) -> list[str]:
    """The gap tables: pre-trained against each scratch baseline, and noise on against off."""
    if not pretrained:
        return []
    lines = ["Pre-trained against scratch (same fine-tuning steps):", "",
             *gap_table(scores, args.sizes, [(label, SCRATCH) for label in pretrained]), ""]
    if args.matched_scratch:
        lines += ["Pre-trained against scratch trained as long as pre-training plus fine-tuning together:", "",
                  *gap_table(scores, args.sizes, [(label, matched_label(args)) for label in pretrained]), ""]
    pairs = [(pretrain_label(arm, True), pretrain_label(arm, False)) for arm in args.arms]
    return lines + ["Pre-training noise on against off (both fine-tuned):", "",
                    *gap_table(scores, args.sizes, pairs), ""]


def report(args: argparse.Namespace, pre_lines: list[str], scores: dict, times: dict[str, float]) -> str:
    """The Markdown report: setup, the result tables and the comparisons."""
    pretrained = [pretrain_label(arm, noisy) for arm in args.arms for noisy in (True, False)]
    labels = [SCRATCH, *([matched_label(args)] if args.matched_scratch else []), *pretrained]
    noise = "the official scale for the model size" if args.noise_scale is None else f"scale {args.noise_scale:g}"
    return "\n".join([
        "Command: `OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)") + " python "
        + " ".join(sys.argv) + "`", "",
        f"Pre-training: {args.pretrain_steps} steps at lr {args.pretrain_lr:g}, {args.pretrain_trajectories} "
        f"trajectories per dataset, noise at {noise}; fine-tuning and scratch: {args.finetune_steps} steps at lr "
        f"{args.finetune_lr:g} on {TARGET}; {args.grid}x{args.grid} grid, {args.frames} frames per Navier-Stokes "
        f"trajectory ({args.frames - 10}-step test rollouts); extra settings: {' '.join(args.set) or 'none'}; "
        f"seeds {args.seeds}; test L2RE, mean ± std over seeds.", "",
        *([f"Test L2RE of the pre-trained models on each pre-training dataset, and on {TARGET} before "
           "fine-tuning:", "", *pre_lines, ""] if args.arms else []),
        f"Test L2RE on {TARGET}:", "",
        *results_table(scores, args.sizes, labels), "",
        *comparisons(args, scores, pretrained),
        "wall time: " + ", ".join(f"{phase} {took:.0f}s" for phase, took in times.items()),
    ])


def parse_args() -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-steps", type=int, default=1200)
    parser.add_argument("--finetune-steps", type=int, default=300, help="also the steps of the scratch baseline")
    parser.add_argument("--pretrain-lr", type=float, default=3e-3)
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="also the lr of the scratch baseline")
    parser.add_argument("--pretrain-trajectories", type=int, default=128, help="per pre-training dataset")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sizes", default="8,32,128", help="target training trajectories")
    parser.add_argument("--arms", default="ns,ns+2d", help=f"pre-training arms among {', '.join(ARMS)}")
    parser.add_argument("--frames", type=int, default=20,
                        help="frames per Navier-Stokes trajectory; the first 10 are the input")
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--noise-scale", type=float, default=None,
                        help="task.noise_scale of the noisy pre-training (default: the official value)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra setting for every run, e.g. model.embed_dim=96 (repeatable)")
    parser.add_argument("--matched-scratch", action="store_true",
                        help="also train from scratch for pre-training plus fine-tuning steps (equal total steps)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    args = parser.parse_args()
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        args.seed_list = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error("--sizes and --seeds take comma-separated integers, e.g. --sizes 8,32,128")
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose among {', '.join(ARMS)}")
    if args.frames <= 10:
        parser.error(f"--frames {args.frames} leaves nothing to predict after the 10 input frames; use 11 or more")
    return args


def main() -> None:
    """Pre-train, fine-tune, train from scratch, and print (and optionally write) the report."""
    from pdebench_core.errors import UsageError

    args = parse_args()
    # pdeb sizes a model on torch's meta device before building it; a dpot model with
    # model.init loads its checkpoint there too, and torch warns once per parameter that
    # this copy is a no-op. The real model, built next, does load the weights.
    warnings.filterwarnings("ignore", message="for .*: copying from a non-meta parameter")
    if not os.environ.get("PDEB_HOME"):
        os.environ["PDEB_HOME"] = tempfile.mkdtemp(prefix="pdeb-ablation-")
    started = time.perf_counter()
    try:
        checkpoints, pre_lines = pretrain_all(args, Path(os.environ["PDEB_HOME"]), args.seed_list)
        pretrained = time.perf_counter()
        scores = finetune_all(args, checkpoints, args.seed_list)
    except UsageError as exc:  # one line and exit status 2, as `pdeb run` reports bad input
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finished = time.perf_counter()
    times = {"pre-training": pretrained - started, "fine-tuning and scratch": finished - pretrained,
             "total": finished - started}
    text = report(args, pre_lines, scores, times)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
