"""Named entries of a directory layout, declared once as class attributes.

``config_file = Entry("config.yaml")`` in a class whose instances have a ``path``
directory makes ``obj.config_file`` the path ``obj.path / "config.yaml"``, so the
layout of a run or sweep directory reads as one table instead of a property each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Entry:
    """A file or folder at ``parts`` below the owner's ``path``, read as an attribute.

    Args:
        *parts: Path components below the directory, e.g. ``("checkpoints", "last.pt")``.
    """

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, owner: Any, owner_type: type | None = None) -> Any:
        if owner is None:  # looked up on the class: the declaration itself
            return self
        return Path(owner.path).joinpath(*self.parts)

    def __repr__(self) -> str:
        return f"Entry({'/'.join(self.parts)!r})"


__all__ = ["Entry"]
