"""What a sweep varies: models, datasets, seeds and ``key=v1,v2`` settings, and their product.

A value list is split at commas that stand outside brackets, braces and quotes, so a list
value stays one value: ``eval.metrics=[l2re,nrmse]`` is one setting, ``train.lr=1e-3,1e-4``
two. In ``--data`` a ``+`` joins datasets into one mixture: ``ns2d+cfd2d`` is one entry.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

from pdebench_core.errors import UsageError

_OPENING = {"[": "]", "{": "}"}


def split_values(text: str, where: str) -> list[str]:
    """``"a,[b,c],'d,e'"`` -> ``["a", "[b,c]", "'d,e'"]``: commas inside brackets or quotes stay.

    Args:
        text: The comma-separated values.
        where: What the values belong to, for the error message (``--model``, ``train.lr``).
    """
    values, current, closers, quote = [], [], [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENING:
            closers.append(_OPENING[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    if quote or closers:
        raise UsageError(f"{where}='{text}' has an unclosed {quote or closers[-1]!r}; close it or quote the value")
    if any(not v for v in values):
        raise UsageError(f"{where}='{text}' has an empty value; separate values with single commas, e.g. a,b")
    if len(set(values)) != len(values):
        raise UsageError(f"{where}='{text}' lists a value twice; give each value once")
    return values


@dataclass(frozen=True)
class Combination:
    """One point of the sweep: the arguments of one ``pdeb run``.

    Attributes:
        index: Position in the plan (0-based).
        model: Model name.
        data: Dataset names, comma-separated (a mixture has several).
        seed: ``run.seed`` (``None``: the default).
        overrides: ``key=value`` settings of this point, fixed and swept alike.
        swept: The swept settings only, ``{key: value}``, to label the point.
    """

    index: int
    model: str
    data: str
    seed: int | None
    overrides: tuple[str, ...] = ()
    swept: tuple[tuple[str, str], ...] = ()

    def label(self) -> str:
        """``fno ns2d seed=0 train.lr=1e-3``."""
        seed = [] if self.seed is None else [f"seed={self.seed}"]
        return " ".join([self.model, self.data.replace(",", "+"), *seed, *(f"{k}={v}" for k, v in self.swept)])

    def to_dict(self) -> dict:
        """JSON-ready form (stored in the sweep's plan)."""
        return {"index": self.index, "model": self.model, "data": self.data, "seed": self.seed,
                "overrides": list(self.overrides), "swept": [list(item) for item in self.swept]}

    @classmethod
    def from_dict(cls, item: dict) -> "Combination":
        """The inverse of :meth:`to_dict`."""
        return cls(int(item["index"]), str(item["model"]), str(item["data"]),
                   None if item.get("seed") is None else int(item["seed"]), tuple(item.get("overrides") or ()),
                   tuple((str(k), str(v)) for k, v in item.get("swept") or ()))


def parse_seeds(text: str | None) -> list[int | None]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; nothing given -> ``[None]`` (the run's default seed)."""
    if text is None:
        return [None]
    seeds = []
    for value in split_values(text, "--seed"):
        try:
            seeds.append(int(value))
        except ValueError:
            raise UsageError(f"--seed '{value}' is not an integer; write seeds like --seed 0,1,2") from None
    return seeds


def parse_settings(items: Iterable[str]) -> list[tuple[str, list[str]]]:
    """``["train.lr=1e-3,1e-4", "train.max_steps=2"]`` -> ``[("train.lr", [...]), ("train.max_steps", ["2"])]``."""
    settings: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"setting '{item}' is not key=value; write e.g. train.lr=1e-3,1e-4")
        key = key.strip()
        if key in {k for k, _ in settings}:
            raise UsageError(f"setting '{key}' is given twice; list its values once, comma-separated")
        settings.append((key, split_values(text, key)))
    return settings


def _dataset_names(entry: str) -> list[str]:
    return [name.strip() for name in entry.split("+")]


def _applies(key: str, datasets: Sequence[str]) -> bool:
    """``data.<name>.<key>`` settings apply only to points whose data include ``<name>``."""
    parts = key.split(".")
    return parts[0] != "data" or len(parts) < 2 or parts[1] in datasets


def combinations(models: str, data: str, seeds: str | None, settings: Iterable[str]) -> list[Combination]:
    """The product of every axis, in a stable order (models, then data, seeds and settings).

    Raises:
        UsageError: An empty or repeated value, a malformed setting, or ``data.<name>`` settings
            for a dataset that no point of the sweep uses.
    """
    model_names = split_values(models, "--model")
    data_entries = split_values(data, "--data")
    for entry in data_entries:
        if any(not name for name in _dataset_names(entry)):
            raise UsageError(f"--data entry '{entry}' has an empty name; join mixtures with single '+', e.g. ns2d+cfd2d")
    parsed = parse_settings(settings)
    used = {name for entry in data_entries for name in _dataset_names(entry)}
    for key, _ in parsed:
        parts = key.split(".")
        if parts[0] == "data" and len(parts) > 2 and parts[1] not in used:
            raise UsageError(f"setting '{key}' is for dataset '{parts[1]}', which is not in --data "
                             f"({', '.join(sorted(used))}); fix the name or add the dataset")
    points: list[Combination] = []
    grids = [values for _, values in parsed]
    for model, entry, seed, values in itertools.product(model_names, data_entries, parse_seeds(seeds),
                                                         itertools.product(*grids)):
        names = _dataset_names(entry)
        chosen = [(key, value) for (key, options), value in zip(parsed, values) if _applies(key, names)]
        swept = tuple((key, value) for (key, options), value in zip(parsed, values)
                      if len(options) > 1 and _applies(key, names))
        points.append(Combination(len(points), model, ",".join(names), seed,
                                  tuple(f"{k}={v}" for k, v in chosen), swept))
    return _unique(points)


def _unique(points: list[Combination]) -> list[Combination]:
    """Points that differ only in a setting that does not apply to them collapse into one."""
    seen, out = set(), []
    for point in points:
        key = (point.model, point.data, point.seed, point.overrides)
        if key not in seen:
            seen.add(key)
            out.append(Combination(len(out), point.model, point.data, point.seed, point.overrides, point.swept))
    return out
