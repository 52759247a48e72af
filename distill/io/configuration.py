"""Plain-data configs: dataclasses built from YAML mappings, with unknown keys, wrong types and values out of bounds
rejected, each error naming the full key.

A field's type is its annotation (`int`, `float`, `list[int]`, `bool | str`, ...): elements of lists and tuples are
checked too, and a float must be finite. A field's bounds sit beside it, in its metadata:
`batch_size: int = field(default=24, metadata=at_least(1))`; `check_fields` enforces both for any config dataclass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Mapping, Optional

_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


class ConfigError(ValueError):
    """A config value that cannot be used; the message names its key (`section.key`)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key {key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class Bounds:
    """Where a number (or each number of a list) must lie, and how many items a list must hold."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # low < value instead of low <= value
    high_open: bool = False  # value < high instead of value <= high
    length: Optional[int] = None

    def problem(self, value: Any) -> Optional[str]:
        """What is wrong with `value`, or None."""
        if self.length is not None and isinstance(value, (list, tuple)) and len(value) != self.length:
            return f"expected {self.length} values, got {len(value)}: {value!r}"
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(number, (int, float)) or isinstance(number, bool):
                continue
            if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
                return f"must be {self.describe()}, got {number!r}"
            if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
                return f"must be {self.describe()}, got {number!r}"
        return None

    def describe(self) -> str:
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return " and ".join(part for part in (low, high) if part)


def at_least(low: float) -> dict[str, Bounds]:
    """Field metadata: value >= low."""
    return {"bounds": Bounds(low=low)}


def above(low: float) -> dict[str, Bounds]:
    """Field metadata: value > low."""
    return {"bounds": Bounds(low=low, low_open=True)}


def between(low: float, high: float, low_open: bool = False, high_open: bool = False,
            length: Optional[int] = None) -> dict[str, Bounds]:
    """Field metadata: low <= value <= high (< with `low_open` / `high_open`); a list of `length` such values."""
    return {"bounds": Bounds(low=low, high=high, low_open=low_open, high_open=high_open, length=length)}


def one_of(*choices: str) -> dict[str, tuple[str, ...]]:
    """Field metadata: a string from `choices`."""
    return {"choices": choices}


# ---- types -------------------------------------------------------------------------------------------------

def _split_top(text: str, separator: str) -> list[str]:
    """`text` split at `separator` outside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == separator and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    return parts + [text[start:].strip()]


def _type_ok(value: Any, annotation: str) -> bool:
    """Whether `value` has the type the annotation string names (`list[int] | None`, `tuple[tuple[int, int, int], ...]`)."""
    return any(_option_ok(value, option) for option in _split_top(annotation, "|"))


def _option_ok(value: Any, option: str) -> bool:
    base, _, rest = option.partition("[")
    arguments = _split_top(rest[:-1], ",") if rest else []
    if option == "None":
        return value is None
    if base == "Any":
        return True
    if base in _SCALARS:
        return isinstance(value, _SCALARS[base]) and not (base in ("int", "float") and isinstance(value, bool))
    if base in ("list", "tuple"):
        if not isinstance(value, (list, tuple)):
            return False
        if not arguments:
            return True
        if base == "list" or arguments[-1] == "...":
            return all(_type_ok(item, arguments[0]) for item in value)
        return len(value) == len(arguments) and all(_type_ok(item, kind) for item, kind in zip(value, arguments))
    if base == "dict":
        return isinstance(value, Mapping)
    return True  # a type this checker does not know (a nested dataclass): its own checks apply


def _non_finite(value: Any) -> bool:
    numbers = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(number, float) and not math.isfinite(number) for number in numbers)


def _yaml_float(text: str) -> float | str:
    """YAML 1.1 reads `3e-4` (no dot) as a string; accept it where a float is expected."""
    try:
        return float(text)
    except ValueError:
        return text


# ---- checking ----------------------------------------------------------------------------------------------

def value_problem(value: Any, annotation: str, metadata: Mapping[str, Any]) -> Optional[str]:
    """What is wrong with a field's value (its type, a non-finite float, its bounds or choices), or None."""
    if not _type_ok(value, annotation):
        return f"expected {annotation}, got {type(value).__name__} {value!r}"
    if _non_finite(value):
        return f"must be a finite number, got {value!r}"
    choices = metadata.get("choices")
    if choices is not None and isinstance(value, str) and value not in choices:
        return f"must be one of {', '.join(choices)}, got {value!r}"
    bounds = metadata.get("bounds")
    return bounds.problem(value) if bounds is not None else None


def check_fields(config: Any, where: str) -> None:
    """Every field of dataclass `config` against its type and bounds; ConfigError names the first bad key."""
    for item in fields(config):
        value = getattr(config, item.name)
        if is_dataclass(value):
            check_fields(value, f"{where}.{item.name}")
            continue
        problem = value_problem(value, str(item.type), item.metadata)
        if problem:
            raise ConfigError(f"{where}.{item.name}", problem)


def from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Builds dataclass `cls` from a mapping; unknown keys, mistyped values and values out of bounds raise ConfigError
    (a ValueError), naming the full key."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(data).__name__}: {data!r}")
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(by_name))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(f'{where}.{key}' for key in unknown)}; "
                         f"known keys of {where}: {', '.join(sorted(by_name))}")
    data = dict(data)
    for key, value in data.items():
        item = by_name[key]
        if str(item.type) == "float" and isinstance(value, str):
            data[key] = value = _yaml_float(value)
        problem = value_problem(value, str(item.type), item.metadata)
        if problem:
            raise ConfigError(f"{where}.{key}", problem)
    try:
        return cls(**data)
    except ConfigError:
        raise
    except ValueError as error:  # the class's own checks: named by the section when they do not name a key
        if where in str(error):
            raise
        raise ConfigError(where, str(error)) from None
