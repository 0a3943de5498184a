"""A user's serial regex must not hold the agent for seconds on a bad line (issue 14).

Patterns that backtrack catastrophically are refused when the profile is loaded (``config check``), naming the
input shape that showed it; the built-in profiles and ordinary patterns pass; and at run time no regex is ever
matched against a line longer than ``REGEX_LINE_LIMIT`` (such a line is garbage without being matched).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from drivers.profiles import FIELD_INDEX, ProfileError
from drivers.serial.profile import LineFormat, LineParser, load_profile
from drivers.serial.regexcheck import REGEX_LINE_LIMIT, check_backtracking

EVIL = [
    r"(?P<voltage_v>(\d+)+)V",  # the classic nested quantifier
    r"(?P<voltage_v>(\d|\d)+)x",  # overlapping alternatives under a repetition
    r"(?P<voltage_v>(a*)*b)",
    r"CH(?P<channel>\d+),(?P<voltage_v>([\d.]+)*)V",  # only reached after a prefix
    r"(?P<voltage_v>(\d+\.?\d*)+)$",
    r"(?P<voltage_v>\d+)(\s*,?\s*)*;",
    r"(?P<voltage_v>\d*\d*\d*\d*x)",  # polynomial, slow at the line limit
]
FINE = [
    r"(?P<voltage_v>[-+]?\d\.\d+E[-+]\d+)",
    r"CH(?P<channel>\d+) V=(?P<voltage_v>\S+) I=(?P<current_a>\S+) T=(?P<temperature_c>\S+)",
    r"(?P<voltage_v>[^,]*),(?P<current_a>[^,]*)",
    r"\s*(?P<voltage_v>[-+0-9.eE]+)\s*V\s*",
]


@pytest.mark.parametrize("pattern", EVIL)
def test_a_backtracking_regex_is_refused_naming_the_input(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"backtracks too much: \d+ ms on one \d+-character line \("):
        check_backtracking(pattern)


@pytest.mark.parametrize("pattern", FINE)
def test_an_ordinary_regex_passes_the_probe(pattern: str) -> None:
    check_backtracking(pattern)
    LineFormat(regex=pattern)  # and the profile model accepts it


@pytest.mark.parametrize("name", ["scpi_cycler", "stream_logger"])
def test_the_built_in_profiles_pass_the_probe(name: str) -> None:
    assert load_profile(name).name


def test_a_profile_with_a_backtracking_regex_is_a_config_error(tmp_path: Path) -> None:
    prof = tmp_path / "evil.toml"
    prof.write_text(f"name = \"evil\"\n[stream]\nregex = '{EVIL[3]}'\n")
    with pytest.raises(ProfileError, match="backtracks too much"):
        load_profile(str(prof))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'rig = "r"\n[[drivers]]\ntype = "serial"\nport = "/dev/null"\nprofile = "{prof}"\n')
    with pytest.raises(ConfigError, match=r"drivers\[0\].*backtracks too much"):
        load_config(cfg)


@pytest.mark.parametrize("extra", [1, 5000, 65_000])
def test_no_line_over_the_limit_reaches_the_regex(extra: int) -> None:
    parser = LineParser(LineFormat(regex=r"(?P<voltage_v>\d+(\.\d+)?)\s*"))
    ok = parser.parse("3.5" + " " * (REGEX_LINE_LIMIT - 3))  # at the limit: parsed
    assert ok is not None and math.isclose(ok[1][FIELD_INDEX["voltage_v"]], 3.5)
    assert parser.parse("3.5" + " " * (REGEX_LINE_LIMIT - 3 + extra)) is None  # over it: garbage, not matched


def test_csv_lines_are_not_limited_by_the_regex_bound() -> None:
    parser = LineParser(LineFormat(csv=["voltage_v", ""], separator=","))
    got = parser.parse("4.1," + "x" * (REGEX_LINE_LIMIT * 2))
    assert got is not None and math.isclose(got[1][FIELD_INDEX["voltage_v"]], 4.1)
