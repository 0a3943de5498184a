"""Test protocols: steps (CC, CV, CP, rest, current/power profile), schedules that repeat them, Severson-style
fast-charge policies ("5.4C(40%)-3.6C"), HPPC, compiled into tables that the rig indexes per cell (vectorised).

A protocol is a list of step dicts (the same shape in Python, TOML config and the CLI's JSON):
  {step = "cc", c_rate = -1.0, until_v = 2.5}       CC; sign: + charge, - discharge; or a = amps
  {step = "cv", v = 4.2, until_c = 0.05}            CV until |I| <= cut-off (until_c in C, or until_a in A);
                                                    current limited to the preceding CC's (or max_a / max_c)
  {step = "cp", w = -10.0, until_v = 2.5}           constant power (W, + charge)
  {step = "rest", s = 600}
  {step = "profile", csv = "drive.csv", until_v = 2.5}  current_a or power_w column against time_s
  {repeat = 9, steps = [...]}                       an inner block repeated (unrolled)
Every step also takes s (duration cap), until_v, until_soc (SOC counted from the last full discharge, in
fractions of nominal capacity - what a cycler does). Charge steps stop at v_max and discharge steps at v_min
of the chemistry unless until_v says otherwise. Shortcut strings: "cccv", "hppc", "severson:<policy>",
"profile:<csv>" (see ``named``).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REST, CC, CV, CP, PROFILE = range(5)
KINDS = {"rest": REST, "cc": CC, "cv": CV, "cp": CP, "profile": PROFILE}
_STEP_KEYS = {
    "rest": {"s"},
    "cc": {"a", "c_rate", "s", "until_v", "until_soc"},
    "cv": {"v", "until_a", "until_c", "s", "max_a", "max_c"},
    "cp": {"w", "s", "until_v", "until_soc"},
    "profile": {"csv", "s", "until_v", "until_soc", "loop"},
}
# Columns of the compiled table (one row per step).
(
    C_KIND,
    C_AMPS,
    C_VOLT,
    C_WATT,
    C_DUR,
    C_VHI,
    C_VLO,
    C_ICUT,
    C_SOCHI,
    C_SOCLO,
    C_IMAX,
    C_PROF,
    C_NEXT,
    C_CYCLE_END,
    C_DIR,
) = range(15)
N_COLS = 15  # C_DIR: +1 a CV that charges (current 0..max), -1 one that discharges, as a cycler channel would


class ProtocolError(ValueError):
    """A protocol that cannot be parsed; the message names the bad item."""


@dataclass
class Profile:
    name: str
    time_s: np.ndarray
    value: np.ndarray
    power: bool  # True: value is W, else A
    loop: bool = False

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1])


def load_profile(path: str | Path, loop: bool = False) -> Profile:
    """Read a CSV with ``time_s`` and ``current_a`` or ``power_w`` columns (+ = charge)."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ProtocolError(f"profile {str(p)!r}: cannot read ({exc.strerror})") from None
    if not rows:
        raise ProtocolError(f"profile {str(p)!r}: empty file")
    head = [h.strip() for h in rows[0]]
    if "time_s" not in head or not ({"current_a", "power_w"} & set(head)):
        raise ProtocolError(f"profile {str(p)!r}: needs columns time_s and current_a or power_w, has {head}")
    col = "current_a" if "current_a" in head else "power_w"
    ti, vi = head.index("time_s"), head.index(col)
    t, v = [], []
    for n, row in enumerate(rows[1:], start=2):
        try:
            t.append(float(row[ti]))
            v.append(float(row[vi]))
        except (ValueError, IndexError):
            raise ProtocolError(f"profile {str(p)!r} line {n}: not a number in {row}") from None
    ta, va = np.asarray(t), np.asarray(v)
    if ta.size < 2 or not np.all(np.isfinite(ta)) or not np.all(np.isfinite(va)) or not np.all(np.diff(ta) > 0):
        raise ProtocolError(f"profile {str(p)!r}: needs >= 2 rows of finite values with time_s increasing")
    return Profile(p.name, ta - ta[0], va, col == "power_w", loop)


_POLICY_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)C(?:\((\d+(?:\.\d+)?)%\))?\s*$")


def severson_policy(
    policy: str, v_max: float = 3.6, v_min: float = 2.0, rest_s: float = 60.0, discharge_c: float = 4.0
) -> list[dict[str, Any]]:
    """Steps of a Severson et al. 2019 cycle: the fast-charge policy from 0 to 80 % SOC, 1C CC-CV to v_max
    (C/20 cut-off), rest, 4C discharge to v_min, CV at v_min to C/50, rest.

    "C1(Q1%)-C2": C1 to Q1 % SOC, then C2 to 80 %. "C1-C2-C3-C4" (Attia 2020): each over 20 % of SOC.
    """
    parts = [p for p in policy.replace("_", "-").split("-")]
    steps: list[dict[str, Any]] = []
    parsed = []
    for p in parts:
        m = _POLICY_STEP.match(p)
        if not m:
            raise ProtocolError(f"charging policy {policy!r}: cannot parse {p!r} (expected like 5.4C or 5.4C(40%))")
        parsed.append((float(m.group(1)), None if m.group(2) is None else float(m.group(2)) / 100.0))
    if len(parsed) == 2 and parsed[0][1] is not None and parsed[1][1] is None:
        bounds = [parsed[0][1], 0.8]
    elif len(parsed) == 4 and all(q is None for _, q in parsed):
        bounds = [0.2, 0.4, 0.6, 0.8]
    else:
        raise ProtocolError(f"charging policy {policy!r}: expected 'C1(Q1%)-C2' or 'C1-C2-C3-C4'")
    if not 0 < bounds[0] <= 0.8:
        raise ProtocolError(f"charging policy {policy!r}: switch SOC must lie in 0..80 %")
    for (c, _), soc in zip(parsed, bounds):
        if not 0 < c <= 20:
            raise ProtocolError(f"charging policy {policy!r}: C-rate {c} outside 0..20")
        steps.append({"step": "cc", "c_rate": c, "until_soc": soc})
    steps += [
        {"step": "cc", "c_rate": 1.0, "until_v": v_max},
        {"step": "cv", "v": v_max, "until_c": 0.05},
        {"step": "rest", "s": rest_s},
        {"step": "cc", "c_rate": -discharge_c, "until_v": v_min},
        {"step": "cv", "v": v_min, "until_c": 0.02},
        {"step": "rest", "s": rest_s},
    ]
    return steps


def cccv(
    charge_c: float = 0.5,
    discharge_c: float = 1.0,
    v_max: float | None = None,
    v_min: float | None = None,
    cutoff_c: float = 0.05,
    rest_s: float = 600.0,
) -> list[dict[str, Any]]:
    """CC-CV charge, rest, CC discharge, rest: the classic capacity cycle (and the driver's default)."""
    chg: dict[str, Any] = {"step": "cc", "c_rate": charge_c}
    dis: dict[str, Any] = {"step": "cc", "c_rate": -discharge_c}
    if v_max is not None:
        chg["until_v"] = v_max
    if v_min is not None:
        dis["until_v"] = v_min
    return [
        chg,
        {"step": "cv", "v": v_max if v_max is not None else "v_max", "until_c": cutoff_c},
        {"step": "rest", "s": rest_s},
        dis,
        {"step": "rest", "s": rest_s},
    ]


def hppc(
    pulse_c: float = 1.0,
    charge_pulse_c: float = 0.75,
    pulse_s: float = 10.0,
    soc_step: float = 0.1,
    rest_s: float = 3600.0,
) -> list[dict[str, Any]]:
    """Hybrid pulse power characterisation: from full charge, at each 10 % of SOC a discharge pulse, 40 s rest, a
    charge pulse, 40 s rest, then a 1C discharge of ``soc_step`` of capacity and a rest."""
    n = round(0.9 / soc_step)
    return [
        {"step": "cc", "c_rate": 1.0},
        {"step": "cv", "v": "v_max", "until_c": 0.05},
        {"step": "rest", "s": rest_s},
        {
            "repeat": n,
            "steps": [
                {"step": "cc", "c_rate": -pulse_c, "s": pulse_s},
                {"step": "rest", "s": 40.0},
                {"step": "cc", "c_rate": charge_pulse_c, "s": pulse_s},
                {"step": "rest", "s": 40.0},
                {"step": "cc", "c_rate": -1.0, "s": 3600.0 * soc_step},
                {"step": "rest", "s": rest_s},
            ],
        },
        {"step": "cc", "c_rate": -1.0},
        {"step": "rest", "s": rest_s},
    ]


def named(spec: str) -> list[dict[str, Any]]:
    """Expand a shortcut string: cccv | hppc | severson:<policy> | profile:<csv path>."""
    s = spec.strip()
    if s == "cccv":
        return cccv()
    if s == "hppc":
        return hppc()
    if s.startswith("severson:"):
        return severson_policy(s.split(":", 1)[1])
    if s.startswith("profile:"):
        return [{"step": "profile", "csv": s.split(":", 1)[1]}]
    raise ProtocolError(
        f"protocol {spec!r}: unknown name; use cccv, hppc, severson:<policy> (e.g. "
        f"severson:5.4C(40%)-3.6C), profile:<csv> or a list of steps"
    )


def _unroll(steps: list[Any], where: str = "protocol") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(steps, list) or not steps:
        raise ProtocolError(f"{where}: expected a non-empty list of steps")
    for i, st in enumerate(steps, start=1):
        label = f"{where} step {i}"
        if not isinstance(st, dict):
            raise ProtocolError(f"{label}: expected a table/dict, got {st!r}")
        if "repeat" in st:
            n = st["repeat"]
            extra = set(st) - {"repeat", "steps"}
            if extra or not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 100_000:
                raise ProtocolError(f"{label}: repeat needs an integer count 1..100000 and 'steps' only")
            inner = _unroll(st.get("steps"), f"{label} (repeat)")
            out += inner * n
        else:
            out.append((label, st))
    return out


@dataclass
class Program:
    """Compiled protocol: ``table`` rows are steps; per-cell step pointers index it."""

    table: np.ndarray
    profiles: list[Profile] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    cycles: int | None = None  # repeat the whole protocol this many times (None: forever)


def _num(label: str, st: dict, key: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    if key not in st:
        return None
    v = st[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ProtocolError(f"{label}: {key} = {v!r} is not a number in {lo}..{hi}")
    return float(v)


def compile_protocol(
    spec: str | list[dict[str, Any]],
    nominal_ah: float,
    v_min: float,
    v_max: float,
    cycles: int | None = None,
    base_dir: Path | None = None,
) -> Program:
    """Turn a protocol into a table; ProtocolError names the bad step or key."""
    steps = named(spec) if isinstance(spec, str) else spec
    flat = _unroll(steps)
    if cycles is not None and (not isinstance(cycles, int) or cycles < 1):
        raise ProtocolError(f"cycles must be a positive integer, got {cycles!r}")
    rows, profiles, labels = [], [], []
    big = 1e18
    for label, st in flat:
        kind_name = st.get("step")
        if kind_name not in KINDS:
            raise ProtocolError(f"{label}: step = {kind_name!r}; known: {', '.join(KINDS)}")
        unknown = set(st) - _STEP_KEYS[kind_name] - {"step"}
        if unknown:
            raise ProtocolError(
                f"{label} ({kind_name}): unknown key(s) {sorted(unknown)}; allowed: {sorted(_STEP_KEYS[kind_name])}"
            )
        row = np.zeros(N_COLS)
        row[C_KIND] = KINDS[kind_name]
        row[C_DUR] = _num(label, st, "s", 0.0) if "s" in st else big
        row[C_VHI], row[C_VLO] = big, -big
        row[C_SOCHI], row[C_SOCLO] = big, -big
        row[C_IMAX] = 20.0 * nominal_ah
        row[C_PROF] = -1
        sign = 0.0
        if kind_name == "cc":
            a, c = _num(label, st, "a", -1e4, 1e4), _num(label, st, "c_rate", -100, 100)
            if (a is None) == (c is None):
                raise ProtocolError(f"{label} (cc): give exactly one of a (amps) or c_rate")
            row[C_AMPS] = a if a is not None else c * nominal_ah
            sign = np.sign(row[C_AMPS])
        elif kind_name == "cv":
            v = st.get("v")
            volts = v_max if v == "v_max" else v_min if v == "v_min" else _num(label, st, "v", 0.5, 6.0)
            if volts is None:
                raise ProtocolError(f"{label} (cv): v (volts, or 'v_max' / 'v_min') is required")
            row[C_VOLT] = volts
            cut_a, cut_c = _num(label, st, "until_a", 0, 1e4), _num(label, st, "until_c", 0, 100)
            if cut_a is None and cut_c is None and "s" not in st:
                raise ProtocolError(f"{label} (cv): needs until_a, until_c or s to end")
            row[C_ICUT] = cut_a if cut_a is not None else (cut_c or 0.0) * nominal_ah
            # A CV follows its CC on a cycler channel: same direction, current limited to the CC's current.
            after_cc = bool(rows) and rows[-1][C_KIND] == CC and rows[-1][C_AMPS] != 0
            row[C_DIR] = np.sign(rows[-1][C_AMPS]) if after_cc else (1.0 if volts >= 0.5 * (v_min + v_max) else -1.0)
            row[C_IMAX] = abs(rows[-1][C_AMPS]) if after_cc else nominal_ah
            mx_a, mx_c = _num(label, st, "max_a", 0, 1e4), _num(label, st, "max_c", 0, 100)
            if mx_a is not None or mx_c is not None:
                row[C_IMAX] = mx_a if mx_a is not None else mx_c * nominal_ah
        elif kind_name == "cp":
            w = _num(label, st, "w", -1e6, 1e6)
            if w is None:
                raise ProtocolError(f"{label} (cp): w (watts) is required")
            row[C_WATT] = w
            sign = np.sign(w)
        elif kind_name == "profile":
            path = st.get("csv")
            if not isinstance(path, str):
                raise ProtocolError(f"{label} (profile): csv = path to a CSV file is required")
            p = Path(path)
            if base_dir is not None and not p.is_absolute():
                p = base_dir / p
            prof = load_profile(p, bool(st.get("loop", False)))
            row[C_PROF] = len(profiles)
            profiles.append(prof)
            if not prof.loop and "s" not in st:
                row[C_DUR] = prof.duration_s
        uv = _num(label, st, "until_v", 0.5, 6.0)
        us = _num(label, st, "until_soc", 0.0, 1.5)
        if kind_name in ("cc", "cp", "profile"):
            # Safety limits of the chemistry apply in the step's direction (a discharge is never stopped by a
            # voltage above v_max); until_v narrows them.
            row[C_VHI] = v_max if sign >= 0 else big
            row[C_VLO] = v_min if sign <= 0 else -big
            if uv is not None:
                if sign >= 0:
                    row[C_VHI] = uv
                if sign <= 0 and kind_name != "profile":
                    row[C_VLO] = uv
                if kind_name == "profile":
                    row[C_VLO] = uv
            if us is not None:
                if sign >= 0:
                    row[C_SOCHI] = us
                else:
                    row[C_SOCLO] = us
        rows.append(row)
        labels.append(label)
    table = np.vstack(rows)
    n = len(rows)
    table[:, C_NEXT] = np.arange(1, n + 1) % n
    table[-1, C_CYCLE_END] = 1
    # A terminal rest for cells that finished their cycles.
    done = np.zeros(N_COLS)
    done[C_KIND], done[C_DUR], done[C_VHI], done[C_VLO] = REST, 1e18, 1e18, -1e18
    done[C_SOCHI], done[C_SOCLO], done[C_PROF], done[C_NEXT] = 1e18, -1e18, -1, n
    table = np.vstack([table, done])
    return Program(table, profiles, labels + ["finished"], cycles)


def compile_many(
    specs: list[str | list[dict[str, Any]]],
    nominal_ah: float,
    v_min: float,
    v_max: float,
    cycles: int | None = None,
    base_dir: Path | None = None,
) -> tuple[Program, list[int]]:
    """Several protocols in one table (cells of one rig on different policies); returns the program and each
    protocol's first row. Each protocol wraps to its own start; one shared terminal rest ends the table."""
    tables, profiles, labels, starts = [], [], [], []
    offset = 0
    for n, spec in enumerate(specs):
        try:
            prog = compile_protocol(spec, nominal_ah, v_min, v_max, cycles, base_dir)
        except ProtocolError as exc:
            raise ProtocolError(f"protocol {n + 1} of {len(specs)}: {exc}") from None
        t = prog.table[:-1].copy()  # drop its own terminal rest
        rows = t.shape[0]
        t[:, C_NEXT] = (np.arange(1, rows + 1) % rows) + offset
        prof = t[:, C_PROF] >= 0
        t[prof, C_PROF] += len(profiles)
        tables.append(t)
        profiles += prog.profiles
        labels += [f"p{n + 1}: {lab}" for lab in prog.labels[:-1]]
        starts.append(offset)
        offset += rows
    done = np.zeros(N_COLS)
    done[C_KIND], done[C_DUR], done[C_VHI], done[C_VLO] = REST, 1e18, 1e18, -1e18
    done[C_SOCHI], done[C_SOCLO], done[C_PROF], done[C_NEXT] = 1e18, -1e18, -1, offset
    return Program(np.vstack(tables + [done]), profiles, labels + ["finished"], cycles), starts
