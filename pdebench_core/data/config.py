"""Settings every dataset shares (dataset plugins subclass :class:`DatasetConfig`, generated
ones :class:`GeneratedConfig`), and reading a dataset config's fields as plain values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional


@dataclass
class DatasetConfig:
    """Common per-dataset settings (``data.<name>.<key>`` on the command line).

    Attributes:
        path: A published file or folder to read instead of generating data.
        format: Layout of ``path``; ``"auto"`` detects it.
        n_train: Trajectories in the train split.
        n_val: Trajectories in the validation split.
        n_test: Trajectories in the test split.
        resolution: Grid points per spatial axis of generated data (0 = the dataset's default).
        seed: Seed of the generator; the same seed gives the same data.
        t_in: Frames a model receives.
        horizon: Frames rolled out after the first ``t_in`` at evaluation (None = all).
        weight: Relative sampling weight in a pre-training mixture.
        preload: Read the whole split into memory (small sets only).
        normalize: Train and roll out on per-channel normalised values (the train split's
            mean and std, see ``pdeb data stats``); metrics are always on physical values.
    """

    path: Optional[str] = None
    format: str = "auto"
    n_train: int = 64
    n_val: int = 8
    n_test: int = 8
    resolution: int = 0  # 0: the dataset's default grid
    seed: int = 0
    t_in: int = 10
    horizon: Optional[int] = None  # None: the dataset's default (all frames after t_in unless it sets one)
    weight: float = 1.0
    preload: bool = False
    normalize: bool = False


@dataclass
class FileDatasetConfig(DatasetConfig):
    """Settings of a dataset read from files only, with no solver to fall back on.

    ``path`` has no default (not even :class:`DatasetConfig`'s ``None``): a run without it
    stops before any work, and ``pdeb datasets --json`` lists it under ``required_settings``.
    """

    path: str = field()


@dataclass
class GeneratedConfig(DatasetConfig):
    """Settings every generated dataset shares: how its solver runs, never what it solves.

    A plugin subclasses it with its physics and may override a default (e.g. a larger
    ``batch_size``). Only ``solver_dtype`` enters the cache key; the other three are
    left out of it (:data:`pdebench_core.data.generation.GENERATION_ONLY`).

    Attributes:
        solver_dtype: Solver arithmetic, ``"float32"`` or ``"float64"``; stored data is
            float32 either way.
        batch_size: Trajectories solved together; bounds memory and, on the CPU, never
            changes the numbers (each trajectory steps on its own clock).
        device: Where the solver runs: ``"auto"`` (CUDA when available), ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, ...; not part of the cache key.
        progress: Show a progress bar while generating (only on a terminal).
    """

    solver_dtype: str = "float32"
    batch_size: int = 64
    device: str = "auto"
    progress: bool = True


#: :class:`DatasetConfig` settings that change how data is used, never the numbers in it.
USAGE_SETTINGS = ("path", "format", "t_in", "horizon", "weight", "preload", "normalize")

# Annotation (as written, under ``from __future__ import annotations``) -> the plain type of its values.
_PLAIN_TYPES = {"float": float, "int": int, "str": str, "bool": bool, float: float, int: int, str: str, bool: bool}


def as_dataclass(cfg: Any, schema: type) -> Any:
    """A dataset config as an instance of its dataclass, whatever form it came in.

    Args:
        cfg: A dataclass instance (returned as is), an omegaconf structured config (turned
            into an instance of its own dataclass, so fields of a subclass are kept) or a
            mapping of settings.
        schema: The dataclass to use when ``cfg`` does not name one itself.

    Returns:
        A dataclass instance holding plain values.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return cfg
    from omegaconf import OmegaConf

    kind = schema
    if OmegaConf.is_config(cfg):
        own = OmegaConf.get_type(cfg)
        kind = own if dataclasses.is_dataclass(own) else schema
        cfg = OmegaConf.to_container(cfg, resolve=True)
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{key: value for key, value in cfg.items() if key in names})


def settings_of(cfg: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """Every field of a dataclass config but ``exclude``, as plain JSON values of the declared type.

    Values are converted to their field's declared type, so ``delta_t=1`` and
    ``delta_t=1.0`` give the same settings.

    Args:
        cfg: A dataclass instance.
        exclude: Field names to leave out.

    Returns:
        ``{field: value}`` in field order.
    """
    skipped = set(exclude)
    settings = {}
    for setting in dataclasses.fields(cfg):
        if setting.name in skipped:
            continue
        value = getattr(cfg, setting.name)
        plain = _PLAIN_TYPES.get(setting.type)
        settings[setting.name] = plain(value) if plain is not None and value is not None else value
    return settings
