"""Profiles: named sets of overrides of a component's config defaults (``--profile``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

#: The profiles every model and dataset offers, from quickest to the published setting.
PROFILE_NAMES = ("smoke", "small", "paper")


def profiles_around_defaults(config: type, at_defaults: str,
                             **others: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Profiles of a component whose config defaults are one of them.

    The profile ``at_defaults`` sets every setting that another profile changes back to
    its default, so the defaults are written once, in the config dataclass.

    Args:
        config: The config dataclass (every field has a default).
        at_defaults: The profile the defaults stand for (``"small"`` for the bundled
            datasets, ``"paper"`` for most bundled models).
        **others: The other profiles, as overrides of the defaults.

    Returns:
        Every profile, in the order of :data:`PROFILE_NAMES` (others after them).
    """
    defaults = config()
    changed = {key for overrides in others.values() for key in overrides}
    profiles = {name: dict(overrides) for name, overrides in others.items()}
    profiles[at_defaults] = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(config) if f.name in changed}
    order = [name for name in PROFILE_NAMES if name in profiles] + [n for n in profiles if n not in PROFILE_NAMES]
    return {name: profiles[name] for name in order}
