"""A profile's regex must not backtrack for seconds on a bad line: it would hold the interpreter (the GIL) while
the agent's other work waits.

Two bounds. At run time the parser feeds a regex at most ``REGEX_LINE_LIMIT`` characters (a longer line is
garbage without being matched; instrument lines are tens of characters). At config check ``check_backtracking``
runs a quick worst-case probe: inputs built from the pattern itself (for every repetition: a prefix that reaches
it, its body pumped k times, then a character that makes the match fail, which is what drives a nested
repetition like ``(\\d+)+`` into exponential backtracking; also plain runs of each character the pattern knows),
with k growing step by step up to the line limit. A pattern for which one match takes longer than
``PROBE_BUDGET_S`` is refused with the input shape that showed it. Growing k in small steps keeps the probe itself
short: an exponential pattern is caught after at most a few times the budget.
"""

from __future__ import annotations

import importlib
import re
import time
from typing import Any

REGEX_LINE_LIMIT = 1024  # characters a regex is ever matched against
PROBE_BUDGET_S = 0.05  # one match at the limit may take this long (a linear regex takes ~0.1 ms)

_P: Any = importlib.import_module("re._parser")  # the stdlib's own regex parser (no public API for the tree)
_C: Any = importlib.import_module("re._constants")
_REPEATS = {_C.MAX_REPEAT, _C.MIN_REPEAT, getattr(_C, "POSSESSIVE_REPEAT", _C.MAX_REPEAT)}
_CATEGORY_CHAR = {_C.CATEGORY_DIGIT: "0", _C.CATEGORY_SPACE: " ", _C.CATEGORY_WORD: "a"}
_DEFAULT_CHARS = "0a .,-+eE:="
_FAIL_TAILS = ("\x00", "!")


def _class_char(items: list[tuple[Any, Any]]) -> str:
    """One character a character class ``[...]`` accepts (or "" if unsure, e.g. a negated class)."""
    for op, av in items:
        if op == _C.NEGATE:
            return ""
        if op == _C.LITERAL:
            return chr(av)
        if op == _C.RANGE:
            return chr(av[0])
        if op == _C.CATEGORY and av in _CATEGORY_CHAR:
            return str(_CATEGORY_CHAR[av])
    return ""


def _sample(seq: Any) -> str:
    """A short string the (sub)pattern matches, or close to it: enough to reach what follows."""
    out = []
    for op, av in seq:
        if op == _C.LITERAL:
            out.append(chr(av))
        elif op == _C.IN:
            out.append(_class_char(av) or "a")
        elif op == _C.ANY:
            out.append("a")
        elif op == _C.SUBPATTERN:
            out.append(_sample(av[-1]))
        elif op == _C.BRANCH:
            out.append(_sample(av[1][0]))
        elif op in _REPEATS:
            out.append(_sample(av[2]) * max(av[0], 1))
    return "".join(out)


def _chars(seq: Any, found: set[str]) -> None:
    """Every literal character and one character of every class in the pattern."""
    for op, av in seq:
        if op == _C.LITERAL:
            found.add(chr(av))
        elif op == _C.IN:
            found.update(c for c in [_class_char(av)] if c)
        elif op == _C.SUBPATTERN:
            _chars(av[-1], found)
        elif op == _C.BRANCH:
            for alt in av[1]:
                _chars(alt, found)
        elif op in _REPEATS:
            _chars(av[2], found)


def _pumps(seq: Any, prefix: str, out: list[tuple[str, str]]) -> None:
    """(prefix that reaches a repetition, its body) for every repetition that can repeat, at any depth."""
    for i, (op, av) in enumerate(seq):
        reach = prefix + _sample(seq[:i])
        if op in _REPEATS:
            if av[1] > 1:
                out.append((reach, _sample(av[2])))
            _pumps(av[2], reach, out)
        elif op == _C.SUBPATTERN:
            _pumps(av[-1], reach, out)
        elif op == _C.BRANCH:
            for alt in av[1]:
                _pumps(alt, reach, out)


def probe_inputs(pattern: str) -> list[tuple[str, str, str]]:
    """(prefix, pumped unit, failing tail) shapes to try on ``pattern``."""
    tree = _P.parse(pattern)
    pumps: list[tuple[str, str]] = []
    _pumps(tree, "", pumps)
    chars: set[str] = set(_DEFAULT_CHARS)
    _chars(tree, chars)
    shapes = [(pre, unit, tail) for pre, unit in pumps if unit for tail in _FAIL_TAILS]
    shapes += [(pre, c, tail) for pre, unit in pumps if not unit for c in sorted(chars) for tail in _FAIL_TAILS]
    shapes += [("", c, "\x00") for c in sorted(chars)]
    return list(dict.fromkeys(shapes))[:200]


def _lengths(limit: int) -> list[int]:
    """Pump counts: one at a time while short (exponential blow-up shows there), then 25 % steps."""
    out = list(range(1, 33))
    while out[-1] < limit:
        out.append(min(limit, int(out[-1] * 1.25) + 1))
    return out


def _timed(rx: re.Pattern[str], text: str) -> float:
    t0 = time.perf_counter()
    rx.fullmatch(text)
    return time.perf_counter() - t0


def check_backtracking(pattern: str, limit: int = REGEX_LINE_LIMIT, budget_s: float = PROBE_BUDGET_S) -> None:
    """Raise ValueError if ``pattern`` takes longer than ``budget_s`` on one of the probe inputs of at most
    ``limit`` characters."""
    rx = re.compile(pattern)
    for pre, unit, tail in probe_inputs(pattern):
        for k in _lengths(limit):
            text = pre + unit * k + tail
            if len(text) > limit:
                break
            took = _timed(rx, text)
            if took > budget_s:
                took = min(took, _timed(rx, text), _timed(rx, text))  # not a preempted thread on a busy machine
            if took > budget_s:
                shown = f"{pre!r} + {unit!r} x {k} + {tail!r}"
                raise ValueError(
                    f"the regex backtracks too much: {took * 1000:.0f} ms on one {len(text)}-character line "
                    f"({shown}); a line from a noisy serial link could hold the agent that long. Avoid a "
                    "repetition inside a repetition, e.g. (\\d+)+ or (a|a)*; write \\d+ or [\\d.]+ instead"
                )
