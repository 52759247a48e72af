"""Plain-data configs: dataclasses built from YAML mappings, with unknown keys and wrong types rejected."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _type_ok(value: Any, annotation: str) -> bool:
    options = [part.strip() for part in annotation.split("|")]
    for option in options:
        if option == "None" and value is None:
            return True
        base = option.split("[", 1)[0]
        if base in _SCALARS and isinstance(value, _SCALARS[base]) and not (base in ("int", "float") and isinstance(value, bool)):
            return True
        if base in ("list", "tuple") and isinstance(value, (list, tuple)):
            return True
        if base == "dict" and isinstance(value, Mapping):
            return True
        if base == "Any":
            return True
    return False


def _yaml_float(text: str) -> float | str:
    """YAML 1.1 reads `3e-4` (no dot) as a string; accept it where a float is expected."""
    try:
        return float(text)
    except ValueError:
        return text


def from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Builds dataclass `cls` from a mapping; unknown keys and mistyped values raise, naming the full key."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}: {data!r}")
    by_name = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(by_name))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(f'{where}.{key}' for key in unknown)}; "
                         f"known keys of {where}: {', '.join(sorted(by_name))}")
    data = dict(data)
    for key, value in data.items():
        annotation = str(by_name[key].type)
        if annotation == "float" and isinstance(value, str):
            data[key] = value = _yaml_float(value)
        if not _type_ok(value, annotation):
            raise ValueError(f"config key {where}.{key}: expected {annotation}, got {type(value).__name__} {value!r}")
    return cls(**data)
