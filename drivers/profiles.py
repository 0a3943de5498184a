"""Helpers shared by the field drivers and their emulators: profile files, units, cell ids.

A *profile* describes a kind of device (a BMS register map, a DBC mapping, a SCPI instrument); a driver config
names one per device. Built-in profiles ship in ``drivers/<driver>/profiles/`` and are found by name; anything
else is a path. Emulators (``drivers/<driver>/emulator.py``) load the very same files, so a profile bug shows up on both
sides of a test instead of hiding in a private copy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from drivers.base import FIELDS, config_relative
from drivers.tomlfile import TomlFileError, read_toml

FIELD_INDEX: dict[str, int] = {name: k for k, name in enumerate(FIELDS)}

# unit -> (field, factor, offset): value_in_field_unit = value * factor + offset.
UNITS: dict[str, tuple[str, float, float]] = {
    "V": ("voltage_v", 1.0, 0.0),
    "mV": ("voltage_v", 1e-3, 0.0),
    "uV": ("voltage_v", 1e-6, 0.0),
    "A": ("current_a", 1.0, 0.0),
    "mA": ("current_a", 1e-3, 0.0),
    "degC": ("temperature_c", 1.0, 0.0),
    "C": ("temperature_c", 1.0, 0.0),
    "°C": ("temperature_c", 1.0, 0.0),
    "deg C": ("temperature_c", 1.0, 0.0),
    "K": ("temperature_c", 1.0, -273.15),
}

CELL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the problem."""


def unit_conversion(unit: str, field: str) -> tuple[float, float]:
    """(factor, offset) turning a value in ``unit`` into the field's unit; ValueError if they do not match."""
    if unit == "":
        return 1.0, 0.0
    try:
        target, factor, offset = UNITS[unit]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(sorted(UNITS))}") from None
    if target != field:
        raise ValueError(f"unit {unit!r} measures {target}, not {field}")
    return factor, offset


def builtin_profiles(folder: Path, suffix: str = ".toml") -> list[str]:
    return sorted(p.stem for p in folder.glob(f"*{suffix}"))


def resolve_profile(ref: str, folder: Path, suffix: str = ".toml") -> Path:
    """A built-in profile by name (``bms16``) or a file path; ValueError lists the built-in names."""
    if "/" not in ref and not ref.endswith(suffix):
        p = folder / f"{ref}{suffix}"
        if p.is_file():
            return p
        raise ValueError(
            f"no built-in profile {ref!r}; built-in: {', '.join(builtin_profiles(folder, suffix))} "
            "(or give a path to a profile file)"
        )
    p = config_relative(ref)
    if not p.is_file():
        raise ValueError(f"profile file {str(p)!r} not found")
    return p


def load_toml(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except TomlFileError as exc:
        raise ProfileError(str(exc)) from None


M = TypeVar("M", bound=BaseModel)


@functools.lru_cache(maxsize=64)
def _load_validated(model: type[BaseModel], path: str, mtime_ns: int) -> BaseModel:
    p = Path(path)
    try:
        return model.model_validate(load_toml(p))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise ProfileError(f"{p}: {problems}") from None


def load_model_profile(ref: str, folder: Path, model: type[M]) -> M:
    """A built-in profile by name or a TOML file, validated by ``model``; cached until the file changes.

    ProfileError/ValueError name the file and every problem."""
    p = resolve_profile(ref, folder)
    return cast(M, _load_validated(model, str(p.resolve()), p.stat().st_mtime_ns))


def cell_ids(n: int, ids: Iterable[str] | None, prefix: str) -> tuple[str, ...]:
    """Cell ids of a device: the explicit list, or ``prefix`` + position (01, 02, ... 1-based)."""
    if ids is not None:
        out = tuple(ids)
        if len(out) != n:
            raise ValueError(f"{len(out)} cell ids given but the profile has {n} cells")
    else:
        width = max(2, len(str(n)))
        out = tuple(f"{prefix}{i + 1:0{width}d}" for i in range(n))
    bad = [c for c in out if not CELL_ID.match(c)]
    if bad:
        raise ValueError(f"cell ids must be 1-64 of letters, digits, '_.:-': {bad[:3]}")
    if len(set(out)) != len(out):
        raise ValueError("cell ids of a device must be unique")
    return out
