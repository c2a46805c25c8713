"""Bytes a URL dataset transfers for one epoch of training windows, against the file's size.

A canonical file (``/train``, ``/val``, ``/test`` float32 ``(N, T, X, Y, 1)``, one
trajectory per chunk, written by ``write_canonical``) is written to a temporary folder
and served on 127.0.0.1 by an HTTP server that answers ranged requests and counts the
bytes of every answer it sends. The URL is opened the way ``pdeb run`` opens
``data.<name>.path`` (``open_layout`` + ``load_found``), and every training window
(``WindowDataset``, ``t_in`` + 1 frames, stride 1) of the train split is read once in a
shuffled order. Three cases, each with an empty block cache unless said otherwise:

- ``subset``: ``--n-train`` of the file's trajectories, as a small run uses;
- ``subset, again``: the same epoch a second time (the blocks are on disk now);
- ``all``: every train trajectory.

For each it prints the bytes sent, the file size and their ratio. An epoch reads each
trajectory it uses once, whatever the number of windows cut from it, so the ratio follows
the share of the file the split holds, plus the file's metadata and the rounding of
reads to whole blocks (``--block-kib``).

Usage:
    python benchmarks/streaming.py [--trajectories 48] [--frames 30] [--grid 64] [--n-train 8]
                                   [--t-in 10] [--block-kib 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def write_file(path: Path, n: int, frames: int, grid: int) -> None:
    """A canonical file with ``n`` smooth, distinct trajectories per split."""
    import numpy as np

    from pdebench_core.data.canonical import write_canonical
    from pdebench_core.spec import DataSpec

    spec = DataSpec(name="ns2d", fields=("vorticity",), spatial_shape=(grid, grid), t_in=10, dt=1.0,
                    n_frames=frames)
    x = np.linspace(0, 2 * np.pi, grid, dtype=np.float32)
    t = np.arange(frames, dtype=np.float32)[:, None, None] * 0.05
    splits = {}
    for offset, split in enumerate(("train", "val", "test")):
        phases = (offset * n + np.arange(n, dtype=np.float32)) * 0.1
        splits[split] = np.stack([np.sin(x[None, :, None] + p + t) * np.cos(x[None, None, :] - p - t)
                                  for p in phases])[..., None].astype(np.float32)
    write_canonical(path, splits, spec)


def one_epoch(url: str, home: Path, n_train: int, t_in: int) -> tuple[int, int]:
    """Read every training window of ``n_train`` trajectories once; returns (trajectories, windows)."""
    import torch

    from pdebench_core.data.config import DatasetConfig
    from pdebench_core.data.layouts import load_found, open_layout
    from pdebench_core.data.windows import WindowDataset

    os.environ["PDEB_HOME"] = str(home)
    cfg = DatasetConfig(path=url, n_train=n_train, n_val=1, n_test=1, t_in=t_in)
    dataset = load_found(open_layout(url), cfg, "ns2d", {"fields": ("vorticity",)})
    windows = WindowDataset(dataset.split("train"), t_in=t_in, t_out=1)
    for _ in torch.utils.data.DataLoader(windows, batch_size=16, shuffle=True, num_workers=0):
        pass
    return windows.n_trajectories, len(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=48, help="trajectories per split in the file")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--n-train", type=int, default=8, help="train trajectories of the 'subset' cases")
    parser.add_argument("--t-in", type=int, default=10)
    parser.add_argument("--block-kib", type=int, default=1024, help="bytes per ranged request and cached block")
    args = parser.parse_args()

    from pdebench_core.data import remote
    from pdebench_core.diskspace import human_bytes
    from pdebench_core.testing.http import serve_folder

    remote.BLOCK_BYTES = args.block_kib * 1024
    with tempfile.TemporaryDirectory(prefix="pdeb-streaming-") as scratch:
        root = Path(scratch) / "www"
        root.mkdir()
        write_file(root / "ns2d.h5", args.trajectories, args.frames, args.grid)
        size = (root / "ns2d.h5").stat().st_size
        server = serve_folder(root)
        url = f"{server.url}/ns2d.h5"
        cases = [("subset", "subset", args.n_train), ("subset, again", "subset", args.n_train),
                 ("all", "all", args.trajectories)]
        print(f"file: {human_bytes(size)}, {args.trajectories} trajectories per split of "
              f"{args.frames} x {args.grid} x {args.grid}; blocks of {args.block_kib} KiB\n")
        print("| case | train trajectories | windows | bytes sent | file size | sent / size |")
        print("|---|---|---|---|---|---|")
        for label, cache, n_train in cases:
            server.reset()
            n, count = one_epoch(url, Path(scratch) / cache, n_train, args.t_in)
            sent = server.bytes_sent
            print(f"| {label} | {n} | {count} | {human_bytes(sent)} ({sent:,} B) | {human_bytes(size)} "
                  f"({size:,} B) | {sent / size:.3f} |", flush=True)
        server.close()


if __name__ == "__main__":
    main()
