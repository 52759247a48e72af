"""Weight names between formats: a rule table maps each name of one format to the other's, and a name no rule knows
raises, so a new variant of a format fails loudly instead of loading half its weights."""
from __future__ import annotations

import re
from typing import Mapping, Sequence, TypeVar

from distill.io.checkpoint_files import CheckpointError

# (pattern, replacement): the first pattern that matches a whole name renames it; a replacement of None drops the weight.
Rules = Sequence[tuple[str, "str | None"]]
Value = TypeVar("Value")


def rename(key: str, source: str, rules: Rules) -> str | None:
    """One name renamed by the first rule that matches it in full; None if that rule drops it. Raises on unknown names."""
    for pattern, replacement in rules:
        if re.fullmatch(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key)
    raise CheckpointError(f"{source}: unknown weight {key!r}; this importer does not know how to map it")


def map_state_dict(foreign: Mapping[str, Value], source: str, rules: Rules) -> dict[str, Value]:
    """Every name of `foreign` renamed by `rules` (dropped weights left out); `source` names the file in errors."""
    mapped: dict[str, Value] = {}
    for key, value in foreign.items():
        name = rename(key, source, rules)
        if name is not None:
            mapped[name] = value
    return mapped
