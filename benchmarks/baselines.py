"""Every baseline on ns2d (nu = 1e-3), small profile: L2RE, parameters, training time, ms per step.

Runs each model through ``pdeb run``'s own code path (``build_config`` + ``execute``), so the
result rows land in the results store and show on ``pdeb leaderboard``. Prints a Markdown
table with each model's L2RE relative to ``persistence`` (lower is better; a useful model
is at least 3x below it).

Usage:
    python benchmarks/baselines.py [--models fno,ffno,...] [--steps N] [--out FILE] [key=value ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_MODELS = ["persistence", "fno", "ffno", "unet", "vit", "gk-transformer", "oformer", "gnot", "dpot"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--data", default="ns2d", help="dataset (default ns2d, nu = 1e-3)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--steps", type=int, default=0, help="override train.max_steps (0 = profile's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("overrides", nargs="*", help="extra key=value settings for every run")
    args = parser.parse_args()

    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    rows = []
    for model in args.models.split(","):
        task = "evaluate" if model == "persistence" else "train"
        overrides = list(args.overrides) + ([f"train.max_steps={args.steps}"] if args.steps else [])
        cfg = build_config(model=model, data=args.data, task=task, profile=args.profile, overrides=overrides)
        start = time.perf_counter()
        ctx = execute(cfg, quiet=True)
        wall = time.perf_counter() - start
        row = ctx.cfg  # resolved config, for the step count
        from pdebench_core.results import ResultsStore

        stored = ResultsStore().run_rows(ctx.run_id)[0]
        steps = int(row.train.max_steps) if task == "train" else 0
        train_time = float(stored["train_time_s"])
        rows.append({"model": model, "l2re": ctx.results[args.data]["l2re"], "params": stored["n_params"],
                     "train_s": train_time, "ms_per_step": 1000 * train_time / steps if steps else 0.0,
                     "steps": steps, "wall_s": wall, "run_id": ctx.run_id})
        print(f"{model}: l2re {rows[-1]['l2re']:.4f} in {wall:.0f}s", flush=True)
    base = next((r["l2re"] for r in rows if r["model"] == "persistence"), None)
    lines = ["| model | L2RE | vs persistence | parameters | steps | train time (s) | ms/step |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{base / r['l2re']:.1f}x lower" if base and r["model"] != "persistence" else ""
        lines.append(f"| {r['model']} | {r['l2re']:.4f} | {ratio} | {r['params']:,} | {r['steps']} | "
                     f"{r['train_s']:.0f} | {r['ms_per_step']:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
