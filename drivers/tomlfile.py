"""Reading a TOML file someone else wrote (the agent's config, a device profile) without trusting its shape.

``tomllib`` is recursive: a file of a few thousand ``[`` raises ``RecursionError`` (not ``TOMLDecodeError``), and
a huge file is read whole. ``read_toml`` caps the size before parsing, turns deep nesting into a clear error, and
refuses documents nested deeper than any config needs, so later code (validation, error messages that quote the
input) never recurses on them either. Every problem is a ``TomlFileError`` whose message names the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

MAX_TOML_BYTES = 1024 * 1024  # a config or profile is a few kB; a MiB is room for thousands of devices
MAX_TOML_DEPTH = 32  # tables and arrays inside each other; the deepest real config nests 4


class TomlFileError(ValueError):
    """A TOML file that cannot be used; the message names the file (``source``) and says why (``problem``)."""

    def __init__(self, source: str, problem: str):
        self.source, self.problem = source, problem
        super().__init__(f"{source}: {problem}")


def depth(value: Any) -> int:
    """Nesting depth of tables and arrays (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            items = list(v.values())
        elif isinstance(v, list):
            items = v
        else:
            continue
        deepest = max(deepest, d + 1)
        if deepest > MAX_TOML_DEPTH:
            return deepest
        stack.extend((x, d + 1) for x in items)
    return deepest


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(source, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlFileError(source, f"nested too deeply to read (more than {MAX_TOML_DEPTH} levels)") from None
    if depth(doc) > MAX_TOML_DEPTH:
        raise TomlFileError(source, f"tables or arrays nested more than {MAX_TOML_DEPTH} levels deep")
    return doc


def read_toml(path: Path, max_bytes: int = MAX_TOML_BYTES) -> dict[str, Any]:
    """Parse the TOML file at ``path`` (UTF-8, at most ``max_bytes``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise TomlFileError(str(path), f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise TomlFileError(str(path), f"larger than {max_bytes // 1024} KiB; is this the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TomlFileError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_toml(text, str(path))
