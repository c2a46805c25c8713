"""The ``pdeb run`` command that pre-trains DPOT as a protocol's released checkpoints were.

DPOT's Table 1 checkpoints were pre-trained on every column's training file: the first
``train_size`` trajectories of it and no validation split, each dataset replicated by its
weight per epoch, with the batch and noise of the model size (``pretraining.sizes`` of
``registry/protocols/dpot-table1.yaml``). :func:`pretraining_argv` writes that recipe out as
one command over the files under a data root, so nothing of it is left to be typed by hand.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pdebench_core.errors import UsageError
from pdebench_core.protocols import Column, Protocol, locate


def dataset_names(protocol: Protocol) -> dict[str, str]:
    """``{column key: pdeb dataset}``, one name per column: a column's ``dataset``, or where
    several columns share it (the four compressible Navier-Stokes sets of ``cfd2d``), its
    own preset (the first of ``also``)."""
    shared = {c.dataset for c in protocol.columns if sum(o.dataset == c.dataset for o in protocol.columns) > 1}
    names = {}
    for column in protocol.columns:
        if column.dataset in shared and not column.also:
            raise UsageError(f"protocol '{protocol.name}': columns share dataset '{column.dataset}' and "
                             f"'{column.key}' names no preset of its own (also:)")
        names[column.key] = column.also[0] if column.dataset in shared else column.dataset
    return names


def pretraining_argv(protocol: Protocol, data_root: str | Path, size: str = "ti") -> list[str]:
    """``["pdeb", "run", ...]``: DPOT pre-training of ``size`` on the protocol's training files.

    Raises:
        UsageError: The protocol records no pre-training of ``size``, or a column's training
            file is not under ``data_root``.
    """
    sizes = dict((protocol.pretraining or {}).get("sizes") or {})
    if size not in sizes:
        raise UsageError(f"protocol '{protocol.name}' records no pre-training of size '{size}'; it has "
                         f"{', '.join(sizes) or 'none'}")
    recipe = sizes[size]
    found, absent = locate(protocol, data_root)
    missing = [c.key for c in absent] + [located.column.key for located in found if located.train is None]
    if missing:
        raise UsageError(f"the training files of {', '.join(missing)} are not under {data_root}; pre-training "
                         f"reads every column's (see registry/protocols/{protocol.name}.yaml)")
    names = dataset_names(protocol)
    weights = dict(recipe.get("data_weights") or {})
    argv = ["pdeb", "run", "--model", "dpot", "--task", "pretrain", "--profile", "paper",
            "--data", ",".join(names[located.column.key] for located in found), f"model.size={size}",
            f"train.batch_size={int(recipe['num_gpus']) * int(recipe['batch_per_gpu'])}",
            f"task.noise_scale={float(recipe['noise_scale']):g}"]
    for located in found:
        argv += _dataset_settings(names[located.column.key], located.column, located.train,
                                  weights.get(located.column.key))
    return argv


def _dataset_settings(name: str, column: Column, train: Path, weight: float | None) -> list[str]:
    """One column's files and split sizes: its first ``train_size`` training trajectories and no
    validation split, as the official loader reads them, and the first ``eval_test_size`` test
    trajectories (from the test file or folder paired with the training one). The run's final
    scores then stand beside Table 1's pre-trained rows, which were scored on that many by the
    official ``evaluate.py``, not on the official training script's smaller ``test_size``."""
    settings = [f"data.{name}.path={train}", f"data.{name}.n_train={column.train_size}", f"data.{name}.n_val=0",
                f"data.{name}.n_test={column.eval_test_size}"]
    return settings + ([f"data.{name}.weight={weight:g}"] if weight else [])


def pretraining_command(protocol: Protocol, data_root: str | Path, size: str = "ti") -> str:
    """:func:`pretraining_argv` as one shell line."""
    return " ".join(shlex.quote(part) for part in pretraining_argv(protocol, data_root, size))
