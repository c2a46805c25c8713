"""Does DPOT pre-training help? An ablation on pdeb's built-in generated data.

1. Pre-train a small DPOT on a 2D mixture: Navier-Stokes at two viscosities
   (1e-3, 1e-5) plus cfd2d, dr2d and swe2d, with the official input noise and
   without it (noise_scale 0).
2. Fine-tune each on few trajectories (32) of a third viscosity (1e-4) and compare
   with the same model trained from scratch for the same number of steps.
3. Joint 2D+3D: pre-train one model on ns2d + cfd3d (blocks shared across dimensions)
   and evaluate it on cfd3d, against pre-training on cfd3d alone for the same steps.

Every run goes through ``pdeb run``'s own code path (``build_config`` + ``execute``) in
a private ``PDEB_HOME``; the script prints a Markdown table of test L2RE.

Usage:
    python benchmarks/pretrain_ablation.py [--steps 1500] [--finetune-steps 500] [--profile small] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

COMMON_MODEL = ["model.embed_dim=64", "model.depth=2", "model.n_blocks=4", "model.out_layer_dim=16",
                "model.patch_size=4", "model.modes=8", "model.modes_z=4"]
IN_2D = ["model.in_channels=4"]  # the widest 2D set (cfd2d) has 4 fields; same architecture everywhere
GRID = 32
SMALL_DATA = {"n_train": 48, "n_val": 4, "n_test": 8}


def data_overrides(names, grid: int = GRID, **extra) -> list[str]:
    out = []
    for name in names:
        settings = {**SMALL_DATA, "resolution": grid if not name.startswith("cfd3d") else 16, **extra.get(name, {})}
        out += [f"data.{name}.{k}={v}" for k, v in settings.items()]
    return out


PROFILE = "small"


def run(model_data: str, task: str, overrides: list[str], run_id: str, steps: int) -> tuple[dict, float]:
    from pdebench_core.config import build_config
    from pdebench_core.runner import execute

    cfg = build_config(model="dpot", data=model_data, task=task, profile=PROFILE, run_id=run_id,
                       overrides=[*COMMON_MODEL, f"train.max_steps={steps}", "train.batch_size=8",
                                  "train.log_every=50", "eval.batch_size=8", *overrides])
    start = time.perf_counter()
    ctx = execute(cfg, quiet=True)
    return ctx.results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="pre-training steps")
    parser.add_argument("--finetune-steps", type=int, default=500, help="fine-tuning / from-scratch steps")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--skip-3d", action="store_true", help="skip the joint 2D+3D part")
    parser.add_argument("--profile", default="small", help="profile of the datasets (frames, solver settings)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    os.environ.setdefault("PDEB_HOME", tempfile.mkdtemp(prefix="pdeb-ablation-"))
    home = Path(os.environ["PDEB_HOME"])
    lines = ["| experiment | target | test L2RE | time (s) |", "|---|---|---|---|"]

    mixture = ["ns2d-nu1e-3", "ns2d-nu1e-5", "cfd2d", "dr2d", "swe2d"]
    target = "ns2d-nu1e-4"
    target_data = data_overrides([target], **{target: {"n_train": 32}})
    scratch, took = run(target, "train", [*IN_2D, *target_data, "train.lr=3e-3"], "scratch", args.finetune_steps)
    lines.append(f"| from scratch, {args.finetune_steps} steps | {target} (32 traj.) | {scratch[target]['l2re']:.4f} | {took:.0f} |")
    for label, noise in (("pre-trained (noise 5e-4)", None), ("pre-trained (no noise)", 0.0)):
        run_id = "pretrain-noise" if noise is None else "pretrain-clean"
        extra = [] if noise is None else [f"task.noise_scale={noise}"]
        pre, took_pre = run(",".join(mixture), "pretrain", [*IN_2D, *data_overrides(mixture), *extra, "train.lr=3e-3"],
                            run_id, args.steps)
        ckpt = home / "runs" / run_id / "checkpoints" / "last.pt"
        tuned, took = run(target, "finetune", [*IN_2D, *target_data, f"model.init={ckpt}", "train.lr=1e-3"],
                          f"{run_id}-ft", args.finetune_steps)
        mean_pre = sum(v["l2re"] for v in pre.values()) / len(pre)
        lines.append(f"| {label}: {args.steps} steps on {len(mixture)} sets | mixture mean | {mean_pre:.4f} | {took_pre:.0f} |")
        lines.append(f"| {label} + fine-tune {args.finetune_steps} steps | {target} (32 traj.) | {tuned[target]['l2re']:.4f} | {took:.0f} |")

    if not args.skip_3d:
        cfd3d = data_overrides(["cfd3d"])
        alone, took = run("cfd3d", "pretrain", [*cfd3d, "train.lr=3e-3"], "cfd3d-alone", args.steps)
        lines.append(f"| 3D alone: {args.steps} steps | cfd3d | {alone['cfd3d']['l2re']:.4f} | {took:.0f} |")
        joint, took = run("ns2d-nu1e-3,cfd3d", "pretrain", [*data_overrides(["ns2d-nu1e-3"]), *cfd3d, "train.lr=3e-3"],
                          "joint-2d3d", args.steps)
        lines.append(f"| joint 2D+3D: {args.steps} steps (shared blocks) | cfd3d | {joint['cfd3d']['l2re']:.4f} | {took:.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
